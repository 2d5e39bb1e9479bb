/**
 * A durable consumer (README, "Durable consumers"): a subscription that starts after its name's
 * acknowledged position and acknowledges through the writer (WAL record type 3), so an ack is
 * as durable as an append. Auto-acks are batched: while one is being logged, later ones only
 * raise the position the next one logs.
 */
import { asError } from '../errors.js';
import type { Consumer, RecordedEvent } from '../model/types.js';
import type { LiveSubscription } from '../query/subscription.js';
import { checkAckPosition, type ConsumerPositions } from './consumers.js';

export interface DurableConsumerParts {
  name: string;
  subscription: LiveSubscription;
  positions: ConsumerPositions;
  autoAck: boolean;
  /** Logs the ack; resolves once durable. */
  logAck: (position: number) => Promise<void>;
  head: () => number;
  /** Called once when the consumer has ended and its acks are durable. */
  onEnd: (consumer: DurableConsumer) => void;
}

export class DurableConsumer implements Consumer {
  readonly name: string;
  readonly #parts: DurableConsumerParts;
  readonly #subscription: LiveSubscription;
  #ackWanted = 0;
  #ackLogging: Promise<void> | null = null;
  #ackFailure: Error | null = null;
  #closing: Promise<void> | null = null;
  #iterated = false;

  constructor(parts: DurableConsumerParts) {
    this.name = parts.name;
    this.#parts = parts;
    this.#subscription = parts.subscription;
    // Ended by its signal or db.close(): close the consumer too (after this turn: close() is what calls it).
    this.#subscription.whenEnded(() => queueMicrotask(() => void this.close().catch(() => undefined)));
  }

  get caughtUp(): Promise<number> {
    return this.#subscription.caughtUp;
  }

  get position(): number {
    return this.#subscription.position;
  }

  get acknowledged(): number {
    return this.#parts.positions.position(this.name) ?? 0;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<RecordedEvent> {
    if (this.#iterated) throw new TypeError('a consumer can be iterated only once; open it again');
    this.#iterated = true;
    return this;
  }

  next(): Promise<IteratorResult<RecordedEvent>> {
    if (this.#ackFailure !== null) return Promise.reject(this.#ackFailure);
    // Asking for the next event means the last one was handled.
    const handled = this.#subscription.position;
    // Never below what is durable (an append with `ack` may have gone further).
    if (this.#parts.autoAck && handled > this.#ackWanted && handled > this.acknowledged && !this.#subscription.ended) this.#requestAck(handled);
    return this.#subscription.next();
  }

  async return(): Promise<IteratorResult<RecordedEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  ack(position: number = this.#subscription.position): Promise<void> {
    try {
      return this.#parts.logAck(checkAckPosition(position, this.#parts.head(), `consumer ${this.name}: ack position`));
    } catch (error) {
      return Promise.reject(asError(error));
    }
  }

  /** Ends the iteration and waits for the auto-acks already asked for; then the name is free again. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#subscription.close();
      while (this.#ackLogging !== null) await this.#ackLogging;
      this.#parts.onEnd(this);
      if (this.#ackFailure !== null) throw this.#ackFailure;
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #requestAck(position: number): void {
    this.#ackWanted = position;
    if (this.#ackLogging !== null) return;
    this.#ackLogging = (async () => {
      try {
        for (let logged = 0; logged < this.#ackWanted; ) {
          const target = this.#ackWanted;
          await this.#parts.logAck(target);
          logged = target;
        }
      } catch (error) {
        this.#ackFailure = error instanceof Error ? error : new Error(String(error));
      } finally {
        this.#ackLogging = null;
      }
    })();
  }
}
