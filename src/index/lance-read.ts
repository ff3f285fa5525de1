// Reading the LanceDB store's items (lance-store.ts): one item, one vector, and every live item in
// windows of ids, so that a pass over the whole table (merge, eval, verify) holds one window at a
// time: a single query for 1M x 128-d vectors held the 512 MB result three times over (LanceDB's
// Arrow batches, the worker's copy, the reply). The B-tree on id keeps each window a lookup.
import { ITEMS, ITEM_COLS, LIVE, type Row, rows } from './lance-tables.ts';
import type { Columns, LanceWorker } from './lance-worker.ts';
import { type Item, type Row as ItemRow, toItem } from './store-schema.ts';

/** An items-table row as the store's Item: its columns are the SQLite store's (store-schema.ts). */
const asItem = (r: Row): Item => toItem(r as unknown as ItemRow);

/** An item by id, live or removed. */
export function readItem(db: LanceWorker, id: number): Item | undefined {
  if (!Number.isSafeInteger(id)) return undefined;
  const [r] = rows(db.call<Columns>('query', { name: ITEMS, where: `id = ${id}`, select: ITEM_COLS, limit: 1 }));
  return r && asItem(r);
}

/** A live item's stored vector. */
export function readVector(db: LanceWorker, id: number): Float32Array | undefined {
  if (!Number.isSafeInteger(id)) return undefined;
  const c = db.call<Columns>('query', { name: ITEMS, where: `id = ${id} AND ${LIVE}`, select: ['vector'], limit: 1 });
  return c.__rows ? (c.vector as Float32Array) : undefined;
}

/** The live rows with ids in (lo, lo + chunk], for every window up to maxId: `select` (with id), rows in id order, vectors sliced per row. */
function* windows(db: LanceWorker, maxId: number, select: string[], dim: number, chunk: number): Generator<Row[]> {
  for (let lo = 0; lo < maxId; lo += chunk) {
    const c = db.call<Columns>('query', { name: ITEMS, where: `id > ${lo} AND id <= ${lo + chunk} AND ${LIVE}`, select });
    if (!c.__rows) continue;
    const v = c.vector as Float32Array | undefined;
    const page = rows(c).map((r, i) => (v ? { ...r, vector: v.subarray(i * dim, (i + 1) * dim) } : r));
    yield page.sort((a, b) => (a.id as number) - (b.id as number));
  }
}

/** The live items with their vectors in id order, `chunk` ids at a time. */
export function* liveItems(db: LanceWorker, maxId: number, dim: number, chunk = 1024): Generator<(Item & { vector: Float32Array })[]> {
  for (const page of windows(db, maxId, [...ITEM_COLS, 'vector'], dim, chunk))
    yield page.map((r) => ({ ...asItem(r), vector: (r.vector as Float32Array).slice() }));
}

/** Every live item's id, label and vector in id order ([live, dim] row-major), filled window by window. */
export function liveMatrix(db: LanceWorker, maxId: number, live: number, dim: number) {
  const ids: number[] = [];
  const labels = new Int32Array(live);
  const vectors = new Float32Array(live * dim);
  for (const page of windows(db, maxId, ['id', 'label', 'vector'], dim, 65_536))
    for (const r of page) {
      if (ids.length === live) throw new Error(`${ITEMS}: more live rows than the ${live} counted at open; open the index again`);
      labels[ids.length] = r.label as number;
      vectors.set(r.vector as Float32Array, ids.length * dim);
      ids.push(r.id as number);
    }
  if (ids.length !== live) throw new Error(`${ITEMS}: ${ids.length} live rows read, ${live} counted at open; open the index again`);
  return { ids, labels, vectors };
}

/** Live rows whose stored vector is not a finite unit vector (what a damaged vector would break: LanceDB checksums nothing we can ask about). */
export function checkVectors(db: LanceWorker, maxId: number, dim: number): { checked: number; bad: number[]; unchecked: number } {
  const bad: number[] = [];
  let checked = 0;
  for (const page of windows(db, maxId, ['id', 'vector'], dim, 65_536))
    for (const r of page) {
      const v = r.vector as Float32Array;
      let n = 0;
      for (let j = 0; j < dim; j++) n += v[j] * v[j];
      if (Math.abs(n - 1) < 1e-3) checked++;
      else bad.push(r.id as number);
    }
  return { checked, bad, unchecked: 0 };
}
