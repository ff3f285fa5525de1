// `matvit calibrate`: the thresholds of the query cascade (serve/cascade.ts), chosen on held-out
// labelled queries and stored with the index, where `matvit serve` reads them.
//
// Every query is embedded by each candidate first stage (the menu entries cheaper than the corpus
// submodel) and by the corpus submodel itself ("always-XL", the reference), and searched in the
// index exactly as the service searches (queries.ts). A cascade first-stage f, rule r
// answers a query with f's neighbours unless r fires on them, then with the reference's; its
// cost is f's MFLOPs plus the reference's for every escalated query. Among all (f, r) whose 1-NN
// accuracy and precision@10 by label stay within `tolerance` of the reference's, the cheapest
// wins; without labels, the constraint is recall@10 against the reference's neighbours >=
// minRecall. The rules searched: margin < t, agreement < a, and both, over every threshold that
// changes the outcome on the held-out set (a prefix-sum sweep, so the search is exhaustive).
import type { Dataset } from '../data/dataset.ts';
import type { Encoder } from '../engine/encoder.ts';
import type { Corpus } from '../index/corpus.ts';
import { recallPerQuery } from '../util/recall.ts';
import { CASCADE_META_KEY, Cascade, type EscalationRule, type HeldOut, confidence, shouldEscalate } from './cascade.ts';
import { ServiceMenu } from './menu.ts';
import { type Embedded, type SubmodelRun, embedQueries } from './queries.ts';

export interface CalibrateOptions {
  /** Allowed drop of 1-NN accuracy and precision@10 against always-XL (fraction: 0.005 = 0.5 pt). */
  tolerance?: number;
  /** Without labels: the least recall@10 against the XL queries' neighbours. */
  minRecall?: number;
  /** Neighbours the confidence is computed on (and precision/recall@k). */
  k?: number;
  batchSize?: number;
  /** First-stage candidates by menu name; default every entry cheaper than the corpus submodel. */
  candidates?: string[];
  onProgress?: (done: number, total: number) => void;
}

export interface RowMetrics extends HeldOut {
  name: string;
}

export interface CalibrateResult {
  basis: Cascade['basis'];
  /** null when no cascade is cheaper than always-XL within the tolerance. */
  cascade: Cascade | null;
  /** Each submodel alone, and the reference. */
  submodels: RowMetrics[];
  chosen: RowMetrics;
  reference: RowMetrics;
  inIndex: number;
  skipped: number;
}

/** Per-query figures of one run: 1-NN correct, precision@k by label, recall@k against `ref`. */
function perQuery(run: SubmodelRun, ref: SubmodelRun, queryLabels: Int32Array, k: number) {
  const N = queryLabels.length;
  const correct = new Float64Array(N),
    precision = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const q = queryLabels[i];
    let same = 0,
      n = 0;
    for (let j = 0; j < k; j++) {
      if (run.ids[i * k + j] < 0) continue;
      n++;
      if (run.labels[i * k + j] === q) same++;
    }
    correct[i] = n > 0 && run.labels[i * k] === q ? 1 : 0;
    precision[i] = n > 0 ? same / n : 0;
  }
  return { correct, precision, recall: recallPerQuery({ k, ids: run.ids }, { k, ids: ref.ids }, k) };
}

/** The confidence of each query's first-stage neighbours, by the service's own function. */
function confidences(run: SubmodelRun, N: number, k: number) {
  return Array.from({ length: N }, (_, i) => {
    const hits = [];
    for (let j = 0; j < k && run.ids[i * k + j] >= 0; j++) hits.push({ score: run.scores[i * k + j], label: run.labels[i * k + j] });
    return confidence(hits, k);
  });
}

/** Figures of a cascade first -> ref with `rule`, deciding each query exactly as the service does. */
export function evaluateCascade(
  e: Embedded,
  first: SubmodelRun,
  ref: SubmodelRun,
  rule: EscalationRule | null,
  labelled: boolean,
  xlMflops: number,
): HeldOut {
  const N = e.queryLabels.length;
  const f = perQuery(first, ref, e.queryLabels, e.k);
  const r = perQuery(ref, ref, e.queryLabels, e.k);
  const conf = confidences(first, N, e.k);
  let acc = 0,
    p = 0,
    rec = 0,
    esc = 0;
  for (let i = 0; i < N; i++) {
    const up = first === ref ? false : rule === null ? false : shouldEscalate(rule, conf[i]);
    const src = up ? r : f;
    if (up) esc++;
    acc += src.correct[i];
    p += src.precision[i];
    rec += src.recall[i];
  }
  const cost = first === ref ? ref.entry.mflops : first.entry.mflops + (N ? esc / N : 0) * ref.entry.mflops;
  return {
    queries: N,
    ...(labelled && { accuracy: N ? acc / N : 0, precisionAt10: N ? p / N : 0 }),
    recallAt10: N ? rec / N : 0,
    mflopsFraction: cost / xlMflops,
    escalationRate: N ? esc / N : 0,
  };
}

/** Distinct thresholds of values v: escalating `v < t` for each t separates a different set. */
function cuts(sorted: number[]): number[] {
  const out: number[] = [];
  for (let j = 1; j < sorted.length; j++) if (sorted[j] > sorted[j - 1]) out.push((sorted[j] + sorted[j - 1]) / 2);
  return out;
}

interface Candidate {
  first: SubmodelRun;
  rule: EscalationRule | null;
  cost: number;
  accuracy: number;
}

/** The cheapest rule for first stage `first` meeting the constraint (null rule: first alone). */
function bestRule(
  e: Embedded,
  first: SubmodelRun,
  ref: SubmodelRun,
  labelled: boolean,
  need: { accuracy: number; precision: number; recall: number },
): Candidate | null {
  const N = e.queryLabels.length;
  const f = perQuery(first, ref, e.queryLabels, e.k);
  const r = perQuery(ref, ref, e.queryLabels, e.k);
  const conf = confidences(first, N, e.k);
  const base = {
    a: f.correct.reduce((s, x) => s + x, 0),
    p: f.precision.reduce((s, x) => s + x, 0),
    r: f.recall.reduce((s, x) => s + x, 0),
  };
  const ok = (a: number, p: number, rc: number) =>
    labelled ? a / N >= need.accuracy - 1e-12 && p / N >= need.precision - 1e-12 : rc / N >= need.recall - 1e-12;
  let best: Candidate | null = null;
  const consider = (rule: EscalationRule | null, escalated: number, a: number, p: number, rc: number) => {
    if (!ok(a, p, rc)) return;
    const cost = first.entry.mflops + (escalated / N) * ref.entry.mflops;
    if (!best || cost < best.cost - 1e-9 || (Math.abs(cost - best.cost) <= 1e-9 && a / N > best.accuracy))
      best = { first, rule, cost, accuracy: a / N };
  };
  // Agreement thresholds (labels only), "none" first; then for each, margin thresholds over the rest.
  const agreements = labelled ? [undefined, ...cuts([...new Set(conf.map((c) => c.agreement))].sort((x, y) => x - y))] : [undefined];
  for (const at of agreements) {
    let a = base.a,
      p = base.p,
      rc = base.r,
      escalated = 0;
    const rest: number[] = [];
    for (let i = 0; i < N; i++) {
      if (at !== undefined && conf[i].agreement < at) {
        a += r.correct[i] - f.correct[i];
        p += r.precision[i] - f.precision[i];
        rc += r.recall[i] - f.recall[i];
        escalated++;
      } else rest.push(i);
    }
    consider(at === undefined ? null : { agreement: at }, escalated, a, p, rc);
    rest.sort((x, y) => conf[x].margin - conf[y].margin);
    // Escalate the j least-confident of the rest, j = 1.., at every margin boundary.
    for (let j = 0; j < rest.length - 1; j++) {
      const i = rest[j];
      a += r.correct[i] - f.correct[i];
      p += r.precision[i] - f.precision[i];
      rc += r.recall[i] - f.recall[i];
      escalated++;
      const m0 = conf[i].margin,
        m1 = conf[rest[j + 1]].margin;
      if (m1 > m0) consider({ ...(at !== undefined && { agreement: at }), margin: (m0 + m1) / 2 }, escalated, a, p, rc);
    }
  }
  return best;
}

/**
 * Chooses the cascade on embedded held-out queries (see the header). `ref` is the corpus
 * submodel's run; candidates are the other runs.
 */
export function chooseCascade(
  e: Embedded,
  menu: ServiceMenu,
  opts: { tolerance: number; minRecall: number; labelled: boolean },
): { best: Candidate | null; reference: HeldOut; submodels: RowMetrics[] } {
  const ref = e.runs.find((r) => r.entry === menu.corpus)!;
  const xl = menu.xlMflops;
  const reference = evaluateCascade(e, ref, ref, null, opts.labelled, xl);
  const need = {
    accuracy: (reference.accuracy ?? 0) - opts.tolerance,
    precision: (reference.precisionAt10 ?? 0) - opts.tolerance,
    recall: opts.minRecall,
  };
  let best: Candidate | null = null;
  for (const run of e.runs) {
    if (run === ref || run.entry.mflops >= ref.entry.mflops) continue;
    const c = bestRule(e, run, ref, opts.labelled, need);
    if (c && c.cost < ref.entry.mflops && (!best || c.cost < best.cost)) best = c;
  }
  const submodels = e.runs.map((r) => ({ name: r.entry.name, ...evaluateCascade(e, r, ref, null, opts.labelled, xl) }));
  return { best, reference, submodels };
}

/**
 * Embeds the held-out queries, chooses the cascade, stores it with the index (setMeta; null when
 * always-XL is the cheapest that meets the constraint), and returns every figure.
 */
export async function calibrate(corpus: Corpus, encoder: Encoder, ds: Dataset, opts: CalibrateOptions = {}): Promise<CalibrateResult> {
  const k = opts.k ?? 10;
  const tolerance = opts.tolerance ?? 0.005;
  const minRecall = opts.minRecall ?? 0.95;
  const info = corpus.index.info();
  const manifest = info.manifest;
  const menu = new ServiceMenu(corpus.checkpoint.meta.model, corpus.checkpoint.meta.menu, manifest.ffnDims);
  const firsts = opts.candidates
    ? opts.candidates.map((n) => {
        const e = menu.byName(n);
        if (!e) throw new Error(`candidate "${n}" is not in the menu; accepted: ${menu.entries.map((x) => x.name).join(', ')}`);
        return e;
      })
    : menu.entries.filter((e) => e.mflops < menu.corpus.mflops);
  const entries = [...new Set([...firsts, menu.corpus])];
  const e = await embedQueries(corpus, encoder, ds, entries, { k, batchSize: opts.batchSize, onProgress: opts.onProgress });
  if (e.queryLabels.length === 0) throw new Error(`${ds.spec}: no query could be decoded`);
  const corpusLabelled = Object.keys(info.labels).some((l) => l !== '-1');
  const labelled = corpusLabelled && e.queryLabels.every((l) => l >= 0);
  const basis = labelled ? 'labels' : 'xl-neighbours';
  const { best, reference, submodels } = chooseCascade(e, menu, { tolerance, minRecall, labelled });
  const ref = e.runs.find((r) => r.entry === menu.corpus)!;
  let cascade: Cascade | null = null;
  let chosen: RowMetrics = { name: `${menu.corpus.name} (always)`, ...reference };
  if (best) {
    // A first stage that meets the constraint alone gets the rule margin < 0, which never fires
    // (the top-1 score is never below the k-th): the cascade format always has a rule per stage.
    const rule = best.rule ?? { margin: 0 };
    // Re-evaluated with the service's decision function, not the sweep's prefix sums.
    const heldOut = evaluateCascade(e, best.first, ref, rule, labelled, menu.xlMflops);
    cascade = Cascade.parse({
      version: 1,
      k,
      stages: [best.first.entry, menu.corpus].map(({ name, ffnDims }) => ({ name, ffnDims })),
      rules: [rule],
      basis,
      tolerance,
      ...(basis === 'xl-neighbours' && { minRecall }),
      queries: ds.spec,
      heldOut,
      reference,
      fingerprint: manifest.fingerprint,
      calibratedAt: new Date().toISOString(),
    });
    chosen = { name: `${best.first.entry.name} -> ${menu.corpus.name}`, ...heldOut };
  }
  corpus.index.setMeta(CASCADE_META_KEY, cascade);
  return {
    basis,
    cascade,
    submodels,
    chosen,
    reference: { name: `${menu.corpus.name} (always)`, ...reference },
    inIndex: e.inIndex,
    skipped: e.skipped,
  };
}

/** The stored cascade's figures on another query set (e.g. the test split after calibrating on held-out train). */
export async function evaluateStored(
  corpus: Corpus,
  encoder: Encoder,
  ds: Dataset,
  opts: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<{ cascade: RowMetrics; reference: RowMetrics; first: RowMetrics }> {
  const raw = corpus.index.getMeta(CASCADE_META_KEY);
  if (raw === undefined || raw === null)
    throw new Error(`the index has no stored cascade (${CASCADE_META_KEY}); run matvit calibrate first`);
  const c = Cascade.parse(raw);
  const manifest = corpus.index.info().manifest;
  const menu = new ServiceMenu(corpus.checkpoint.meta.model, corpus.checkpoint.meta.menu, manifest.ffnDims);
  const first = menu.forFfnDims(c.stages[0].ffnDims);
  const e = await embedQueries(corpus, encoder, ds, [first, menu.corpus], { k: c.k, ...opts });
  const labelled = c.basis === 'labels' && e.queryLabels.every((l) => l >= 0);
  const [f, ref] = e.runs;
  return {
    cascade: { name: `${first.name} -> ${menu.corpus.name}`, ...evaluateCascade(e, f, ref, c.rules[0], labelled, menu.xlMflops) },
    reference: { name: `${menu.corpus.name} (always)`, ...evaluateCascade(e, ref, ref, null, labelled, menu.xlMflops) },
    first: { name: `${first.name} (always)`, ...evaluateCascade(e, f, ref, null, labelled, menu.xlMflops) },
  };
}
