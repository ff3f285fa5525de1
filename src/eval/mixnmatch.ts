// Mix'n'Match search (MatFormer, arXiv 2310.07707, sections 3 and 4): a submodel may use a
// different FFN granularity in every layer. The paper found that configurations whose granularity
// does not decrease with depth and changes as little as possible ("increasing with least slope")
// work best, matching or beating an evolutionary search. So the candidates here are exactly those:
// the four uniform granularities, and for each adjacent pair (s,m), (m,l), (l,xl) the first j layers
// at the smaller width and the other depth - j at the next one (j = 1 .. depth-1): depth 6 gives
// 4 + 3 * 5 = 19 configs. Each is measured on a validation split (top-1 of its logits; recall@k of
// its query embedding's neighbours in an XL-embedded corpus against XL queries' neighbours; batch-1
// latency here), and the Pareto front over (MFLOPs, top-1, recall) becomes the model's menu.
import { quantileNormal } from 'vega-statistics';
import type { Dataset, Skipped } from '../data/dataset.ts';
import { type Encoder, batch1Latency } from '../engine/encoder.ts';
import { exactKnn } from '../engine/knn.ts';
import type { MenuEntry } from '../model/checkpoint.ts';
import { GRANULARITY_NAMES, type ModelConfig, granularityDims, submodelName } from '../model/config.ts';
import { mflops } from '../model/flops.ts';
import { topK } from './classify.ts';
import { embedDataset } from './embed.ts';
import { recallPerQuery } from '../util/recall.ts';

export interface MixConfig {
  name: string;
  ffnDims: number[];
  mflops: number;
  /** One of s, m, l, xl (the same width in every layer). */
  uniform: boolean;
}

export interface MixRow extends MixConfig {
  /** Batch-1 median on this machine. */
  latencyMs: number;
  top1: number;
  /** recall@k against the XL queries' neighbours (k is the run's). */
  recall: number;
  /** This config minus each uniform granularity (by name), paired over the same queries. */
  paired: Record<string, { top1: PairedDiff; recall: PairedDiff }>;
}

/** The mean of per-query differences a - b and its standard error (sd / sqrt(n)). */
export interface PairedDiff {
  diff: number;
  se: number;
}

export function pairedDiff(a: ArrayLike<number>, b: ArrayLike<number>): PairedDiff {
  const n = a.length;
  if (n !== b.length) throw new Error(`paired outcomes of ${n} and ${b.length} queries`);
  if (n < 2) return { diff: n ? a[0] - b[0] : 0, se: 0 };
  let mean = 0;
  for (let i = 0; i < n; i++) mean += a[i] - b[i];
  mean /= n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (a[i] - b[i] - mean) ** 2;
  return { diff: mean, se: Math.sqrt(ss / (n - 1) / n) };
}

/**
 * A front point is worse than a uniform granularity only when the deficit is beyond measurement
 * noise. One point: diff + z * se < 0 with z the two-sided 95% quantile (1.96). The check tests every
 * mix on the front, though, and with 15 of them at 95% each about one would fail by chance even if
 * none were worse; so z controls the family-wise error at FAMILY_ALPHA (Bonferroni over the mixes
 * compared: 2.94 for 15). On 5k validation images two submodels of one model disagree on a few
 * percent of them, so top-1 differences of ~0.3 pt are one or two standard errors.
 */
export const FAMILY_ALPHA = 0.05;
export const familyZ = (comparisons: number, alpha = FAMILY_ALPHA) => quantileNormal(1 - alpha / (2 * Math.max(1, comparisons)));
const worseBeyond = (z: number) => (d: PairedDiff) => d.diff + z * d.se < 0;

const toConfig = (c: ModelConfig, ffnDims: number[], uniform: boolean): MixConfig => ({
  name: submodelName(c, ffnDims),
  ffnDims,
  mflops: mflops(c, ffnDims),
  uniform,
});

/** The least-slope candidates of the header, cheapest first. */
export function mixnmatchConfigs(c: ModelConfig): MixConfig[] {
  const uniform = GRANULARITY_NAMES.map((g) => granularityDims(c, g));
  const mixes: number[][] = [];
  for (let g = 0; g + 1 < uniform.length; g++)
    for (let j = 1; j < c.depth; j++) mixes.push(uniform[g].map((w, layer) => (layer < j ? w : uniform[g + 1][layer])));
  return [...uniform.map((d) => toConfig(c, d, true)), ...mixes.map((d) => toConfig(c, d, false))].sort((a, b) => a.mflops - b.mflops);
}

/**
 * Keeps `n` configs spread over MFLOPs: the uniform ones always, then repeatedly the config farthest
 * in MFLOPs from every kept one (ties: the cheaper), which fills the widest gaps first. Cheapest first.
 */
export function spreadByMflops(configs: readonly MixConfig[], n: number): MixConfig[] {
  const kept = configs.filter((x) => x.uniform);
  if (n < kept.length) throw new Error(`max configs ${n}: must be at least ${kept.length}, the uniform granularities are always kept`);
  const rest = configs.filter((x) => !x.uniform);
  const gap = (x: MixConfig) => Math.min(...kept.map((k) => Math.abs(k.mflops - x.mflops)));
  while (kept.length < n && rest.length > 0) {
    let best = 0;
    for (let i = 1; i < rest.length; i++)
      if (gap(rest[i]) > gap(rest[best]) || (gap(rest[i]) === gap(rest[best]) && rest[i].mflops < rest[best].mflops)) best = i;
    kept.push(...rest.splice(best, 1));
  }
  return kept.sort((a, b) => a.mflops - b.mflops);
}

export interface Scored {
  mflops: number;
  top1: number;
  recall: number;
}

/** q dominates p: no costlier, no worse on either accuracy, strictly better on one of the three. */
export const dominates = (q: Scored, p: Scored): boolean =>
  q.mflops <= p.mflops && q.top1 >= p.top1 && q.recall >= p.recall && (q.mflops < p.mflops || q.top1 > p.top1 || q.recall > p.recall);

/** For each point, whether no other dominates it (O(n^2): a menu has tens of candidates). */
export const paretoFront = (points: readonly Scored[]): boolean[] => points.map((p) => !points.some((q) => dominates(q, p)));

/** The must-show: at least this many front points strictly between S and XL in MFLOPs. */
export const MIN_BETWEEN = 8;

export interface FrontPoint {
  name: string;
  mflops: number;
  /** The uniform granularity nearest in MFLOPs (a tie: the costlier) and the paired differences to it. */
  nearestUniform: string;
  vsNearest: { top1: PairedDiff; recall: PairedDiff };
  /**
   * Top-1 (the paper's accuracy) not worse beyond noise. Recall is not compared here: it rises with
   * cost by construction (XL's own lists are the reference), so a point just cheaper than its
   * nearest uniform granularity always has less of it; vsCheaper compares both.
   */
  atLeastAsGood: boolean;
  /** The costliest uniform granularity no costlier than the point. */
  cheaperUniform: string;
  vsCheaper: { top1: PairedDiff; recall: PairedDiff };
  /** Neither top-1 nor recall worse than it beyond noise: paying more never buys less. */
  atLeastAsGoodAsCheaper: boolean;
}

export interface FrontCheck {
  minBetween: number;
  /** Mixes on the front (the comparisons), the family-wise alpha and the z it gives. */
  comparisons: number;
  alpha: number;
  noiseZ: number;
  /** Front points with S's MFLOPs < mflops < XL's. */
  betweenSAndXl: number;
  points: FrontPoint[];
  noneWorse: boolean;
  noneWorseThanCheaper: boolean;
  pass: boolean;
}

/**
 * Checks the front against the uniform granularities (the must-show: at least MIN_BETWEEN points
 * between S and XL, none worse than the uniform granularity of the nearest cost), with paired
 * differences so that noise is not called a loss (familyZ).
 */
export function checkFront(rows: readonly MixRow[], onFront: readonly boolean[]): FrontCheck {
  const uniform = rows.filter((r) => r.uniform).sort((a, b) => a.mflops - b.mflops);
  const [s, xl] = [uniform[0], uniform[uniform.length - 1]];
  const front = rows.filter((_, i) => onFront[i]);
  const comparisons = front.filter((p) => !p.uniform).length;
  const noiseZ = familyZ(comparisons);
  const worseBeyondNoise = worseBeyond(noiseZ);
  const points = front.map((p): FrontPoint => {
    const near = uniform.reduce((best, u) => (Math.abs(u.mflops - p.mflops) <= Math.abs(best.mflops - p.mflops) ? u : best));
    const cheaper = uniform.filter((u) => u.mflops <= p.mflops).pop() ?? s;
    const [vsNearest, vsCheaper] = [p.paired[near.name], p.paired[cheaper.name]];
    if (!vsNearest || !vsCheaper) throw new Error(`${p.name}: no paired comparison with ${near.name} / ${cheaper.name}`);
    return {
      name: p.name,
      mflops: p.mflops,
      nearestUniform: near.name,
      vsNearest,
      atLeastAsGood: !worseBeyondNoise(vsNearest.top1),
      cheaperUniform: cheaper.name,
      vsCheaper,
      atLeastAsGoodAsCheaper: !worseBeyondNoise(vsCheaper.top1) && !worseBeyondNoise(vsCheaper.recall),
    };
  });
  const betweenSAndXl = front.filter((p) => p.mflops > s.mflops && p.mflops < xl.mflops).length;
  const noneWorse = points.every((p) => p.atLeastAsGood);
  const noneWorseThanCheaper = points.every((p) => p.atLeastAsGoodAsCheaper);
  return {
    minBetween: MIN_BETWEEN,
    comparisons,
    alpha: FAMILY_ALPHA,
    noiseZ,
    betweenSAndXl,
    points,
    noneWorse,
    noneWorseThanCheaper,
    pass: noneWorse && betweenSAndXl >= MIN_BETWEEN,
  };
}

/**
 * The menu stored with the model: the front, plus the uniform granularities it dropped, so the
 * service has measured figures for s/m/l/xl too (ServiceMenu compares measured accuracy only when
 * every entry has it). recallAt10 is stored only when k is 10. Cheapest first.
 */
export function menuEntries(rows: readonly MixRow[], onFront: readonly boolean[], k: number): MenuEntry[] {
  return rows
    .filter((r, i) => onFront[i] || r.uniform)
    .sort((a, b) => a.mflops - b.mflops)
    .map((r) => toMenuEntry(r, k));
}

export const toMenuEntry = (r: MixRow, k: number): MenuEntry => ({
  name: r.name,
  ffnDims: r.ffnDims,
  mflops: r.mflops,
  latencyMs: r.latencyMs,
  top1: r.top1,
  ...(k === 10 && { recallAt10: r.recall }),
});

/**
 * Drops each query's own row from its neighbour lists (when the corpus is the queries' own set,
 * row i of the corpus is query i). ids: [Q, k + 1] -> [Q, k]; a list without the query loses its last.
 */
export function withoutSelf(ids: Int32Array, Q: number, k: number): Int32Array {
  const out = new Int32Array(Q * k);
  for (let i = 0; i < Q; i++) {
    const row = Array.from(ids.subarray(i * (k + 1), (i + 1) * (k + 1))).filter((id) => id !== i);
    out.set(row.slice(0, k), i * k);
  }
  return out;
}

export interface MixnmatchOptions {
  k?: number;
  batchSize?: number;
  /** Queries: the first N images of the data only. */
  limit?: number;
  latencyRuns?: number;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface MixnmatchResult {
  k: number;
  /** Queries evaluated (decoded images of the data). */
  count: number;
  /** Corpus rows (the queries themselves when no corpus was given). */
  corpusCount: number;
  skipped: Skipped[];
  corpusSkipped: Skipped[];
  /** In the order of `configs`. */
  rows: MixRow[];
}

/**
 * Measures every config on the labelled `data`. The corpus is `corpus` embedded by XL, or, when
 * absent, `data` itself embedded by XL; then every query would find itself, so k + 1 neighbours are
 * searched and the query's own row is dropped, for XL's lists and every config's alike.
 */
export async function evaluateMixnmatch(
  encoder: Encoder,
  data: Dataset,
  corpus: Dataset | undefined,
  configs: readonly MixConfig[],
  opts: MixnmatchOptions = {},
): Promise<MixnmatchResult> {
  const c = encoder.config;
  const k = opts.k ?? 10;
  const K = c.numClasses;
  if (K === 0) throw new Error(`model "${c.name}" has no classification head (numClasses 0): top-1 needs one`);
  const xlKey = granularityDims(c, 'xl').join();
  const xlIndex = configs.findIndex((x) => x.ffnDims.join() === xlKey);
  if (xlIndex < 0) throw new Error('the configs must include xl: recall is measured against its neighbours');
  const progress = (phase: string) => (done: number, total: number) => opts.onProgress?.(phase, done, total);

  const q = await embedDataset(
    encoder,
    data,
    configs.map((x) => x.ffnDims),
    { batchSize: opts.batchSize, limit: opts.limit, logits: true, onBatch: progress('embed queries') },
  );
  const Q = q.count,
    D = q.dim;
  const cs =
    corpus &&
    (await embedDataset(encoder, corpus, [configs[xlIndex].ffnDims], { batchSize: opts.batchSize, onBatch: progress('embed corpus') }));
  const corpusEmb = cs ? cs.embeddings[0] : q.embeddings[xlIndex]; // [N, D]
  const neighbours = async (queries: Float32Array) => {
    const r = await exactKnn(queries, corpusEmb, D, corpus ? k : k + 1);
    return corpus ? r.ids : withoutSelf(r.ids, Q, k); // [Q, k]
  };
  const ref = await neighbours(q.embeddings[xlIndex]);

  // Per-query outcomes of every config [Q]: 1/0 top-1 hits and recall terms, for paired differences.
  const hits: Float64Array[] = [];
  const recalls: Float64Array[] = [];
  for (let j = 0; j < configs.length; j++) {
    const ids = j === xlIndex ? ref : await neighbours(q.embeddings[j]);
    const hit = new Float64Array(Q);
    for (let r = 0; r < Q; r++) hit[r] = topK(q.logits![j], K, r, 1)[0] === q.labels[r] ? 1 : 0;
    hits.push(hit);
    recalls.push(recallPerQuery({ k, ids }, { k, ids: ref }, k));
    progress('neighbours')(j + 1, configs.length);
  }
  const mean = (x: Float64Array) => (x.length ? x.reduce((a, b) => a + b, 0) / x.length : 0);
  const uniform = configs.flatMap((x, j) => (x.uniform ? [{ name: x.name, j }] : []));
  const rows = configs.map((x, j) => ({
    ...x,
    top1: mean(hits[j]),
    recall: mean(recalls[j]),
    paired: Object.fromEntries(
      uniform.map((u) => [u.name, { top1: pairedDiff(hits[j], hits[u.j]), recall: pairedDiff(recalls[j], recalls[u.j]) }]),
    ),
  }));
  const runs = opts.latencyRuns ?? 20;
  const latency = await batch1Latency(
    encoder,
    configs.map((x) => x.ffnDims),
    runs,
    (done) => progress('latency')(done, runs),
  );
  return {
    k,
    count: Q,
    corpusCount: corpusEmb.length / D,
    skipped: q.skipped,
    corpusSkipped: cs ? cs.skipped : [],
    rows: rows.map((r, j) => ({ ...r, latencyMs: latency[j] })),
  };
}
