/**
 * Counterexamples fuzz-calls.property.test.ts found, replayed first on every run. Each is a
 * Call of that file (arguments as indexes into its NASTY list or its VALID values), with what it
 * found and how it was fixed.
 */
export const CALL_REGRESSIONS: { name: string; call: unknown }[] = [
  {
    name: 'rebuildIndexes(null) threw a TypeError (fixed: FACT_INVALID_ARGUMENT, options must be an object)',
    call: { m: 'rebuildIndexes', options: { nasty: 1 } },
  },
  {
    name: 'subscribe with from = a cyclic object threw a TypeError from JSON.stringify in the message (fixed: errors.ts shown() for every message quoting a caller value)',
    call: { m: 'subscribe', source: { fields: {} }, options: { fields: { from: { nasty: 39 } } } },
  },
  {
    name: 'Query.data with a sparse array as a field\'s values threw a TypeError (map keeps holes; fixed: a hole reads as undefined, as in Query.items types and tags and indexes.data, where it is then refused)',
    call: { m: 'query', builder: 'data', args: [{ fields: { types: { nasty: 45 }, tags: { nasty: 0 }, data: { nasty: 0 } } }] },
  },

  {
    name: 'FactStore.open with wal.maxRecordSizeBytes -0 (valid for a bare WAL) made the WAL directory, then failed writing the id-seed record (fixed: FACT_INVALID_ARGUMENT below 16 bytes, before anything is written)',
    call: { m: 'open', path: { valid: 0 }, options: { fields: {} }, wal: { fields: { syncIntervalMs: { valid: 0 }, maxRecordSizeBytes: { nasty: 6 } } }, indexes: { nasty: 10 } },
  },
];
