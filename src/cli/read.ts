/** factstore read: events of a source as NDJSON on stdout; --follow tails live events until SIGINT/SIGTERM. */
import { Query, type QueryItem, type ReadSource } from '../index.js';
import { CliError, EXIT_USAGE, withStore, write } from './common.js';
import { eventLine } from './events.js';
import { fromTaggedJson } from './tagged-json.js';

export interface ReadCommandOptions {
  stream?: string;
  type?: string;
  tag?: string;
  category?: string;
  query?: string;
  from?: number;
  backward?: boolean;
  limit?: number;
  follow?: boolean;
}

/** --query: a JSON list of query items [{ "types": [...], "tags": [...], "data": {...} }] (data values tagged JSON). */
function parseQuery(text: string): Query {
  let items: unknown;
  try {
    items = JSON.parse(text);
  } catch (error) {
    throw new CliError(`--query: malformed JSON: ${(error as Error).message}`, EXIT_USAGE);
  }
  if (!Array.isArray(items) || items.length === 0) throw new CliError('--query must be a non-empty JSON list of items [{"types":[…],"tags":[…]}]', EXIT_USAGE);
  try {
    return Query.items(...(items.map((item) => fromTaggedJson(item)) as QueryItem[]));
  } catch (error) {
    throw new CliError(`--query: ${(error as Error).message}`, EXIT_USAGE);
  }
}

export function sourceOf(options: ReadCommandOptions): ReadSource {
  const given = (['stream', 'type', 'tag', 'category', 'query'] as const).filter((name) => options[name] !== undefined);
  if (given.length > 1) throw new CliError(`give one of --stream, --type, --tag, --category, --query (got ${given.map((name) => `--${name}`).join(', ')})`, EXIT_USAGE);
  if (options.stream !== undefined) return { stream: options.stream };
  if (options.type !== undefined) return { type: options.type };
  if (options.tag !== undefined) return { tag: options.tag };
  if (options.category !== undefined) return { category: options.category };
  if (options.query !== undefined) return { query: parseQuery(options.query) };
  return 'all';
}

export async function read(path: string, options: ReadCommandOptions): Promise<void> {
  const source = sourceOf(options);
  if (options.follow && (options.backward || options.limit !== undefined)) throw new CliError('--follow cannot be combined with --backward or --limit', EXIT_USAGE);
  await withStore(path, {}, async (db) => {
    const out = process.stdout;
    if (options.follow) {
      const subscription = db.subscribe(source, { from: options.from ?? 'start' });
      // Ctrl-C / kill: end the subscription; the loop finishes and the database closes cleanly.
      const stop = () => void subscription.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // A waiting subscription keeps the process alive (HeadWatch): this waits until the signal.
      try {
        for await (const event of subscription) await write(out, eventLine(event) + '\n');
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      return;
    }
    const reader = db.read(source, { from: options.from, direction: options.backward ? 'backward' : 'forward', limit: options.limit });
    let text = '';
    for await (const event of reader) {
      text += eventLine(event) + '\n';
      // Batched writes: one write per ~64 KiB, not per event.
      if (text.length >= 65_536) {
        await write(out, text);
        text = '';
      }
    }
    if (text.length > 0) await write(out, text);
  });
}
