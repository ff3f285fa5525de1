// What build, add, remove, search, verify, info, calibrate, eval and serve need from an index,
// whichever store holds it: SQLite + an in-memory HNSW graph (vector-index.ts, the embedded
// default) or a LanceDB dataset on disk or object storage (lance-store.ts). Both are synchronous
// (see lance-worker.ts for how the LanceDB one is). Items are the store's NewItem / Item, with
// whatever fields store-schema.ts gives them (e.g. a JSON payload): a store keeps them all.
import type { Filter } from './filter.ts';
import type { GraphParams } from './hnsw.ts';
import type { Manifest } from './manifest.ts';
import type { InsertResult, Item, NewItem, RemoveResult } from './store-schema.ts';
import type { IndexInfo, OpenReport, SearchHit, SearchOptions } from './types.ts';
import type { VectorLike } from './vectors.ts';

export type StoreKind = 'sqlite' | 'lance';

/** Which store holds an index and, for one that can be shared, the version this process reads. */
export interface StoreState {
  kind: StoreKind;
  /** LanceDB: the table version searches read, and when this process last checked out the latest. */
  version?: number;
  checkedAt?: string;
  /** LanceDB: the ANN index, when the table has one, and the rows it does not cover yet. */
  ann?: { type: string; indexedRows: number; unindexedRows: number } | null;
  uri?: string;
}

export interface IndexStore {
  readonly dir: string;
  readonly readOnly: boolean;
  readonly kind: StoreKind;
  readonly params: GraphParams;
  /** Live items. */
  readonly size: number;
  readonly opened: OpenReport;
  close(opts?: { snapshot?: boolean }): void;
  /** Picks up what another process committed (a replica checks out the latest version). */
  refresh(): { added: number; deleted: number };
  add(items: readonly NewItem[]): InsertResult;
  remove(ids: readonly number[]): RemoveResult;
  removeSources(sources: readonly string[]): RemoveResult;
  existing(sha256s: readonly string[]): Map<string, number>;
  item(id: number): Item | undefined;
  getMeta(key: string): unknown;
  setMeta(key: string, value: unknown): void;
  search(vector: VectorLike, k: number, opts?: SearchOptions): SearchHit[];
  /** An item's stored (unit) vector; undefined unless it is live. */
  vectorOf(id: number): Float32Array | undefined;
  searchExact(vector: VectorLike, k: number, opts?: Pick<SearchOptions, 'label'>): SearchHit[];
  /** The live items a search filter (filter.ts) keeps, ascending ids, evaluated by the store as its searches do. */
  matchingIds(filter: Filter): Int32Array;
  liveMatrix(): { ids: number[]; labels: Int32Array; vectors: Float32Array };
  /** The live items with their vectors, in id order, `chunk` at a time (what merge copies from a shard). */
  liveItems(chunk?: number): Iterable<(Item & { vector: Float32Array })[]>;
  /** Makes what is committed cheap to open again (the HNSW graph snapshot; LanceDB: the manifest mirror). */
  snapshot(): unknown;
  compact(): { before: number; after: number; ms: number; badVectors: number[] };
  checkVectors(): { checked: number; bad: number[]; unchecked: number };
  info(): IndexInfo & { store?: StoreState };
}

export type { Manifest };
