/**
 * Whether a run of stored events is exactly one earlier append (docs/storage-format.md,
 * "Chunks"): an identical retry succeeds only then. Chunks of this format say whether they start
 * an append or continue the one before; chunks of formats 1 and 2 (kind 1) do not, and are
 * judged by what an append always does: it starts a chunk, fills every chunk but its last, and
 * gives all of its chunks one timestamp, one stream and consecutive stream positions.
 */
import { CHUNK_EVENTS_MAX, CHUNK_KIND_APPEND_CONTINUED, CHUNK_KIND_APPEND_FIRST, CHUNK_KIND_UNMARKED } from '../model/chunk.js';

/** A stored chunk, as far as append boundaries go. */
export interface ChunkSpan {
  first: number;
  count: number;
  kind: number;
  timestamp: number;
  stream: string;
  firstStreamPosition: number;
}

/** The chunk holding a position; undefined for no position (0, or past the head). */
export type ChunkSpanAt = (position: number) => ChunkSpan | undefined;

/** Whether positions first … first + count − 1 are all the events of one append, and nothing else. */
export function isOneAppend(first: number, count: number, spanAt: ChunkSpanAt): boolean {
  const last = first + count - 1;
  const chunks: ChunkSpan[] = [];
  for (let position = first; position <= last; ) {
    const chunk = spanAt(position);
    if (chunk === undefined) return false;
    chunks.push(chunk);
    position = chunk.first + chunk.count;
  }
  const head = chunks[0]!;
  const tail = chunks[chunks.length - 1]!;
  // An append's first event starts a chunk and its last one ends a chunk.
  if (head.first !== first || tail.first + tail.count - 1 !== last) return false;
  if (head.kind === CHUNK_KIND_APPEND_CONTINUED) return false;
  if (head.kind === CHUNK_KIND_UNMARKED) {
    const before = spanAt(first - 1);
    if (before !== undefined && mayContinue(before, head)) return false;
  }
  for (let index = 1; index < chunks.length; index++) {
    const chunk = chunks[index]!;
    if (chunk.kind === CHUNK_KIND_APPEND_FIRST) return false;
    if (chunk.kind === CHUNK_KIND_UNMARKED && !mayContinue(chunks[index - 1]!, chunk)) return false;
  }
  const after = spanAt(last + 1);
  if (after === undefined) return true;
  if (after.kind === CHUNK_KIND_APPEND_CONTINUED) return false;
  return !(after.kind === CHUNK_KIND_UNMARKED && mayContinue(tail, after));
}

/** Whether unmarked chunk `next` may belong to the append of the chunk just before it. */
function mayContinue(previous: ChunkSpan, next: ChunkSpan): boolean {
  return (
    previous.count === CHUNK_EVENTS_MAX &&
    next.timestamp === previous.timestamp &&
    next.stream === previous.stream &&
    (next.stream === '' || next.firstStreamPosition === previous.firstStreamPosition + previous.count)
  );
}
