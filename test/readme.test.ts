/**
 * The README cannot drift from the code: its TypeScript examples are type-checked against the
 * real API (strict; a block without imports gets the package's names and a `db`), and every
 * limit it names is exported, with the value it gives.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { CONSUMER_COMPILER_OPTIONS, typeCheckAll } from './support/typecheck.js';
import * as main from '../src/index.js';
import * as wal from '../src/wal/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(`${root}README.md`, 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);

const PRELUDE = `import { FactStore, Query } from 'factstore';\ndeclare const db: FactStore;\n`;

const exampleFile = (index: number) => `${root}test/readme-example-${index + 1}.mts`;

/** Every example's diagnostics, from one compiler run (a run per example took a minute). */
let diagnosticsByExample: Map<string, string[]> | undefined;

function diagnosticsOf(index: number): string[] {
  if (diagnosticsByExample === undefined) {
    const sources = new Map<string, string>();
    blocks.forEach((block, at) => {
      const source = /^import /m.test(block) ? block : PRELUDE + block;
      // A module, so top-level await and `await using` are allowed.
      sources.set(exampleFile(at), `${source}\nexport {};\n`);
    });
    const options: ts.CompilerOptions = {
      ...CONSUMER_COMPILER_OPTIONS,
      skipLibCheck: true,
      // Resolve the package to its sources, so the check needs no build.
      baseUrl: root,
      paths: { factstore: ['src/index.ts'], 'factstore/wal': ['src/wal/index.ts'], 'factstore/testing': ['src/testing/index.ts'] },
      allowImportingTsExtensions: true,
    };
    diagnosticsByExample = new Map([...sources.keys()].map((file) => [file, []]));
    for (const diagnostic of typeCheckAll(sources, options, (file) => sources.has(file))) {
      diagnosticsByExample.get(diagnostic.file!.fileName)!.push(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
    }
  }
  return diagnosticsByExample.get(exampleFile(index))!;
}

describe('README examples', () => {
  it('has TypeScript examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
  });

  blocks.forEach((_, index) => {
    it(`example ${index + 1} type-checks`, () => {
      expect(diagnosticsOf(index)).toEqual([]);
    }, 60_000);
  });
});

/**
 * The limits the README names: every backticked ALL_CAPS name ending in _MAX, _MIN, _BYTES or
 * _MS, and every one in a paragraph that says "exported" (error codes aside).
 */
function readmeLimits(): Map<string, number | undefined> {
  const limits = new Map<string, number | undefined>();
  const codes = new Set<string>(main.FactErrorCodes);
  for (const paragraph of readme.split(/\n\s*\n/)) {
    const saysExported = /\bexported\b/.test(paragraph);
    // A value follows as "`NAME` = 1,024" or "`NAME` (1024".
    for (const match of paragraph.matchAll(/`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`(?:\s*(?:=|\()\s*([\d,]+))?/g)) {
      const name = match[1]!;
      if (codes.has(name)) continue;
      if (!saysExported && !/_(MAX|MIN|BYTES|MS)$/.test(name)) continue;
      const value = match[2] === undefined ? undefined : Number(match[2].replaceAll(',', ''));
      limits.set(name, limits.get(name) ?? value);
    }
  }
  return limits;
}

describe('README limits', () => {
  const limits = readmeLimits();

  it('names some', () => {
    expect([...limits.keys()]).toEqual(expect.arrayContaining(['EVENT_TYPE_SIZE_BYTES_MAX', 'UNAPPLIED_EVENTS_MAX', 'UNAPPLIED_SIZE_BYTES_MAX']));
  });

  for (const [name, value] of limits) {
    it(`${name} is exported by 'factstore' or 'factstore/wal'${value === undefined ? '' : ` and is ${value}`}`, () => {
      const exported = (main as Record<string, unknown>)[name] ?? (wal as Record<string, unknown>)[name];
      expect(typeof exported, `${name} is not exported`).toBe('number');
      if (value !== undefined) expect(exported).toBe(value);
    });
  }
});

describe('README mutants', () => {
  it('lists every mutant of scripts/mutants-table.mjs once, the equivalent ones as such', async () => {
    const { MUTANTS } = (await import(new URL('../scripts/mutants-table.mjs', import.meta.url).href)) as { MUTANTS: { id: string; equivalent?: string }[] };
    const section = readme.slice(readme.indexOf('### Mutants'));
    const rows = new Map([...section.matchAll(/^\| `([a-z0-9-]+)` \|.*\| (.*) \|$/gm)].map((match) => [match[1]!, match[2]!]));
    expect([...rows.keys()].sort()).toEqual(MUTANTS.map((mutant) => mutant.id).sort());
    for (const mutant of MUTANTS) expect(rows.get(mutant.id)!.startsWith('equivalent:'), mutant.id).toBe(mutant.equivalent !== undefined);
  });
});
