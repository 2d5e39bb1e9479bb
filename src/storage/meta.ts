/** The `M` values more than one part reads or writes (docs/storage-format.md, "Keys"). */
import { Encoder } from 'cbor-x';
import { FactError } from '../errors.js';
import { metaKey } from './keys.js';
import { VIEW, type LevelDatabase } from './level.js';

const metaEncoder = new Encoder({ useRecords: false });

/** `M dataFields`: the data fields whose index is complete, in order. Anything but an array of field names is FACT_CORRUPTION. */
export async function readRecordedDataFields(db: LevelDatabase): Promise<string[]> {
  const recorded = await db.get<Uint8Array, Uint8Array>(metaKey('dataFields'), VIEW);
  if (recorded === undefined) return [];
  let fields: unknown;
  let cause: unknown;
  try {
    fields = metaEncoder.decode(recorded);
  } catch (error) {
    cause = error;
  }
  if (!Array.isArray(fields) || !fields.every((field) => typeof field === 'string' && field.length > 0 && !field.includes('\0'))) {
    throw new FactError('FACT_CORRUPTION', `M dataFields is damaged: ${cause === undefined ? 'not an array of field names' : 'it does not decode'} (${Buffer.from(recorded).toString('hex').slice(0, 64)})`, {
      ...(cause === undefined ? {} : { cause }),
      details: { key: 'M dataFields' },
    });
  }
  return fields as string[];
}

export async function recordDataFields(db: LevelDatabase, fields: readonly string[]): Promise<void> {
  await db.put<Uint8Array, Uint8Array>(metaKey('dataFields'), metaEncoder.encode(fields), VIEW);
}
