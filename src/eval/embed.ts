// Embeds a whole labelled dataset with several submodels: each batch is decoded once and encoded by
// every submodel, so all of them see the same images. The result is held in memory ([N, D] floats
// per submodel: 30 MB for 60k x 128), which is what exact evaluation over a corpus needs.
import { type Dataset, type Skipped, batches } from '../data/dataset.ts';
import type { Encoder } from '../engine/encoder.ts';
import { embeddingDim } from '../model/config.ts';

export interface EmbeddedSet {
  /** Images that decoded, in dataset order. */
  count: number;
  dim: number;
  /** [count] class index (-1 unknown). */
  labels: Int32Array;
  /** [count] dataset index of each row. */
  indices: Int32Array;
  /** Per submodel (same order as asked): [count, dim], L2-normalized. */
  embeddings: Float32Array[];
  /** Per submodel, when asked: [count, numClasses]. */
  logits?: Float32Array[];
  skipped: Skipped[];
  /** Per submodel: milliseconds spent in the encoder. */
  encodeMs: number[];
}

export async function embedDataset(
  encoder: Encoder,
  ds: Dataset,
  ffnDims: readonly (readonly number[])[],
  opts: {
    batchSize?: number;
    limit?: number;
    concurrency?: number;
    logits?: boolean;
    onBatch?: (done: number, total: number) => void;
  } = {},
): Promise<EmbeddedSet> {
  const c = encoder.config;
  const n = Math.min(ds.size, opts.limit ?? ds.size);
  const D = embeddingDim(c);
  const K = c.numClasses;
  const embeddings = ffnDims.map(() => new Float32Array(n * D));
  const logits = opts.logits ? ffnDims.map(() => new Float32Array(n * K)) : undefined;
  const labels = new Int32Array(n);
  const indices = new Int32Array(n);
  const encodeMs = ffnDims.map(() => 0);
  const skipped: Skipped[] = [];
  let count = 0;
  const order = Array.from({ length: n }, (_, i) => i);
  for await (const batch of batches(ds, order, opts.batchSize ?? 128, c, { concurrency: opts.concurrency ?? 8 })) {
    skipped.push(...batch.skipped);
    const B = batch.labels.length;
    if (B > 0) {
      for (const [j, dims] of ffnDims.entries()) {
        const t0 = performance.now();
        const out = await encoder.encode(batch.images, dims);
        encodeMs[j] += performance.now() - t0;
        embeddings[j].set(out.embeddings, count * D);
        logits?.[j].set(out.logits, count * K);
      }
      labels.set(batch.labels, count);
      indices.set(batch.indices, count);
      count += B;
    }
    opts.onBatch?.(count + skipped.length, n);
  }
  return {
    count,
    dim: D,
    labels: labels.slice(0, count),
    indices: indices.slice(0, count),
    embeddings: embeddings.map((e) => e.slice(0, count * D)),
    logits: logits?.map((l) => l.slice(0, count * K)),
    skipped,
    encodeMs,
  };
}

/**
 * Mean cosine between each submodel's embedding and full-width XL's embedding of the same image:
 * how well a submodel stays in XL's metric space, measurable without labels. -> { name: mean cosine }
 */
export async function cosineToXl(
  encoder: Encoder,
  ds: Dataset,
  subs: readonly { name: string; ffnDims: readonly number[] }[],
  concurrency?: number,
): Promise<Record<string, number>> {
  const c = encoder.config;
  const full = Array<number>(c.depth).fill(c.mlpDim);
  // XL is embedded once: as one of `subs`, or added after them.
  const at = subs.findIndex((s) => s.ffnDims.every((d) => d === c.mlpDim));
  const dims = at >= 0 ? subs.map((s) => s.ffnDims) : [...subs.map((s) => s.ffnDims), full];
  const set = await embedDataset(encoder, ds, dims, { batchSize: 256, concurrency });
  const xl = set.embeddings[at >= 0 ? at : subs.length];
  const out: Record<string, number> = {};
  for (const [j, s] of subs.entries()) {
    const e = set.embeddings[j];
    let sum = 0;
    for (let i = 0; i < e.length; i++) sum += e[i] * xl[i];
    out[s.name] = set.count > 0 ? sum / set.count : NaN;
  }
  return out;
}
