/**
 * The known durability bugs that `npm run test:mutants` (scripts/mutants.mjs) applies, one at a
 * time, to a scratch copy. Each mutant: an id; what the bug is; the file it changes; `search`,
 * an exact string that must occur exactly once in that file (so the table cannot silently rot
 * when the code changes), and its `replace` (or `edits`, several such pairs in the same file);
 * `tests`, the test files that catch it (a focused list: each mutant runs in well under a
 * minute), optionally narrowed to the tests whose names match `testNamePattern` (vitest's -t);
 * optionally `env` for those runs. A mutant that the design makes harmless has
 * `equivalent`, the reason, and must survive its tests. README.md ("Mutants") lists them.
 */

/** @typedef {{ search: string, replace: string }} Edit */
/** @typedef {{ id: string, description: string, file: string, search?: string, replace?: string, edits?: Edit[], tests: string[], testNamePattern?: string, env?: Record<string, string>, equivalent?: string }} Mutant */

/** @type {Mutant[]} */
export const MUTANTS = [
  {
    id: 'ack-before-fsync',
    description: "sync 'always' resolves appends once their records are written, before the fdatasync",
    file: 'src/wal/group-commit.ts',
    search: "      case 'always':\n        await this.#syncActive();",
    replace: "      case 'always':\n        this.#resolveAwaitingSync(this.#writtenLsn);\n        await this.#syncActive();",
    tests: ['property-tests/wal.property.test.ts'],
    testNamePattern: 'crash at every storage call site',
  },
  {
    id: 'no-dir-fsync-create',
    description: 'a new segment is renamed into place without fsyncing the directory',
    file: 'src/wal/segment-files.ts',
    search: '    await fs.rename(tempPath, path);\n    await fs.syncDir(dir);',
    replace: '    await fs.rename(tempPath, path);',
    tests: ['property-tests/wal.property.test.ts'],
    testNamePattern: 'crash at every storage call site',
  },
  {
    id: 'no-dir-fsync-rename',
    description: 'the new checkpoint file is renamed over the old one without fsyncing the directory',
    file: 'src/wal/checkpoints.ts',
    search: '    await fs.rename(path + TEMP_SUFFIX, path);\n    await fs.syncDir(dir);',
    replace: '    await fs.rename(path + TEMP_SUFFIX, path);',
    tests: ['property-tests/wal.property.test.ts'],
    testNamePattern: 'crash at every storage call site',
  },
  {
    id: 'no-dir-fsync-unlink',
    description: 'checkpointed segments are unlinked without fsyncing the directory after each',
    file: 'src/wal/checkpoints.ts',
    search: '      await fs.unlink(oldest.path);\n      // One durable unlink at a time keeps the remaining segments contiguous after a crash.\n      await fs.syncDir(dir);',
    replace: '      await fs.unlink(oldest.path);',
    tests: ['test/wal.test.ts'],
    testNamePattern: 'one durable unlink at a time',
  },
  {
    id: 'checkpoint-file-not-fsynced',
    description: 'the checkpoint temp file is renamed into place without its fdatasync',
    file: 'src/wal/checkpoints.ts',
    search: '      await handle.write(encodeCheckpoint(lsn), 0);\n      await handle.datasync();',
    replace: '      await handle.write(encodeCheckpoint(lsn), 0);',
    tests: ['property-tests/wal.property.test.ts'],
    testNamePattern: 'crash at every storage call site',
  },
  {
    id: 'crc-not-checked',
    description: "a record's CRC is not compared: a damaged record decodes as data",
    file: 'src/wal/format.ts',
    search: '  if (view.getUint32(0, true) !== crc32(bytes.subarray(offset + 4, end))) return null;\n',
    replace: '',
    tests: ['test/wal.test.ts'],
    testNamePattern: 'bit flip in a sealed segment',
  },
  {
    id: 'torn-tail-as-corruption',
    description: 'recovery reports every torn tail of the newest segment as damaged acknowledged data',
    file: 'src/wal/recovery.ts',
    search: '        const attesting = findAttestingRecord(bytes, scan.endOffset, tailEnd, scan.lastLsn + 1);',
    replace: '        const attesting = findAttestingRecord(bytes, scan.endOffset, tailEnd, scan.lastLsn + 1) ?? { lsn: scan.lastLsn + 1 };',
    tests: ['test/wal.test.ts'],
    testNamePattern: 'row 7: torn tail in the newest segment is zeroed and reported',
  },
  {
    id: 'corruption-as-torn-tail',
    description: 'recovery never finds the later record that attests damage in the newest segment: damaged acknowledged data is cut off as a torn tail',
    file: 'src/wal/segment-scan.ts',
    search: '    if (record !== null) return record;\n',
    replace: '',
    tests: ['test/wal.test.ts'],
    testNamePattern: 'row 8: later record attesting durability turns tail damage into corruption',
  },
  {
    id: 'checkpoint-before-barrier',
    description: 'the WAL checkpoint advances before the LevelDB barrier',
    file: 'src/ledger/checkpointer.ts',
    search: '    await this.makeDurable();\n    await this.#wal.checkpoint(lsn);',
    replace: '    await this.#wal.checkpoint(lsn);\n    await this.makeDurable();',
    tests: ['test/sim-machine.test.ts', 'test/store-barrier.test.ts'],
  },
  {
    id: 'checkpoint-past-failed-barrier',
    description: 'the WAL checkpoint advances although the barrier failed',
    file: 'src/ledger/checkpointer.ts',
    search: '    await this.makeDurable();\n    await this.#wal.checkpoint(lsn);',
    replace: '    await this.makeDurable().catch(() => undefined);\n    await this.#wal.checkpoint(lsn);',
    tests: ['test/store-barrier.test.ts'],
  },
  {
    id: 'checkpoint-without-barrier',
    description: 'the checkpoint makes no LevelDB barrier at all',
    file: 'src/ledger/checkpointer.ts',
    search: '      await this.#barrier();\n',
    replace: '',
    tests: ['test/sim-machine.test.ts', 'test/store-barrier.test.ts'],
  },
  {
    id: 'barrier-ignores-failed-flush',
    description: "the barrier drops its second synced write, the only sign of a flush that failed (LevelDB's CompactRange reports no status)",
    file: 'src/storage/barrier.ts',
    search: "  await db.compactRange(FLUSH_ONLY_KEY, FLUSH_ONLY_KEY, { keyEncoding: 'view' });\n  await db.del<Uint8Array>(key, SYNCED);\n",
    replace: "  await db.compactRange(FLUSH_ONLY_KEY, FLUSH_ONLY_KEY, { keyEncoding: 'view' });\n",
    tests: ['test/store-barrier.test.ts'],
  },
  {
    id: 'replay-from-applied',
    description: "recovery replays only the WAL records after LevelDB's M applied instead of every record after the checkpoint",
    file: 'src/ledger/recovery.ts',
    search: '    if (record.type !== WAL_RECORD_COMMIT && record.type !== WAL_RECORD_COMMIT_ACKS) continue;\n',
    replace: '    if (record.type !== WAL_RECORD_COMMIT && record.type !== WAL_RECORD_COMMIT_ACKS) continue;\n    if (record.lsn <= storedAppliedLsn) continue;\n',
    tests: ['test/store.test.ts'],
    testNamePattern: 'replay fills a hole',
  },
  {
    id: 'index-batch-before-ledger',
    description: "the apply writes a batch's index entries in a LevelDB batch of their own, before the batch with the ledger chunks",
    file: 'src/ledger/applier.ts',
    edits: [
      {
        search: '      const put = (key: Uint8Array, value: Uint8Array) => batch.put(key, value);\n',
        replace: '      const put = (key: Uint8Array, value: Uint8Array) => batch.put(key, value);\n      const indexBatch = this.#newBatch();\n      const putIndex = (key: Uint8Array, value: Uint8Array) => indexBatch.put(key, value);\n',
      },
      {
        search: 'forEachIndexEntry(chunk.planned, chunk.firstPosition, put,',
        replace: 'forEachIndexEntry(chunk.planned, chunk.firstPosition, putIndex,',
      },
      {
        search: '      try {\n        await batch.write();',
        replace: '      try {\n        await indexBatch.write();\n        await batch.write();',
      },
    ],
    tests: ['property-tests/store-crash.property.test.ts'],
    equivalent:
      'nothing reads index entries above the applied head, which moves only after both batches are written (until then the unapplied tail serves those positions), and recovery rewrites every record after the checkpoint, so index entries without their ledger chunks are never seen and do not outlive a reopen',
  },
  {
    id: 'retry-across-two-appends',
    description: 'an identical retry is matched against events that span two stored appends',
    file: 'src/ledger/retry.ts',
    search: '    if (chunk.kind === CHUNK_KIND_APPEND_FIRST) return false;\n',
    replace: '',
    tests: ['test/codec.test.ts'],
    testNamePattern: 'spans two appends',
  },
  {
    id: 'subscription-switch-off-by-one',
    description: 'a subscription switches from LevelDB to the unapplied tail one position early, skipping the applied head',
    file: 'src/query/subscription.ts',
    search: '    return this.#through >= this.#parts.appliedHead();',
    replace: '    return this.#through >= this.#parts.appliedHead() - 1;',
    tests: ['test/store-tail.test.ts'],
    testNamePattern: 'switches from LevelDB to the tail',
  },
  {
    id: 'consumer-ack-before-append',
    description: "append(…, { ack }) logs the consumer's ack in a record of its own before the events it acknowledges",
    file: 'src/store.ts',
    search: '    const prepared = this.#writer.prepare(method, stream, expect, condition, events, prefetch, acks, timestamp);',
    replace:
      '    if (acks !== null) return this.#logAcks(acks).then(() => this.#submit(method, stream, expect, condition, events, null, timestamp));\n    const prepared = this.#writer.prepare(method, stream, expect, condition, events, prefetch, acks, timestamp);',
    tests: ['test/consumers.test.ts'],
    testNamePattern: 'appends effects and the ack in one step',
  },
  {
    id: 'consumer-autoack-on-delivery',
    description: 'an auto-acking consumer acknowledges an event when it hands it out, before the handler ran',
    file: 'src/ledger/durable-consumer.ts',
    search: '    return this.#subscription.next();\n  }',
    replace:
      '    return this.#subscription.next().then((result) => {\n      if (this.#parts.autoAck && result.done !== true) this.#requestAck(result.value.position);\n      return result;\n    });\n  }',
    tests: ['test/consumers.test.ts'],
    testNamePattern: 'auto-acks each event once the next is asked for',
  },
  {
    id: 'applied-position-own-batch',
    description: 'the apply writes M applied in a LevelDB batch of its own, after the batch with the data',
    file: 'src/ledger/applier.ts',
    edits: [
      { search: "      put(metaKey('applied'), u64Pair(last, lsn));\n", replace: '' },
      {
        search: '      try {\n        await batch.write();',
        replace: "      try {\n        await batch.write();\n        const appliedBatch = this.#newBatch();\n        appliedBatch.put(metaKey('applied'), u64Pair(last, lsn));\n        await appliedBatch.write();",
      },
    ],
    tests: ['property-tests/store-crash.property.test.ts'],
    equivalent:
      'recovery replays every WAL record after the checkpoint, not after M applied, and checks that each lines up with M applied (same or older): data without its M applied is rewritten identically',
  },
];
