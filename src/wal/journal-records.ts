/**
 * The journal's record codec: the payload grammar of each record type (docs/journal.md,
 * "Records"), both ways, and the size bound of a carry record. No state; journal.ts decides what
 * a record does.
 */
import { decode, encode } from 'cbor-x';
import { FactError } from '../errors.js';
import type { WalRecord } from './replay.js';

/** WAL record type bytes of the journal (docs/journal.md). */
export const JOURNAL_RECORD_TYPES = Object.freeze({ push: 1, ack: 2, fail: 3, clear: 4, carry: 5 } as const);
/** Longest entry id, in UTF-16 code units. */
export const MAX_JOURNAL_ID_LENGTH = 1024;

/** CBOR sizes used to bound a carry record without encoding it (RFC 8949 §3). */
const CBOR_MAX_NUMBER_SIZE_BYTES = 9;
const CBOR_ARRAY_HEADER_SIZE_BYTES = 1;
const CBOR_NULL_SIZE_BYTES = 1;
const CARRY_FIELDS = 6;
/** Lone surrogates would be replaced by U+FFFD when encoded as UTF-8: recovery would differ. */
export const LONE_SURROGATE = /\p{Surrogate}/u;

/** An entry's last failure, as `recover()` returns it. */
export interface JournalFailure {
  /** The string `fail` was given, or the message of the Error it was given. */
  error: string;
  retryAtMs: number;
  /** Only when `fail` was given an Error: its `name`. */
  errorName?: string;
  /** Only when `fail` was given an Error whose `code` was a string or a safe integer. */
  errorCode?: string | number;
}

/** A replayed record's fields, checked against its type's grammar. */
export type JournalRecordFields =
  | { kind: 'push'; id: string; payload: Uint8Array }
  | { kind: 'ack'; id: string }
  | { kind: 'fail'; id: string; failure: JournalFailure }
  | { kind: 'clear' }
  | { kind: 'carry'; id: string; order: number; payload: Uint8Array; attempts: number; failure: JournalFailure | null };

export function journalCorruption(record: WalRecord, message: string, cause?: unknown): FactError {
  return new FactError('FACT_CORRUPTION', `journal record at LSN ${record.lsn} (type ${record.type}): ${message}`, {
    cause,
    details: { lsn: record.lsn, type: record.type },
  });
}

export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_JOURNAL_ID_LENGTH && !LONE_SURROGATE.test(id);
}

export function isErrorCode(code: unknown): code is string | number {
  return typeof code === 'string' || Number.isSafeInteger(code);
}

function cborStringSizeBytes(value: string): number {
  return cborHeadSizeBytes(Buffer.byteLength(value, 'utf8'));
}

function cborHeadSizeBytes(length: number): number {
  const head = length < 24 ? 1 : length < 2 ** 8 ? 2 : length < 2 ** 16 ? 3 : length < 2 ** 32 ? 5 : 9;
  return head + length;
}

/** An upper bound of the carry record of an entry (the largest record the journal writes for it). */
export function carrySizeBound(id: string, payload: Uint8Array, failure: JournalFailure | null): number {
  return (
    CBOR_ARRAY_HEADER_SIZE_BYTES +
    cborStringSizeBytes(id) +
    CBOR_MAX_NUMBER_SIZE_BYTES +
    cborHeadSizeBytes(payload.length) +
    CBOR_MAX_NUMBER_SIZE_BYTES +
    (failure === null ? 2 * CBOR_NULL_SIZE_BYTES : cborErrorSizeBound(failure) + CBOR_MAX_NUMBER_SIZE_BYTES)
  );
}

/** An upper bound of a failure's error field (a string, or [name, message, code?]). */
function cborErrorSizeBound(failure: JournalFailure): number {
  if (failure.errorName === undefined) return cborStringSizeBytes(failure.error);
  const code = failure.errorCode;
  const codeBytes = code === undefined ? 0 : typeof code === 'string' ? cborStringSizeBytes(code) : CBOR_MAX_NUMBER_SIZE_BYTES;
  return CBOR_ARRAY_HEADER_SIZE_BYTES + cborStringSizeBytes(failure.errorName) + cborStringSizeBytes(failure.error) + codeBytes;
}

/** A failure's error field in fail and carry records: the string, or [name, message] / [name, message, code]. */
function encodedError(failure: JournalFailure): string | (string | number)[] {
  if (failure.errorName === undefined) return failure.error;
  const fields: (string | number)[] = [failure.errorName, failure.error];
  if (failure.errorCode !== undefined) fields.push(failure.errorCode);
  return fields;
}

/** The failure a replayed error field and retryAtMs describe, or null when the field is malformed. */
function decodedFailure(error: unknown, retryAtMs: number): JournalFailure | null {
  if (typeof error === 'string') return { error, retryAtMs };
  if (!Array.isArray(error) || error.length < 2 || error.length > 3) return null;
  const [name, message, code] = error as unknown[];
  if (typeof name !== 'string' || typeof message !== 'string' || (error.length === 3 && !isErrorCode(code))) return null;
  const failure: JournalFailure = { error: message, retryAtMs, errorName: name };
  if (error.length === 3) failure.errorCode = code as string | number;
  return failure;
}

export function encodePush(id: string, payload: Uint8Array): Uint8Array {
  return encode([id, payload]);
}

export function encodeAck(id: string): Uint8Array {
  return encode([id]);
}

export function encodeFail(id: string, failure: JournalFailure): Uint8Array {
  return encode([id, encodedError(failure), failure.retryAtMs]);
}

export function encodeClear(): Uint8Array {
  return encode([]);
}

/** An entry's whole state: its id, order key (LSN of its push), payload, attempts and last failure. */
export function encodeCarry(id: string, order: number, payload: Uint8Array, attempts: number, failure: JournalFailure | null): Uint8Array {
  return encode([id, order, payload, attempts, failure === null ? null : encodedError(failure), failure?.retryAtMs ?? null]);
}

/** Decodes a replayed record by its type's grammar; anything else is FACT_CORRUPTION. */
export function decodeJournalRecord(record: WalRecord): JournalRecordFields {
  let fields: unknown;
  try {
    fields = decode(record.payload);
  } catch (error) {
    throw journalCorruption(record, 'payload is not valid CBOR', error);
  }
  if (!Array.isArray(fields)) throw journalCorruption(record, 'payload is not a CBOR array');
  const field = (index: number): unknown => fields[index];
  const shape = (length: number, ok: boolean) => {
    if (fields.length !== length || !ok) throw journalCorruption(record, 'payload fields do not match the record type');
  };
  switch (record.type) {
    case JOURNAL_RECORD_TYPES.push: {
      const [id, payload] = [field(0), field(1)];
      shape(2, isValidId(id) && payload instanceof Uint8Array);
      return { kind: 'push', id: id as string, payload: payload as Uint8Array };
    }
    case JOURNAL_RECORD_TYPES.ack: {
      const id = field(0);
      shape(1, isValidId(id));
      return { kind: 'ack', id: id as string };
    }
    case JOURNAL_RECORD_TYPES.fail: {
      const [id, error, retryAtMs] = [field(0), field(1), field(2)];
      const failure = typeof retryAtMs === 'number' && Number.isFinite(retryAtMs) ? decodedFailure(error, retryAtMs) : null;
      shape(3, isValidId(id) && failure !== null);
      return { kind: 'fail', id: id as string, failure: failure! };
    }
    case JOURNAL_RECORD_TYPES.clear: {
      shape(0, true);
      return { kind: 'clear' };
    }
    case JOURNAL_RECORD_TYPES.carry: {
      const [id, order, payload, attempts, error, retryAtMs] = fields as unknown[];
      const failure = typeof retryAtMs === 'number' && Number.isFinite(retryAtMs) ? decodedFailure(error, retryAtMs) : null;
      const failureOk = (error === null && retryAtMs === null) || failure !== null;
      shape(
        CARRY_FIELDS,
        isValidId(id) &&
          Number.isSafeInteger(order) &&
          (order as number) >= 1 &&
          (order as number) < record.lsn &&
          payload instanceof Uint8Array &&
          Number.isSafeInteger(attempts) &&
          (attempts as number) >= 0 &&
          failureOk,
      );
      return { kind: 'carry', id: id as string, order: order as number, payload: payload as Uint8Array, attempts: attempts as number, failure };
    }
    default:
      throw journalCorruption(record, 'unknown record type');
  }
}
