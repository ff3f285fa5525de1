// `matvit index verify`: manifest, store and graph agree, and the graph's recall@10 against exact search.
import { seededSample } from '../util/sample.ts';
import { neighbours, recallAt } from '../util/recall.ts';
import type { Manifest } from './manifest.ts';
import type { VectorIndex } from './vector-index.ts';

export interface VerifyOptions {
  /** Stored vectors used as queries for recall@10 (seeded, so reruns use the same queries). */
  sampleSize?: number;
  seed?: string;
  /** Also fail when recall@10 is below this. */
  minRecall?: number;
}

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  counts: { manifest: Manifest['counts']; store: { live: number; deleted: number }; graphPoints: number; graphLive: number };
  recall: { k: number; ef: number; queries: number; recallAt10: number; graphQps: number; exactMs: number };
}

const some = (ids: number[]) => ids.slice(0, 5).join(', ') + (ids.length > 5 ? ', ...' : '');

/** Checks an open index (see the file header). */
export function verifyIndex(index: VectorIndex, opts: VerifyOptions = {}): VerifyReport {
  const { sampleSize = 200, seed = 'verify', minRecall } = opts;
  const { store, graph, live, appliedSeq, manifest: m, exact } = index.internals();
  const problems: string[] = [];
  const counts = store.counts(appliedSeq);
  // Manifest: its counts are as of its own seq; compare with the store at that seq.
  if (m.counts.seq > appliedSeq) problems.push(`manifest counts are as of seq ${m.counts.seq}, past the store's ${appliedSeq}`);
  else {
    const then = store.counts(m.counts.seq);
    if (then.live !== m.counts.live || then.deleted !== m.counts.deleted)
      problems.push(`manifest counts at seq ${m.counts.seq} are live ${m.counts.live}, deleted ${m.counts.deleted}; the store says live ${then.live}, deleted ${then.deleted}`);
  }
  if (live.size !== counts.live) problems.push(`${live.size} live ids in memory, ${counts.live} in the store`);
  // Graph: every live item present and not deleted; anything else in it marked deleted.
  const liveIds = live.ids();
  let graphLive = 0;
  const missing: number[] = [], extra: number[] = [];
  for (const id of graph.ids()) {
    const present = graph.point(id) !== undefined;
    if (present) graphLive++;
    if (present && !live.has(id)) extra.push(id);
  }
  for (const id of liveIds) if (graph.point(id) === undefined) missing.push(id);
  if (missing.length) problems.push(`${missing.length} live items missing from the graph (ids ${some(missing)})`);
  if (extra.length) problems.push(`${extra.length} graph points not live in the store (ids ${some(extra)})`);
  // Recall@10 on a seeded sample of stored vectors, and the graph's copy of them.
  const sample = seededSample(liveIds, sampleSize, seed);
  const n = sample.length;
  const flat = store.vectorsOf(sample);
  const dim = m.dim;
  const queries = sample.map((_, i) => flat.slice(i * dim, (i + 1) * dim));
  const drift = sample.filter((id, i) => {
    const p = graph.point(id);
    return p !== undefined && p.some((x, j) => Math.abs(x - queries[i][j]) > 1e-5);
  });
  if (drift.length) problems.push(`${drift.length} graph points differ from their stored vectors (ids ${some(drift)})`);
  const k = Math.min(10, live.size);
  let t = performance.now();
  const approx = queries.map((q) => index.search(q, k).map((h) => h.id));
  const graphMs = performance.now() - t;
  t = performance.now();
  const truth = exact(queries, k).map((top) => top.map((s) => s.id));
  const exactMs = performance.now() - t;
  const recallAt10 = n === 0 ? 1 : recallAt(neighbours(approx, k), neighbours(truth, k));
  if (minRecall !== undefined && recallAt10 < minRecall) problems.push(`recall@10 ${recallAt10.toFixed(4)} is below ${minRecall} at ef ${m.ef}`);
  return {
    ok: problems.length === 0,
    problems,
    counts: { manifest: m.counts, store: counts, graphPoints: graph.count, graphLive },
    recall: { k, ef: m.ef, queries: n, recallAt10, graphQps: n === 0 ? 0 : Math.round(n / (graphMs / 1000)), exactMs: Math.round(exactMs) },
  };
}
