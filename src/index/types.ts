// The shapes VectorIndex hands out (vector-index.ts): search hits, what opening found, info.
import type { Filter } from './filter.ts';
import type { SnapshotProblem } from './hnsw.ts';
import type { Manifest } from './manifest.ts';
import type { Checked } from './open.ts';

export interface SearchOptions {
  /** Search breadth for this query (default: the index's ef). */
  ef?: number;
  /** Only items with this label. */
  label?: number;
  /** Only items matching this filter (filter.ts), parsed. */
  filter?: Filter;
  /** How a restricted search runs: by EXACT_BELOW (auto), or forced (`bench filter` measures both). */
  route?: Route;
}

/** The ways a restricted search can run (SearchOptions.route). */
export const ROUTES = ['auto', 'graph', 'exact'] as const;
export type Route = (typeof ROUTES)[number];

export interface SearchHit {
  id: number;
  /** Dot product ('ip') or cosine similarity ('cosine'): higher is better. */
  score: number;
  label: number;
  source: string;
}

/**
 * What opening found and did, for the caller to log: whether writes are possible, what became of
 * the graph snapshot (loaded and replayed, or rebuilt, and why), damage and warnings.
 */
export interface OpenReport extends Pick<Checked, 'readOnlyReason' | 'loss' | 'damage' | 'warnings'> {
  writable: boolean;
  snapshot: 'loaded' | SnapshotProblem | 'none';
  reason?: string;
  rebuilt: boolean;
  /** Store changes applied on top of the snapshot (or all live items on a rebuild). */
  replayed: { added: number; deleted: number };
  ms: number;
}

export interface IndexInfo {
  dir: string;
  manifest: Manifest;
  storeSeq: number;
  counts: { live: number; deleted: number };
  labels: Record<string, number>;
  metaKeys: string[];
  graph: { points: number; capacity: number; deletedSlots: number; appliedSeq: number; ef: number };
  snapshot: { seq: number; writtenAt: string; bytes: number; behind: number } | null;
  files: Record<string, number>;
  opened: OpenReport;
}
