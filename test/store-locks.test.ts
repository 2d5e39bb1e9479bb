import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactStore } from '../src/index.js';
import { expectFactError } from './support/backends.js';

describe('locks on the ledger', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'factstore-locks-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('LevelDB held by someone else while the WAL lock is free is FACT_LOCKED, and the WAL lock stays free', async () => {
    const path = join(root, 'db');
    await (await FactStore.open(path)).close();
    // Like a second process that took over the WAL lock in the same instant: LevelDB's own
    // kernel lock still refuses it.
    const holder = new Level(join(path, 'ledger'));
    await holder.open();
    try {
      const error = await expectFactError(() => FactStore.open(path), 'FACT_LOCKED', /locked by another process/);
      expect((error.cause as { code?: string }).code).toBe('LEVEL_DATABASE_NOT_OPEN');
    } finally {
      await holder.close();
    }
    // The failed open never took the WAL lock: the database opens normally now.
    const db = await FactStore.open(path);
    expect(await db.head()).toBe(0);
    await db.close();
  });

  it('a held LevelDB lock fails the open with FACT_LOCKED before the WAL is touched, naming the pid in the WAL LOCK file', async () => {
    const path = join(root, 'db');
    const walDir = join(path, 'wal');
    const db = await FactStore.open(path);
    await db.append([{ type: 'A' }, { type: 'B' }]);
    await db.close();
    // A live holder whose pid check misleads: its LOCK names a pid no process has, so the WAL's
    // pid lock alone would take it over and recover (rewrite) the WAL.
    const stalePid = 2 ** 31 - 1;
    writeFileSync(join(walDir, 'LOCK'), `${stalePid}\n`);
    const snapshot = () => Object.fromEntries(readdirSync(walDir).map((name) => [name, createHash('sha256').update(readFileSync(join(walDir, name))).digest('hex')]));
    const before = snapshot();
    const holder = new Level(join(path, 'ledger'));
    await holder.open();
    try {
      const error = await expectFactError(() => FactStore.open(path), 'FACT_LOCKED', new RegExp(`locked by another process \\(pid ${stalePid}`));
      expect(error.details).toMatchObject({ path, pid: stalePid });
      expect(snapshot()).toEqual(before);
    } finally {
      await holder.close();
    }
  });
});
