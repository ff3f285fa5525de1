// The indexing pipeline behind `matvit index build` and `matvit index add` (build.ts): a dataset
// (or a list of files) -> the items of this shard -> content sha256 -> skip what the index already
// holds -> decode -> embed in batches with the corpus submodel -> add to the index (the store
// commits first, so a batch is durable once added) -> a graph snapshot every few batches.
//
// Throughput: three stages run at once. While the encoder embeds batches k+1.. (IN_FLIGHT of them),
// the JS thread commits batch k (SQLite and HNSW insertion are synchronous) and reads, hashes and
// checks the items of the next batch, whose decoding runs on libuv's pool (sharp).
// onnxruntime-node's run() is synchronous on the calling thread (it only defers the call with
// setImmediate), so in-process it would block all of that: the ONNX engine runs in worker threads
// here (engine/onnx-worker.ts; how many: build.ts's corpusEncoder).
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
import { type Dataset, type Skipped, DEFAULT_CONCURRENCY } from '../data/dataset.ts';
import { DecodeError, type DecodeOptions } from '../data/preprocess.ts';
import type { EncodeOutput, Encoder } from '../engine/encoder.ts';
import type { ModelConfig } from '../model/config.ts';
import { decodeItem, readItem, sourceOf } from './item-input.ts';
import { DEFAULT_SNAPSHOT_EVERY } from './pipeline-defaults.ts';
import { type Shard, shardOf } from './shard.ts';
import type { IndexStore as VectorIndex } from './store-api.ts';

// The CLI's --shard parser, where index build's other pieces are.
export { parseShard } from './shard.ts';

/** Default batch: 256 small images (the must-show throughput), fewer when one input is large (224x224x3 = 600 KB). */
export function defaultBatch(cfg: ModelConfig): number {
  return cfg.channels * cfg.imageSize * cfg.imageSize * 4 <= 64 * 1024 ? 256 : 32;
}

export interface PipelineOptions {
  /** Images per encoder call (default: defaultBatch). */
  batch?: number;
  /** Items read and decoded at once (default: 2 per core). */
  concurrency?: number;
  /** Decompression-bomb guard: refuse images of more pixels (default: data/limits.ts's DEFAULT_PIXEL_LIMIT). */
  maxPixels?: number;
  /** Snapshot the graph every this many committed batches (0: only at the end). */
  snapshotEvery?: number;
  shard?: Shard;
  /** Payloads by item source (index build --metadata, metadata.ts), stored with the items as they are added. */
  payloads?: ReadonlyMap<string, Record<string, unknown>>;
  /** How many duplicates and skipped items the summary lists one by one (all are counted). */
  listLimit?: number;
  onProgress?: (p: Progress) => void;
}

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

/** The settings of one run, checked once. */
interface Settings {
  batch: number;
  concurrency: number;
  snapshotEvery: number;
  listLimit: number;
  decode: DecodeOptions;
  /** Floats per model input. */
  per: number;
  dim: number;
  payloads?: ReadonlyMap<string, Record<string, unknown>>;
}

function settings(index: VectorIndex, cfg: ModelConfig, opts: PipelineOptions): Settings {
  const batch = opts.batch ?? defaultBatch(cfg);
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const snapshotEvery = opts.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY;
  const listLimit = opts.listLimit ?? 1000;
  for (const [k, v] of Object.entries({ batch, concurrency, listLimit }))
    if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${k} = ${v}: expected an integer >= 1`);
  if (!(Number.isInteger(snapshotEvery) && snapshotEvery >= 0))
    throw new Error(`snapshotEvery = ${snapshotEvery}: expected an integer >= 0 (0: only at the end)`);
  const per = cfg.channels * cfg.imageSize * cfg.imageSize;
  const decode = { limitInputPixels: opts.maxPixels };
  return { batch, concurrency, snapshotEvery, listLimit, decode, per, dim: index.params.dim, payloads: opts.payloads };
}

/** The shard's items by dataset position (null: all of them). */
function shardOrder(ds: Dataset, shard: Shard | undefined): Uint32Array | null {
  if (!shard || shard.count <= 1) return null;
  const keep: number[] = [];
  for (let k = 0; k < ds.size; k++) if (shardOf(sourceOf(ds.item(k)), shard.count) === shard.index - 1) keep.push(k);
  return Uint32Array.from(keep);
}

/** The state of one pipeline run: what was read, what waits to be committed, and the counts so far. */
class PipelineRun {
  readonly result: PipelineResult;
  private readonly t0 = performance.now();
  private readonly total: number;
  private processed = 0;
  /** The next position in `order` (or the dataset) to look at. */
  private cursor = 0;
  /** Decoded items not yet committed, by content: with the store, what "already seen" means. */
  private readonly pending = new Map<string, Entry>();
  /** The first id this run committed: a stored item with an id below it was there before the run. */
  private firstId = Infinity;
  /** Whether the last commit was followed by a snapshot (then the final one is not needed). */
  snapshotted = false;

  constructor(
    private readonly index: VectorIndex,
    private readonly cfg: ModelConfig,
    private readonly ds: Dataset,
    private readonly order: Uint32Array | null,
    private readonly s: Settings,
    private readonly onProgress: ((p: Progress) => void) | undefined,
  ) {
    this.total = order ? order.length : ds.size;
    this.result = {
      items: this.total,
      added: 0,
      duplicates: { count: 0, items: [] },
      alreadyIndexed: 0,
      skipped: { count: 0, byReason: {}, items: [] },
      batches: 0,
      snapshots: 0,
      seconds: 0,
      imgPerSec: 0,
      timings: { encodeWaitMs: 0, decodeWaitMs: 0, commitMs: 0, snapshotMs: 0, encodeCalls: 0 },
    };
  }

  progress(done = false): void {
    if (done) this.processed = this.total;
    const r = this.result;
    const { added, duplicates, alreadyIndexed, skipped } = r;
    const elapsedMs = performance.now() - this.t0;
    this.onProgress?.({
      total: this.total,
      processed: this.processed,
      added,
      duplicates: duplicates.count,
      alreadyIndexed,
      skipped: skipped.count,
      elapsedMs,
    });
  }

  private duplicate(ref: string, sha256: string, sameAs: string): DuplicateReport | undefined {
    const d = this.result.duplicates;
    d.count++;
    if (d.items.length >= this.s.listLimit) return undefined;
    const rep = { ref, sha256, sameAs };
    d.items.push(rep);
    return rep;
  }

  private skip(i: number, err: DecodeError): void {
    const k = this.result.skipped;
    k.count++;
    k.byReason[err.reason] = (k.byReason[err.reason] ?? 0) + 1;
    if (k.items.length < this.s.listLimit) k.items.push({ index: i, ref: this.ds.item(i).ref, reason: err.reason, message: err.message });
  }

  /** Reads, hashes and decodes one item; null when it is skipped or its content is known. */
  private async prepare(i: number): Promise<Entry | null> {
    const { ds, pending } = this;
    const item = ds.item(i);
    const source = sourceOf(item);
    let bytes: Buffer, sha256: string;
    try {
      ({ bytes, sha256 } = await readItem(ds, i));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.skip(i, err);
      return null;
    }
    const twin = pending.get(sha256);
    if (twin) {
      // Keep the first in dataset order whichever was read first (reads finish in any order):
      // the two have the same bytes, so the twin's embedding is this item's too.
      let d: DuplicateReport | undefined;
      if (i < twin.index) {
        d = this.duplicate(twin.source, sha256, source);
        Object.assign(twin, { index: i, source, label: item.label, labelName: ds.classNames[item.label] ?? null });
        for (const t of twin.twins ?? []) t.sameAs = source;
      } else d = this.duplicate(source, sha256, twin.source);
      if (d) (twin.twins ??= []).push(d);
      return null;
    }
    const id = this.index.existing([sha256]).get(sha256);
    if (id !== undefined) {
      if (id >= this.firstId) this.duplicate(source, sha256, this.index.item(id)!.source);
      else this.result.alreadyIndexed++;
      return null;
    }
    const entry: Entry = {
      index: i,
      source,
      label: item.label,
      labelName: ds.classNames[item.label] ?? null,
      sha256,
      bytes: bytes.length,
      input: null,
    };
    pending.set(sha256, entry);
    try {
      entry.input = await decodeItem(ds, bytes, this.cfg, this.s.decode);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      pending.delete(sha256);
      this.skip(entry.index, err);
      return null;
    }
    return entry;
  }

  /**
   * The next `batch` new items (fewer at the end), `concurrency` at a time. An item is taken
   * only while the ones taken may still fall short of a batch, so a batch is exactly the first
   * `batch` new items from the cursor on: batches do not depend on which decode finishes first.
   */
  async fill(): Promise<Entry[]> {
    const { batch, concurrency } = this.s;
    const out: Entry[] = [];
    let inflight = 0;
    const take = async () => {
      while (out.length + inflight < batch && this.cursor < this.total) {
        const i = this.order ? this.order[this.cursor++] : this.cursor++;
        inflight++;
        try {
          const e = await this.prepare(i);
          if (e) out.push(e);
        } finally {
          inflight--;
        }
        if (++this.processed % 256 === 0) this.progress();
      }
    };
    // Items that turn out known or broken leave the batch short: take more.
    while (out.length < batch && this.cursor < this.total) await Promise.all(Array.from({ length: concurrency }, take));
    return out.sort((a, b) => a.index - b.index);
  }

  /** The decoded inputs of a batch as one [B, C, H, W] array (the entries drop theirs). */
  images(entries: Entry[]): Float32Array {
    const { per } = this.s;
    const images = new Float32Array(entries.length * per);
    entries.forEach((e, k) => {
      images.set(e.input!, k * per);
      e.input = null;
    });
    return images;
  }

  /** Adds an embedded batch (store first: durable when add returns), then maybe snapshots. */
  commit(entries: Entry[], embeddings: Float32Array): void {
    const { dim, snapshotEvery } = this.s;
    const r = this.result;
    const t = performance.now();
    const items = entries.map(({ source, label, labelName, sha256, bytes }, k) => ({
      source,
      payload: this.s.payloads?.get(source),
      label,
      labelName,
      sha256,
      bytes,
      vector: embeddings.subarray(k * dim, (k + 1) * dim),
    }));
    const res = this.index.add(items);
    // Only another writer adding the same content at the same time gets past `pending`.
    for (const d of res.duplicates) this.duplicate(d.source, d.sha256, d.existingSource);
    for (const id of res.ids)
      if (id !== null) {
        r.added++;
        this.firstId = Math.min(this.firstId, id);
      }
    for (const e of entries) this.pending.delete(e.sha256);
    r.batches++;
    r.timings.commitMs += performance.now() - t;
    this.snapshotted = snapshotEvery > 0 && r.batches % snapshotEvery === 0;
    if (this.snapshotted) this.snapshot();
    this.progress();
  }

  snapshot(): void {
    const t = performance.now();
    this.index.snapshot();
    this.result.snapshots++;
    this.result.timings.snapshotMs += performance.now() - t;
  }

  /** Waits for a stage, counting the time in `key`. */
  async waitFor<T>(p: Promise<T>, key: 'encodeWaitMs' | 'decodeWaitMs'): Promise<T> {
    const t = performance.now();
    try {
      return await p;
    } finally {
      this.result.timings[key] += performance.now() - t;
    }
  }

  finish(): PipelineResult {
    const r = this.result;
    r.seconds = (performance.now() - this.t0) / 1000;
    r.imgPerSec = r.added / r.seconds;
    for (const k of ['encodeWaitMs', 'decodeWaitMs', 'commitMs', 'snapshotMs'] as const) r.timings[k] = Math.round(r.timings[k]);
    return r;
  }
}

/**
 * Runs the pipeline of the file header over `ds` into an open index; `encoder` must be the
 * index's model. Items are added in dataset order; of several items with the same content, the
 * first in dataset order is kept and the others are reported as duplicates.
 */
export async function runPipeline(
  index: VectorIndex,
  encoder: Encoder,
  ffnDims: readonly number[],
  ds: Dataset,
  opts: PipelineOptions = {},
): Promise<PipelineResult> {
  const run = new PipelineRun(
    index,
    encoder.config,
    ds,
    shardOrder(ds, opts.shard),
    settings(index, encoder.config, opts),
    opts.onProgress,
  );
  run.progress();
  // Batches handed to the encoder and not yet committed, oldest first: committed in order.
  const inFlight: { entries: Entry[]; encoding: Promise<EncodeOutput> }[] = [];
  let next = run.fill();
  for (;;) {
    const ready = await run.waitFor(next, 'decodeWaitMs');
    if (ready.length > 0) {
      const encoding = encoder.encode(run.images(ready), ffnDims);
      encoding.catch(() => {}); // awaited below; until then a rejection must not count as unhandled
      inFlight.push({ entries: ready, encoding });
      run.result.timings.encodeCalls++;
      next = run.fill();
      next.catch(() => {});
      if (inFlight.length < IN_FLIGHT) continue; // keep every encoder worker busy before committing
    }
    const head = inFlight.shift();
    if (!head) break;
    run.commit(head.entries, (await run.waitFor(head.encoding, 'encodeWaitMs')).embeddings);
  }
  // The final snapshot, so that the next open loads the graph instead of replaying the run.
  if (run.result.batches > 0 && !run.snapshotted) run.snapshot();
  run.progress(true);
  return run.finish();
}
