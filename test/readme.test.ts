/**
 * The README's TypeScript examples are type-checked against the real API (strict), so the docs
 * cannot drift from the code. A block without imports gets the package's names and a `db`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(`${root}README.md`, 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);

const PRELUDE = `import { FactStore, Query } from 'factstore';\ndeclare const db: FactStore;\n`;

function diagnosticsOf(source: string): string[] {
  const fileName = `${root}test/readme-example.mts`;
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
    // Resolve the package to its sources, so the check needs no build.
    baseUrl: root,
    paths: { factstore: ['src/index.ts'], 'factstore/wal': ['src/wal/index.ts'] },
    allowImportingTsExtensions: true,
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === fileName ? source : readFile(name));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const program = ts.createProgram([fileName], options, host);
  return ts
    .getPreEmitDiagnostics(program)
    .filter((diagnostic) => diagnostic.file?.fileName === fileName)
    .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
}

describe('README examples', () => {
  it('has TypeScript examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
  });

  blocks.forEach((block, index) => {
    it(`example ${index + 1} type-checks`, () => {
      const source = /^import /m.test(block) ? block : PRELUDE + block;
      // A module, so top-level await and `await using` are allowed.
      expect(diagnosticsOf(`${source}\nexport {};\n`)).toEqual([]);
    }, 60_000);
  });
});
