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
];
