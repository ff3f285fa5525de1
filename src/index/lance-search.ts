// The LanceDB store's search (lance-store.ts): the restrictions (label, filter: lance-filter.ts;
// tombstones) as one WHERE that LanceDB applies before the vector search, the ANN index searched at
// nprobes partitions and, when restricted, more until k rows pass (LanceDB's default maximum of 20
// partitions would leave a narrow filter short), the PQ candidates re-ranked by their stored vectors.
import type { Filter } from './filter.ts';
import { FilterUnsupported, PAYLOAD_JSONB, lanceFilter, readsPayload } from './lance-filter.ts';
import { ITEMS, LIVE, rows } from './lance-tables.ts';
import type { Columns, LanceWorker } from './lance-worker.ts';
import type { Space } from './manifest.ts';
import type { SearchHit, SearchOptions } from './types.ts';
import { type VectorLike, queryVector } from './vectors.ts';

/** What a search needs of the index: its location (for errors), metric, ANN settings, and whether this version has tombstones. */
export interface SearchedTable {
  dir: string;
  space: Space;
  dim: number;
  tombstones: boolean;
  nprobes: number;
  /** IVF-PQ's refine factor; undefined for an index without one. */
  refine: number | undefined;
}

/** The k best live items for `vector` (exact: a flat scan, bypassing the ANN index), best first. */
export function lanceSearch(
  db: LanceWorker,
  t: SearchedTable,
  vector: VectorLike,
  k: number,
  opts: SearchOptions,
  exact: boolean,
): SearchHit[] {
  if (!Number.isInteger(k) || k < 1) throw new Error(`k = ${k}: expected a positive integer`);
  const q = queryVector(vector, t.dim, t.space);
  const extra = Object.keys(opts).filter(
    (key) => !['ef', 'label', 'filter', 'route'].includes(key) && (opts as Record<string, unknown>)[key] !== undefined,
  );
  if (extra.length) throw new Error(`${extra.join(', ')}: not supported by the LanceDB store`);
  if (opts.route && opts.route !== 'auto')
    throw new Error(`route = ${opts.route}: the LanceDB store has one route, its prefiltered search (auto)`);
  const { label, filter } = opts;
  if (label !== undefined && !Number.isInteger(label)) throw new Error(`label = ${label}: expected an integer`);
  const restrictions = [...(label === undefined ? [] : [lanceFilter({ label })]), ...(filter ? [lanceFilter(filter)] : [])];
  const c = filtered(t.dir, filter, () =>
    db.call<Columns>('search', {
      name: ITEMS,
      vector: Array.from(q),
      k,
      // Without tombstones at this version the prefilter is skipped: scanning it cost more than the search at 1M rows (docs/lance-store.md).
      where: [...(t.tombstones ? [LIVE] : []), ...restrictions].join(' AND ') || undefined,
      select: ['id', 'label', 'source', '_distance'],
      // Stored vectors are unit length: LanceDB's cosine and dot distances are both 1 - score.
      distance: t.space === 'cosine' ? 'cosine' : 'dot',
      nprobes: opts.ef ?? t.nprobes,
      // Tombstones are a restriction too: after many removes, nprobes partitions may hold fewer than k live rows.
      widen: restrictions.length > 0 || t.tombstones,
      refine: t.refine,
      exact,
    }),
  );
  return rows(c).map((r) => ({
    id: r.id as number,
    score: 1 - (r._distance as number),
    label: r.label as number,
    source: r.source as string,
  }));
}

/** The live items matching a filter, ascending ids (LanceDB evaluates it, as in a search). */
export function lanceMatching(db: LanceWorker, dir: string, filter: Filter): Int32Array {
  const c = filtered(dir, filter, () =>
    db.call<Columns>('query', { name: ITEMS, where: `${LIVE} AND ${lanceFilter(filter)}`, select: ['id'] }),
  );
  return Int32Array.from((c.id ?? []) as number[]).sort(); // no rows: no columns either
}

/** Runs a LanceDB call evaluating `filter`: an items table made before payload_jsonb cannot, which is FilterUnsupported. */
function filtered<T>(dir: string, filter: Filter | undefined, call: () => T): T {
  try {
    return call();
  } catch (e) {
    if (filter && readsPayload(filter) && String(e).includes(PAYLOAD_JSONB))
      throw new FilterUnsupported(
        `${dir} was created before payload filters (its items table has no ${PAYLOAD_JSONB} column): filters on label only, until a writable open adds the column (e.g. matvit index compact)`,
      );
    throw e;
  }
}
