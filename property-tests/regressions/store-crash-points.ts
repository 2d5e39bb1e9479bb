/**
 * Counterexamples store-crash-points.property.test.ts found, replayed first on every run (as
 * fast-check examples: config, operations, crashes). All were gaps in the test's model, not in
 * the store: a decision that appends nothing leaves two equal golden states; a durable consumer's
 * per-event acks are states between two operations; a group whose members started after reads of
 * different cost (a cached stream version, a stored one) reached the store in a different order
 * after recovery than in the golden run (members now start in one tick, in call order).
 */
export const STORE_CRASH_POINTS_REGRESSIONS: unknown[][] = [
  [
    { seed: 0, sync: 'always', segmentSizeBytes: 1024, checkpointEveryBytes: 512, retainSegments: 0 },
    [
      { o: 'decide', course: 'c1', limit: 1 },
      { o: 'decide', course: 'c1', limit: 1 },
    ],
    [{ mode: 'power-loss', seed: 0, recoveryOps: null }],
  ],
  [
    { seed: 0, sync: 'always', segmentSizeBytes: 1024, checkpointEveryBytes: 512, retainSegments: 0 },
    [
      { o: 'append', events: [{ type: 'Opened', course: 'c1', tags: [], data: Uint32Array.from([]) }, { type: 'Opened', course: 'c1', tags: [], data: false }, { type: 'Opened', course: 'c1', tags: [], data: 0 }], ids: false, condition: null },
      { o: 'consume', max: 3 },
      { o: 'retry', pick: 0 },
      { o: 'rebuild' },
    ],
    [{ mode: 'power-loss', seed: 0, recoveryOps: null }],
  ],
  [
    { seed: 0, sync: 'always', segmentSizeBytes: 1024, checkpointEveryBytes: 512, retainSegments: 0 },
    [
      {
        o: 'group',
        appends: [
          { o: 'stream', stream: 'student-s1', events: [{ type: 'Opened', course: 'c1', tags: [], data: '' }], ids: false, expect: 'right' },
          { o: 'stream', stream: 'course-c1', events: [{ type: 'Opened', course: 'c1', tags: [], data: Float32Array.from([]) }], ids: false, expect: 'right' },
        ],
      },
      {
        o: 'group',
        appends: [
          { o: 'stream', stream: 'course-c2', events: [{ type: 'Opened', course: 'c1', tags: [], data: Uint8Array.from([]) }], ids: false, expect: 'right' },
          { o: 'append', events: [{ type: 'Opened', course: 'c1', tags: [], data: BigInt64Array.from([]) }], ids: false, condition: null },
          { o: 'stream', stream: 'course-c1', events: [{ type: 'Opened', course: 'c1', tags: [], data: Float32Array.from([]) }], ids: false, expect: 'right' },
        ],
      },
      { o: 'append', events: [{ type: 'Opened', course: 'c1', tags: [], data: ' '.repeat(101) }], ids: false, condition: null },
      { o: 'appendAck', events: [{ type: 'Opened', course: 'c1', tags: [], data: 0n }] },
    ],
    [{ mode: 'power-loss', seed: 0, recoveryOps: null }],
  ],
];
