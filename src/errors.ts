/**
 * The one error type of factstore. `code` is stable and part of the public contract;
 * messages are for humans and may change. Every code is listed in the README.
 */
export const FactErrorCodes = [
  'FACT_INVALID_ARGUMENT',
  'FACT_NOT_FOUND',
  'FACT_LOCKED',
  'FACT_CLOSED',
  'FACT_IO',
  'FACT_WAL_CORRUPTION',
  'FACT_WAL_POISONED',
  'FACT_WAL_RECORD_TOO_LARGE',
  'FACT_OUT_OF_RANGE',
  'FACT_CONCURRENCY',
  'FACT_DUPLICATE_EVENT_ID',
  'FACT_CORRUPTION',
  'FACT_ASSERTION',
  'FACT_UNSUPPORTED_RUNTIME',
] as const;

export type FactErrorCode = (typeof FactErrorCodes)[number];

export interface FactErrorOptions {
  cause?: unknown;
  /** Structured details (file, offset, stream, expected, actual, …) for programs. */
  details?: Record<string, unknown>;
}

export class FactError extends Error {
  readonly code: FactErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: FactErrorCode, message: string, options: FactErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FactError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }
}

export function isFactError(error: unknown, code?: FactErrorCode): error is FactError {
  return error instanceof FactError && (code === undefined || error.code === code);
}

/**
 * @internal An invariant check. A failed assertion is a bug in factstore, not a handled error
 * (TIGER_STYLE): it is a separate channel from input validation.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new FactError('FACT_ASSERTION', `assertion failed: ${message}`);
}

/** @internal Bad input: changes nothing, names the problem. */
export function invalid(message: string, details: Record<string, unknown> = {}, cause?: unknown): FactError {
  return new FactError('FACT_INVALID_ARGUMENT', message, { details, cause });
}

/** @internal Translates an fs error into FACT_IO, naming the operation and the file. */
export function ioError(operation: string, path: string, cause: unknown): FactError {
  const code = (cause as { code?: unknown } | null)?.code;
  const suffix = typeof code === 'string' ? ` (${code})` : '';
  return new FactError('FACT_IO', `${operation} failed for ${path}${suffix}`, {
    cause,
    details: { operation, path, ...(typeof code === 'string' ? { errno: code } : {}) },
  });
}

/** @internal A caught value as an Error (everything factstore throws is one; this is for foreign code). */
export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** Characters of a string argument quoted in a message (a huge one is cut). */
const SHOWN_STRING_LENGTH_MAX = 64;

/**
 * @internal A caller's value as a message shows it, whatever it is: never throws (a cyclic object,
 * a bigint, a symbol or an object without a prototype cannot be JSON.stringify'd or String()'ed
 * safely), and never copies a huge string into the message.
 */
export function shown(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > SHOWN_STRING_LENGTH_MAX ? `${value.slice(0, SHOWN_STRING_LENGTH_MAX)}…` : value);
    case 'bigint':
      return `${value}n`;
    case 'symbol':
      return value.toString();
    case 'function':
      return 'a function';
    case 'object':
      if (value === null) return 'null';
      return Array.isArray(value) ? 'an array' : 'an object';
    default:
      return String(value);
  }
}
