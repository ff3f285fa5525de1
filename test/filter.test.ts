// Filtered search in the index (issue 18 item 2): the filter grammar evaluated by the store (SQL over
// the payload column) against a plain JS evaluation written here, search results against a brute
// force over the stored vectors, the route (exact scan or filtered graph walk), the match cache
// across writes, and payloads through the schema migration (a store of schema 2 made by SQL).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import seedrandom from 'seedrandom';
import { Filter } from '../src/index/filter.ts';
import { Store } from '../src/index/store.ts';
import { STORE_FILE, VectorIndex } from '../src/index/vector-index.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-filter-test-'));

const DIM = 16;
const N = 3000;
const rng = seedrandom('filter-test');
const unit = () => {
  const v = Array.from({ length: DIM }, () => rng() * 2 - 1);
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const sha = (i: number) => i.toString(16).padStart(64, '0');
type P = Record<string, unknown> | null;
/** Payloads of mixed shapes: absent, numbers, numeric strings, booleans, nested objects. */
const payloadOf = (i: number): P =>
  i % 11 === 0
    ? null
    : { n: i % 50, s: ['a', 'b', 'c', '3'][i % 4], v: i % 3 === 0 ? 3 : i % 3 === 1 ? '3' : true, deep: { x: i % 5 }, f: (i % 7) + 0.25 };

const items = Array.from({ length: N }, (_, i) => ({ label: i % 10, payload: payloadOf(i), vector: unit() }));
const dir = path.join(root, 'index');
const index = VectorIndex.create(dir, { fingerprint: 'a'.repeat(64), modelName: 'test', ffnDims: [8], dim: DIM, M: 16, ef: 64 });
index.add(items.map((it, i) => ({ source: `s${i}`, label: it.label, sha256: sha(i), bytes: 1, vector: it.vector, payload: it.payload })));
after(() => {
  index.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Ids (1-based, in insertion order) of the items passing `keep`, and the brute-force top k among them. */
const matching = (keep: (it: (typeof items)[number]) => boolean) => items.flatMap((it, i) => (keep(it) ? [i + 1] : []));
function bruteTop(q: number[], k: number, ids: number[]): number[] {
  const dot = (id: number) => items[id - 1].vector.reduce((s, x, j) => s + x * q[j], 0);
  return ids
    .map((id) => ({ id, s: dot(id) }))
    .sort((a, b) => b.s - a.s)
    .slice(0, k)
    .map((h) => h.id);
}

const p = (it: (typeof items)[number]) => it.payload ?? {};
const CASES: [unknown, (it: (typeof items)[number]) => boolean][] = [
  [{ label: 4 }, (it) => it.label === 4],
  [{ label: { in: [1, 8] } }, (it) => [1, 8].includes(it.label)],
  [{ label: { gt: 2, lte: 5 } }, (it) => it.label > 2 && it.label <= 5],
  [{ 'payload.n': 7 }, (it) => p(it).n === 7],
  [{ 'payload.n': { gte: 10, lt: 12 } }, (it) => typeof p(it).n === 'number' && (p(it).n as number) >= 10 && (p(it).n as number) < 12],
  [{ 'payload.s': { in: ['a', 'c'] } }, (it) => ['a', 'c'].includes(p(it).s as string)],
  [{ 'payload.v': 3 }, (it) => p(it).v === 3], // not the string '3', not true
  [{ 'payload.v': '3' }, (it) => p(it).v === '3'],
  [{ 'payload.v': true }, (it) => p(it).v === true],
  [{ 'payload.v': { in: [3, true] } }, (it) => p(it).v === 3 || p(it).v === true],
  [{ 'payload.v': { gte: 0 } }, (it) => typeof p(it).v === 'number'], // ranges take numbers only
  [{ 'payload.deep.x': { eq: 2 } }, (it) => (p(it).deep as { x: number } | undefined)?.x === 2],
  [{ 'payload.f': 3.25 }, (it) => p(it).f === 3.25],
  [{ 'payload.missing': 1 }, () => false],
  [
    { and: [{ label: 2 }, { 'payload.s': 'c' }], 'payload.n': { lt: 30 } },
    (it) => it.label === 2 && p(it).s === 'c' && (p(it).n as number) < 30,
  ],
];

test('the store evaluates each filter form as the plain JS evaluation does', () => {
  for (const [raw, keep] of CASES) {
    const f = Filter.parse(raw);
    assert.deepEqual(Array.from(index.matchingIds(f)), matching(keep), JSON.stringify(raw));
  }
});

test('filtered search: the exact route equals brute force; the graph route keeps recall; auto scans selective filters', () => {
  const queries = Array.from({ length: 20 }, unit);
  for (const [raw, keep] of CASES) {
    const filter = Filter.parse(raw);
    const ids = matching(keep);
    let hit = 0,
      total = 0;
    for (const q of queries) {
      const want = bruteTop(q, 10, ids);
      assert.deepEqual(
        index.search(q, 10, { filter, route: 'exact' }).map((h) => h.id),
        want,
        JSON.stringify(raw),
      );
      const got = new Set(index.search(q, 10, { filter, route: 'graph' }).map((h) => h.id));
      for (const id of want) hit += got.has(id) ? 1 : 0;
      total += want.length;
      const auto = index.search(q, 10, { filter }).map((h) => h.id);
      if (ids.length <= 0.02 * N) assert.deepEqual(auto, want, `${JSON.stringify(raw)}: ${ids.length} items kept are scanned exactly`);
      assert.ok(
        auto.every((id) => keep(items[id - 1])),
        JSON.stringify(raw),
      );
    }
    if (total) assert.ok(hit / total >= 0.95, `${JSON.stringify(raw)}: graph recall@10 ${hit / total}`);
  }
});

test('cached matches follow writes: a new matching item is found, a removed one is not', () => {
  const filter = Filter.parse({ 'payload.tag': 'new' });
  const q = unit();
  assert.deepEqual(index.search(q, 5, { filter }), []);
  const r = index.add([{ source: 'new', label: 1, sha256: sha(N + 1), bytes: 1, vector: q, payload: { tag: 'new' } }]);
  const id = r.ids[0]!;
  assert.deepEqual(
    index.search(q, 5, { filter }).map((h) => h.id),
    [id],
  );
  index.remove([id]);
  assert.deepEqual(index.search(q, 5, { filter }), []);
});

test('a store of schema 2 (no payload column) reads as "no payloads" read-only and is migrated by a writable open', () => {
  const d = path.join(root, 'old');
  const old = VectorIndex.create(d, { fingerprint: 'b'.repeat(64), modelName: 'test', ffnDims: [8], dim: DIM });
  old.add([{ source: 'x', label: 0, sha256: sha(1), bytes: 1, vector: unit() }]);
  old.close();
  const db = new Database(path.join(d, STORE_FILE));
  db.exec('ALTER TABLE items DROP COLUMN payload');
  db.pragma('user_version = 2');
  db.close();
  const ro = Store.open(path.join(d, STORE_FILE), { readOnly: true });
  try {
    assert.equal(ro.get(1)!.payload, null);
    assert.match(ro.outdated!, /without item payloads/);
  } finally {
    ro.close();
  }
  const rw = Store.open(path.join(d, STORE_FILE));
  try {
    assert.match(rw.migrated!, /no payload column \(schema 2\)/);
    rw.insert([{ source: 'y', sha256: sha(2), bytes: 1, vector: unit(), payload: { ok: 1 } }]);
    assert.deepEqual(rw.get(2)!.payload, { ok: 1 });
    assert.equal(rw.get(1)!.payload, null);
    assert.throws(
      () => rw.insert([{ source: 'z', sha256: sha(3), bytes: 1, vector: unit(), payload: { x: 'y'.repeat(5000) } }]),
      /payload: \d+ bytes of JSON, the limit is 4096/,
    );
    assert.throws(
      () => rw.insert([{ source: 'z', sha256: sha(3), bytes: 1, vector: unit(), payload: [1] as never }]),
      /payload: expected a JSON object/,
    );
  } finally {
    rw.close();
  }
});
