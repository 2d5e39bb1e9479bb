/**
 * The root lint setup for bench/, which the root config ignores (its types need bench/'s own
 * dependencies). `npm run lint:bench` passes this file with --config from the root, so the
 * patterns below are relative to the root.
 */
import tseslint from 'typescript-eslint';
import { shared } from '../eslint.config.js';

export default tseslint.config(
  { ignores: ['bench/results/**'] },
  ...shared,
  { files: ['bench/eslint.config.js', 'bench/install.mjs'], ...tseslint.configs.disableTypeChecked },
);
