/**
 * The Node.js versions factstore runs on, the same range as package.json "engines": the WAL's
 * checksums use node:zlib's crc32 (Node 20.15 and 22.2); every other API it uses is older
 * (Symbol.asyncDispose: 20.4).
 */
import { FactError } from './errors.js';

export const NODE_VERSIONS_SUPPORTED = '^20.15.0 || >=22.2.0';

/** The error of an import on a Node.js that lacks `api`. */
export function unsupportedRuntime(api: string): FactError {
  return new FactError(
    'FACT_UNSUPPORTED_RUNTIME',
    `factstore needs Node.js ${NODE_VERSIONS_SUPPORTED} for ${api}; this is Node.js ${process.version}`,
    { details: { api, nodeVersion: process.version, supported: NODE_VERSIONS_SUPPORTED } },
  );
}
