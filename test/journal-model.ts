/**
 * A reference model of the Journal for crash tests (test/journal.test.ts and
 * property-tests/journal.property.test.ts): ops in call order, the state after each prefix, and
 * the check that a recovered journal equals the state after some prefix that contains every op
 * whose promise resolved.
 */
import { expect } from 'vitest';
import { FactError } from '../src/errors.js';
import type { Journal, JournalEntry } from '../src/wal/journal.js';
import { SimCrashError } from '../src/wal/sim-file-system.js';
import type { SimFileSystem } from '../src/wal/sim-file-system.js';

export type JournalOp =
  | { kind: 'push'; id: string; payload: Uint8Array }
  | { kind: 'ack'; id: string }
  | { kind: 'fail'; id: string; error: string | Error; retryAtMs: number }
  | { kind: 'clear' };

export interface OpOutcome {
  op: JournalOp;
  /** 'pending': never settled although the simulated disk had stopped (see runSteps). */
  status: 'pending' | 'resolved' | 'rejected';
  error?: unknown;
}

export interface ModelEntry {
  id: string;
  payload: string;
  attempts: number;
  lastFailure: ModelFailure | null;
}

export interface ModelFailure {
  error: string;
  retryAtMs: number;
  errorName?: string;
  errorCode?: string | number;
}

/** What docs/journal.md says recover() returns for a fail: an Error keeps name, message and code. */
export function modelFailure(error: string | Error, retryAtMs: number): ModelFailure {
  if (typeof error === 'string') return { error, retryAtMs };
  const code = (error as { code?: unknown }).code;
  const failure: ModelFailure = { error: error.message, retryAtMs, errorName: error.name };
  if (code !== undefined && code !== null) failure.errorCode = code as string | number;
  return failure;
}

/** The model state: live entries in push order. */
export class JournalModel {
  readonly entries = new Map<string, ModelEntry>();

  /** A model starting from recovered entries (to continue after a reopen). */
  static from(entries: readonly JournalEntry[]): JournalModel {
    const model = new JournalModel();
    for (const entry of entries) {
      model.entries.set(entry.id, {
        id: entry.id,
        payload: hex(entry.payload),
        attempts: entry.attempts,
        lastFailure: entry.lastFailure === null ? null : { ...entry.lastFailure },
      });
    }
    return model;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  liveIds(): string[] {
    return [...this.entries.keys()];
  }

  apply(op: JournalOp): void {
    switch (op.kind) {
      case 'push':
        if (this.entries.has(op.id)) throw new Error(`model: push of live ${op.id}`);
        this.entries.set(op.id, { id: op.id, payload: hex(op.payload), attempts: 0, lastFailure: null });
        break;
      case 'ack':
        if (!this.entries.delete(op.id)) throw new Error(`model: ack of unknown ${op.id}`);
        break;
      case 'fail': {
        const entry = this.entries.get(op.id);
        if (!entry) throw new Error(`model: fail of unknown ${op.id}`);
        entry.attempts += 1;
        entry.lastFailure = modelFailure(op.error, op.retryAtMs);
        break;
      }
      case 'clear':
        this.entries.clear();
        break;
    }
  }

  snapshot(): string {
    return JSON.stringify([...this.entries.values()]);
  }
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function snapshotOf(entries: JournalEntry[]): string {
  return JSON.stringify(
    entries.map((entry) => ({ id: entry.id, payload: hex(entry.payload), attempts: entry.attempts, lastFailure: entry.lastFailure })),
  );
}

export function callOp(journal: Journal, op: JournalOp): Promise<void> {
  switch (op.kind) {
    case 'push':
      return journal.push(op.id, op.payload);
    case 'ack':
      return journal.ack(op.id);
    case 'fail':
      return journal.fail(op.id, { error: op.error, retryAtMs: op.retryAtMs });
    case 'clear':
      return journal.clear();
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Event-loop turns an op gets to settle once the simulated disk has stopped. */
const TURNS_AFTER_HALT = 50;

/** True once crashAfterOps has stopped the simulated disk: then every call rejects. */
async function halted(fs: SimFileSystem): Promise<boolean> {
  return fs.exists('/').then(
    () => false,
    (error: unknown) => error instanceof SimCrashError,
  );
}

/**
 * Waits for `promise`; with `fs`, gives up (returns false) when the simulated disk has stopped
 * and the promise still has not settled after TURNS_AFTER_HALT more turns, so that an operation
 * that never settles (a bug: an earlier Wal left appends of a failed segment rotation unsettled)
 * shows up as a 'pending' outcome the tests assert against, instead of hanging the test.
 */
async function settles(promise: Promise<unknown>, fs: SimFileSystem | undefined): Promise<boolean> {
  if (fs === undefined) {
    await promise;
    return true;
  }
  let settled = false;
  void promise.finally(() => {
    settled = true;
  });
  let turnsLeft = TURNS_AFTER_HALT;
  while (!settled) {
    await nextTurn();
    if (settled) break;
    if (turnsLeft < TURNS_AFTER_HALT || (await halted(fs))) turnsLeft -= 1;
    if (turnsLeft <= 0) return false;
  }
  return true;
}

/**
 * Issues each step's ops without awaiting between them (concurrently), then awaits the step.
 * Stops issuing after the first rejection (or op that never settles after the simulated disk
 * stopped), so every issued op was valid when it was called.
 */
export async function runSteps(
  journal: Journal,
  steps: readonly (readonly JournalOp[])[],
  fs?: SimFileSystem,
): Promise<OpOutcome[]> {
  const outcomes: OpOutcome[] = [];
  for (const step of steps) {
    if (outcomes.some((outcome) => outcome.status !== 'resolved')) break;
    await settles(Promise.all(
      step.map((op) => {
        const outcome: OpOutcome = { op, status: 'pending' };
        outcomes.push(outcome);
        return callOp(journal, op).then(
          () => {
            outcome.status = 'resolved';
          },
          (error: unknown) => {
            outcome.status = 'rejected';
            outcome.error = error;
          },
        );
      }),
    ), fs);
  }
  return outcomes;
}

/**
 * Asserts that `recovered` equals the model after some prefix of the issued ops that includes
 * every resolved op (the WAL recovers a prefix of the log, and an op resolves only once durable).
 * Also asserts the two properties in plain words. Returns the matching prefix length.
 */
export function expectRecoveredPrefix(
  recovered: JournalEntry[],
  outcomes: readonly OpOutcome[],
  initial: readonly JournalEntry[] = [],
): number {
  const lastResolved = outcomes.reduce((last, outcome, index) => (outcome.status === 'resolved' ? index : last), -1);
  // Push order is kept: order keys strictly increase.
  const orders = recovered.map((entry) => entry.pushedAtLsn ?? 0);
  expect(orders).toEqual([...orders].sort((a, b) => a - b));
  expect(new Set(orders).size).toBe(orders.length);

  const ids = new Set(recovered.map((entry) => entry.id));
  // Entries live before the first op stay unless an op (issued, maybe lost) removed them.
  for (const entry of initial) {
    const removed = outcomes.some(({ op }) => op.kind === 'clear' || (op.kind === 'ack' && op.id === entry.id));
    if (!removed) expect(ids.has(entry.id), `initial ${entry.id} lost`).toBe(true);
  }
  outcomes.forEach((outcome, index) => {
    if (outcome.status !== 'resolved') return;
    const later = outcomes.slice(index + 1).map((other) => other.op);
    const { op } = outcome;
    // An ack that resolved stays acked unless the id was pushed again later.
    if (op.kind === 'ack' && !later.some((other) => other.kind === 'push' && other.id === op.id)) {
      expect(ids.has(op.id), `acked ${op.id} resurrected`).toBe(false);
    }
    // A push that resolved is recovered unless acked or cleared later.
    if (op.kind === 'push' && !later.some((other) => other.kind === 'clear' || (other.kind === 'ack' && other.id === op.id))) {
      expect(ids.has(op.id), `pushed ${op.id} lost`).toBe(true);
    }
  });

  const model = JournalModel.from(initial);
  const actual = snapshotOf(recovered);
  const candidates: string[] = [];
  for (let length = 0; length <= outcomes.length; length++) {
    if (length > 0) model.apply(outcomes[length - 1]!.op);
    if (length <= lastResolved) continue;
    const expected = model.snapshot();
    if (expected === actual) return length;
    candidates.push(expected);
  }
  expect.unreachable(`recovered ${actual} matches no allowed prefix (from ${lastResolved + 1} of ${outcomes.length} ops): ${candidates.join(' | ')}`);
}

/** Errors an op may reject with once the simulated disk has stopped. */
export function expectCrashRejection(outcomes: readonly OpOutcome[]): void {
  for (const outcome of outcomes) {
    if (outcome.status !== 'rejected') continue;
    expect(outcome.error).toBeInstanceOf(FactError);
    expect(['FACT_WAL_POISONED', 'FACT_IO', 'FACT_CLOSED']).toContain((outcome.error as FactError).code);
  }
}
