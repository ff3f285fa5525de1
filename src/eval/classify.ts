// ImageNet-style classification evaluation of submodels: every batch is decoded once and encoded by
// each submodel, so all submodels see the same images. Streaming: memory is bounded by the batch.
import type { Dataset } from '../data/dataset.ts';
import { batches } from '../data/dataset.ts';
import { type Submodel, granularityDims } from '../model/config.ts';
import { mflops, paramCount } from '../model/flops.ts';
import type { Encoder } from '../engine/encoder.ts';

export interface ClassifyRow {
  name: string;
  ffnDims: number[];
  top1: number;
  top5: number;
  /** Share of images whose top-1 class equals XL's. */
  consistency: number;
  params: number;
  mflops: number;
  imgPerSec: number;
}

export interface ClassifyResult {
  rows: ClassifyRow[];
  count: number;
  skipped: { ref: string; reason: string; message: string }[];
}

/** Indices of the k largest values of row `r` of a [B, K] matrix, best first. */
export function topK(logits: Float32Array, K: number, r: number, k: number): number[] {
  const row = Array.from(logits.subarray(r * K, (r + 1) * K), (v, i) => [v, i] as const);
  return row
    .sort((a, b) => b[0] - a[0])
    .slice(0, k)
    .map(([, i]) => i);
}

export async function classify(
  encoder: Encoder,
  ds: Dataset,
  submodels: Submodel[],
  opts: { batchSize?: number; limit?: number; concurrency?: number; onBatch?: (done: number, total: number) => void } = {},
): Promise<ClassifyResult> {
  const c = encoder.config;
  const K = c.numClasses;
  if (K === 0) throw new Error(`model "${c.name}" has no classification head (numClasses 0)`);
  const xl = granularityDims(c, 'xl');
  const all = submodels.some((s) => s.ffnDims.join() === xl.join()) ? submodels : [...submodels, { name: 'xl', ffnDims: xl }];
  const n = Math.min(ds.size, opts.limit ?? ds.size);
  const stats = all.map(() => ({ top1: 0, top5: 0, agree: 0, ms: 0 }));
  const xlIndex = all.findIndex((s) => s.ffnDims.join() === xl.join());
  const skipped: ClassifyResult['skipped'] = [];
  let count = 0;
  const order = Array.from({ length: n }, (_, i) => i);
  for await (const batch of batches(ds, order, opts.batchSize ?? 64, c, { concurrency: opts.concurrency ?? 8 })) {
    skipped.push(...batch.skipped.map(({ ref, reason, message }) => ({ ref, reason, message })));
    const B = batch.labels.length;
    if (B === 0) continue;
    const preds: number[][][] = [];
    for (const [j, s] of all.entries()) {
      const t0 = performance.now();
      const { logits } = await encoder.encode(batch.images, s.ffnDims);
      stats[j].ms += performance.now() - t0;
      preds.push(Array.from({ length: B }, (_, r) => topK(logits, K, r, 5)));
    }
    for (const [j] of all.entries())
      for (let r = 0; r < B; r++) {
        const p = preds[j][r];
        if (p[0] === batch.labels[r]) stats[j].top1++;
        if (p.includes(batch.labels[r])) stats[j].top5++;
        if (p[0] === preds[xlIndex][r][0]) stats[j].agree++;
      }
    count += B;
    opts.onBatch?.(count + skipped.length, n);
  }
  const rows = all.map((s, j) => ({
    name: s.name,
    ffnDims: s.ffnDims,
    top1: count ? stats[j].top1 / count : 0,
    top5: count ? stats[j].top5 / count : 0,
    consistency: count ? stats[j].agree / count : 0,
    params: paramCount(c, s.ffnDims),
    mflops: mflops(c, s.ffnDims),
    imgPerSec: stats[j].ms > 0 ? (count * 1000) / stats[j].ms : 0,
  }));
  return { rows: rows.filter((r) => submodels.some((s) => s.name === r.name)), count, skipped };
}
