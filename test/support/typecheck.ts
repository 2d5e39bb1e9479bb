/** Type-checks one in-memory source file with the compiler API (README examples, the published types' consumer). */
import ts from 'typescript';

export const CONSUMER_COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'],
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  noEmit: true,
  types: ['node'],
};

/** The diagnostics of `source` compiled as `fileName`, in the files `reported` accepts. */
export function typeCheck(fileName: string, source: string, options: ts.CompilerOptions, reported: (file: string) => boolean): ts.Diagnostic[] {
  return typeCheckAll(new Map([[fileName, source]]), options, reported);
}

/**
 * The diagnostics of several in-memory files compiled as one program (one compiler run: the
 * library and the package's types are read and checked once, not once per file).
 */
export function typeCheckAll(sources: ReadonlyMap<string, string>, options: ts.CompilerOptions, reported: (file: string) => boolean): ts.Diagnostic[] {
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => sources.get(name) ?? readFile(name);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => sources.has(name) || fileExists(name);
  const program = ts.createProgram([...sources.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).filter((diagnostic) => diagnostic.file !== undefined && reported(diagnostic.file.fileName));
}
