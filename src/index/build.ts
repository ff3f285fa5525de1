// The indexing pipeline behind `matvit index build` and `matvit index add`: a dataset (or a list
// of files) -> the items of this shard -> content sha256 -> skip what the index already holds ->
// decode -> embed in batches with the corpus submodel (XL by default) -> add to the index (the
// store commits first, so a batch is durable once added) -> a graph snapshot every few batches.
//
// Throughput: three stages run at once. While the encoder embeds batches k+1.. (IN_FLIGHT of them),
// the JS thread commits batch k (SQLite and HNSW insertion are synchronous) and reads, hashes and
// checks the items of the next batch, whose decoding runs on libuv's pool (sharp).
// onnxruntime-node's run() is synchronous on the calling thread (it only defers the call with
// setImmediate), so in-process it would block all of that: the ONNX engine runs in worker threads
// here (engine/onnx-worker.ts; how many: corpusEncoder).
// Each file is read once: its bytes are hashed and decoded from the same buffer; IDX pixels go
// straight to normalization when they already have the model's shape (Fashion-MNIST on a 28x28
// model), with no sharp call at all.
//
// Memory: at most IN_FLIGHT + 2 batches are alive (decoding, embedding, committing); bytes are dropped
// once decoded. What grows with the corpus is only the dataset's list of paths (or the IDX file)
// and the index itself.
//
// Resume: every committed batch is in the store, and items are recognized by their content hash,
// so re-running the same build skips everything already indexed, after a clean finish or a kill.
import { hash } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Dataset, type DatasetItem, type Skipped, DEFAULT_CONCURRENCY, parseDatasetSpec } from '../data/dataset.ts';
import { listImages } from '../data/folder.ts';
import { DecodeError, type DecodeOptions, preprocessImage, preprocessPixels } from '../data/preprocess.ts';
import { type EncodeOutput, type Encoder, type EngineName, createEncoder } from '../engine/encoder.ts';
import type { Checkpoint } from '../model/checkpoint.ts';
import { mflops } from '../model/flops.ts';
import type { WeightMap } from '../model/weights.ts';
import { type ModelConfig, granularityDims, submodelName } from '../model/config.ts';
import { openCorpus, modelPathFor } from './corpus.ts';
import { type OpenReport, VectorIndex } from './index.ts';
import { readManifest } from './manifest.ts';

/** One of n disjoint parts of a corpus; `index` is 1-based (as jest's and playwright's --shard i/n). */
export interface Shard {
  index: number;
  count: number;
}

/** Parses "i/n" (1 <= i <= n); the error names the value and the accepted form. */
export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const [index, count] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(index >= 1 && index <= count)) throw new Error(`shard "${s}": expected i/n with 1 <= i <= n (shard i of n, 1-based), e.g. 1/4`);
  return { index, count };
}

/**
 * The shard (0-based) of an item: by a hash of its source, not its position, so the split is the
 * same on every machine, stays put when the corpus grows, and a slice of a dataset splits like
 * the whole. The shards of one n are disjoint and together hold the whole corpus.
 */
export const shardOf = (source: string, count: number): number => hash('sha256', source, 'buffer').readUInt32BE(0) % count;

/** What the index records as an item's source: the path relative to the corpus root, or the IDX ref. */
const sourceOf = (item: DatasetItem): string => item.path ?? item.ref;

/** Default batch: 256 small images (the must-show throughput), fewer when one input is large (224x224x3 = 600 KB). */
export function defaultBatch(cfg: ModelConfig): number {
  return cfg.channels * cfg.imageSize * cfg.imageSize * 4 <= 64 * 1024 ? 256 : 32;
}

export interface PipelineOptions {
  /** Images per encoder call (default: defaultBatch). */
  batch?: number;
  /** Items read and decoded at once (default: 2 per core). */
  concurrency?: number;
  /** Decompression-bomb guard: refuse images of more pixels (default: preprocess.ts's DEFAULT_PIXEL_LIMIT). */
  maxPixels?: number;
  /** Snapshot the graph every this many committed batches (0: only at the end). */
  snapshotEvery?: number;
  shard?: Shard;
  /** How many duplicates and skipped items the summary lists one by one (all are counted). */
  listLimit?: number;
  onProgress?: (p: Progress) => void;
}

export const DEFAULT_SNAPSHOT_EVERY = 50;
/**
 * Batches given to the encoder ahead of the one being committed: one per encoder worker (two on 2
 * cores) plus one queued, so no worker idles while the JS thread commits.
 */
const IN_FLIGHT = 3;

export interface Progress {
  /** Items of this shard in all. */
  total: number;
  /** Items looked at so far (added, duplicate, already indexed or skipped, or on their way). */
  processed: number;
  added: number;
  duplicates: number;
  alreadyIndexed: number;
  skipped: number;
  elapsedMs: number;
}

export interface DuplicateReport {
  ref: string;
  sha256: string;
  /** The item of the same content that is kept (added in this run). */
  sameAs: string;
}

export interface PipelineResult {
  items: number;
  added: number;
  /** Items whose content another item of this run already has. */
  duplicates: { count: number; items: DuplicateReport[] };
  /** Items whose content the index held before this run (e.g. from an interrupted run). */
  alreadyIndexed: number;
  skipped: { count: number; byReason: Record<string, number>; items: Skipped[] };
  batches: number;
  snapshots: number;
  seconds: number;
  /** Embedded images per second of pipeline time (first item to the final snapshot). */
  imgPerSec: number;
  /**
   * Where the time went. The *Wait figures are the main loop waiting for a stage: waiting on
   * encode means the encoder is the bottleneck (as it should be); waiting on decode means reading
   * or decoding is. commitMs / snapshotMs are synchronous main-thread time.
   */
  timings: { encodeWaitMs: number; decodeWaitMs: number; commitMs: number; snapshotMs: number; encodeCalls: number };
}

export interface BuildSummary extends PipelineResult {
  index: string;
  model: { dir: string; name: string; fingerprint: string };
  submodel: { name: string; ffnDims: number[] };
  engine: string;
  data: string;
  shard: string | null;
  /** Live items in the index after the run. */
  live: number;
  opened: OpenReport;
  peakRssMB: number;
}

/** An item on its way: decoded, then embedded, until committed. */
interface Entry {
  index: number;
  source: string;
  label: number;
  labelName: string | null;
  sha256: string;
  bytes: number;
  input: Float32Array | null;
  /** Listed duplicates of this entry, whose sameAs follows the entry's source (see prepare). */
  twins?: DuplicateReport[];
}

/**
 * Runs the pipeline of the file header over `ds` into an open index; `encoder` must be the
 * index's model. Items are added in dataset order; of several items with the same content, the
 * first in dataset order is kept and the others are reported as duplicates.
 */
export async function runPipeline(index: VectorIndex, encoder: Encoder, ffnDims: readonly number[], ds: Dataset, opts: PipelineOptions = {}): Promise<PipelineResult> {
  const cfg = encoder.config;
  const batch = opts.batch ?? defaultBatch(cfg);
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const snapshotEvery = opts.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY;
  const listLimit = opts.listLimit ?? 1000;
  const decode: DecodeOptions = { limitInputPixels: opts.maxPixels };
  for (const [k, v] of Object.entries({ batch, concurrency, listLimit }))
    if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${k} = ${v}: expected an integer >= 1`);
  if (!(Number.isInteger(snapshotEvery) && snapshotEvery >= 0)) throw new Error(`snapshotEvery = ${snapshotEvery}: expected an integer >= 0 (0: only at the end)`);
  const per = cfg.channels * cfg.imageSize * cfg.imageSize;
  const dim = index.params.dim;

  // The shard's items, by dataset position (null: all of them).
  let order: Uint32Array | null = null;
  if (opts.shard && opts.shard.count > 1) {
    const { index: i, count } = opts.shard;
    const keep: number[] = [];
    for (let k = 0; k < ds.size; k++) if (shardOf(sourceOf(ds.item(k)), count) === i - 1) keep.push(k);
    order = Uint32Array.from(keep);
  }
  const total = order ? order.length : ds.size;

  const r: PipelineResult = {
    items: total, added: 0, duplicates: { count: 0, items: [] }, alreadyIndexed: 0,
    skipped: { count: 0, byReason: {}, items: [] }, batches: 0, snapshots: 0, seconds: 0, imgPerSec: 0,
    timings: { encodeWaitMs: 0, decodeWaitMs: 0, commitMs: 0, snapshotMs: 0, encodeCalls: 0 },
  };
  const t0 = performance.now();
  let processed = 0;
  const progress = () =>
    opts.onProgress?.({ total, processed, added: r.added, duplicates: r.duplicates.count, alreadyIndexed: r.alreadyIndexed, skipped: r.skipped.count, elapsedMs: performance.now() - t0 });
  const duplicate = (ref: string, sha256: string, sameAs: string): DuplicateReport | undefined => {
    r.duplicates.count++;
    if (r.duplicates.items.length >= listLimit) return undefined;
    const d = { ref, sha256, sameAs };
    r.duplicates.items.push(d);
    return d;
  };
  const skip = (i: number, err: DecodeError) => {
    r.skipped.count++;
    r.skipped.byReason[err.reason] = (r.skipped.byReason[err.reason] ?? 0) + 1;
    if (r.skipped.items.length < listLimit) r.skipped.items.push({ index: i, ref: ds.item(i).ref, reason: err.reason, message: err.message });
  };

  // Decoded items not yet committed, by content: with the store, what "already seen" means.
  const pending = new Map<string, Entry>();
  // The first id this run committed: a stored item with an id below it was there before the run.
  let firstId = Infinity;

  /** Reads, hashes and decodes one item; null when it is skipped or its content is known. */
  async function prepare(i: number): Promise<Entry | null> {
    const item = ds.item(i);
    const source = sourceOf(item);
    let bytes: Buffer;
    try {
      bytes = await ds.bytes(i);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      skip(i, err);
      return null;
    }
    const sha256 = hash('sha256', bytes, 'hex');
    const twin = pending.get(sha256);
    if (twin) {
      // Keep the first in dataset order whichever was read first (reads finish in any order):
      // the two have the same bytes, so the twin's embedding is this item's too.
      let d: DuplicateReport | undefined;
      if (i < twin.index) {
        d = duplicate(twin.source, sha256, source);
        Object.assign(twin, { index: i, source, label: item.label, labelName: ds.classNames[item.label] ?? null });
        for (const t of twin.twins ?? []) t.sameAs = source;
      } else d = duplicate(source, sha256, twin.source);
      if (d) (twin.twins ??= []).push(d);
      return null;
    }
    const id = index.existing([sha256]).get(sha256);
    if (id !== undefined) {
      if (id >= firstId) duplicate(source, sha256, index.item(id)!.source);
      else r.alreadyIndexed++;
      return null;
    }
    const entry: Entry = { index: i, source, label: item.label, labelName: ds.classNames[item.label] ?? null, sha256, bytes: bytes.length, input: null };
    pending.set(sha256, entry);
    try {
      entry.input = ds.pixels ? await preprocessPixels(bytes, ds.pixels, cfg) : await preprocessImage(bytes, cfg, decode);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      pending.delete(sha256);
      skip(entry.index, err);
      return null;
    }
    return entry;
  }

  // The next item of the shard to look at.
  let cursor = 0;

  /**
   * The next `batch` new items (fewer at the end), `concurrency` at a time. An item is taken
   * only while the ones taken may still fall short of a batch, so a batch is exactly the first
   * `batch` new items from the cursor on: batches do not depend on which decode finishes first.
   */
  async function fill(): Promise<Entry[]> {
    const out: Entry[] = [];
    let inflight = 0;
    const take = async () => {
      while (out.length + inflight < batch && cursor < total) {
        const i = order ? order[cursor++] : cursor++;
        inflight++;
        try {
          const e = await prepare(i);
          if (e) out.push(e);
        } finally {
          inflight--;
        }
        if (++processed % 256 === 0) progress();
      }
    };
    // Items that turn out known or broken leave the batch short: take more.
    while (out.length < batch && cursor < total) await Promise.all(Array.from({ length: concurrency }, take));
    return out.sort((a, b) => a.index - b.index);
  }

  /** Adds an embedded batch (store first: durable when add returns), then maybe snapshots. */
  function commit(entries: Entry[], embeddings: Float32Array): void {
    const t = performance.now();
    const res = index.add(entries.map((e, k) => ({
      source: e.source, label: e.label, labelName: e.labelName, sha256: e.sha256, bytes: e.bytes,
      vector: embeddings.subarray(k * dim, (k + 1) * dim),
    })));
    // Only another writer adding the same content at the same time gets past `pending`.
    for (const d of res.duplicates) duplicate(d.source, d.sha256, d.existingSource);
    for (const id of res.ids) if (id !== null) {
      r.added++;
      firstId = Math.min(firstId, id);
    }
    for (const e of entries) pending.delete(e.sha256);
    r.batches++;
    r.timings.commitMs += performance.now() - t;
    snapshotted = snapshotEvery > 0 && r.batches % snapshotEvery === 0;
    if (snapshotted) snapshot();
    progress();
  }

  let snapshotted = false;
  function snapshot(): void {
    const t = performance.now();
    index.snapshot();
    r.snapshots++;
    r.timings.snapshotMs += performance.now() - t;
  }

  /** Waits for a stage, counting the time in `key`. */
  async function waitFor<T>(p: Promise<T>, key: 'encodeWaitMs' | 'decodeWaitMs'): Promise<T> {
    const t = performance.now();
    try {
      return await p;
    } finally {
      r.timings[key] += performance.now() - t;
    }
  }

  progress();
  // Batches handed to the encoder and not yet committed, oldest first: committed in order.
  const inFlight: { entries: Entry[]; encoding: Promise<EncodeOutput> }[] = [];
  let next = fill();
  for (;;) {
    const ready = await waitFor(next, 'decodeWaitMs');
    if (ready.length > 0) {
      const images = new Float32Array(ready.length * per);
      ready.forEach((e, k) => {
        images.set(e.input!, k * per);
        e.input = null; // the batch holds the pixels now
      });
      const encoding = encoder.encode(images, ffnDims);
      encoding.catch(() => {}); // awaited below; until then a rejection must not count as unhandled
      inFlight.push({ entries: ready, encoding });
      r.timings.encodeCalls++;
      next = fill();
      next.catch(() => {});
      if (inFlight.length < IN_FLIGHT) continue; // keep every encoder worker busy before committing
    }
    const head = inFlight.shift();
    if (!head) break;
    commit(head.entries, (await waitFor(head.encoding, 'encodeWaitMs')).embeddings);
  }
  // The final snapshot, so that the next open loads the graph instead of replaying the run.
  if (r.batches > 0 && !snapshotted) snapshot();
  processed = total;
  progress();
  r.seconds = (performance.now() - t0) / 1000;
  r.imgPerSec = r.added / r.seconds;
  for (const k of ['encodeWaitMs', 'decodeWaitMs', 'commitMs', 'snapshotMs'] as const) r.timings[k] = Math.round(r.timings[k]);
  return r;
}

/**
 * The build's encoder: ONNX in worker threads, so that the JS thread commits and decodes while they
 * embed. A small model gets one worker per core with one intra-op thread each, every worker
 * running whole batches: on fmnist-tiny (41 MFLOPs per image), fashion-mnist:train, 2 cores, one
 * worker of 2 intra-op threads reached 0.63 of `bench encode`'s XL batch-256 throughput
 * (efConstruction 100): the JS thread's HNSW insertion, as much CPU as encoding there, preempted
 * one of the two threads and the other waited at ORT's barrier (183% CPU of 200%); two workers
 * reached 0.71 at the same setting. A large model gets one worker with every core: there the
 * JS thread's share is ~1% and each worker would hold a copy of the model (vit-s16 over 1000
 * photos: 2 workers 14 img/s, peak RSS 1490 MB; 1 worker 15 img/s, 1035 MB). In-process (the
 * first design) the build ran at 0.51-0.63: encoding and committing took turns. tfjs (the
 * fallback, ~25x slower: encoding dominates anyway) runs in-process.
 */
const POOL_MAX_MFLOPS = 1000;

function corpusEncoder(engine: EngineName, cfg: ModelConfig, weights: WeightMap, ffnDims: readonly number[], workers?: number): Promise<Encoder> {
  if (engine !== 'onnx') return createEncoder(engine, cfg, weights);
  const cores = os.availableParallelism();
  const n = workers ?? (mflops(cfg, ffnDims) < POOL_MAX_MFLOPS ? cores : 1);
  return createEncoder(engine, cfg, weights, { offThread: true, threads: cores, workers: Math.min(n, cores) });
}

/** Embeds one image first, so that session creation is not counted as throughput (as bench does). */
async function warmUp(encoder: Encoder, ffnDims: readonly number[]): Promise<void> {
  const c = encoder.config;
  await encoder.encode(new Float32Array(c.channels * c.imageSize * c.imageSize), ffnDims);
}

const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024); // maxRSS is in KiB

export interface BuildOptions extends PipelineOptions {
  checkpoint: Checkpoint;
  /** The checkpoint's directory: the manifest records it (relative to the index) as modelPath. */
  modelDir: string;
  /** A dataset spec (dataset.ts). */
  data: string;
  out: string;
  /** The corpus submodel (default XL). */
  ffnDims?: number[];
  engine?: EngineName;
  /** ONNX encoder workers sharing the cores (default: one per core); each holds a copy of the model. */
  workers?: number;
  /** HNSW parameters of a new index (defaults in manifest.ts); for an existing one they must match it. */
  M?: number;
  efConstruction?: number;
  ef?: number;
}

/** The folder a dataset spec reads images from (undefined for IDX): sources are relative to it. */
function corpusRoot(spec: string): string | undefined {
  const base = spec.replace(/\[-?\d*:-?\d*\]$/, '');
  if (/^(idx|fashion-mnist):/.test(base)) return undefined;
  return base.startsWith('files:') ? base.slice('files:'.length) : base;
}

/** `matvit index build`: creates the index in `out` or continues it (see the file header). */
export async function buildIndex(o: BuildOptions): Promise<BuildSummary> {
  const { meta, weights } = o.checkpoint;
  const cfg = meta.model;
  const ffnDims = o.ffnDims ?? granularityDims(cfg, 'xl');
  const ds = await parseDatasetSpec(o.data, { limitInputPixels: o.maxPixels });
  const shard = o.shard && o.shard.count > 1 ? `${o.shard.index}/${o.shard.count}` : null;
  const root = corpusRoot(ds.spec);
  const index = VectorIndex.openOrCreate(o.out, {
    fingerprint: meta.fingerprint, modelName: cfg.name, ffnDims, dim: cfg.dim, M: o.M, efConstruction: o.efConstruction, ef: o.ef,
    model: cfg, modelPath: modelPathFor(o.out, o.modelDir),
    corpus: { spec: ds.spec, ...(root && { root }), classNames: ds.classNames, ...(shard && { shard }) },
  });
  try {
    const have = index.params;
    const clash = (['M', 'efConstruction', 'ef'] as const).filter((k) => o[k] !== undefined && o[k] !== have[k]);
    if (clash.length) throw new Error(`${o.out} already holds an index with ${clash.map((k) => `${k} ${have[k]}`).join(', ')}; asked for ${clash.map((k) => `${k} ${o[k]}`).join(', ')}. Leave them out to continue it, or build into a new directory`);
    const encoder = await corpusEncoder(o.engine ?? 'onnx', cfg, weights, ffnDims, o.workers);
    let r: PipelineResult;
    try {
      await warmUp(encoder, ffnDims);
      r = await runPipeline(index, encoder, ffnDims, ds, o);
    } finally {
      await encoder.dispose();
    }
    const summary: BuildSummary = {
      index: o.out, model: { dir: o.modelDir, name: cfg.name, fingerprint: meta.fingerprint }, submodel: { name: submodelName(cfg, ffnDims), ffnDims },
      engine: encoder.description, data: ds.spec, shard, ...r, live: index.size, opened: index.info().opened, peakRssMB: peakRssMB(),
    };
    recordRun(index, summary);
    return summary;
  } finally {
    index.close();
  }
}

/** Keeps the last runs' counts in the store's metadata, for `index info`. */
function recordRun(index: VectorIndex, s: BuildSummary): void {
  const runs = (index.getMeta('runs') as unknown[] | undefined) ?? [];
  const run = { at: new Date().toISOString(), data: s.data, shard: s.shard, added: s.added, duplicates: s.duplicates.count, alreadyIndexed: s.alreadyIndexed, skipped: s.skipped.count, seconds: Math.round(s.seconds * 10) / 10 };
  index.setMeta('runs', [...runs.slice(-49), run]);
}

// ---------------------------------------------------------------------------------------------
// index add: files and folders given on the command line

/**
 * The source an index records for a file: its path relative to the corpus root when it is inside
 * it (as `index build` records it), else its absolute path.
 */
export function sourceForFile(file: string, root: string | undefined): string {
  const abs = path.resolve(file);
  if (root) {
    const rel = path.relative(root, abs);
    if (rel && !rel.startsWith('..') && !path.isAbsolute(rel)) return rel.split(path.sep).join('/');
  }
  return abs;
}

/** The corpus root and class names a manifest records (index build writes them). */
export function corpusOf(indexDir: string): { root?: string; classNames: string[] } {
  const c = readManifest(indexDir).corpus as { root?: unknown; classNames?: unknown; mergedFrom?: { root?: unknown; classNames?: unknown }[] };
  // A merged index: its shards' corpus (they share one, or the first one's is as good as any).
  const src = c.mergedFrom?.[0] ?? c;
  return {
    root: typeof src.root === 'string' ? src.root : undefined,
    classNames: Array.isArray(src.classNames) ? src.classNames.map(String) : [],
  };
}

/**
 * A dataset of the files given, folders walked recursively. Sources follow sourceForFile; a file
 * in a class folder of the corpus root (root/<class>/...) gets that class's label.
 */
export async function fileListDataset(paths: readonly string[], corpus: { root?: string; classNames: string[] }, decode: DecodeOptions = {}): Promise<Dataset> {
  const files: string[] = [];
  for (const p of paths) {
    const st = await fs.stat(p).catch(() => undefined);
    if (st?.isDirectory()) files.push(...(await listImages(p)).map((f) => path.resolve(p, f)));
    else if (st?.isFile()) files.push(path.resolve(p)); // named explicitly: tried whatever its extension
    else throw new Error(`${p}: no such file or folder`);
  }
  const unique = [...new Set(files)];
  const items = unique.map((abs) => {
    const source = sourceForFile(abs, corpus.root);
    const label = path.isAbsolute(source) || !source.includes('/') ? -1 : corpus.classNames.indexOf(source.split('/')[0]);
    return { abs, source, label };
  });
  const check = (i: number) => {
    if (!(Number.isInteger(i) && i >= 0 && i < items.length)) throw new RangeError(`item ${i} is outside 0..${items.length - 1}`);
  };
  const ds: Dataset = {
    spec: `files ${paths.join(' ')}`,
    size: items.length,
    classNames: corpus.classNames,
    item(i) {
      check(i);
      return { index: i, label: items[i].label, path: items[i].source, ref: items[i].source };
    },
    async bytes(i) {
      check(i);
      try {
        return await fs.readFile(items[i].abs);
      } catch (err) {
        throw new DecodeError('unreadable', (err as Error).message);
      }
    },
    async load(i, c) {
      return preprocessImage(await ds.bytes(i), c, decode);
    },
  };
  return ds;
}

export interface AddOptions extends PipelineOptions {
  index: string;
  paths: string[];
  /** Another copy of the index's model (default: the manifest's modelPath). */
  model?: string;
  engine?: EngineName;
  /** ONNX encoder workers sharing the cores (default: one per core); each holds a copy of the model. */
  workers?: number;
}

/** `matvit index add`: embeds the files with the index's model and corpus submodel and adds what is new. */
export async function addPaths(o: AddOptions): Promise<BuildSummary> {
  const { index, checkpoint, modelDir } = openCorpus(o.index, { model: o.model });
  try {
    const cfg = checkpoint.meta.model;
    const { ffnDims } = readManifest(o.index);
    const ds = await fileListDataset(o.paths, corpusOf(o.index), { limitInputPixels: o.maxPixels });
    const encoder = await corpusEncoder(o.engine ?? 'onnx', cfg, checkpoint.weights, ffnDims, o.workers);
    let r: PipelineResult;
    try {
      r = await runPipeline(index, encoder, ffnDims, ds, { ...o, shard: undefined });
    } finally {
      await encoder.dispose();
    }
    const summary: BuildSummary = {
      index: o.index, model: { dir: modelDir, name: cfg.name, fingerprint: checkpoint.meta.fingerprint }, submodel: { name: submodelName(cfg, ffnDims), ffnDims },
      engine: encoder.description, data: ds.spec, shard: null, ...r, live: index.size, opened: index.info().opened, peakRssMB: peakRssMB(),
    };
    recordRun(index, summary);
    return summary;
  } finally {
    index.close();
  }
}

/** Sources to remove for what the user typed: an existing file maps as `index add` recorded it; anything else is taken as a stored source. */
export function sourcesToRemove(indexDir: string, paths: readonly string[]): string[] {
  const { root } = corpusOf(indexDir);
  return paths.map((p) => {
    try {
      return fsSync.statSync(p).isFile() ? sourceForFile(p, root) : p;
    } catch {
      return p;
    }
  });
}
