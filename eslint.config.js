import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** The lint setup without the ignores; bench/eslint.config.js reuses it for bench/. */
export const shared = tseslint.config(
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', '.dependency-cruiser.js', 'scripts/*.mjs'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  { files: ['eslint.config.js', '.dependency-cruiser.js'], ...tseslint.configs.disableTypeChecked },
  // Plain Node scripts (scripts/mutants.mjs): no types to check, Node's globals.
  {
    files: ['scripts/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' } },
  },
);

export default tseslint.config(
  // bench/ is type-aware linted against its own dependencies, which only the bench scripts
  // install: `npm run lint:bench`.
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'bench/**', '.tmp/**'] },
  ...shared,
);
