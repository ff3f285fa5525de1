// `matvit bench index`: what efConstruction costs and buys on a real corpus. The index's stored
// vectors are inserted into a fresh in-memory graph for each efConstruction (same M, space and
// insertion order as a build), timing the insertion alone; recall@10 of each graph at each search
// breadth (default: the index's ef) is measured against exact search (ONNX Runtime Gemm + TopK) on
// a seeded sample of the items, with the graph's search time per query.
import { exactKnn } from '../engine/knn.ts';
import { Graph } from './hnsw.ts';
import { neighbours, recallAt } from '../util/recall.ts';
import { seededSample } from '../util/sample.ts';
import type { VectorIndex } from './vector-index.ts';

export interface IndexBenchRow {
  efConstruction: number;
  insertSeconds: number;
  usPerItem: number;
  /** Per search breadth: recall@10 against exact search and graph search time per query. */
  search: { ef: number; recallAt10: number; usPerQuery: number }[];
}

export interface IndexBench {
  items: number;
  dim: number;
  M: number;
  queries: number;
  rows: IndexBenchRow[];
}

export async function benchIndex(
  index: VectorIndex,
  efConstructions: readonly number[],
  opts: { efs?: readonly number[]; sample?: number; seed?: string } = {},
): Promise<IndexBench> {
  const { space, dim, M, ef } = index.params;
  const efs = opts.efs ?? [ef];
  const { vectors } = index.liveMatrix(); // [N, dim], id order: the order a build inserted them
  const N = vectors.length / dim;
  const k = Math.min(10, N);
  // A seeded sample of items as queries, and their exact top k (rows of `vectors`).
  const rows = Array.from({ length: N }, (_, i) => i);
  const sample = seededSample(rows, opts.sample ?? 500, opts.seed ?? 'bench-index');
  const Q = sample.length;
  const queries = new Float32Array(Q * dim);
  sample.forEach((r, i) => queries.set(vectors.subarray(r * dim, (r + 1) * dim), i * dim));
  const truth = await exactKnn(queries, vectors, dim, k); // [Q, k] rows

  const out: IndexBenchRow[] = [];
  for (const efConstruction of efConstructions) {
    const graph = Graph.create({ space, dim, M, efConstruction, ef }, N);
    const t = performance.now();
    graph.add(
      Array.from({ length: N }, (_, i) => i),
      vectors,
    ); // labels = rows
    const insertSeconds = (performance.now() - t) / 1000;
    const search = efs.map((e) => {
      const t0 = performance.now();
      const got = Array.from({ length: Q }, (_, q) => graph.search(queries.subarray(q * dim, (q + 1) * dim), k, e).ids);
      const usPerQuery = Q ? ((performance.now() - t0) * 1000) / Q : 0;
      return { ef: e, recallAt10: Q ? recallAt(neighbours(got, k), truth) : 1, usPerQuery };
    });
    out.push({ efConstruction, insertSeconds, usPerItem: N ? (insertSeconds * 1e6) / N : 0, search });
  }
  return { items: N, dim, M, queries: Q, rows: out };
}
