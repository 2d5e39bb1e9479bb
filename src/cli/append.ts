/** factstore append: events from stdin (a JSON array or NDJSON), appended in all-or-nothing batches. */
import { Readable } from 'node:stream';
import { isFactError, type EventInput, type FactStore, type StreamAppendResult, type StreamExpectation } from '../index.js';
import { CliError, EXIT_USAGE, withStore } from './common.js';
import { inputEvent, parseLine } from './events.js';
import { lineBatches, type Line } from './lines.js';

/** Events per append: one batch is one atomic append. */
export const APPEND_BATCH_EVENTS = 1000;

export interface AppendCommandOptions {
  stream?: string;
  expect?: string;
}

export interface AppendSummary {
  count: number;
  /** First and last position written (null when nothing was). */
  firstPosition: number | null;
  lastPosition: number | null;
  streamPosition?: number;
}

export function parseExpectation(text: string | undefined): StreamExpectation | undefined {
  if (text === undefined) return undefined;
  if (text === 'any' || text === 'none' || text === 'exists') return text;
  if (/^\d+$/.test(text)) return Number(text);
  throw new CliError(`--expect must be any, none, exists or a stream version (an integer ≥ 0), got ${JSON.stringify(text)}`, EXIT_USAGE);
}

/** The input's batches: NDJSON lines by number (streamed), or a JSON array's elements ("element N"), which its first non-blank character tells. */
async function* inputBatches(input: Readable): AsyncGenerator<{ where: (index: number) => string; items: { label: string; value: () => unknown }[] }> {
  input.setEncoding('utf8');
  const chunks = (input as AsyncIterable<string>)[Symbol.asyncIterator]();
  let head = '';
  for (let next = await chunks.next(); ; next = await chunks.next()) {
    if (next.done) break;
    head += next.value;
    if (head.trimStart().length > 0) break;
  }
  async function* all(): AsyncGenerator<string> {
    yield head;
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) yield next.value;
  }
  if (head.trimStart().startsWith('[')) {
    let text = '';
    for await (const chunk of all()) text += chunk;
    let array: unknown;
    try {
      array = JSON.parse(text);
    } catch (error) {
      throw new CliError(`stdin: malformed JSON array: ${(error as Error).message}`);
    }
    const items = array as unknown[];
    for (let start = 0; start < items.length; start += APPEND_BATCH_EVENTS) {
      const slice = items.slice(start, start + APPEND_BATCH_EVENTS);
      yield { where: (index) => `element ${start + index + 1}`, items: slice.map((value, index) => ({ label: `element ${start + index + 1}`, value: () => value })) };
    }
    return;
  }
  for await (const lines of lineBatches(Readable.from(all()), APPEND_BATCH_EVENTS)) {
    yield { where: (index) => `line ${lines[index]!.number}`, items: lines.map((line: Line) => ({ label: `line ${line.number}`, value: () => parseLine(line.text) })) };
  }
}

export async function append(path: string, options: AppendCommandOptions, input: Readable): Promise<AppendSummary> {
  let expect = parseExpectation(options.expect);
  if (expect !== undefined && options.stream === undefined) throw new CliError('--expect needs --stream', EXIT_USAGE);
  return withStore(path, { create: true }, async (db: FactStore) => {
    const summary: AppendSummary = { count: 0, firstPosition: null, lastPosition: null };
    const done = () =>
      summary.count === 0 ? 'nothing was appended' : `${summary.count} event(s) before it were appended (positions ${summary.firstPosition}–${summary.lastPosition})`;
    for await (const batch of inputBatches(input)) {
      const events: EventInput[] = [];
      for (const item of batch.items) {
        try {
          events.push(inputEvent(item.value()));
        } catch (error) {
          throw new CliError(`${item.label}: ${(error as Error).message}; nothing of its batch (${batch.where(0)}–${batch.where(batch.items.length - 1)}) was written, ${done()}; fix it and append again from ${batch.where(0)}`);
        }
      }
      try {
        const result = options.stream === undefined ? await db.append(events) : await db.appendStream(options.stream, events, expect === undefined ? {} : { expect });
        summary.firstPosition ??= result.position - result.count + 1;
        summary.lastPosition = result.position;
        summary.count += result.count;
        if (options.stream !== undefined) {
          const { streamPosition } = result as StreamAppendResult;
          summary.streamPosition = streamPosition;
          // The next batch continues the stream where this one ended.
          if (expect !== undefined) expect = streamPosition;
        }
      } catch (error) {
        const message = isFactError(error) ? `${error.code}: ${error.message}` : (error as Error).message;
        throw new CliError(`${batch.where(0)}–${batch.where(batch.items.length - 1)}: ${message}; nothing of this batch was written, ${done()}; append again from ${batch.where(0)}`);
      }
    }
    return summary;
  });
}
