// `matvit bench filter`: filtered search against exact filtered search on an index's own vectors.
// For each filter, a seeded sample of items queries the index three ways (auto: the route
// vector-index.ts picks by EXACT_BELOW; graph: hnswlib's filtered walk; exact: a scan of the
// matching items), and each is scored by recall@k against exact search over the matching items
// (ONNX Runtime Gemm + TopK, engine/knn.ts), with its latency per query, filter evaluation included.
import { exactKnn } from '../engine/knn.ts';
import { neighbours, recallAt } from '../util/recall.ts';
import { seededSample } from '../util/sample.ts';
import type { Filter } from './filter.ts';
import { ROUTES, type Route } from './types.ts';
import type { VectorIndex } from './vector-index.ts';

export interface FilterBenchRow {
  filter: Filter;
  matching: number;
  fraction: number;
  routes: { route: Route; recall: number; msMean: number; msP95: number }[];
}

export interface FilterBench {
  items: number;
  queries: number;
  k: number;
  ef: number;
  rows: FilterBenchRow[];
}

/** What the bench needs of an index: both stores have it (LanceDB: one route, auto). */
export type FilterBenchIndex = Pick<VectorIndex, 'params' | 'liveMatrix' | 'matchingIds' | 'search'>;

export async function benchFilters(
  index: FilterBenchIndex,
  filters: readonly Filter[],
  opts: { sample?: number; k?: number; ef?: number; seed?: string; routes?: readonly Route[] } = {},
): Promise<FilterBench> {
  const { dim, ef: indexEf } = index.params;
  const ef = opts.ef ?? indexEf;
  const k = opts.k ?? 10;
  const { ids, vectors } = index.liveMatrix();
  const rowOf = new Map(ids.map((id, r) => [id, r]));
  const sample = seededSample(
    Array.from({ length: ids.length }, (_, r) => r),
    opts.sample ?? 200,
    opts.seed ?? 'bench-filter',
  );
  const query = (q: number) => vectors.subarray(sample[q] * dim, (sample[q] + 1) * dim);
  const queries = new Float32Array(sample.length * dim);
  sample.forEach((_, q) => queries.set(query(q), q * dim));
  const rows: FilterBenchRow[] = [];
  for (const filter of filters) {
    const match = index.matchingIds(filter);
    const subset = new Float32Array(match.length * dim);
    match.forEach((id, i) => subset.set(vectors.subarray(rowOf.get(id)! * dim, (rowOf.get(id)! + 1) * dim), i * dim));
    const truth = await exactKnn(queries, subset, dim, k);
    const want = neighbours(
      sample.map((_, q) => Array.from(truth.ids.subarray(q * k, (q + 1) * k)).map((i) => (i < 0 ? -1 : match[i]))),
      k,
    );
    const routes = (opts.routes ?? ROUTES).map((route) => {
      const ms: number[] = [];
      const got = sample.map((_, q) => {
        const t = performance.now();
        const hits = index.search(query(q), k, { filter, ef, route });
        ms.push(performance.now() - t);
        return hits.map((h) => h.id);
      });
      ms.sort((a, b) => a - b);
      const msMean = ms.reduce((a, b) => a + b, 0) / Math.max(1, ms.length);
      return { route, recall: recallAt(neighbours(got, k), want, k), msMean, msP95: ms[Math.floor(0.95 * (ms.length - 1))] ?? 0 };
    });
    rows.push({ filter, matching: match.length, fraction: match.length / ids.length, routes });
  }
  return { items: ids.length, queries: sample.length, k, ef, rows };
}
