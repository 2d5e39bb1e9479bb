/**
 * The layering of src/, checked by `npm run lint` (depcruise src). LAYERS is the one place that
 * says what each layer may import; the rules below are generated from it. A layer is a path
 * pattern, so a new file in a layer's folder is covered without touching this file.
 */

/** Lowest first. `may`: the other layers a layer may import (it may always import itself). */
const LAYERS = [
  { name: 'errors', path: '^src/errors\\.ts$', may: [] },
  { name: 'bytes', path: '^src/bytes\\.ts$', may: [] },
  { name: 'runtime', path: '^src/runtime\\.ts$', may: ['errors'] },
  { name: 'wal', path: '^src/wal/', may: ['errors', 'bytes', 'runtime'] },
  { name: 'model', path: '^src/model/', may: ['errors', 'bytes'] },
  { name: 'storage', path: '^src/storage/', may: ['model', 'errors', 'bytes'] },
  { name: 'indexes', path: '^src/indexes/', may: ['storage', 'model', 'wal', 'errors', 'bytes'] },
  { name: 'query', path: '^src/query/', may: ['indexes', 'storage', 'model', 'errors', 'bytes'] },
  { name: 'ledger', path: '^src/ledger/', may: ['query', 'indexes', 'storage', 'model', 'wal', 'errors', 'bytes', 'runtime'] },
  { name: 'store', path: '^src/store\\.ts$', may: ['ledger', 'query', 'indexes', 'storage', 'model', 'wal', 'errors', 'bytes', 'runtime'] },
  // Entries (package.json "exports"): nothing in src imports them. The test doubles stand in
  // for the storage layers, so they need nothing of the database above them.
  { name: 'testing', path: '^src/testing/', may: ['wal', 'storage', 'model', 'errors', 'bytes', 'runtime'] },
  {
    name: 'index',
    path: '^src/index\\.ts$',
    may: ['store', 'ledger', 'query', 'indexes', 'storage', 'model', 'wal', 'errors', 'bytes', 'runtime'],
  },
  // The `factstore` command (package.json "bin"): a user of the public API, nothing below it.
  { name: 'cli', path: '^src/cli/', may: ['index'] },
];

const pathOf = Object.fromEntries(LAYERS.map((layer) => [layer.name, layer.path]));

const layerRules = LAYERS.map(({ name, path, may }) => ({
  name: `layer-${name}`,
  severity: 'error',
  comment: `src layer '${name}' (${path}) may import only ${may.length === 0 ? 'itself' : `itself and ${may.join(', ')}`} (.dependency-cruiser.js, LAYERS)`,
  from: { path },
  to: { path: '^src/', pathNot: [path, ...may.map((other) => pathOf[other])] },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    ...layerRules,
    {
      name: 'layer-unknown',
      severity: 'error',
      comment: 'a file of src is in no layer: move it into a layer folder, or add its layer to LAYERS in .dependency-cruiser.js',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: LAYERS.map((layer) => layer.path) },
    },
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'a circular dependency in src (type-only imports count too)',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'no-tests-from-src',
      severity: 'error',
      comment: 'src must not import tests, property tests, benchmarks or the demo',
      from: { path: '^src/' },
      to: { path: '^(test|property-tests|bench|demo)/' },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      comment: 'an import of src that does not resolve (it would escape the layer rules)',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    {
      name: 'no-dev-dependency',
      severity: 'error',
      comment: 'src outside src/testing imports a devDependency, which users do not install',
      from: { path: '^src/', pathNot: '^src/testing/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-undeclared-package',
      severity: 'error',
      comment: 'src imports a package that package.json does not declare',
      from: { path: '^src/' },
      // A package declared in one section is not undeclared because another also lists it
      // (memory-level: a devDependency and an optional peer of factstore/testing).
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'], dependencyTypesNot: ['npm', 'npm-dev', 'npm-peer', 'npm-optional'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports are dependencies too: a cycle through types is still a cycle.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
