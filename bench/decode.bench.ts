/**
 * Decoding ledger chunks in-process (`npm run bench:decode`): factstore's decoder
 * (src/model/cbor.ts) with native string extraction (what reads use) and with every string read
 * in JavaScript, against cbor-x's own decoder on the same bytes (the speed to match; it is not
 * exact: it renames `__proto__` keys and acts on tags 27–29).
 *
 * Chunks are encodeTuples' bytes of events shaped like bench:append's: 256 events with generated
 * ids, 256 with ids of their own (UUIDs), 256 with non-ASCII strings, and one event alone (a
 * point read's chunk). The decoders alternate within each round; the table shows medians over
 * rounds and each decoder's ratio to cbor-x paired within rounds. Results:
 * bench/results/decode.json and a Markdown table on stdout.
 *
 * Knobs: BENCH_ROUNDS (7), BENCH_DECODE_EVENTS (events decoded per decoder, case and round; 200000).
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Decoder } from 'cbor-x';
import { decodeStored, nativeStringExtraction } from '../src/model/cbor.js';
import { encodeTuples, type EventTuple } from '../src/model/chunk.js';
import { fmtInt, fmtRatio, log, machine, median, pairedRatio, writeResults } from './support.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const EVENTS_PER_ROUND = Number(process.env.BENCH_DECODE_EVENTS ?? 200_000);
const CHUNKS_PER_CASE = 16;

const TYPES = ['OrderPlaced', 'ItemAdded', 'ItemRemoved', 'OrderShipped'] as const;

function tuple(index: number, id: string | null, note: string): EventTuple {
  return [
    id,
    TYPES[index % TYPES.length]!,
    {
      orderId: `o-${index % 5000}`,
      sku: `SKU-${(index * 7919) % 100000}`,
      quantity: 1 + (index % 7),
      priceCents: 199 + ((index * 31) % 10000),
      currency: 'EUR',
      note: index % 3 === 0 ? note : null,
    },
    { correlationId: `c-${index}`, userId: `u-${index % 977}` },
    [`order:o-${index % 5000}`, `customer:u-${index % 977}`],
  ];
}

function chunks(events: number, id: (index: number) => string | null, note: string): Uint8Array[] {
  return Array.from({ length: CHUNKS_PER_CASE }, (_, chunk) =>
    // A copy of its own, as a LevelDB read gives it.
    new Uint8Array(encodeTuples(Array.from({ length: events }, (_, index) => tuple(chunk * events + index, id(chunk * events + index), note)))),
  );
}

const CASES: { name: string; chunks: Uint8Array[] }[] = [
  { name: '256 events, generated ids', chunks: chunks(256, () => null, 'gift wrap, leave at the door') },
  { name: '256 events, own ids (UUID)', chunks: chunks(256, () => randomUUID(), 'gift wrap, leave at the door') },
  { name: '256 events, non-ASCII notes', chunks: chunks(256, () => null, 'Geschenkverpackung, bitte vor die Tür – danke') },
  { name: '1 event (a point read)', chunks: chunks(1, () => null, 'gift wrap, leave at the door') },
];

const cborx = new Decoder({ copyBuffers: true });
const DECODERS: { name: string; decode: (bytes: Uint8Array) => unknown }[] = [
  { name: 'decodeStored, native strings', decode: (bytes) => decodeStored(bytes) },
  { name: 'decodeStored, JavaScript strings', decode: (bytes) => decodeStored(bytes, { nativeStrings: false }) },
  { name: 'cbor-x Decoder (reference)', decode: (bytes) => cborx.decode(bytes) as unknown },
];

let sink = 0;
function eventsPerSec(decode: (bytes: Uint8Array) => unknown, input: Uint8Array[]): number {
  let events = 0;
  const start = performance.now();
  while (events < EVENTS_PER_ROUND) {
    for (const bytes of input) {
      const tuples = decode(bytes) as unknown[];
      events += tuples.length;
      sink += (tuples[0] as unknown[]).length;
    }
  }
  return events / ((performance.now() - start) / 1000);
}

log(`native string extraction: ${nativeStringExtraction}`);
const rates = CASES.map(() => DECODERS.map((): number[] => []));
// One warm-up round, not counted: the JIT and the compiled record readers.
for (let round = 0; round <= ROUNDS; round++) {
  CASES.forEach((benchCase, caseIndex) => {
    const order = round % 2 === 0 ? DECODERS : [...DECODERS].reverse();
    for (const decoder of order) {
      const rate = eventsPerSec(decoder.decode, benchCase.chunks);
      if (round > 0) rates[caseIndex]![DECODERS.indexOf(decoder)]!.push(rate);
    }
  });
  if (round > 0) log(`round ${round}/${ROUNDS} done`);
}
if (sink < 0) log(String(sink));

const rows = CASES.flatMap((benchCase, caseIndex) =>
  DECODERS.map((decoder, decoderIndex) => ({
    case: benchCase.name,
    chunkSizeBytes: benchCase.chunks[0]!.length,
    decoder: decoder.name,
    eventsPerSec: median(rates[caseIndex]![decoderIndex]!),
    ratioToCborx: pairedRatio(rates[caseIndex]![decoderIndex]!, rates[caseIndex]![DECODERS.length - 1]!),
  })),
);
const file = writeResults('decode', { machine: machine(), rounds: ROUNDS, eventsPerRound: EVENTS_PER_ROUND, nativeStringExtraction, rows, rates });
console.log(['| case | chunk bytes | decoder | events/s | × cbor-x |', '| --- | ---: | --- | ---: | ---: |', ...rows.map((row) => `| ${row.case} | ${fmtInt(row.chunkSizeBytes)} | ${row.decoder} | ${fmtInt(row.eventsPerSec)} | ${fmtRatio(row.ratioToCborx)} |`)].join('\n'));
log(`results: ${file}`);
