/**
 * The layering rules of .dependency-cruiser.js (run on src/ by `npm run lint`) reject what they
 * should: depcruise runs with the project's config on a small generated tree that breaks each
 * rule once, next to imports every layer is allowed to make.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const depcruise = join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

/** Path → source. Each violating import is marked with the rule it breaks. */
const FIXTURE: Record<string, string> = {
  'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true }, include: ['src', 'test'] }),
  'test/util.ts': 'export const helper = 1;',
  'src/errors.ts': 'export class FactError extends Error {}',
  'src/bytes.ts': 'export const EMPTY = new Uint8Array(0);',
  'src/runtime.ts': "import { FactError } from './errors.js';\nexport const check = () => new FactError();",
  'src/wal/wal.ts': "import { EMPTY } from '../bytes.js';\nimport { check } from '../runtime.js';\nexport const wal = [EMPTY, check];",
  // no-unresolvable
  'src/wal/journal.ts': "import { gone } from './missing.js';\nexport const journal = gone;",
  'src/storage/keys.ts': "import { EMPTY } from '../bytes.js';\nexport type Key = Uint8Array;\nexport const key = EMPTY;",
  // layer-model (a type-only import counts)
  'src/model/types.ts': "import type { Key } from '../storage/keys.js';\nimport { FactError } from '../errors.js';\nexport type Event = { key: Key; error: FactError };",
  // no-circular, through type-only imports within one layer
  'src/model/a.ts': "import type { B } from './b.js';\nexport type A = { b?: B };",
  'src/model/b.ts': "import type { A } from './a.js';\nexport type B = { a?: A };",
  'src/indexes/entries.ts': "import { wal } from '../wal/wal.js';\nimport { key } from '../storage/keys.js';\nimport type { Event } from '../model/types.js';\nexport const entries = [wal, key] as unknown as Event[];",
  // layer-query: the read path does not touch the WAL
  'src/query/plan.ts': "import { entries } from '../indexes/entries.js';\nimport { wal } from '../wal/wal.js';\nexport const plan = [entries, wal];",
  // no-tests-from-src
  'src/ledger/writer.ts': "import { plan } from '../query/plan.js';\nimport { helper } from '../../test/util.js';\nexport const writer = [plan, helper];",
  // layer-store: nothing imports an entry
  'src/store.ts': "import { writer } from './ledger/writer.js';\nimport { double } from './testing/index.js';\nexport const store = [writer, double];",
  // layer-testing: the doubles need nothing of the database
  'src/testing/index.ts': "import { wal } from '../wal/wal.js';\nimport { plan } from '../query/plan.js';\nexport const double = [wal, plan];",
  // layer-unknown: a file outside every layer folder
  'src/misc/thing.ts': 'export const thing = 1;',
  'src/index.ts': "import { store } from './store.js';\nimport { thing } from './misc/thing.js';\nexport const api = [store, thing];",
};

const EXPECTED = [
  'layer-index: src/index.ts → src/misc/thing.ts',
  'layer-model: src/model/types.ts → src/storage/keys.ts',
  'layer-query: src/query/plan.ts → src/wal/wal.ts',
  'layer-store: src/store.ts → src/testing/index.ts',
  'layer-testing: src/testing/index.ts → src/query/plan.ts',
  'layer-unknown: src/index.ts → src/misc/thing.ts',
  'no-tests-from-src: src/ledger/writer.ts → test/util.ts',
  'no-unresolvable: src/wal/journal.ts → ./missing.js',
];

interface Violation {
  from: string;
  to: string;
  rule: { name: string; severity: string };
}

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'factstore-layering-'));
  for (const [path, source] of Object.entries(FIXTURE)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), `${source}\n`);
  }
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The cruise's violations and error count (the json reporter exits 0; `npm run lint`'s err-long exits with the count). */
function cruise(): { errors: number; violations: Violation[] } {
  const args = [depcruise, '--config', join(root, '.dependency-cruiser.js'), '--output-type', 'json', 'src'];
  const output = execFileSync(process.execPath, args, { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const { summary } = JSON.parse(output) as { summary: { error: number; violations: Violation[] } };
  return { errors: summary.error, violations: summary.violations };
}

describe('the layering rules (.dependency-cruiser.js)', () => {
  it('reject each forbidden import, a cycle of type-only imports and a file outside the layers, and nothing else', () => {
    const { errors, violations } = cruise();
    expect(violations.every((violation) => violation.rule.severity === 'error')).toBe(true);
    const cycles = violations.filter((violation) => violation.rule.name === 'no-circular');
    expect(cycles.length).toBeGreaterThan(0);
    for (const cycle of cycles) expect(cycle.from).toMatch(/^src\/model\/[ab]\.ts$/);
    const others = violations.filter((violation) => violation.rule.name !== 'no-circular');
    expect(others.map((violation) => `${violation.rule.name}: ${violation.from} → ${violation.to}`).sort()).toEqual(EXPECTED);
    expect(errors).toBe(violations.length);
  }, 60_000);
});
