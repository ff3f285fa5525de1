// `matvit bench index`: what efConstruction costs and buys on a real corpus. The index's stored
// vectors are inserted into a fresh in-memory graph for each efConstruction (same M, space and
// insertion order as a build), timing the insertion alone; recall@10 of each graph at each search
// breadth (default: the index's ef) is measured against exact search (ONNX Runtime Gemm + TopK) on
// a seeded sample of the items, with the graph's search time per query. A LanceDB index has no graph
// to rebuild: benchStoreSearch measures its own search (nprobes) against exact search the same way.
import { exactKnn } from '../engine/knn.ts';
import { Graph } from './hnsw.ts';
import { neighbours, recallAt } from '../util/recall.ts';
import { seededSample } from '../util/sample.ts';
import type { IndexStore } from './store-api.ts';

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

type BenchOptions = { efs?: readonly number[]; sample?: number; seed?: string };

/** A seeded sample of the stored vectors as queries, and their exact top k (rows of `vectors`). */
async function sampled(vectors: Float32Array, dim: number, opts: BenchOptions) {
  const N = vectors.length / dim;
  const k = Math.min(10, N);
  const rows = Array.from({ length: N }, (_, i) => i);
  const sample = seededSample(rows, opts.sample ?? 500, opts.seed ?? 'bench-index');
  const Q = sample.length;
  const queries = new Float32Array(Q * dim);
  sample.forEach((r, i) => queries.set(vectors.subarray(r * dim, (r + 1) * dim), i * dim));
  const truth = await exactKnn(queries, vectors, dim, k); // [Q, k] rows
  return { N, k, Q, queries, truth };
}

export async function benchIndex(index: IndexStore, efConstructions: readonly number[], opts: BenchOptions = {}): Promise<IndexBench> {
  const { space, dim, M, ef } = index.params;
  const efs = opts.efs ?? [ef];
  const { vectors } = index.liveMatrix(); // [N, dim], id order: the order a build inserted them
  const { N, k, Q, queries, truth } = await sampled(vectors, dim, opts);

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

export interface StoreSearchBench {
  items: number;
  dim: number;
  queries: number;
  /** Per search breadth (the store's: LanceDB's nprobes): recall@10 against exact search and time per query. */
  search: { ef: number; recallAt10: number; usPerQuery: number }[];
}

/** The index's own search (default breadth: the one it searches with) against exact search on a sample of its items. */
export async function benchStoreSearch(index: IndexStore, opts: BenchOptions = {}): Promise<StoreSearchBench> {
  const { dim } = index.params;
  const efs = opts.efs ?? [index.info().graph.ef];
  const { ids, vectors } = index.liveMatrix();
  const rowOf = new Map(ids.map((id, row) => [id, row]));
  const { N, k, Q, queries, truth } = await sampled(vectors, dim, opts);
  const search = efs.map((e) => {
    const t0 = performance.now();
    const got = Array.from({ length: Q }, (_, q) =>
      index.search(queries.subarray(q * dim, (q + 1) * dim), k, { ef: e }).map((h) => rowOf.get(h.id)!),
    );
    const usPerQuery = Q ? ((performance.now() - t0) * 1000) / Q : 0;
    return { ef: e, recallAt10: Q ? recallAt(neighbours(got, k), truth) : 1, usPerQuery };
  });
  return { items: N, dim, queries: Q, search };
}
