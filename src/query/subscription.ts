/**
 * A subscription (docs/architecture.md, "The path of a subscription"): the history of a source,
 * then its live events, each matching event once, in position order. It keeps no queue of its
 * own: its state is the position up to which it has handed out every match (`#through`), and each
 * step reads what follows from the unapplied tail when the tail holds all of it (live, no
 * LevelDB), else from the store in batches. A reader that falls behind therefore holds at most
 * two batches, whatever the writers do.
 *
 * Gap-free because every step reads only up to the head taken before it: every event at or
 * below that head is durable and visible for the whole step (in the tail or in LevelDB), and
 * events above it are left for the next step, whatever commits meanwhile.
 */
import { FactError } from '../errors.js';
import { Query } from '../model/query.js';
import type { RecordedEvent } from '../model/types.js';
import type { HeadWatch } from './head-watch.js';
import type { MergedReads } from './merged-reads.js';
import { toTailSource, type ParsedSource } from './sources.js';
import type { TailSource, UnappliedTail } from './tail.js';

/** Events one step reads (from the tail or the store); a stalled reader holds two such batches. */
export const SUBSCRIPTION_BATCH_EVENTS = 1024;

export interface SubscriptionParts {
  reads: MergedReads;
  tail: UnappliedTail;
  watch: HeadWatch;
  /** Last durable position (the store's head). */
  head: () => number;
  appliedHead: () => number;
  /** Run before the first read (a data-field index a query needs is built). */
  prepare: () => Promise<void>;
  /** Called once when the subscription ends. */
  onEnd: (subscription: LiveSubscription) => void;
}

/**
 * Where a subscription starts: 'start', an inclusive position (a stream position for a stream),
 * 'end', or after a store position (a durable consumer's acknowledged one).
 */
export type SubscriptionStart = 'start' | 'end' | number | { after: number };

interface Step {
  events: RecordedEvent[];
  /** Every match up to here is in `events` or before it. */
  through: number;
}

export class LiveSubscription implements AsyncIterableIterator<RecordedEvent>, AsyncDisposable {
  readonly caughtUp: Promise<number>;
  readonly #parts: SubscriptionParts;
  readonly #index: ParsedSource;
  readonly #tailSource: TailSource;
  readonly #isStream: boolean;
  /** The whole ledger: history streams from one batched scan (no iterator per batch). */
  readonly #wholeLedger: boolean;
  #ledgerScan: { batches: AsyncGenerator<RecordedEvent[]>; head: number } | null = null;
  #scanEnding: Promise<void> = Promise.resolve();
  readonly #signal: AbortSignal | undefined;
  readonly #start: SubscriptionStart;
  #through = 0;
  /** For a stream: the stream position the next read starts at. */
  #nextStreamPosition = 1;
  #batch: RecordedEvent[] = [];
  #batchNext = 0;
  #position = 0;
  #prepared = false;
  #prefetch: Promise<Step> | null = null;
  #pulling: Promise<IteratorResult<RecordedEvent>> | null = null;
  #ended = false;
  #iterated = false;
  #caughtUpSettled = false;
  #resolveCaughtUp!: (position: number) => void;
  #rejectCaughtUp!: (error: Error) => void;
  /** Wakes a step waiting for the head when the subscription ends. */
  #stopped: Promise<void>;
  #stop!: () => void;
  readonly #onAbort = () => void this.close();
  readonly #endListeners: (() => void)[] = [];

  constructor(parts: SubscriptionParts, index: ParsedSource, start: SubscriptionStart, signal: AbortSignal | undefined) {
    this.#parts = parts;
    this.#index = index;
    this.#tailSource = toTailSource(index);
    this.#isStream = this.#tailSource.kind === 'stream';
    this.#wholeLedger = index === 'all' || (index instanceof Query && index.compiled === 'all');
    this.#signal = signal;
    this.#start = start;
    if (start === 'end') this.#through = parts.head();
    else if (typeof start === 'object') this.#through = start.after;
    else if (typeof start === 'number') {
      if (this.#isStream) this.#nextStreamPosition = Math.max(1, start);
      else this.#through = Math.max(0, start - 1);
    }
    this.caughtUp = new Promise<number>((resolve, reject) => {
      this.#resolveCaughtUp = resolve;
      this.#rejectCaughtUp = reject;
    });
    // Ending before catching up rejects caughtUp; whoever never awaits it is not told.
    this.caughtUp.catch(() => undefined);
    this.#stopped = new Promise<void>((resolve) => {
      this.#stop = resolve;
    });
    if (signal !== undefined) {
      if (signal.aborted) void this.close();
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Position of the last event handed out (0 before the first). */
  get position(): number {
    return this.#position;
  }

  get ended(): boolean {
    return this.#ended;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<RecordedEvent> {
    if (this.#iterated) throw new TypeError('a subscription can be iterated only once; call subscribe() again');
    this.#iterated = true;
    return this;
  }

  next(): Promise<IteratorResult<RecordedEvent>> {
    if (this.#pulling !== null) return this.#pulling.then(() => this.next());
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    if (this.#batchNext < this.#batch.length) return Promise.resolve({ value: this.#take(), done: false });
    const pulling = this.#pull().finally(() => {
      this.#pulling = null;
    });
    this.#pulling = pulling;
    return pulling;
  }

  async return(): Promise<IteratorResult<RecordedEvent>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Ends the iteration: a pending next() resolves done; resolves once no read is in flight. */
  async close(): Promise<void> {
    this.#end();
    await this.#pulling?.catch(() => undefined);
    await this.#settleReads();
  }

  /** Ends it now: waiters wake, caughtUp settles, the store forgets it (what close() does before it waits). */
  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#batch = [];
    this.#stop();
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if (!this.#caughtUpSettled) {
      this.#caughtUpSettled = true;
      this.#rejectCaughtUp(new FactError('FACT_CLOSED', 'subscription: closed before it caught up'));
    }
    this.#parts.onEnd(this);
    for (const listener of this.#endListeners) listener();
  }

  /** Waits for the batch read ahead and closes the ledger scan. */
  async #settleReads(): Promise<void> {
    await this.#prefetch?.catch(() => undefined);
    this.#endLedgerScan();
    await this.#scanEnding;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** `listener` runs once when the subscription ends (at once if it has). */
  whenEnded(listener: () => void): void {
    if (this.#ended) listener();
    else this.#endListeners.push(listener);
  }

  #take(): RecordedEvent {
    const event = this.#batch[this.#batchNext++]!;
    this.#position = event.position;
    return event;
  }

  async #pull(): Promise<IteratorResult<RecordedEvent>> {
    const parts = this.#parts;
    try {
      if (!this.#prepared) {
        await parts.prepare();
        this.#prepared = true;
        if ((this.#start === 'end' || typeof this.#start === 'object') && this.#isStream && !this.#ended) await this.#findStreamEnd();
      }
      while (!this.#ended) {
        const head = parts.head();
        // A scan that cannot give more (everything up to its head is out): live goes on from the tail.
        if (this.#ledgerScan !== null && this.#through >= this.#ledgerScan.head) this.#endLedgerScan();
        if (this.#through < head) {
          const step =
            this.#prefetch !== null
              ? await this.#takePrefetch()
              : this.#ledgerScan !== null
                ? await this.#fromLedgerScan(head)
                : (this.#fromTail(head) ?? (this.#wholeLedger ? await this.#fromLedgerScan(head) : await this.#fromStore(head)));
          if (this.#ended) break;
          this.#advance(step, head);
          if (this.#batch.length > 0) return { value: this.#take(), done: false };
          continue;
        }
        if (!this.#caughtUpSettled) {
          this.#caughtUpSettled = true;
          this.#resolveCaughtUp(head);
        }
        // Taken in the same synchronous step as the head: a commit after it wakes this wait.
        const moved = parts.watch.next();
        if (parts.watch.ended) break;
        parts.watch.hold();
        try {
          await Promise.race([moved, this.#stopped]);
        } finally {
          parts.watch.release();
        }
        if (parts.watch.ended) break;
      }
    } catch (error) {
      // Not close(): it waits for this very pull.
      this.#end();
      await this.#settleReads();
      throw error;
    }
    return { value: undefined, done: true };
  }

  #advance(step: Step, head: number): void {
    this.#through = step.through;
    this.#batch = step.events;
    this.#batchNext = 0;
    const last = step.events.at(-1);
    if (this.#isStream && last !== undefined) this.#nextStreamPosition = last.streamPosition! + 1;
    // A full batch from the store: read the next one while this one is handed out.
    if (this.#prefetch === null && !this.#wholeLedger && step.through < head && !this.#fromTailPossible()) {
      this.#prefetch = this.#fromStore(head);
      // Its failure is the next step's (takePrefetch awaits it), never an unhandled rejection meanwhile.
      this.#prefetch.catch(() => undefined);
    }
  }

  async #takePrefetch(): Promise<Step> {
    const step = await this.#prefetch!;
    this.#prefetch = null;
    return step;
  }

  #fromTailPossible(): boolean {
    return this.#through >= this.#parts.appliedHead();
  }

  /** The next step from the tail, when it holds every position after `#through`; null when not. */
  #fromTail(head: number): Step | null {
    if (!this.#fromTailPossible()) return null;
    const events: RecordedEvent[] = [];
    for (const event of this.#parts.tail.snapshot(this.#parts.appliedHead()).events(this.#tailSource, true, this.#readFrom(), SUBSCRIPTION_BATCH_EVENTS)) {
      if (event.position > this.#through && event.position <= head) events.push(event);
    }
    return this.#stepOf(events, events.length === SUBSCRIPTION_BATCH_EVENTS, head);
  }

  /** Closes the ledger scan (its LevelDB iterator) in the background; close() waits for it. */
  #endLedgerScan(): void {
    const scan = this.#ledgerScan;
    if (scan === null) return;
    this.#ledgerScan = null;
    const ending = scan.batches.return(undefined).then(
      () => undefined,
      () => undefined,
    );
    this.#scanEnding = Promise.all([this.#scanEnding, ending]).then(() => undefined);
  }

  /**
   * The next batch of one scan of the whole ledger up to the head when it started (the scan reads
   * ahead itself); once done, a step up to that head.
   */
  async #fromLedgerScan(head: number): Promise<Step> {
    this.#ledgerScan ??= { batches: this.#parts.reads.scanAllBatches({ from: this.#through + 1, direction: 'forward', limit: Number.POSITIVE_INFINITY, signal: undefined }), head };
    const scan = this.#ledgerScan;
    for (;;) {
      const next = await scan.batches.next();
      const batch = next.done ? [] : next.value;
      const through = this.#through;
      const events = batch.length > 0 && (batch[0]!.position <= through || batch.at(-1)!.position > scan.head) ? batch.filter((event) => event.position > through && event.position <= scan.head) : batch;
      if (events.length > 0) return { events, through: events.at(-1)!.position };
      if (next.done || batch[0]!.position > scan.head) {
        this.#endLedgerScan();
        return { events: [], through: scan.head };
      }
    }
  }

  async #fromStore(head: number): Promise<Step> {
    const read = await this.#parts.reads.readAll(this.#index, { from: this.#readFrom(), direction: 'forward', limit: SUBSCRIPTION_BATCH_EVENTS, signal: undefined });
    const through = this.#through;
    const events = read.filter((event) => event.position > through && event.position <= head);
    return this.#stepOf(events, read.length === SUBSCRIPTION_BATCH_EVENTS && events.length === read.length, head);
  }

  /** A full batch covers up to its last event; a short one (or one that passed the head) up to the head. */
  #stepOf(events: RecordedEvent[], full: boolean, head: number): Step {
    return { events, through: full ? events.at(-1)!.position : head };
  }

  #readFrom(): number {
    return this.#isStream ? this.#nextStreamPosition : this.#through + 1;
  }

  /** 'end' or { after } for a stream: the stream position after its newest event at or below `#through`. */
  async #findStreamEnd(): Promise<void> {
    const through = this.#through;
    for await (const event of this.#parts.reads.scan(this.#index, { from: undefined, direction: 'backward', limit: Number.POSITIVE_INFINITY, signal: undefined })) {
      if (event.position <= through) {
        this.#nextStreamPosition = event.streamPosition! + 1;
        return;
      }
    }
  }
}
