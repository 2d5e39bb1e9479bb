import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactStore } from '../src/index.js';
import { expectFactError } from './support/backends.js';

describe('locks on the ledger', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'factstore-locks-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('LevelDB held by someone else while the WAL lock is free is FACT_LOCKED, and the WAL lock is released', async () => {
    const path = join(root, 'db');
    await (await FactStore.open(path)).close();
    // Like a second process that took over the WAL lock in the same instant: LevelDB's own
    // kernel lock still refuses it.
    const holder = new ClassicLevel(join(path, 'ledger'));
    await holder.open();
    try {
      const error = await expectFactError(() => FactStore.open(path), 'FACT_LOCKED', /locked by another process/);
      expect((error.cause as { code?: string }).code).toBe('LEVEL_DATABASE_NOT_OPEN');
    } finally {
      await holder.close();
    }
    // The failed open released the WAL lock: the database opens normally now.
    const db = await FactStore.open(path);
    expect(await db.head()).toBe(0);
    await db.close();
  });
});
