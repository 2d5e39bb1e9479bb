/** Input split into numbered lines, in batches (no per-line await: an import reads a million lines). */
import type { Readable } from 'node:stream';

export interface Line {
  /** 1-based. */
  number: number;
  text: string;
}

/** Batches of up to `batchLines` non-blank lines of `input` (UTF-8), with their line numbers. */
export async function* lineBatches(input: Readable, batchLines: number, onRead?: (chars: number) => void): AsyncGenerator<Line[]> {
  input.setEncoding('utf8');
  let rest = '';
  let number = 0;
  let batch: Line[] = [];
  const push = (text: string) => {
    number++;
    const trimmed = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (trimmed.trim().length > 0) batch.push({ number, text: trimmed });
  };
  for await (const chunk of input as AsyncIterable<string>) {
    onRead?.(chunk.length);
    let start = 0;
    let end = chunk.indexOf('\n');
    if (end >= 0) {
      push(rest + chunk.slice(0, end));
      rest = '';
      start = end + 1;
      while ((end = chunk.indexOf('\n', start)) >= 0) {
        push(chunk.slice(start, end));
        start = end + 1;
      }
    }
    rest += chunk.slice(start);
    while (batch.length >= batchLines) {
      yield batch.slice(0, batchLines);
      batch = batch.slice(batchLines);
    }
  }
  if (rest.length > 0) push(rest);
  if (batch.length > 0) yield batch;
}
