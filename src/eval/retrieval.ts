// Elastic retrieval (MatFormer, arXiv 2310.07707, Figure 5): the corpus is embedded once by XL and
// every query by a cheaper submodel of the same weights, into the same metric space. For each query
// submodel: 1-NN accuracy (the paper's figure), recall@k against the XL queries' neighbours and
// mAP@k by label, by exact search (ground truth, engine/knn.ts) and by HNSW (what the service
// does); and the "same-encoder" 1-NN, corpus and queries both embedded by that submodel (a small
// model deployed on its own). Query encoders from another checkpoint are the paper's baselines:
// an independently trained ViT embeds into another space, so its queries miss an XL corpus.
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { type Dataset, type Skipped, sharedItems } from '../data/dataset.ts';
import { createEncoder } from '../engine/encoder.ts';
import { exactKnn } from '../engine/knn.ts';
import { Graph } from '../index/hnsw.ts';
import { IndexParams } from '../index/manifest.ts';
import { openIndex } from '../index/open-store.ts';
import type { Checkpoint } from '../model/checkpoint.ts';
import { type ModelConfig, type Submodel, embeddingDim, granularityDims } from '../model/config.ts';
import { mflops } from '../model/flops.ts';
import { type Neighbours, checkK, recallAt } from '../util/recall.ts';
import { type EmbeddedSet, embedDataset } from './embed.ts';

/** Share of queries whose nearest corpus item has the query's label; an unknown label (-1) never matches. */
export function nnAccuracy(nn: Neighbours, corpusLabels: Int32Array, queryLabels: Int32Array): number {
  const Q = queryLabels.length;
  let correct = 0;
  for (let q = 0; q < Q; q++) {
    const id = nn.ids[q * nn.k];
    if (id >= 0 && queryLabels[q] >= 0 && corpusLabels[id] === queryLabels[q]) correct++;
  }
  return Q ? correct / Q : 0;
}

/**
 * mAP@k by label. A corpus item is relevant to a query when it has the query's label (>= 0). With
 * R relevant items in the corpus, AP@k = (1 / min(k, R)) * sum over ranks i <= k holding a relevant
 * item of precision@i; so a list of only relevant items scores 1 even when R < k. A query with
 * R = 0 (label unknown or absent from the corpus) scores 0. mAP@k is the mean of AP@k over queries.
 */
export function mapAt(nn: Neighbours, corpusLabels: Int32Array, queryLabels: Int32Array, k = nn.k): number {
  checkK(nn, k);
  const perLabel = new Map<number, number>();
  for (const l of corpusLabels) perLabel.set(l, (perLabel.get(l) ?? 0) + 1);
  const Q = queryLabels.length;
  let sum = 0;
  for (let q = 0; q < Q; q++) {
    const label = queryLabels[q];
    const R = label >= 0 ? (perLabel.get(label) ?? 0) : 0;
    if (R === 0) continue;
    let hits = 0,
      ap = 0;
    for (let j = 0; j < k; j++) {
      const id = nn.ids[q * nn.k + j];
      if (id >= 0 && corpusLabels[id] === label) ap += ++hits / (j + 1);
    }
    sum += ap / Math.min(k, R);
  }
  return Q ? sum / Q : 0;
}

export interface Figures {
  /** 1-NN accuracy. */
  top1: number;
  /** recall@k against the XL queries' exact neighbours. */
  recall: number;
  /** mAP@k by label. */
  map: number;
}

export interface RetrievalRow {
  name: string;
  ffnDims: number[];
  /** A query encoder from another checkpoint (a baseline): its directory. */
  queryModel?: string;
  mflops: number;
  /** mflops / the MFLOPs of the evaluated model's XL. */
  mflopsFraction: number;
  exact: Figures;
  hnsw: Figures;
  /** 1-NN accuracy with the corpus embedded by this query encoder too (exact search). */
  sameEncoderTop1: number;
  /** Queries encoded per second (encoder time only, every query in one pass). */
  imgPerSec: number;
}

/** "Almost no loss": the paper's bound on the accuracy drop of a cheaper query encoder (0.5 pt). */
export const NEAR_XL_TOLERANCE = 0.005;

/**
 * The cheapest of the model's own query submodels (baselines excluded) whose exact 1-NN accuracy is
 * within `tolerance` (0.005 = 0.5 pt) of XL's, the own row at MFLOPs fraction 1; XL itself when no
 * cheaper one qualifies, undefined without an XL row.
 */
export function cheapestWithin(rows: readonly RetrievalRow[], tolerance: number): RetrievalRow | undefined {
  const own = rows.filter((r) => r.queryModel === undefined);
  const xl = own.find((r) => r.mflopsFraction === 1);
  if (!xl) return undefined;
  return own
    .filter((r) => r.exact.top1 >= xl.exact.top1 - tolerance - 1e-12)
    .reduce((best, r) => (r.mflops < best.mflops || (r.mflops === best.mflops && r.exact.top1 > best.exact.top1) ? r : best));
}

/** The query submodels to measure: later duplicates (same widths) dropped, XL added when absent (recall's reference). */
export function querySubmodels(c: ModelConfig, submodels: readonly Submodel[]): Submodel[] {
  const seen = new Map<string, Submodel>();
  for (const s of [...submodels, { name: 'xl', ffnDims: granularityDims(c, 'xl') }])
    if (!seen.has(s.ffnDims.join())) seen.set(s.ffnDims.join(), s);
  return [...seen.values()];
}

/** A query encoder from another checkpoint: searched against this model's XL corpus. */
export interface QueryModel extends Submodel {
  dir: string;
  checkpoint: Checkpoint;
}

export interface RetrievalOptions {
  modelDir: string;
  checkpoint: Checkpoint;
  corpus: Dataset;
  queries: Dataset;
  /** Query submodels of the model (see querySubmodels). */
  submodels: Submodel[];
  queryModels?: QueryModel[];
  /** An index of the corpus built with this model: its vectors, labels and graph are searched instead. */
  indexDir?: string;
  k?: number;
  batchSize?: number;
  limitCorpus?: number;
  limitQueries?: number;
  /** Progress of each phase: corpus, queries (and the same for each query model), hnsw, search. */
  onProgress?: (phase: string, done: number, total: number) => void;
}

export type HnswSetup = {
  M: number;
  efConstruction: number;
  ef: number;
  source: 'index' | 'memory';
  /** An index of another store than SQLite + HNSW: its approximate search, in words (M, efConstruction, ef do not apply). */
  ann?: string;
};

export interface RetrievalResult {
  kind: 'retrieval';
  model: string;
  fingerprint: string;
  engine: string;
  corpus: string;
  queries: string;
  /** Items searched: the index's live items with indexDir, else the decoded corpus images. */
  corpusCount: number;
  /** Corpus images decoded and embedded (by every submodel, for the same-encoder figure). */
  corpusEmbedded: number;
  queryCount: number;
  k: number;
  hnsw: HnswSetup;
  rows: RetrievalRow[];
  /** cheapestWithin(rows, NEAR_XL_TOLERANCE), with XL's exact 1-NN accuracy for comparison. */
  cheapest: { name: string; mflopsFraction: number; top1: number; xlTop1: number } | null;
  skipped: (Skipped & { set: 'corpus' | 'queries' })[];
}

/** The XL corpus every query is searched in: [N, D] unit vectors, [N] labels, and a graph search. */
interface SearchedCorpus {
  vectors: Float32Array;
  labels: Int32Array;
  hnsw: HnswSetup;
  /** Up to k corpus rows by graph search, best first. */
  search(query: Float32Array, k: number): number[];
  close(): void;
}

/** An existing index of either store (opened read-only), refused when built with another model: the error names both fingerprints. */
function indexCorpus(dir: string, fingerprint: string): SearchedCorpus {
  const index = openIndex(dir, { expectedFingerprint: fingerprint, mode: 'read' });
  try {
    const { ids, labels, vectors } = index.liveMatrix(); // exactly the items the graph holds
    const { M, efConstruction, ef } = index.params;
    const rowOf = new Map(ids.map((id, row) => [id, row])); // store id -> row
    const info = index.kind === 'lance' ? index.info() : undefined;
    const ann =
      info &&
      (info.store?.ann ? `LanceDB ${info.store.ann.type} search, nprobes ${info.graph.ef}` : 'LanceDB exact scan (no ANN index yet)');
    return {
      vectors,
      labels,
      hnsw: { M, efConstruction, ef, source: 'index', ...(ann && { ann }) },
      search: (q, k) => index.search(q, k).map((h) => rowOf.get(h.id)!),
      close: () => index.close(),
    };
  } catch (e) {
    index.close();
    throw e;
  }
}

/** An in-memory HNSW graph over the embedded corpus, with the index defaults (manifest.ts) for M, efConstruction, ef. */
async function memoryCorpus(
  vectors: Float32Array,
  labels: Int32Array,
  dim: number,
  onProgress: (done: number, total: number) => void,
): Promise<SearchedCorpus> {
  const { M, efConstruction, ef } = IndexParams.pick({ M: true, efConstruction: true, ef: true }).parse({});
  const N = labels.length;
  const graph = Graph.create({ space: 'ip', dim, M, efConstruction, ef }, N);
  const chunk = 1024;
  for (let i = 0; i < N; i += chunk) {
    const n = Math.min(chunk, N - i);
    graph.add(
      Array.from({ length: n }, (_, j) => i + j),
      vectors.subarray(i * dim, (i + n) * dim),
    );
    onProgress(i + n, N);
    await yieldToEventLoop(); // inserts are synchronous: let the progress bar draw
  }
  return {
    vectors,
    labels,
    hnsw: { M, efConstruction, ef, source: 'memory' },
    search: (q, k) => graph.search(q, Math.min(k, N), ef).ids,
    close: () => {},
  };
}

/** Graph search of every query: [Q, k] rows, -1 padded. */
async function graphKnn(corpus: SearchedCorpus, queries: Float32Array, dim: number, k: number): Promise<Neighbours> {
  const Q = queries.length / dim;
  const ids = new Int32Array(Q * k).fill(-1);
  for (let q = 0; q < Q; q++) {
    corpus.search(queries.subarray(q * dim, (q + 1) * dim), k).forEach((id, j) => (ids[q * k + j] = id));
    if (q % 1024 === 1023) await yieldToEventLoop();
  }
  return { k, ids };
}

/** Corpus and queries embedded by some submodels of one checkpoint (each batch decoded once). */
async function embedBoth(
  checkpoint: Checkpoint,
  ffnDims: number[][],
  o: RetrievalOptions,
  suffix: string,
): Promise<{ corpus: EmbeddedSet; queries: EmbeddedSet; engine: string }> {
  const encoder = await createEncoder('onnx', checkpoint.meta.model, checkpoint.weights);
  const opts = (phase: string, limit: number | undefined) => ({
    batchSize: o.batchSize ?? 64,
    limit,
    onBatch: (done: number, total: number) => o.onProgress?.(phase + suffix, done, total),
  });
  try {
    const corpus = await embedDataset(encoder, o.corpus, ffnDims, opts('corpus', o.limitCorpus));
    const queries = await embedDataset(encoder, o.queries, ffnDims, opts('queries', o.limitQueries));
    return { corpus, queries, engine: encoder.description };
  } finally {
    await encoder.dispose();
  }
}

/** One query encoder: its query vectors [Q, D] and the corpus it embedded itself [N', D] (same-encoder figure). */
interface Run extends Submodel {
  queryModel?: string;
  mflops: number;
  queries: Float32Array;
  encodeMs: number;
  ownCorpus: { vectors: Float32Array; labels: Int32Array };
}

export async function evalRetrieval(o: RetrievalOptions): Promise<RetrievalResult> {
  const { meta } = o.checkpoint;
  const c = meta.model;
  const D = embeddingDim(c);
  const k = o.k ?? 10;
  const progress = o.onProgress ?? (() => {});
  const own = querySubmodels(c, o.submodels);
  const xlMflops = mflops(c, granularityDims(c, 'xl'));
  const xlAt = own.findIndex((s) => s.ffnDims.every((d) => d === c.mlpDim));
  for (const m of o.queryModels ?? []) {
    const mc = m.checkpoint.meta.model;
    if (embeddingDim(mc) !== D)
      throw new Error(
        `query model ${m.name} (${m.dir}) embeds into ${embeddingDim(mc)} dimensions, ${o.modelDir} into ${D}: it cannot search this corpus`,
      );
  }
  // Labels are compared across the two sets: they must index the same classes.
  if (o.corpus.classNames.length !== o.queries.classNames.length)
    throw new Error(
      `the corpus ${o.corpus.spec} has ${o.corpus.classNames.length} classes, the queries ${o.queries.spec} ${o.queries.classNames.length}`,
    );

  // A query that is also in the corpus finds itself: 1-NN would be 100% whatever the model.
  const shared = sharedItems(o.corpus, o.queries);
  if (shared > 0)
    throw new Error(
      `${shared} of the queries ${o.queries.spec} are also in the corpus ${o.corpus.spec}: each would find itself; give disjoint slices (e.g. fashion-mnist:train[:55000] and fashion-mnist:train[55000:])`,
    );
  // Opened first, so that an index of another model is refused before anything is embedded.
  let searched: SearchedCorpus | undefined = o.indexDir ? indexCorpus(o.indexDir, meta.fingerprint) : undefined;
  try {
    const main = await embedBoth(
      o.checkpoint,
      own.map((s) => s.ffnDims),
      o,
      '',
    );
    const Q = main.queries.count;
    if (Q === 0) throw new Error(`${o.queries.spec}: no query could be decoded`);
    const queryLabels = main.queries.labels;
    searched ??= await memoryCorpus(main.corpus.embeddings[xlAt], main.corpus.labels, D, (done, total) => progress('hnsw', done, total));
    const corpus = searched;
    const reference = await exactKnn(main.queries.embeddings[xlAt], corpus.vectors, D, k);

    const figures = (nn: Neighbours): Figures => ({
      top1: nnAccuracy(nn, corpus.labels, queryLabels),
      recall: recallAt(nn, reference, k),
      map: mapAt(nn, corpus.labels, queryLabels, k),
    });
    const measure = async (r: Run): Promise<RetrievalRow> => {
      const exact = await exactKnn(r.queries, corpus.vectors, D, k);
      const graph = await graphKnn(corpus, r.queries, D, k);
      const same = await exactKnn(r.queries, r.ownCorpus.vectors, D, 1);
      return {
        name: r.name,
        ffnDims: r.ffnDims,
        ...(r.queryModel !== undefined && { queryModel: r.queryModel }),
        mflops: r.mflops,
        mflopsFraction: r.mflops / xlMflops,
        exact: figures(exact),
        hnsw: figures(graph),
        sameEncoderTop1: nnAccuracy(same, r.ownCorpus.labels, queryLabels),
        imgPerSec: r.encodeMs > 0 ? (Q * 1000) / r.encodeMs : 0,
      };
    };

    const total = own.length + (o.queryModels?.length ?? 0);
    const rows: RetrievalRow[] = [];
    for (const [j, s] of own.entries()) {
      rows.push(
        await measure({
          ...s,
          mflops: mflops(c, s.ffnDims),
          queries: main.queries.embeddings[j],
          encodeMs: main.queries.encodeMs[j],
          ownCorpus: { vectors: main.corpus.embeddings[j], labels: main.corpus.labels },
        }),
      );
      progress('search', rows.length, total);
    }
    // One query model at a time, so that only its own embeddings are held besides the model's.
    for (const m of o.queryModels ?? []) {
      const sets = await embedBoth(m.checkpoint, [m.ffnDims], o, ` ${m.name}`);
      if (sets.queries.indices.join() !== main.queries.indices.join())
        throw new Error(
          `query model ${m.name} decoded other queries than ${o.modelDir} (${sets.queries.count} vs ${Q}): their preprocessing skips other images`,
        );
      rows.push(
        await measure({
          name: m.name,
          ffnDims: m.ffnDims,
          queryModel: m.dir,
          mflops: mflops(m.checkpoint.meta.model, m.ffnDims),
          queries: sets.queries.embeddings[0],
          encodeMs: sets.queries.encodeMs[0],
          ownCorpus: { vectors: sets.corpus.embeddings[0], labels: sets.corpus.labels },
        }),
      );
      progress('search', rows.length, total);
    }

    const best = cheapestWithin(rows, NEAR_XL_TOLERANCE);
    return {
      kind: 'retrieval',
      model: o.modelDir,
      fingerprint: meta.fingerprint,
      engine: main.engine,
      corpus: o.corpus.spec,
      queries: o.queries.spec,
      corpusCount: corpus.labels.length,
      corpusEmbedded: main.corpus.count,
      queryCount: Q,
      k,
      hnsw: corpus.hnsw,
      rows,
      cheapest: best
        ? { name: best.name, mflopsFraction: best.mflopsFraction, top1: best.exact.top1, xlTop1: rows[xlAt].exact.top1 }
        : null,
      skipped: [
        ...main.corpus.skipped.map((s) => ({ set: 'corpus' as const, ...s })),
        ...main.queries.skipped.map((s) => ({ set: 'queries' as const, ...s })),
      ],
    };
  } finally {
    searched?.close();
  }
}
