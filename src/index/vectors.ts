// Vector checks, and the scoring of the exact (brute-force) scan used by search and verify.
import type { TopK } from '../util/topk.ts';

export type VectorLike = Float32Array | readonly number[];

/** Throws naming the bad vector unless it has `dim` finite entries; returns its L2 norm. */
function checkVector(v: VectorLike, dim: number, what: string): number {
  if (v.length !== dim) throw new Error(`${what} has ${v.length} dimensions, the index has ${dim}`);
  let s = 0;
  for (let i = 0; i < dim; i++) {
    const x = v[i];
    if (!Number.isFinite(x)) throw new Error(`${what}[${i}] = ${x}: vector entries must be finite numbers`);
    s += x * x;
  }
  return Math.sqrt(s);
}

/** The vector scaled to unit length (a new array); stored vectors are always unit length. */
export function unitVector(v: VectorLike, dim: number, what: string): Float32Array {
  const n = checkVector(v, dim, what);
  if (!(n > 0)) throw new Error(`${what} is the zero vector: it has no direction to index`);
  const out = new Float32Array(dim);
  for (let i = 0; i < dim; i++) out[i] = v[i] / n;
  return out;
}

/**
 * A query as used by both graph and exact search, so their scores agree: 'cosine' scores are
 * cosine similarities (query normalized); 'ip' scores are dot products with the stored unit vectors.
 */
export function queryVector(v: VectorLike, dim: number, space: 'ip' | 'cosine'): Float32Array {
  if (space === 'cosine') return unitVector(v, dim, 'query');
  checkVector(v, dim, 'query');
  return Float32Array.from(v);
}

/**
 * Scores every query against a chunk of stored vectors (flat [n, dim]) and keeps each query's
 * top k. Called once per chunk of a streamed scan, so all queries share one pass over the store.
 */
export function scoreChunk(
  queries: readonly Float32Array[],
  tops: readonly TopK[],
  ids: readonly number[],
  vectors: Float32Array,
  dim: number,
): void {
  for (let r = 0; r < ids.length; r++) {
    const off = r * dim;
    for (let q = 0; q < queries.length; q++) {
      const qv = queries[q];
      let s = 0;
      for (let j = 0; j < dim; j++) s += qv[j] * vectors[off + j];
      tops[q].push(ids[r], s);
    }
  }
}
