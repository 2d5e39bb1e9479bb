/**
 * factstore on a Node.js without an API it needs (node:zlib's crc32 came in 20.15 and 22.2):
 * the import fails at once and says which versions work, rather than a first append failing.
 */
import type * as zlib from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';

vi.mock('node:zlib', async (importOriginal) => ({ ...(await importOriginal<typeof zlib>()), crc32: undefined }));

describe('an unsupported Node.js', () => {
  it('importing factstore fails with FACT_UNSUPPORTED_RUNTIME, naming the missing API and the versions that have it', async () => {
    const error: unknown = await import('../src/index.js').then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toMatchObject({ name: 'FactError', code: 'FACT_UNSUPPORTED_RUNTIME' });
    const { message } = error as Error;
    expect(message).toContain('crc32');
    expect(message).toContain('^20.15.0 || >=22.2.0');
    expect(message).toContain(process.version);
  });
});
