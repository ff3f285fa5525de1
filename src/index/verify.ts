// `matvit index verify`: every check an index can be put through. What opening found (open.ts,
// vector-index.ts: a lost write, a bad graph snapshot), SQLite's own structure check, every stored
// vector against its checksum, manifest, store and graph agreeing, and the graph's recall@10
// against exact search. Any of it failing is a problem (exit code 1), named with the file and what
// to do; notes are what is worth knowing but harms nothing.
import path from 'node:path';
import { seededSample } from '../util/sample.ts';
import { neighbours, recallAt } from '../util/recall.ts';
import { badVectorsMessage } from './errors.ts';
import type { Manifest } from './manifest.ts';
import { STORE_FILE, integrityMessage } from './open.ts';
import { Store } from './store.ts';
import { LanceIndex, holdsLance } from './lance-store.ts';
import { verifyLance } from './lance-verify.ts';
import type { IndexStore } from './store-api.ts';
import { VectorIndex } from './vector-index.ts';

export interface VerifyOptions {
  /** Stored vectors used as queries for recall@10 (seeded, so reruns use the same queries). */
  sampleSize?: number;
  seed?: string;
  /** Also fail when recall@10 is below this. */
  minRecall?: number;
  /** SQLite's integrity_check (every index checked against its table) instead of quick_check. */
  full?: boolean;
}

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  notes: string[];
  integrity: { check: 'quick_check' | 'integrity_check'; faults: string[] } | null;
  vectors: { checked: number; bad: number[]; unchecked: number } | null;
  /** Unset when the index could not be opened. */
  counts?: { manifest: Manifest['counts']; store: { live: number; deleted: number }; graphPoints: number; graphLive: number };
  recall?: { k: number; ef: number; queries: number; recallAt10: number; graphQps: number; exactMs: number };
}

const some = (ids: number[]) => ids.slice(0, 5).join(', ') + (ids.length > 5 ? ', ...' : '');

/** Opens `dir` read-only and checks it; an index that cannot be opened is a report with that problem, not a throw. */
export function verifyDir(dir: string, opts: VerifyOptions = {}): VerifyReport {
  if (holdsLance(dir)) {
    let lance: LanceIndex;
    try {
      lance = LanceIndex.open(dir, { mode: 'read' });
    } catch (e) {
      return { ok: false, problems: [(e as Error).message], notes: [], integrity: null, vectors: null };
    }
    try {
      return verifyLance(lance, opts);
    } finally {
      lance.close();
    }
  }
  let index: VectorIndex;
  try {
    index = VectorIndex.open(dir, { mode: 'read', quickCheck: false }); // verify runs the check it is asked for
  } catch (e) {
    const report: VerifyReport = { ok: false, problems: [(e as Error).message], notes: [], integrity: null, vectors: null };
    // What SQLite says of the file, when it opens at all, tells what the open could not.
    let store: Store | undefined;
    try {
      store = Store.open(path.join(dir, STORE_FILE), { readOnly: true });
      report.integrity = storeChecks(store, opts, report);
    } catch {
      // the first problem already says why the store cannot be read
    } finally {
      store?.close();
    }
    return report;
  }
  try {
    return verifyIndex(index, opts);
  } finally {
    index.close();
  }
}

/** SQLite's check of the store, and every vector against its checksum; problems and notes go into `r`. */
function storeChecks(store: Store, opts: VerifyOptions, r: VerifyReport): VerifyReport['integrity'] {
  const check = opts.full ? 'integrity_check' : 'quick_check';
  const faults = store.integrityCheck(opts.full);
  if (faults.length) r.problems.push(integrityMessage(store.file, check, faults));
  try {
    const v = store.checkVectors();
    r.vectors = v;
    if (v.bad.length) r.problems.push(badVectorsMessage(store.file, v.bad));
    if (v.unchecked)
      r.notes.push(
        `${v.unchecked} stored vector(s) have no checksum yet (a store of schema 1 opened read-only): they are added when the index is next opened writable`,
      );
  } catch (e) {
    r.problems.push(`the stored vectors of ${store.file} cannot be read: ${(e as Error).message}`);
  }
  return { check, faults };
}

/** Checks an open index (see the file header). */
export function verifyIndex(index: IndexStore, opts: VerifyOptions = {}): VerifyReport {
  if (index instanceof LanceIndex) return verifyLance(index, opts);
  if (!(index instanceof VectorIndex)) throw new Error(`verify: an index of store ${index.kind} it does not know`);
  const r: VerifyReport = {
    ok: false,
    problems: [...index.opened.damage],
    notes: [...index.opened.warnings],
    integrity: null,
    vectors: null,
  };
  const { store } = index.internals();
  r.integrity = storeChecks(store, opts, r);
  try {
    consistency(index, opts, r);
  } catch (e) {
    r.problems.push(`${index.dir}: the check of manifest, store and graph failed: ${(e as Error).message}`);
  }
  r.problems = [...new Set(r.problems)];
  r.ok = r.problems.length === 0;
  return r;
}

/** Manifest, store and graph agree; the graph's copy of sampled vectors; recall@10 against exact search. */
function consistency(index: VectorIndex, opts: VerifyOptions, r: VerifyReport): void {
  const { sampleSize = 200, seed = 'verify', minRecall } = opts;
  const { store, graph, live, appliedSeq, manifest: m, exact } = index.internals();
  const problems = r.problems;
  const counts = store.counts(appliedSeq);
  // Manifest: its counts are as of its own seq; compare with the store at that seq.
  if (m.counts.seq > appliedSeq) problems.push(`manifest counts are as of seq ${m.counts.seq}, past the store's ${appliedSeq}`);
  else {
    const then = store.counts(m.counts.seq);
    if (then.live !== m.counts.live || then.deleted !== m.counts.deleted)
      problems.push(
        `manifest counts at seq ${m.counts.seq} are live ${m.counts.live}, deleted ${m.counts.deleted}; the store says live ${then.live}, deleted ${then.deleted}`,
      );
  }
  if (live.size !== counts.live) problems.push(`${live.size} live ids in memory, ${counts.live} in the store`);
  // Graph: every live item present and not deleted; anything else in it marked deleted.
  const liveIds = live.ids();
  let graphLive = 0;
  const missing: number[] = [],
    extra: number[] = [];
  for (const id of graph.ids()) {
    const present = graph.point(id) !== undefined;
    if (present) graphLive++;
    if (present && !live.has(id)) extra.push(id);
  }
  for (const id of liveIds) if (graph.point(id) === undefined) missing.push(id);
  if (missing.length) problems.push(`${missing.length} live items missing from the graph (ids ${some(missing)})`);
  if (extra.length) problems.push(`${extra.length} graph points not live in the store (ids ${some(extra)})`);
  r.counts = { manifest: m.counts, store: counts, graphPoints: graph.count, graphLive };
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
  if (minRecall !== undefined && recallAt10 < minRecall)
    problems.push(`recall@10 ${recallAt10.toFixed(4)} is below ${minRecall} at ef ${m.ef}`);
  r.recall = {
    k,
    ef: m.ef,
    queries: n,
    recallAt10,
    graphQps: n === 0 ? 0 : Math.round(n / (graphMs / 1000)),
    exactMs: Math.round(exactMs),
  };
}
