// `matvit index verify` on the LanceDB store (lance-store.ts): what opening found, every live
// vector finite and unit length, ids unique and no content live twice (what merge-insert on
// live_sha256 promises, after any crash), the manifest's counts agreeing with the rows as of its
// seq, and recall@10 of the store's search (ANN once built) against its exact search.
import { neighbours, recallAt } from '../util/recall.ts';
import { seededSample } from '../util/sample.ts';
import type { LanceIndex } from './lance-store.ts';

const some = (xs: readonly (number | string)[]) => xs.slice(0, 5).join(', ') + (xs.length > 5 ? ', ...' : '');

export function verifyLance(index: LanceIndex, opts: { sampleSize?: number; seed?: string; minRecall?: number } = {}) {
  const { sampleSize = 200, seed = 'verify', minRecall } = opts;
  const problems = [...index.opened.damage];
  const notes = [...index.opened.warnings];
  const vectors = index.checkVectors();
  if (vectors.bad.length) problems.push(`${vectors.bad.length} live vectors are not finite unit vectors (ids ${some(vectors.bad)})`);
  const c = index.scan(['id', 'sha256', 'seq', 'deleted_seq']);
  const ids = c.id as number[],
    sha = c.sha256 as string[],
    seq = c.seq as number[],
    del = c.deleted_seq as (number | null)[];
  const seenIds = new Set<number>(),
    liveSha = new Set<string>();
  const dupIds: number[] = [],
    dupSha: string[] = [];
  for (let i = 0; i < c.__rows; i++) {
    if (seenIds.has(ids[i])) dupIds.push(ids[i]);
    seenIds.add(ids[i]);
    if (del[i] !== null) continue;
    if (liveSha.has(sha[i])) dupSha.push(sha[i]);
    liveSha.add(sha[i]);
  }
  if (dupIds.length) problems.push(`${dupIds.length} item ids appear twice (${some(dupIds)})`);
  if (dupSha.length) problems.push(`${dupSha.length} contents are live twice (sha256 ${some(dupSha)})`);
  const info = index.info();
  const m = info.manifest.counts;
  const at = (s: number) => {
    let live = 0,
      deleted = 0;
    for (let i = 0; i < c.__rows; i++)
      if (seq[i] <= s) {
        if (del[i] !== null && del[i]! <= s) deleted++;
        else live++;
      }
    return { live, deleted };
  };
  if (m.seq > info.storeSeq) problems.push(`manifest counts are as of seq ${m.seq}, past the store's ${info.storeSeq}`);
  else {
    const then = at(m.seq);
    if (then.live !== m.live || then.deleted !== m.deleted)
      problems.push(
        `manifest counts at seq ${m.seq} are live ${m.live}, deleted ${m.deleted}; the rows say live ${then.live}, deleted ${then.deleted}`,
      );
  }
  const ann = info.store.ann;
  notes.push(
    ann
      ? `ANN index ${ann.type}: ${ann.indexedRows} rows indexed, ${ann.unindexedRows} not yet (searched exactly until \`index compact\`)`
      : `no ANN index (fewer live items than annMinRows): every search is exact`,
  );
  const liveIds = ids.filter((_, i) => del[i] === null);
  const sample = seededSample(liveIds, sampleSize, seed);
  const k = Math.min(10, liveIds.length);
  const queries = sample.map((id) => index.vectorOf(id)!);
  let t = performance.now();
  const approx = queries.map((q) => index.search(q, k).map((h) => h.id));
  const annMs = performance.now() - t;
  t = performance.now();
  const truth = queries.map((q) => index.searchExact(q, k).map((h) => h.id));
  const exactMs = performance.now() - t;
  const recallAt10 = sample.length === 0 || k === 0 ? 1 : recallAt(neighbours(approx, k), neighbours(truth, k));
  if (minRecall !== undefined && recallAt10 < minRecall)
    problems.push(`recall@10 ${recallAt10.toFixed(4)} is below ${minRecall} at nprobes ${info.graph.ef}`);
  const uniq = [...new Set(problems)];
  return {
    ok: uniq.length === 0,
    problems: uniq,
    notes,
    integrity: null,
    vectors,
    counts: { manifest: m, store: info.counts, graphPoints: info.graph.points, graphLive: liveIds.length },
    recall: {
      k,
      ef: info.graph.ef,
      queries: sample.length,
      recallAt10,
      graphQps: sample.length === 0 ? 0 : Math.round(sample.length / (annMs / 1000)),
      exactMs: Math.round(exactMs),
    },
  };
}
