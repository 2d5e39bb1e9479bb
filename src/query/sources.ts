/** Read sources: validated into the index they name, and into the tail's view of them. */
import { invalid, shown } from '../errors.js';
import { Query, type ReadSource } from '../model/query.js';
import type { RecordedEvent } from '../model/types.js';
import { checkName, checkStreamId, EVENT_TYPE_SIZE_BYTES_MAX, STREAM_ID_SIZE_BYTES_MAX, TAG_SIZE_BYTES_MAX } from '../model/validation.js';
import { KeySpace } from '../storage/keys.js';
import type { TailSource } from './tail.js';

/** One index, named by its key space and the name in it. */
export interface IndexSource {
  space: number;
  kind: 'stream' | 'type' | 'tag' | 'category';
  name: string;
}

export type ParsedSource = 'all' | Query | IndexSource;

/** The index a read source names, validated. */
export function parseSource(source: ReadSource): ParsedSource {
  if (source === 'all') return 'all';
  if (source instanceof Query) return source;
  if (typeof source !== 'object' || source === null) throw invalid(`read: source must be 'all' or an object, got ${shown(source)}`);
  const keys = Object.keys(source);
  if (keys.length !== 1) throw invalid(`read: source must have exactly one of stream, type, tag, category, query; got ${JSON.stringify(keys)}`);
  if ('query' in source) {
    if (!(source.query instanceof Query)) throw invalid('read: source.query must be a Query');
    return source.query;
  }
  if ('stream' in source) return { space: KeySpace.streamPositions, kind: 'stream', name: checkStreamId(source.stream, 'read') };
  if ('type' in source) return { space: KeySpace.type, kind: 'type', name: checkName(source.type, 'read: type', EVENT_TYPE_SIZE_BYTES_MAX) };
  if ('tag' in source) return { space: KeySpace.tag, kind: 'tag', name: checkName(source.tag, 'read: tag', TAG_SIZE_BYTES_MAX) };
  if ('category' in source) return { space: KeySpace.category, kind: 'category', name: checkName(source.category, 'read: category', STREAM_ID_SIZE_BYTES_MAX) };
  throw invalid(`read: unknown source ${JSON.stringify(keys[0])}`);
}

export function toTailSource(index: ParsedSource): TailSource {
  if (index === 'all') return { kind: 'all' };
  if (index instanceof Query) return index.compiled === 'all' ? { kind: 'all' } : { kind: 'query', query: index };
  return { kind: index.kind, name: index.name };
}

/** Checks the signal before every event, so an abort stops a read at its next step, not after a batch. */
export async function* abortable(events: AsyncGenerator<RecordedEvent>, signal: AbortSignal): AsyncGenerator<RecordedEvent> {
  signal.throwIfAborted();
  for await (const event of events) {
    yield event;
    signal.throwIfAborted();
  }
}
