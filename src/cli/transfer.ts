/**
 * factstore export / import: the whole ledger as NDJSON, one event a line with every field
 * (events.ts eventLine; data and metadata in tagged JSON, tagged-json.ts). An import reproduces
 * ids, timestamps, streams and positions, so exporting the imported database gives the same bytes.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { isFactError, type AppendResult, type EventInput, type FactStore } from '../index.js';
import { CliError, progressBar, withStore, write } from './common.js';
import { eventLine, exportedEvent, parseLine, type ExportedEvent } from './events.js';
import { lineBatches } from './lines.js';

/** Characters of NDJSON per write to the output. */
const EXPORT_WRITE_CHARS = 256 * 1024;
/** Lines per import batch: a batch is parsed and checked whole before any of it is appended. */
export const IMPORT_BATCH_LINES = 4096;
/** Events of one append at most: an original append longer than this is imported as several. */
const IMPORT_GROUP_EVENTS_MAX = 10_000;
/** Appends an import keeps in flight (they share group commits). */
const IMPORT_APPENDS_IN_FLIGHT = 64;

export interface TransferOptions {
  progress?: boolean;
}

/** Opens `file` for writing, failing (with its path) before any work is done when it cannot be. */
async function openOutput(file: string): Promise<Writable> {
  const stream = createWriteStream(file);
  try {
    await once(stream, 'ready');
  } catch (error) {
    throw new CliError(`cannot write ${file}: ${(error as Error).message}`);
  }
  return stream;
}

export async function exportLedger(path: string, options: TransferOptions & { out?: string }): Promise<{ count: number }> {
  const out = options.out === undefined ? process.stdout : await openOutput(options.out);
  try {
    const count = await withStore(path, {}, async (db) => {
      const head = await db.head();
      const progress = progressBar('export', head, options.progress);
      let count = 0;
      let text = '';
      try {
        // Up to the head taken now: appends of another handle cannot happen (the database is locked).
        for await (const event of db.read('all')) {
          text += eventLine(event) + '\n';
          count++;
          if (text.length >= EXPORT_WRITE_CHARS) {
            await write(out, text);
            text = '';
            progress.update(count);
          }
        }
        if (text.length > 0) await write(out, text);
        progress.update(count);
      } finally {
        progress.stop();
      }
      return count;
    });
    if (out !== process.stdout) {
      out.end();
      await once(out, 'finish');
    }
    return { count };
  } catch (error) {
    if (out !== process.stdout) {
      out.destroy();
      // Nothing half-written is left behind.
      await unlink(options.out!).catch(() => undefined);
    }
    throw error;
  }
}

/** Events landed at other positions than the file's: --resume cannot mend that. */
class LedgerMismatch extends CliError {}

/** Consecutive events of one append (one stream or none, one timestamp): what one append call can reproduce. */
interface Group {
  stream: string | undefined;
  timestamp: number;
  firstPosition: number;
  firstStreamPosition: number | undefined;
  events: EventInput[];
  firstLine: number;
}

function sameAppend(group: Group, event: ExportedEvent): boolean {
  return (
    group.stream === event.stream &&
    group.timestamp === event.timestamp &&
    (event.stream === undefined || event.streamPosition === group.firstStreamPosition! + group.events.length)
  );
}

export interface ImportSummary {
  count: number;
  firstPosition: number | null;
  lastPosition: number | null;
  skipped: number;
}

export async function importLedger(path: string, options: TransferOptions & { in?: string; resume?: boolean }, stdin: Readable): Promise<ImportSummary> {
  let input = stdin;
  let totalChars = 0;
  if (options.in !== undefined) {
    const size = await stat(options.in).catch((error: Error) => {
      throw new CliError(`cannot read ${options.in}: ${error.message}`);
    });
    totalChars = size.size;
    input = createReadStream(options.in);
  }
  return withStore(path, { create: true }, async (db) => importInto(db, input, options, totalChars));
}

async function importInto(db: FactStore, input: Readable, options: TransferOptions & { resume?: boolean }, totalChars: number): Promise<ImportSummary> {
  const head = await db.head();
  const summary: ImportSummary = { count: 0, firstPosition: null, lastPosition: null, skipped: 0 };
  let readChars = 0;
  const progress = progressBar('import', totalChars, options.progress, totalChars > 0 ? 'chars' : 'events');
  const inFlight = new Set<Promise<void>>();
  // An object, not a variable: the append callbacks set it (and TypeScript would not see them do it).
  const stop: { failure: CliError | null } = { failure: null };
  /** Position the next line must have. */
  let expected: number | null = null;
  const stoppedAt = () =>
    summary.count === 0
      ? `nothing was imported (the database head is ${head})`
      : `positions up to ${summary.lastPosition} are imported; run the same import with --resume to go on from there`;

  const submit = async (group: Group) => {
    const lastPosition = group.firstPosition + group.events.length - 1;
    const appended: Promise<AppendResult> =
      group.stream === undefined
        ? db.append(group.events, undefined, { timestamp: group.timestamp })
        : db.appendStream(group.stream, group.events, { expect: group.firstStreamPosition! - 1, timestamp: group.timestamp });
    const settled = appended.then(
      (result) => {
        if (result.position !== lastPosition) {
          stop.failure ??= new LedgerMismatch(`line ${group.firstLine}: appended at position ${result.position - result.count + 1}, expected ${group.firstPosition}: the database no longer matches the file; delete it and import again`);
          return;
        }
        summary.count += group.events.length;
        summary.firstPosition ??= group.firstPosition;
        summary.lastPosition = Math.max(summary.lastPosition ?? 0, lastPosition);
      },
      (error: unknown) => {
        const message = isFactError(error) ? `${error.code}: ${error.message}` : (error as Error).message;
        // What was imported is said once the appends in flight have settled (stoppedAt below).
        stop.failure ??= new CliError(`line ${group.firstLine}: ${message}`);
      },
    );
    inFlight.add(settled);
    void settled.finally(() => inFlight.delete(settled));
    // An append refused at once (an invalid event) must stop the import before the next is queued, or
    // that one would take its positions. Such a promise is rejected already: racing it against a
    // resolved one settles with its rejection, after `settled`'s handler (registered first) ran.
    await Promise.race([appended, Promise.resolve()]).catch(() => undefined);
    if (inFlight.size >= IMPORT_APPENDS_IN_FLIGHT) await Promise.race(inFlight);
  };

  // The last run of a batch waits for the next one, which may continue it: an original append
  // is split only when it is longer than a group may be.
  let held: Group | null = null;
  try {
    for await (const lines of lineBatches(input, IMPORT_BATCH_LINES, (chars) => (readChars += chars))) {
      // The whole batch is parsed and checked before any of it is appended.
      const groups: Group[] = held === null ? [] : [held];
      held = null;
      for (const line of lines) {
        let event: ExportedEvent;
        try {
          event = exportedEvent(parseLine(line.text));
        } catch (error) {
          throw new CliError(`line ${line.number}: ${(error as Error).message}; nothing of lines ${groups[0]?.firstLine ?? lines[0]!.number}–${lines[lines.length - 1]!.number} was written`);
        }
        if (expected === null) {
          if (options.resume && event.position <= head) {
            summary.skipped++;
            if (event.position === head) await checkSameEvent(db, event, line.number);
            continue;
          }
          if (event.position !== head + 1) {
            throw new CliError(
              `line ${line.number}: the file's events start at position ${event.position}, but the database's head is ${head}: an import continues a database only where the file does (head + 1)${head > 0 ? '; with --resume the events it already holds are skipped' : ''}`,
            );
          }
          expected = event.position;
        }
        if (event.position !== expected) throw new CliError(`line ${line.number}: position ${event.position}, expected ${expected} (positions are gapless and in order)`);
        expected++;
        event.event.id = event.id;
        const last = groups[groups.length - 1];
        if (last !== undefined && last.events.length < IMPORT_GROUP_EVENTS_MAX && sameAppend(last, event)) {
          last.events.push(event.event);
        } else {
          groups.push({ stream: event.stream, timestamp: event.timestamp, firstPosition: event.position, firstStreamPosition: event.streamPosition, events: [event.event], firstLine: line.number });
        }
      }
      held = groups.pop() ?? null;
      for (const group of groups) {
        if (stop.failure !== null) break;
        await submit(group);
      }
      if (stop.failure !== null) break;
      progress.update(totalChars > 0 ? Math.min(readChars, totalChars) : summary.count, totalChars > 0 ? undefined : summary.count);
    }
    if (held !== null && stop.failure === null) await submit(held);
    await Promise.all(inFlight);
    if (stop.failure !== null) throw stop.failure;
    progress.update(totalChars > 0 ? totalChars : summary.count);
    return summary;
  } catch (error) {
    // What was imported is said once the appends in flight have settled.
    await Promise.all(inFlight);
    if (error instanceof CliError && !(error instanceof LedgerMismatch)) throw new CliError(`${error.message}; ${stoppedAt()}`);
    throw error;
  } finally {
    await Promise.all(inFlight);
    progress.stop();
  }
}

/** --resume: the database's event at its head must be the file's, or the file is not the one it was imported from. */
async function checkSameEvent(db: FactStore, event: ExportedEvent, lineNumber: number): Promise<void> {
  const [stored] = await db.read('all', { from: event.position, limit: 1 }).toArray();
  if (stored === undefined || stored.id !== event.id) {
    throw new CliError(`line ${lineNumber}: --resume: the database's event at position ${event.position} is ${stored?.id ?? 'missing'}, the file's is ${event.id}: not the same ledger`);
  }
}
