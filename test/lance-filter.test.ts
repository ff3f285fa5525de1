// Search filters evaluated inside the LanceDB store (src/index/lance-filter.ts): every filter form and
// hostile strings (quotes, backslashes, unicode, lone surrogates, SQL) against a plain JS evaluation of the grammar
// written here, on an exact-search table and on one with an IVF-PQ index searching 2 of 32 partitions;
// the SQLite store evaluates the same filters on the same items (both stores, one semantics); an index
// made before the payload_jsonb column; and Lance's JSON text of every BMP string being JSON.stringify's.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as lancedb from '@lancedb/lancedb';
import seedrandom from 'seedrandom';
import { Filter } from '../src/index/filter.ts';
import { createLance } from '../src/index/lance-create.ts';
import { FilterUnsupported } from '../src/index/lance-filter.ts';
import { LanceIndex } from '../src/index/lance-store.ts';
import { type Columns, LanceWorker } from '../src/index/lance-worker.ts';
import { VectorIndex } from '../src/index/vector-index.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-lance-filter-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const DIM = 16;
const N = 600;
const FP = 'cd'.repeat(32);
const STRINGS = [
  'a',
  'b',
  "it's",
  'back\\slash',
  '"quoted"',
  'é😀',
  "'; DROP TABLE items; --",
  '3',
  'x\u0000y',
  'line\nbreak',
  '\u2028',
  "\\'",
  '\ud800', // lone surrogates: JSON.stringify writes them as escapes
  '\udfffz\ud800',
];
type Payload = Record<string, unknown> | null;
/** Mixed shapes: none (every 11th), numbers, numeric strings, booleans, nested objects, arrays, nulls, hostile strings. */
const payloadOf = (i: number): Payload =>
  i % 11 === 0
    ? null
    : {
        n: i % 50,
        s: STRINGS[i % STRINGS.length],
        v: i % 3 === 0 ? 3 : i % 3 === 1 ? '3' : true,
        deep: { x: i % 5 },
        f: (i % 7) + 0.25,
        arr: [i % 3],
        nul: null,
        ...(i % 13 === 0 && { rare: i }),
      };
const rng = seedrandom('lance-filter');
const unit = () => {
  const v = Array.from({ length: DIM }, () => rng() * 2 - 1);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const items = Array.from({ length: N }, (_, i) => ({ label: i % 10, payload: payloadOf(i), vector: unit() }));
const newItems = () =>
  items.map((it, i) => ({
    source: `s${i}`,
    label: it.label,
    sha256: createHash('sha256').update(`item ${i}`).digest('hex'),
    bytes: 1,
    vector: it.vector,
    payload: it.payload,
  }));

// ---- the reference: the grammar (docs/search-api.md) evaluated by a plain loop --------------------

type It = (typeof items)[number];
/** The value at a dotted payload path, undefined when a step is missing or not an object. */
function at(payload: Payload, dotted: string): unknown {
  let v: unknown = payload;
  for (const k of dotted.split('.')) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}
const same = (v: unknown, x: unknown) => (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && v === x;
function keeps(f: Record<string, unknown>, it: It): boolean {
  return Object.entries(f).every(([key, m]) => {
    if (key === 'and') return (m as Record<string, unknown>[]).every((g) => keeps(g, it));
    const v = key === 'label' ? it.label : at(it.payload, key.slice('payload.'.length));
    if (typeof m !== 'object' || m === null) return same(v, m);
    const o = m as { eq?: unknown; in?: unknown[]; gt?: number; gte?: number; lt?: number; lte?: number };
    const num = typeof v === 'number';
    return (
      (o.eq === undefined || same(v, o.eq)) &&
      (o.in === undefined || o.in.some((x) => same(v, x))) &&
      (o.gt === undefined || (num && v > o.gt)) &&
      (o.gte === undefined || (num && v >= o.gte)) &&
      (o.lt === undefined || (num && v < o.lt)) &&
      (o.lte === undefined || (num && v <= o.lte))
    );
  });
}
/** Ids (1-based, insertion order) passing the filter, and the plain-loop top k among them. */
const matching = (f: Record<string, unknown>) => items.flatMap((it, i) => (keeps(f, it) ? [i + 1] : []));
function topK(q: number[], k: number, ids: number[]): number[] {
  const dot = (id: number) => items[id - 1].vector.reduce((s, x, j) => s + x * q[j], 0);
  return ids
    .map((id) => ({ id, s: dot(id) }))
    .sort((a, b) => b.s - a.s || a.id - b.id)
    .slice(0, k)
    .map((h) => h.id);
}

const CASES: Record<string, unknown>[] = [
  { label: 4 },
  { label: { in: [1, 8] } },
  { label: { gt: 2.5, lte: 5 } },
  { label: 2.5 }, // labels are integers
  { label: 1e10 }, // beyond int32: matches nothing (and LanceDB must not refuse the literal)
  { label: { lt: 1e300 } },
  { 'payload.n': 7 },
  { 'payload.n': { gte: 10, lt: 12 } },
  { 'payload.n': { gte: 1 } }, // most items
  { 'payload.v': 3 }, // not the string '3', not true
  { 'payload.v': '3' },
  { 'payload.v': true },
  { 'payload.v': { in: [3, true] } },
  { 'payload.v': { gte: 0 } }, // ranges take numbers only
  { 'payload.s': '3' },
  { 'payload.s': 3 },
  { 'payload.deep.x': { eq: 2 } },
  { 'payload.deep': 2 }, // an object matches no scalar
  { 'payload.arr': 0 }, // nor does an array
  { 'payload.arr.x': 0 },
  { 'payload.nul': 'null' },
  { 'payload.f': 3.25 },
  { 'payload.f': { gte: -1e300, lt: 1e21 } },
  { 'payload.rare': { gt: 0 } }, // a field some items have
  { 'payload.rare': { in: [13, 26, 39, '52'] } }, // a few items
  { label: 4, 'payload.s': "'; DROP TABLE items; --" },
  { 'payload.missing': 1 }, // matches nothing
  ...STRINGS.map((s) => ({ 'payload.s': s })),
  { 'payload.s': { in: ["' OR 1=1 --", "it's", '\\'] } },
  { 'payload.s': "é😀' OR label >= 0 OR 'x'='" },
  { and: [{ label: 2 }, { 'payload.s': 'b' }], 'payload.n': { lt: 30 } },
  { and: [{ and: [{ 'payload.v': { in: ['3', 3] } }] }, { label: { in: [0, 6, 9] } }], 'payload.f': { gt: 1 } },
];

const queries = Array.from({ length: 12 }, unit);

describe('filters inside the LanceDB store against a plain loop', () => {
  let exact: LanceIndex;
  let ann: LanceIndex;
  let sqlite: VectorIndex;
  before(() => {
    const manifest = { fingerprint: FP, modelName: 't', ffnDims: [4], dim: DIM, space: 'cosine' as const, corpus: {} };
    exact = createLance(path.join(root, 'exact'), manifest);
    exact.add(newItems());
    ann = createLance(path.join(root, 'ann'), manifest, { annMinRows: 300, partitions: 32, nprobes: 2 });
    ann.add(newItems());
    ann.snapshot(); // trains IVF-PQ: 600 rows >= annMinRows
    sqlite = VectorIndex.create(path.join(root, 'sqlite'), { fingerprint: FP, modelName: 't', ffnDims: [4], dim: DIM, M: 16, ef: 64 });
    sqlite.add(newItems());
  });
  after(() => {
    exact?.close();
    ann?.close();
    sqlite?.close();
  });

  test('exact table: every filter gives the plain-loop top k among the matching items; the SQLite store matches the same items', () => {
    assert.equal(exact.info().store.ann, null, 'no ANN index: searched exactly');
    const kinds = new Set<string>();
    for (const raw of CASES) {
      const f = Filter.parse(raw);
      const want = matching(raw);
      kinds.add(want.length === 0 ? 'none' : want.length <= 10 ? 'few' : want.length > N / 2 ? 'most' : 'some');
      assert.deepEqual(Array.from(sqlite.matchingIds(f)), want, `sqlite ${JSON.stringify(raw)}`);
      assert.deepEqual(Array.from(exact.matchingIds(f)), want, `lance ${JSON.stringify(raw)}`);
      for (const q of queries.slice(0, 4))
        assert.deepEqual(
          exact.search(q, 10, { filter: f }).map((h) => h.id),
          topK(q, 10, want),
          JSON.stringify(raw),
        );
      // k past the matches: exactly the matching items, none missing, none extra
      const all = exact.search(queries[0], N, { filter: f }).map((h) => h.id);
      assert.deepEqual(
        all.sort((a, b) => a - b),
        want,
        `all of ${JSON.stringify(raw)}`,
      );
    }
    assert.deepEqual([...kinds].sort(), ['few', 'most', 'none', 'some'], 'filters matching nothing, a few, some and most items');
    // label and filter together, as serve passes them
    const f = Filter.parse({ 'payload.v': '3' });
    assert.deepEqual(
      exact.search(queries[1], 10, { label: 7, filter: f }).map((h) => h.id),
      topK(queries[1], 10, matching({ label: 7, 'payload.v': '3' })),
    );
  });

  test('IVF-PQ table (2 of 32 partitions probed): every hit matches, k hits whenever k items match, recall@10 >= 0.9', () => {
    assert.equal(ann.info().store.ann?.type, 'IvfPq');
    let found = 0,
      wanted = 0;
    for (const raw of CASES) {
      const f = Filter.parse(raw);
      const want = matching(raw);
      const ok = new Set(want);
      for (const q of queries) {
        const got = ann.search(q, 10, { filter: f }).map((h) => h.id);
        assert.ok(
          got.every((id) => ok.has(id)),
          `a hit outside ${JSON.stringify(raw)}`,
        );
        assert.equal(got.length, Math.min(10, want.length), `${JSON.stringify(raw)}: ${want.length} match`);
        const ref = topK(q, 10, want);
        // Up to k matches: the probes widen until every one is found, and the refine step orders them by their full vectors.
        if (want.length <= 10) assert.deepEqual(got, ref, JSON.stringify(raw));
        found += ref.filter((id) => got.includes(id)).length;
        wanted += ref.length;
      }
    }
    const recall = found / wanted;
    console.log(`filtered recall@10 on the IVF-PQ table: ${recall.toFixed(4)} (${found}/${wanted})`);
    assert.ok(recall >= 0.9, `recall@10 ${recall}`);
  });

  test('IVF-PQ table after removing all but 15 items: a search without a filter still gives k live hits (tombstones widen the probes too)', () => {
    const live = [3, 50, 97, 140, 188, 230, 275, 321, 366, 410, 455, 499, 530, 571, 598];
    const removed = Array.from({ length: N }, (_, i) => i + 1).filter((id) => !live.includes(id));
    assert.equal(ann.remove(removed).removed.length, removed.length);
    for (const q of queries)
      assert.deepEqual(
        ann.search(q, 10).map((h) => h.id),
        topK(q, 10, live),
      );
  });
});

test('an index made before payload_jsonb: payload filters are FilterUnsupported until a writable open adds the column, also after a killed fill', async () => {
  const uri = path.join(root, 'old');
  const M = 60;
  const index = createLance(uri, { fingerprint: FP, modelName: 't', ffnDims: [4], dim: DIM, space: 'cosine', corpus: {} });
  index.add(newItems().slice(0, M));
  index.snapshot(); // B-tree indexes on id and live_sha256, as a build makes them
  index.close();
  const db = await lancedb.connect(uri);
  const t = await db.openTable('items');
  await t.dropColumns(['payload_jsonb']);
  t.close();
  db.close();
  const refuses = () => {
    const old = LanceIndex.open(uri, { mode: 'read' });
    try {
      assert.throws(() => old.search(queries[0], 5, { filter: Filter.parse({ 'payload.n': 1 }) }), FilterUnsupported);
      assert.throws(() => old.matchingIds(Filter.parse({ and: [{ 'payload.n': 1 }] })), FilterUnsupported);
      const hits = old.search(queries[0], 5, { filter: Filter.parse({ label: 3 }) });
      assert.deepEqual(
        hits.map((h) => h.id),
        topK(
          queries[0],
          5,
          matching({ label: 3 }).filter((id) => id <= M),
        ),
        'label filters still run',
      );
    } finally {
      old.close();
    }
  };
  refuses();
  // What a writable open killed after its first chunk leaves: the copy under its filling name, 20 rows of it written.
  const w = new LanceWorker();
  try {
    w.call('connect', { uri });
    w.call('open', { name: 'items' });
    w.call('addColumns', { name: 'items', cols: [{ name: 'payload_jsonb_filling', type: 'json', nullable: true }] });
    const c = w.call<Columns>('query', { name: 'items', where: 'payload IS NOT NULL', select: ['id', 'payload'], limit: 20 });
    w.call('updateColumns', { name: 'items', key: 'id', cols: { __rows: c.__rows, id: c.id, payload_jsonb_filling: c.payload } });
  } finally {
    w.close();
  }
  refuses();
  LanceIndex.open(uri).close(); // a writable open finishes the fill and renames the column
  const migrated = LanceIndex.open(uri, { mode: 'read' });
  try {
    for (const raw of CASES) {
      const want = matching(raw).filter((id) => id <= M);
      assert.deepEqual(Array.from(migrated.matchingIds(Filter.parse(raw))), want, JSON.stringify(raw));
      assert.deepEqual(
        migrated.search(queries[2], 5, { filter: Filter.parse(raw) }).map((h) => h.id),
        topK(queries[2], 5, want),
        JSON.stringify(raw),
      );
    }
  } finally {
    migrated.close();
  }
});

test("Lance's JSON text of a string is JSON.stringify's, for every BMP code point and a few astral ones", () => {
  // lance-filter.ts compares json_extract's text with JSON.stringify of the client's string.
  const strs: string[] = [];
  for (let c = 0; c < 0x10000; c++) if (c < 0xd800 || c > 0xdfff) strs.push(`${String.fromCharCode(c)}x${String.fromCharCode(c)}`);
  strs.push('😀', '\u{10FFFF}', '', "a'b", 'a\\b', '"');
  const db = new LanceWorker();
  try {
    db.call('connect', { uri: path.join(root, 'strings') });
    db.call('create', { name: 't', cols: [{ name: 'p', type: 'json', nullable: true }] });
    db.call('append', { name: 't', cols: { __rows: strs.length, p: strs.map((s) => JSON.stringify({ a: s })) } });
    const c = db.call<Columns>('query', { name: 't', select: { v: "json_extract(p, '$.a')" } });
    const got = c.v as string[];
    assert.equal(got.length, strs.length);
    const differ = strs.flatMap((s, i) => (got[i] === JSON.stringify(s) ? [] : [s]));
    assert.deepEqual(differ, []);
  } finally {
    db.close();
  }
});
