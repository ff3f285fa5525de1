// The held-out queries `matvit calibrate` measures on (calibrate.ts): a seeded sample of the index's
// own corpus items when none are given, and every query embedded by each candidate submodel and
// searched in the index exactly as the service searches (graph, the index's ef). A query that is
// itself an item of the index is searched without that item (leave-one-out).
import { type Dataset, batches, parseDatasetSpec } from '../data/dataset.ts';
import type { Encoder } from '../engine/encoder.ts';
import type { Corpus } from '../index/corpus.ts';
import { sha256Hex } from '../util/hash.ts';
import { seededSample } from '../util/sample.ts';
import type { ServiceEntry } from './menu.ts';

/** The neighbours of every query by one submodel: [N, k] ids (-1 pads short lists), scores, labels (-2 pads). */
export interface SubmodelRun {
  entry: ServiceEntry;
  ids: Int32Array;
  scores: Float32Array;
  labels: Int32Array;
}

export interface Embedded {
  k: number;
  /** The label of each query (-1 unknown). */
  queryLabels: Int32Array;
  runs: SubmodelRun[];
  skipped: number;
  /** Queries whose content (sha256) is itself in the index: searched without their own item. */
  inIndex: number;
}

/**
 * A seeded sample of `n` items of the corpus the index was built from (the manifest's spec): as
 * queries they are items of the index, which embedQueries searches without themselves.
 */
export async function ownItemsSample(corpus: Corpus, n: number, seed = 'calibrate'): Promise<Dataset> {
  const spec = corpus.index.info().manifest.corpus.spec;
  if (typeof spec !== 'string')
    throw new Error(
      `${corpus.index.dir}: the manifest records no corpus spec to sample queries from; pass --queries SPEC (labelled images)`,
    );
  const ds = await parseDatasetSpec(spec);
  const picked = seededSample(
    Array.from({ length: ds.size }, (_, i) => i),
    n,
    seed,
  ).sort((a, b) => a - b);
  return {
    spec: `${ds.spec}, ${picked.length} items sampled (seed ${seed})`,
    size: picked.length,
    classNames: ds.classNames,
    pixels: ds.pixels,
    item: (i) => ({ ...ds.item(picked[i]), index: i }),
    bytes: (i) => ds.bytes(picked[i]),
    load: (i, cfg, augment) => ds.load(picked[i], cfg, augment),
  };
}

/** Embeds every query of `ds` with each entry and searches the index with k neighbours. */
export async function embedQueries(
  corpus: Corpus,
  encoder: Encoder,
  ds: Dataset,
  entries: ServiceEntry[],
  opts: { k: number; batchSize?: number; onProgress?: (done: number, total: number) => void },
): Promise<Embedded> {
  const { k } = opts;
  const cfg = corpus.checkpoint.meta.model;
  const N = ds.size;
  const runs: SubmodelRun[] = entries.map((entry) => ({
    entry,
    ids: new Int32Array(N * k).fill(-1),
    scores: new Float32Array(N * k),
    labels: new Int32Array(N * k).fill(-2),
  }));
  const queryLabels = new Int32Array(N).fill(-1);
  const kept = new Uint8Array(N);
  let skipped = 0,
    inIndex = 0,
    done = 0;
  const order = Array.from({ length: N }, (_, i) => i);
  for await (const batch of batches(ds, order, opts.batchSize ?? 64, cfg)) {
    skipped += batch.skipped.length;
    const shas = await Promise.all(batch.indices.map(async (i) => sha256Hex(await ds.bytes(i))));
    // A query that is itself an item of the index is searched without that item (leave-one-out),
    // so that calibrating on the index's own images still measures held-out behaviour.
    const own = corpus.index.existing(shas);
    inIndex += own.size;
    const selfIds = shas.map((sha) => own.get(sha));
    batch.indices.forEach((i, b) => {
      queryLabels[i] = batch.labels[b];
      kept[i] = 1;
    });
    for (const run of runs) {
      if (batch.indices.length === 0) break;
      const { embeddings } = await encoder.encode(batch.images, run.entry.ffnDims);
      const D = embeddings.length / batch.indices.length;
      batch.indices.forEach((i, b) => {
        const self = selfIds[b];
        const found = corpus.index.search(embeddings.subarray(b * D, (b + 1) * D), self === undefined ? k : k + 1);
        const hits = (self === undefined ? found : found.filter((h) => h.id !== self)).slice(0, k);
        hits.forEach((h, j) => {
          run.ids[i * k + j] = h.id;
          run.scores[i * k + j] = h.score;
          run.labels[i * k + j] = h.label;
        });
      });
    }
    done += batch.indices.length + batch.skipped.length;
    opts.onProgress?.(done, N);
  }
  // Skipped (undecodable) queries are left out of every figure.
  const keep = Array.from(kept.entries())
    .filter(([, v]) => v)
    .map(([i]) => i);
  const pick = <T extends Int32Array | Float32Array>(a: T, per: number): T => {
    const out = new (a.constructor as new (n: number) => T)(keep.length * per);
    keep.forEach((i, r) => out.set(a.subarray(i * per, (i + 1) * per), r * per));
    return out;
  };
  return {
    k,
    queryLabels: pick(queryLabels, 1),
    runs: runs.map((r) => ({ entry: r.entry, ids: pick(r.ids, k), scores: pick(r.scores, k), labels: pick(r.labels, k) })),
    skipped,
    inIndex,
  };
}
