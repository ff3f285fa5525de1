// The LanceDB store's indexes (lance-store.ts): the ANN index on the vectors, trained with the
// parameters lance-params.ts derives for the table's size, and B-tree indexes on the keys that
// adds, removes and item lookups filter on.
import { type LanceParams, annSettings } from './lance-params.ts';
import { ITEMS, putMeta } from './lance-tables.ts';
import type { LanceWorker } from './lance-worker.ts';
import type { Manifest } from './manifest.ts';
import type { StoreState } from './store-api.ts';

/**
 * B-tree indexes on id, live_sha256 and deleted_seq (rebuilt over every row). The last serves the
 * live-rows prefilter once there are tombstones: at 1M rows it took a search from 40 to 21 ms
 * (docs/lance-store.md).
 */
export function keyIndexes(db: LanceWorker): void {
  for (const column of ['id', 'live_sha256', 'deleted_seq']) db.call('createIndex', { name: ITEMS, column, kind: 'btree', replace: true });
}

/** (Re)trains the ANN index over every row for `live` items, and the key indexes; records it under the meta key 'ann'. */
export function trainAnn(db: LanceWorker, lance: LanceParams, live: number, m: Pick<Manifest, 'dim' | 'space'>): { rows: number } {
  const { partitions, subVectors } = annSettings(lance, live, m.dim);
  const distanceType = m.space === 'cosine' ? 'cosine' : 'dot';
  const options =
    lance.ann === 'ivf-pq'
      ? { numPartitions: partitions, numSubVectors: subVectors, distanceType }
      : { numPartitions: Math.max(1, Math.round(partitions / 16)), distanceType };
  db.call('createIndex', { name: ITEMS, column: 'vector', kind: lance.ann === 'ivf-pq' ? 'ivfPq' : 'ivfHnswSq', options, replace: true });
  keyIndexes(db);
  putMeta(db, { ann: { rows: live, partitions, subVectors, builtAt: new Date().toISOString() } });
  return { rows: live };
}

/** The ANN index and how many rows it does not cover yet; null before one is trained. */
export function annState(db: LanceWorker): StoreState['ann'] {
  type Listed = { columns: string[]; type: string; stats: { numIndexedRows: number; numUnindexedRows: number } };
  const v = db.call<Listed[]>('indices', { name: ITEMS }).find((i) => i.columns.includes('vector'));
  return v ? { type: v.type, indexedRows: v.stats.numIndexedRows, unindexedRows: v.stats.numUnindexedRows } : null;
}
