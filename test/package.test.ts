import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { CONSUMER_COMPILER_OPTIONS, typeCheck } from './support/typecheck.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Imports `specifier` in a plain Node process (no tsx), the way a dependent project would. */
function exportsOf(specifier: string): string[] {
  const script = `const m = await import(${JSON.stringify(specifier)}); console.log(JSON.stringify(Object.keys(m).sort()));`;
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  return JSON.parse(output) as string[];
}

/** Every .d.ts file under `dir`, path → text. */
function declarationFiles(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.d.ts')) {
      const path = join(entry.parentPath, entry.name);
      files.set(path, readFileSync(path, 'utf8'));
    }
  }
  return files;
}

/**
 * Type-checks a consumer of the three entries against dist/ (the published types, not the
 * sources) without skipLibCheck: a public declaration that refers to something stripInternal
 * removed fails here. Returns the diagnostics in dist/ and in the consumer.
 */
function publishedTypeErrors(): string[] {
  const fileName = `${root}test/published-types-consumer.mts`;
  const source = [
    "import type * as main from 'factstore';",
    "import type * as wal from 'factstore/wal';",
    "import type * as testing from 'factstore/testing';",
    'export type Entries = [typeof main, typeof wal, typeof testing];',
  ].join('\n');
  const options: ts.CompilerOptions = { ...CONSUMER_COMPILER_OPTIONS, skipLibCheck: false };
  return typeCheck(fileName, source, options, (file) => file === fileName || file.startsWith(`${root}dist/`))
    .map((diagnostic) => `${diagnostic.file!.fileName}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
}

describe('package.json', () => {
  it('engines names the Node.js versions that have every API factstore uses (crc32 of node:zlib: 20.15, 22.2)', () => {
    const manifest = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { engines: { node: string } };
    expect(manifest.engines.node).toBe('^20.15.0 || >=22.2.0');
  });
});

describe('the published package', () => {
  beforeAll(() => {
    // What `npm ci` runs as the prepare script; rebuilt here so dist/ matches src/.
    execFileSync(process.execPath, [fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url)), '-p', 'tsconfig.build.json'], {
      cwd: root,
      stdio: 'inherit',
    });
  }, 120_000);

  it("plain Node imports 'factstore' with its explicit export list, without test doubles", () => {
    const names = exportsOf('factstore');
    for (const name of ['FactStore', 'Query', 'FactError', 'isFactError', 'Wal', 'NodeFileSystem']) expect(names).toContain(name);
    for (const name of ['SimFileSystem', 'SimCrashError', 'LossyLevel', 'SimMachine', 'mulberry32']) expect(names).not.toContain(name);
  });

  it("plain Node imports 'factstore/wal'", () => {
    const names = exportsOf('factstore/wal');
    for (const name of ['Wal', 'Journal', 'SimFileSystem', 'NodeFileSystem', 'FactError']) expect(names).toContain(name);
  });

  it("plain Node imports 'factstore/testing': the doubles for crash tests", () => {
    const names = exportsOf('factstore/testing');
    expect(names).toEqual(['CLASSIC_LEVEL_CLEAR_BATCH_SIZE_BYTES', 'LossyLevel', 'SimCrashError', 'SimFileSystem', 'SimMachine', 'mulberry32']);
  });

  it("factstore/testing's doubles crash a store built from dist in plain Node", () => {
    const script = `
      import { FactStore } from 'factstore';
      import { SimMachine } from 'factstore/testing';
      const machine = new SimMachine({ seed: 1 });
      const db = await FactStore.open('/db', machine.storeOptions());
      await db.append({ type: 'Acknowledged' });
      await machine.crash({ dying: db });
      const reopened = await FactStore.open('/db', machine.storeOptions());
      console.log((await reopened.read().toArray()).map((event) => event.type).join());
      await reopened.close();`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(output.trim()).toBe('Acknowledged');
  });

  it('the published types (stripInternal) are complete and hold no @internal member', () => {
    expect(publishedTypeErrors()).toEqual([]);
    const published = [...declarationFiles(`${root}dist`).values()].join('\n');
    // Known @internal names: Query's compiled items, errors.ts's helpers, LossyLevel's abstract-level hooks.
    for (const internal of [/\bget compiled\(\)/, /\bfunction assert\(/, /\bfunction invalid\(/, /\b_batch\(/]) expect(published).not.toMatch(internal);
    // …while their public neighbours are there.
    for (const exported of [/\bclass Query\b/, /\bfunction isFactError\(/, /\bclass LossyLevel\b/, /\bfailFlush\(/]) expect(published).toMatch(exported);
  }, 60_000);

  it('the built database opens, appends and reads in plain Node', () => {
    const script = `
      import { FactStore, Query } from 'factstore';
      import { mkdtempSync, rmSync } from 'node:fs';
      import { tmpdir } from 'node:os';
      import { join } from 'node:path';
      const dir = mkdtempSync(join(tmpdir(), 'factstore-package-'));
      try {
        const db = await FactStore.open(dir);
        await db.append({ type: 'Hello', tags: ['who:world'] });
        const events = await db.read({ query: Query.tags('who:world') }).toArray();
        console.log(events.length, events[0].type);
        await db.close();
      } finally { rmSync(dir, { recursive: true, force: true }); }`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(output.trim()).toBe('1 Hello');
  });
});
