/**
 * The example domains of dcb.events as tests: course subscriptions, unique usernames, gap-free
 * invoice numbers and record de-duplication by idempotency token. Each command handler builds
 * its decision model from a query, decides, and appends with the same query as its condition
 * and `after` = the last position it read; a FACT_CONCURRENCY rejection makes it decide again.
 * The concurrency cases run many handlers at once, as real clients would. Run against
 * memory-level (WAL on SimFileSystem) and classic-level (real files).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryLevel } from 'memory-level';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FactStore, isFactError, Query } from '../src/index.js';
import { SimFileSystem } from '../src/testing/index.js';
import type { AppendResult, FactStoreOptions, RecordedEvent } from '../src/index.js';
import { VIEW } from '../src/storage/level.js';

/** A business rule said no (as opposed to a concurrency conflict, which is retried). */
class DomainError extends Error {
  override name = 'DomainError';
}

const RETRIES_MAX = 200;

/** Runs a decide-and-append command again while its condition fails because of a concurrent append. */
async function withRetries<T>(command: () => Promise<T>): Promise<{ result: T; attempts: number }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return { result: await command(), attempts: attempt };
    } catch (error) {
      if (!isFactError(error, 'FACT_CONCURRENCY') || attempt >= RETRIES_MAX) throw error;
    }
  }
}

const afterOf = (events: readonly RecordedEvent[]): number | undefined => events.at(-1)?.position;

/** Fulfilled values and rejection reasons of settled promises. */
function split<T>(results: PromiseSettledResult<T>[]): { values: T[]; errors: unknown[] } {
  return {
    values: results.filter((result): result is PromiseFulfilledResult<T> => result.status === 'fulfilled').map((result) => result.value),
    errors: results.filter((result): result is PromiseRejectedResult => result.status === 'rejected').map((result) => result.reason as unknown),
  };
}

// ---------------------------------------------------------------------------- course subscriptions

const courseTag = (courseId: string) => `course:${courseId}`;
const studentTag = (studentId: string) => `student:${studentId}`;
const STUDENT_COURSES_MAX = 5;

class Courses {
  constructor(private readonly db: FactStore) {}

  async define(courseId: string, capacity: number): Promise<AppendResult> {
    const query = Query.types('CourseDefined').withTags(courseTag(courseId));
    const events = await this.db.read({ query }).toArray();
    if (events.length > 0) throw new DomainError(`Course with id "${courseId}" already exists`);
    return this.db.append(
      { type: 'CourseDefined', data: { courseId, capacity }, tags: [courseTag(courseId)] },
      { failIfEventsMatch: query, after: afterOf(events) },
    );
  }

  async changeCapacity(courseId: string, newCapacity: number): Promise<AppendResult> {
    const query = Query.types('CourseDefined', 'CourseCapacityChanged').withTags(courseTag(courseId));
    const events = await this.db.read({ query }).toArray();
    let capacity: number | null = null;
    for (const event of events) {
      const data = event.data as { capacity?: number; newCapacity?: number };
      capacity = event.type === 'CourseDefined' ? data.capacity! : data.newCapacity!;
    }
    if (capacity === null) throw new DomainError(`Course "${courseId}" does not exist`);
    if (capacity === newCapacity) throw new DomainError(`New capacity ${newCapacity} is the same as the current capacity`);
    return this.db.append(
      { type: 'CourseCapacityChanged', data: { courseId, newCapacity }, tags: [courseTag(courseId)] },
      { failIfEventsMatch: query, after: afterOf(events) },
    );
  }

  /** One decision model from three projections (course state, its subscriptions, the student's subscriptions). */
  async subscribe(studentId: string, courseId: string): Promise<AppendResult> {
    const query = Query.items(
      { types: ['CourseDefined', 'CourseCapacityChanged'], tags: [courseTag(courseId)] },
      { types: ['StudentSubscribedToCourse'], tags: [courseTag(courseId)] },
      { types: ['StudentSubscribedToCourse'], tags: [studentTag(studentId)] },
    );
    const events = await this.db.read({ query }).toArray();
    let capacity: number | null = null;
    let courseSubscriptions = 0;
    let studentSubscriptions = 0;
    let alreadySubscribed = false;
    for (const event of events) {
      const data = event.data as { capacity?: number; newCapacity?: number; studentId?: string; courseId?: string };
      if (event.type === 'CourseDefined') capacity = data.capacity!;
      else if (event.type === 'CourseCapacityChanged') capacity = data.newCapacity!;
      else {
        if (data.courseId === courseId) courseSubscriptions++;
        if (data.studentId === studentId) studentSubscriptions++;
        if (data.courseId === courseId && data.studentId === studentId) alreadySubscribed = true;
      }
    }
    if (capacity === null) throw new DomainError(`Course "${courseId}" does not exist`);
    if (courseSubscriptions >= capacity) throw new DomainError(`Course "${courseId}" is already fully booked`);
    if (alreadySubscribed) throw new DomainError('Student already subscribed to this course');
    if (studentSubscriptions >= STUDENT_COURSES_MAX) throw new DomainError(`Student already subscribed to ${STUDENT_COURSES_MAX} courses`);
    return this.db.append(
      { type: 'StudentSubscribedToCourse', data: { studentId, courseId }, tags: [studentTag(studentId), courseTag(courseId)] },
      { failIfEventsMatch: query, after: afterOf(events) },
    );
  }

  async subscriptions(filter: { courseId?: string; studentId?: string }): Promise<{ studentId: string; courseId: string }[]> {
    const tags = [...(filter.courseId ? [courseTag(filter.courseId)] : []), ...(filter.studentId ? [studentTag(filter.studentId)] : [])];
    const query = tags.length > 0 ? Query.types('StudentSubscribedToCourse').withTags(...tags) : Query.types('StudentSubscribedToCourse');
    return (await this.db.read({ query }).toArray()).map((event) => event.data as { studentId: string; courseId: string });
  }
}

// ---------------------------------------------------------------------------- unique username

const usernameTag = (username: string) => `username:${username}`;

class Accounts {
  constructor(private readonly db: FactStore) {}

  #query(username: string): Query {
    return Query.types('AccountRegistered', 'AccountClosed', 'UsernameChanged').withTags(usernameTag(username));
  }

  /** Whether `username` is claimed, from the events of that username. */
  async #claimed(username: string): Promise<{ claimed: boolean; events: RecordedEvent[]; query: Query }> {
    const query = this.#query(username);
    const events = await this.db.read({ query }).toArray();
    let claimed = false;
    for (const event of events) {
      const data = event.data as { username?: string; newUsername?: string; oldUsername?: string };
      if (event.type === 'AccountRegistered') claimed = true;
      else if (event.type === 'AccountClosed') claimed = false;
      else claimed = data.newUsername === username;
    }
    return { claimed, events, query };
  }

  async register(accountId: string, username: string): Promise<AppendResult> {
    const { claimed, events, query } = await this.#claimed(username);
    if (claimed) throw new DomainError(`Username "${username}" is claimed`);
    return this.db.append(
      { type: 'AccountRegistered', data: { accountId, username }, tags: [usernameTag(username), `account:${accountId}`] },
      { failIfEventsMatch: query, after: afterOf(events) },
    );
  }

  async close(accountId: string, username: string): Promise<AppendResult> {
    return this.db.append({ type: 'AccountClosed', data: { accountId, username }, tags: [usernameTag(username), `account:${accountId}`] });
  }

  async changeUsername(accountId: string, oldUsername: string, newUsername: string): Promise<AppendResult> {
    const { claimed, events, query } = await this.#claimed(newUsername);
    if (claimed) throw new DomainError(`Username "${newUsername}" is claimed`);
    return this.db.append(
      { type: 'UsernameChanged', data: { accountId, oldUsername, newUsername }, tags: [usernameTag(oldUsername), usernameTag(newUsername), `account:${accountId}`] },
      { failIfEventsMatch: query, after: afterOf(events) },
    );
  }
}

// ---------------------------------------------------------------------------- invoice numbers

class Invoices {
  constructor(private readonly db: FactStore) {}

  /** The next number follows the last invoice, read backward with limit 1. */
  async create(customer: string): Promise<number> {
    const query = Query.types('InvoiceCreated');
    const [last] = await this.db.read({ query }, { direction: 'backward', limit: 1 }).toArray();
    const invoiceNumber = last === undefined ? 1 : (last.data as { invoiceNumber: number }).invoiceNumber + 1;
    await this.db.append(
      { type: 'InvoiceCreated', data: { invoiceNumber, customer }, tags: [`invoice:${invoiceNumber}`, `customer:${customer}`] },
      { failIfEventsMatch: query, after: last?.position },
    );
    return invoiceNumber;
  }
}

// ---------------------------------------------------------------------------- record duplication

class Orders {
  constructor(private readonly db: FactStore) {}

  /** Places an order once per idempotency token; a re-submission is reported, not recorded. */
  async place(orderId: string, idempotencyToken: string): Promise<'placed' | 're-submission'> {
    try {
      await this.db.append(
        { type: 'OrderPlaced', data: { orderId }, tags: [`order:${orderId}`, `idempotency:${idempotencyToken}`] },
        { failIfEventsMatch: Query.tags(`idempotency:${idempotencyToken}`) },
      );
      return 'placed';
    } catch (error) {
      if (isFactError(error, 'FACT_CONCURRENCY')) return 're-submission';
      throw error;
    }
  }
}

// ---------------------------------------------------------------------------- the suite

type OptionsFor = () => FactStoreOptions;

function memoryBackend(): OptionsFor {
  const fs = new SimFileSystem();
  const level = new MemoryLevel<Uint8Array, Uint8Array>(VIEW);
  return () => ({ level, fs, levelDurability: 'volatile' });
}

function classicBackend(): OptionsFor {
  return () => ({});
}

function describeScenarios(name: string, makeOptions: () => OptionsFor): void {
  describe(name, () => {
    let root: string;
    let db: FactStore;

    beforeEach(async () => {
      root = mkdtempSync(join(tmpdir(), 'factstore-dcb-scenarios-'));
      db = await FactStore.open(join(root, 'db'), makeOptions()());
    });

    afterEach(async () => {
      await db.close();
      rmSync(root, { recursive: true, force: true });
    });

    async function expectVerified(): Promise<void> {
      const report = await db.verify();
      expect(report.problems).toEqual([]);
    }

    describe('course subscriptions', () => {
      it('defining a course twice fails; a new course is defined', async () => {
        const courses = new Courses(db);
        await courses.define('c1', 10);
        await expect(courses.define('c1', 15)).rejects.toThrow('Course with id "c1" already exists');
        await courses.define('c2', 15);
        expect(await db.read({ query: Query.types('CourseDefined') }).toArray()).toHaveLength(2);
      });

      it('capacity changes: unknown course and same capacity fail, a new capacity is recorded', async () => {
        const courses = new Courses(db);
        await expect(courses.changeCapacity('c0', 5)).rejects.toThrow('does not exist');
        await courses.define('c1', 10);
        await expect(courses.changeCapacity('c1', 10)).rejects.toThrow('same as the current capacity');
        await courses.changeCapacity('c1', 12);
        await expect(courses.changeCapacity('c1', 12)).rejects.toThrow('same as the current capacity');
      });

      it('subscribing: unknown course, full course, duplicate subscription and the 5-course limit fail', async () => {
        const courses = new Courses(db);
        await expect(courses.subscribe('s1', 'c0')).rejects.toThrow('Course "c0" does not exist');
        await courses.define('full', 1);
        await courses.subscribe('s0', 'full');
        await expect(courses.subscribe('s1', 'full')).rejects.toThrow('Course "full" is already fully booked');
        await courses.define('c1', 10);
        await courses.subscribe('s1', 'c1');
        await expect(courses.subscribe('s1', 'c1')).rejects.toThrow('Student already subscribed to this course');
        for (const courseId of ['c2', 'c3', 'c4', 'c5', 'c6']) await courses.define(courseId, 10);
        for (const courseId of ['c2', 'c3', 'c4', 'c5']) await courses.subscribe('s1', courseId);
        await expect(courses.subscribe('s1', 'c6')).rejects.toThrow('Student already subscribed to 5 courses');
        // Another student is not affected; a larger capacity opens the full course again.
        await courses.subscribe('s2', 'c6');
        await courses.changeCapacity('full', 2);
        await courses.subscribe('s2', 'full');
        expect(await courses.subscriptions({ studentId: 's1' })).toHaveLength(5);
        expect(await courses.subscriptions({ courseId: 'full' })).toEqual([
          { studentId: 's0', courseId: 'full' },
          { studentId: 's2', courseId: 'full' },
        ]);
      });

      it('30 students racing for 10 seats: exactly 10 subscribe, the others find the course full', async () => {
        const courses = new Courses(db);
        await courses.define('c1', 10);
        const students = Array.from({ length: 30 }, (_, index) => `s${index}`);
        const { values, errors } = split(await Promise.allSettled(students.map((studentId) => withRetries(() => courses.subscribe(studentId, 'c1')))));
        expect(values).toHaveLength(10);
        expect(errors).toHaveLength(20);
        for (const error of errors) expect(String(error)).toContain('fully booked');
        // Conflicts did happen and were resolved by deciding again.
        expect(Math.max(...values.map((value) => value.attempts))).toBeGreaterThan(1);
        const subscribed = await courses.subscriptions({ courseId: 'c1' });
        expect(subscribed).toHaveLength(10);
        expect(new Set(subscribed.map((subscription) => subscription.studentId)).size).toBe(10);
        await expectVerified();
      });

      it('one student subscribing to 10 courses at once: exactly 5 succeed', async () => {
        const courses = new Courses(db);
        const courseIds = Array.from({ length: 10 }, (_, index) => `c${index}`);
        for (const courseId of courseIds) await courses.define(courseId, 3);
        const { values, errors } = split(await Promise.allSettled(courseIds.map((courseId) => withRetries(() => courses.subscribe('s1', courseId)))));
        expect(values).toHaveLength(STUDENT_COURSES_MAX);
        for (const error of errors) expect(String(error)).toContain('5 courses');
        expect(await courses.subscriptions({ studentId: 's1' })).toHaveLength(STUDENT_COURSES_MAX);
      });

      it('the same student racing for the same course 10 times: one subscription', async () => {
        const courses = new Courses(db);
        await courses.define('c1', 10);
        const { values, errors } = split(await Promise.allSettled(Array.from({ length: 10 }, () => withRetries(() => courses.subscribe('s1', 'c1')))));
        expect(values).toHaveLength(1);
        for (const error of errors) expect(String(error)).toContain('already subscribed to this course');
        expect(await courses.subscriptions({ courseId: 'c1' })).toHaveLength(1);
      });

      it('a capacity reduction racing with subscriptions is never overbooked', async () => {
        const courses = new Courses(db);
        await courses.define('c1', 10);
        const subscribing = Array.from({ length: 12 }, (_, index) => withRetries(() => courses.subscribe(`s${index}`, 'c1')));
        const reducing = withRetries(() => courses.changeCapacity('c1', 4));
        const results = await Promise.allSettled([...subscribing, reducing]);
        expect(results.at(-1)!.status).toBe('fulfilled');
        // Replay the course's history: at no point did subscriptions exceed the capacity of the moment.
        const history = await db.read({ query: Query.tags(courseTag('c1')) }).toArray();
        let capacity = 0;
        let subscribed = 0;
        for (const event of history) {
          if (event.type === 'CourseDefined') capacity = (event.data as { capacity: number }).capacity;
          else if (event.type === 'CourseCapacityChanged') capacity = (event.data as { newCapacity: number }).newCapacity;
          else {
            subscribed++;
            expect(subscribed).toBeLessThanOrEqual(capacity);
          }
        }
        expect(split(results).values.length - 1).toBe(subscribed);
      });
    });

    describe('unique username', () => {
      it('a claimed username cannot be registered; an unclaimed one can', async () => {
        const accounts = new Accounts(db);
        await accounts.register('a1', 'ada');
        await expect(accounts.register('a2', 'ada')).rejects.toThrow('Username "ada" is claimed');
        await accounts.register('a2', 'bob');
      });

      it('closing the account releases the username; it can be claimed again, once', async () => {
        const accounts = new Accounts(db);
        await accounts.register('a1', 'ada');
        await accounts.close('a1', 'ada');
        await accounts.register('a2', 'ada');
        await expect(accounts.register('a3', 'ada')).rejects.toThrow('claimed');
        await accounts.close('a2', 'ada');
        await accounts.register('a3', 'ada');
      });

      it('changing a username releases the old one and claims the new one', async () => {
        const accounts = new Accounts(db);
        await accounts.register('a1', 'ada');
        await accounts.register('a2', 'bob');
        await expect(accounts.changeUsername('a1', 'ada', 'bob')).rejects.toThrow('Username "bob" is claimed');
        await accounts.changeUsername('a1', 'ada', 'ada-l');
        await accounts.register('a3', 'ada');
        await expect(accounts.register('a4', 'ada-l')).rejects.toThrow('claimed');
      });

      it('20 concurrent registrations of one username: exactly one succeeds', async () => {
        const accounts = new Accounts(db);
        const attempts = Array.from({ length: 20 }, (_, index) => withRetries(() => accounts.register(`a${index}`, 'ada')));
        const { values, errors } = split(await Promise.allSettled(attempts));
        expect(values).toHaveLength(1);
        for (const error of errors) expect(String(error)).toContain('claimed');
        expect(await db.read({ query: Query.types('AccountRegistered').withTags(usernameTag('ada')) }).toArray()).toHaveLength(1);
      });

      it('released and re-claimed concurrently: claims and releases alternate', async () => {
        const accounts = new Accounts(db);
        await accounts.register('a0', 'ada');
        let owner = 'a0';
        const rounds = 5;
        for (let round = 1; round <= rounds; round++) {
          await accounts.close(owner, 'ada');
          const { values } = split(await Promise.allSettled(Array.from({ length: 8 }, (_, index) => withRetries(() => accounts.register(`a${round}-${index}`, 'ada')))));
          expect(values).toHaveLength(1);
          const [claim] = await db.read({ query: Query.tags(usernameTag('ada')) }, { direction: 'backward', limit: 1 }).toArray();
          expect(claim!.position).toBe(values[0]!.result.position);
          owner = (claim!.data as { accountId: string }).accountId;
        }
        const history = await db.read({ query: Query.tags(usernameTag('ada')) }).toArray();
        expect(history.map((event) => event.type)).toEqual(
          Array.from({ length: rounds * 2 + 1 }, (_, index) => (index % 2 === 0 ? 'AccountRegistered' : 'AccountClosed')),
        );
      });
    });

    describe('gap-free invoice numbers', () => {
      it('the first invoice is 1, then each follows the last one', async () => {
        const invoices = new Invoices(db);
        expect(await invoices.create('acme')).toBe(1);
        await db.append({ type: 'Unrelated' });
        expect(await invoices.create('acme')).toBe(2);
        expect(await invoices.create('initech')).toBe(3);
      });

      it('a creator that decided on a stale last invoice is rejected', async () => {
        const invoices = new Invoices(db);
        await invoices.create('acme');
        const [last] = await db.read({ query: Query.types('InvoiceCreated') }, { direction: 'backward', limit: 1 }).toArray();
        await invoices.create('initech');
        const stale = await db
          .append({ type: 'InvoiceCreated', data: { invoiceNumber: 2 } }, { failIfEventsMatch: Query.types('InvoiceCreated'), after: last!.position })
          .catch((error: unknown) => error);
        expect(stale).toMatchObject({ code: 'FACT_CONCURRENCY', details: { expected: last!.position, actual: 2 } });
      });

      it('30 concurrent creators amid unrelated appends: numbers 1..30, gap-free, no duplicates, in position order', async () => {
        const invoices = new Invoices(db);
        const creators = Array.from({ length: 30 }, (_, index) => withRetries(() => invoices.create(`customer-${index % 4}`)));
        const noise = Array.from({ length: 30 }, (_, index) => db.append({ type: 'OrderPlaced', tags: [`customer:customer-${index % 4}`] }));
        const [created] = await Promise.all([Promise.all(creators), Promise.all(noise)]);
        expect(created.map((value) => value.result).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, index) => index + 1));
        expect(Math.max(...created.map((value) => value.attempts))).toBeGreaterThan(1);
        const recorded = await db.read({ query: Query.types('InvoiceCreated') }).toArray();
        expect(recorded.map((event) => (event.data as { invoiceNumber: number }).invoiceNumber)).toEqual(Array.from({ length: 30 }, (_, index) => index + 1));
        expect(await db.head()).toBe(60);
        await expectVerified();
      });
    });

    describe('preventing record duplication', () => {
      it('a re-submission with the same idempotency token is not recorded', async () => {
        const orders = new Orders(db);
        expect(await orders.place('o1', 'token-1')).toBe('placed');
        expect(await orders.place('o1', 'token-1')).toBe('re-submission');
        expect(await orders.place('o2', 'token-2')).toBe('placed');
        expect(await db.read({ query: Query.types('OrderPlaced') }).toArray()).toHaveLength(2);
      });

      it('concurrent submissions: one per token is recorded, tokens never conflict with each other', async () => {
        const orders = new Orders(db);
        const submissions = Array.from({ length: 40 }, (_, index) => orders.place(`o${index % 8}`, `token-${index % 8}`));
        const outcomes = await Promise.all(submissions);
        expect(outcomes.filter((outcome) => outcome === 'placed')).toHaveLength(8);
        for (let token = 0; token < 8; token++) {
          expect(await db.read({ query: Query.tags(`idempotency:token-${token}`) }).toArray()).toHaveLength(1);
        }
        expect(await db.head()).toBe(8);
      });
    });
  });
}

describeScenarios('DCB scenarios on memory-level + SimFileSystem', memoryBackend);
describeScenarios('DCB scenarios on classic-level + real files', classicBackend);
