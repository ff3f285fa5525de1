// The LanceDB store's settings (kept in its meta table under 'lance'), and the ANN index's
// parameters derived from the table's size and dimension where not set.
//
// IVF-PQ: one partition per ~4096 rows (at least 16), fewer than LanceDB's sqrt(N) guide
// (https://lancedb.github.io/lancedb/ann_indexes/) because k-means training samples 256 rows per
// partition and costs partitions^2: sqrt(1M) = 1000 partitions took tens of minutes on 2 cores
// here (docs/lance-store.md); dim/8 sub-vectors (8 dims per 1-byte code); and a refine step that
// re-ranks refineFactor*k candidates by their full stored vectors, which lifts recall@10.
import { z } from 'zod';

export const LanceParams = z.object({
  /** The ANN index LanceDB builds once the table holds annMinRows items; below that every search is exact (a flat scan). */
  ann: z.enum(['ivf-pq', 'ivf-hnsw-sq']).default('ivf-pq'),
  annMinRows: z.number().int().min(256).default(50_000),
  /** IVF partitions (default: derived, see annSettings). */
  partitions: z.number().int().positive().optional(),
  /** PQ sub-vectors; must divide dim (default: derived). */
  subVectors: z.number().int().positive().optional(),
  /** Partitions searched per query (default: derived). */
  nprobes: z.number().int().positive().optional(),
  /** Candidates re-ranked by full vectors, as a multiple of k (IVF-PQ only). */
  refineFactor: z.number().int().positive().default(10),
  /** Optimize (index compact) prunes table versions older than this. */
  pruneOlderThanMs: z
    .number()
    .int()
    .nonnegative()
    .default(60 * 60_000),
  /** The ANN index is brought up to date (optimize) when more rows than this fraction of the indexed ones are not in it. */
  reindexFraction: z.number().min(0).default(0.1),
});
export type LanceParams = z.infer<typeof LanceParams>;
export type LanceParamsInput = z.input<typeof LanceParams>;

/** The ANN settings for a table of `rows` vectors of `dim` dimensions, with what `p` sets explicitly kept. */
export function annSettings(p: LanceParams, rows: number, dim: number) {
  const partitions = p.partitions ?? Math.max(16, Math.round(rows / 4096));
  const subVectors = p.subVectors ?? largestDivisor(dim, Math.max(1, Math.floor(dim / 8)));
  if (dim % subVectors !== 0) throw new Error(`sub-vectors ${subVectors}: must divide the embedding dimension ${dim} (--sub-vectors)`);
  // ~8% of the partitions, at least LanceDB's default of 20: measured in docs/lance-store.md.
  const nprobes = p.nprobes ?? Math.min(partitions, Math.max(20, Math.ceil(partitions * 0.08)));
  return { partitions, subVectors, nprobes, refineFactor: p.refineFactor };
}

/** The largest divisor of n that is at most `max`. */
function largestDivisor(n: number, max: number): number {
  for (let d = Math.min(max, n); d > 1; d--) if (n % d === 0) return d;
  return 1;
}
