/**
 * Durable consumers' acknowledged positions as the store holds them: loaded at open (after the
 * replay applied every logged ack), changed when a group with acks becomes durable. Also which
 * names have a live consumer in this process (one at a time).
 */
import { readU64BE, utf8Decode } from '../bytes.js';
import type { ConsumerAck } from '../storage/commit-record.js';
import { KeySpace, spaceRange } from '../storage/keys.js';
import { VIEW, type LevelDatabase } from '../storage/level.js';
import { FactError, invalid, shown } from '../errors.js';

/** An `O` value: u64 position (docs/storage-format.md, "LevelDB keys"). */
const CONSUMER_POSITION_SIZE_BYTES = 8;

/** A position a consumer may acknowledge: one the store has (0 to the head). */
export function checkAckPosition(value: unknown, head: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > head) {
    throw invalid(`${what} must be an integer from 0 to the head ${head}, got ${shown(value)}`);
  }
  return value;
}

export class ConsumerPositions {
  readonly #durable = new Map<string, number>();
  readonly #live = new Set<string>();

  /**
   * Reads every `O` entry: the positions LevelDB holds once the replay is done. Each was at most
   * the head when it was acknowledged, so one that is not 8 bytes or is past `head` is damage
   * (the value has no checksum of its own), never a position to resume from.
   */
  async load(db: LevelDatabase, head: number, path: string): Promise<void> {
    for await (const [key, value] of db.iterator<Uint8Array, Uint8Array>({ ...VIEW, ...spaceRange(KeySpace.consumer) })) {
      const name = utf8Decode(key.subarray(1));
      const position = value.length === CONSUMER_POSITION_SIZE_BYTES ? readU64BE(value, 0) : Number.NaN;
      if (!(position <= head)) {
        const found = value.length === CONSUMER_POSITION_SIZE_BYTES ? `position ${position}, past the head ${head}` : `${value.length} bytes, not ${CONSUMER_POSITION_SIZE_BYTES}`;
        throw new FactError('FACT_CORRUPTION', `database ${path}: the acknowledged position of consumer ${JSON.stringify(name)} (O key) is damaged: ${found}`, {
          details: { path, consumer: name, head },
        });
      }
      this.#durable.set(name, position);
    }
  }

  /** The acknowledged position of a consumer, undefined when it has none (never acked, or deleted). */
  position(name: string): number | undefined {
    return this.#durable.get(name);
  }

  /** Names and positions, by name. */
  list(): [string, number][] {
    return [...this.#durable.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** A group with these acks is durable (in its order: a later ack of a name wins). */
  noteDurable(acks: readonly ConsumerAck[]): void {
    for (const ack of acks) {
      if (ack.position === null) this.#durable.delete(ack.name);
      else this.#durable.set(ack.name, ack.position);
    }
  }

  isLive(name: string): boolean {
    return this.#live.has(name);
  }

  /** False when the name already has a live consumer. */
  claim(name: string): boolean {
    if (this.#live.has(name)) return false;
    this.#live.add(name);
    return true;
  }

  release(name: string): void {
    this.#live.delete(name);
  }
}
