/** The `M` values more than one part reads or writes (docs/storage-format.md, "Keys"). */
import { Encoder } from 'cbor-x';
import { metaKey } from './keys.js';
import { VIEW, type LevelDatabase } from './level.js';

const metaEncoder = new Encoder({ useRecords: false });

/** `M dataFields`: the data fields whose index is complete, in order. */
export async function readRecordedDataFields(db: LevelDatabase): Promise<string[]> {
  const recorded = await db.get<Uint8Array, Uint8Array>(metaKey('dataFields'), VIEW);
  return recorded === undefined ? [] : (metaEncoder.decode(recorded) as string[]);
}

export async function recordDataFields(db: LevelDatabase, fields: readonly string[]): Promise<void> {
  await db.put<Uint8Array, Uint8Array>(metaKey('dataFields'), metaEncoder.encode(fields), VIEW);
}
