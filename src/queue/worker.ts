// `matvit index worker`: takes encode jobs (jobs.ts), reads and decodes their items from the
// corpus (a path this machine shares with the others), embeds them with the index's corpus
// submodel on ONNX Runtime and hands the embeddings to the collector as a commit job under the
// same job id. A file that cannot be used is reported in the commit job with its reason; the job
// itself only fails (and is retried by BullMQ) on an error that is not the file's.
//
// ONNX runs in worker threads (engine/onnx-worker.ts), one intra-op thread each by default: the
// main thread stays free to decode the next job and to renew the job locks (a blocked event loop
// would let a lock expire and the job be taken twice).
import { type Job, Queue, Worker } from 'bullmq';
import type { Logger } from 'pino';
import { type Dataset, parseDatasetSpec } from '../data/dataset.ts';
import { forEachLimited } from '../data/pool.ts';
import { DecodeError } from '../data/preprocess.ts';
import { createEncoder } from '../engine/encoder.ts';
import { decodeItem, readItem, sourceOf } from '../index/item-input.ts';
import type { Checkpoint } from '../model/checkpoint.ts';
import { type CommitItem, type CommitJob, type EncodeItem, type EncodeJob, type SkippedItem, jobOptions, packVectors } from './jobs.ts';
import { PREFIX, type QueueAddress, Redis, connection, queueNames, readMeta } from './redis.ts';
import { type Drain, untilDrained } from './drain.ts';

export interface WorkerOptions {
  address: QueueAddress;
  checkpoint: Checkpoint;
  /** Encode jobs at once (one decoding while another embeds). */
  concurrency: number;
  /** ONNX worker threads, each running whole batches with `threads` intra-op threads. */
  workers: number;
  threads: number;
  /** Refuse images of more pixels (data/limits.ts). */
  maxPixels: number;
  /** Exit once the encode queue has nothing waiting, delayed or active. */
  drain: boolean;
  log: Logger;
  signal?: AbortSignal;
  onProgress?: (p: WorkerProgress) => void;
}

export interface WorkerProgress {
  jobs: number;
  embedded: number;
  skipped: number;
  elapsedMs: number;
}

export interface WorkerSummary extends WorkerProgress {
  imgPerSec: number;
  engine: string;
}

/** Datasets by spec, opened once; a source -> position map only when positions disagree (the corpus changed). */
class Corpora {
  private readonly open = new Map<string, Promise<Dataset>>();
  private readonly bySource = new Map<string, Map<string, number>>();
  constructor(private readonly maxPixels: number) {}

  dataset(spec: string): Promise<Dataset> {
    let ds = this.open.get(spec);
    if (!ds) {
      this.open.set(spec, (ds = parseDatasetSpec(spec, { limitInputPixels: this.maxPixels })));
      ds.catch(() => this.open.delete(spec));
    }
    return ds;
  }

  /** The position of an item in `ds` now, or undefined when the corpus no longer has it. */
  locate(ds: Dataset, it: EncodeItem): number | undefined {
    if (it.i < ds.size && sourceOf(ds.item(it.i)) === it.source) return it.i;
    let m = this.bySource.get(ds.spec);
    if (!m) {
      m = new Map();
      for (let i = 0; i < ds.size; i++) m.set(sourceOf(ds.item(i)), i);
      this.bySource.set(ds.spec, m);
    }
    return m.get(it.source);
  }
}

export async function runWorker(o: WorkerOptions): Promise<WorkerSummary> {
  const { log, address } = o;
  const redis = new Redis(connection(address, log));
  const meta = await readMeta(redis, address).finally(() => redis.disconnect());
  const { meta: cm, weights } = o.checkpoint;
  if (cm.fingerprint !== meta.fingerprint)
    throw new Error(
      `${address.url} indexes with model ${meta.modelName} of fingerprint ${meta.fingerprint}; the model given (${cm.model.name}) has fingerprint ${cm.fingerprint}: embeddings of another model would not be comparable. Give the index's model`,
    );
  const cfg = cm.model;
  const encoder = await createEncoder('onnx', cfg, weights, { offThread: true, threads: o.workers * o.threads, workers: o.workers });
  const per = cfg.channels * cfg.imageSize * cfg.imageSize;
  await encoder.encode(new Float32Array(per), meta.ffnDims); // build the sessions before taking a job
  const corpora = new Corpora(o.maxPixels);
  const names = queueNames(address.name);
  const commits = new Queue<CommitJob, unknown, 'commit'>(names.commit, { connection: connection(address, log), prefix: PREFIX });
  const t0 = performance.now();
  const p: WorkerProgress = { jobs: 0, embedded: 0, skipped: 0, elapsedMs: 0 };

  const encodeJob = async (job: Job<EncodeJob>) => {
    const { spec, items } = job.data;
    const ds = await corpora.dataset(spec);
    const inputs: (Float32Array | null)[] = new Array(items.length).fill(null);
    const kept: (CommitItem | null)[] = new Array(items.length).fill(null);
    const skipped: SkippedItem[] = [];
    const skip = (it: EncodeItem, reason: string, message: string) => skipped.push({ spec, source: it.source, reason, message });
    await forEachLimited(items.length, 4, async (k) => {
      const it = items[k];
      const i = corpora.locate(ds, it);
      if (i === undefined) return void skip(it, 'missing', `${spec} no longer holds ${it.source}`);
      try {
        const { bytes, sha256 } = await readItem(ds, i);
        if (it.sha256 && sha256 !== it.sha256)
          return void skip(
            it,
            'changed',
            `the content changed since it was enqueued (sha256 ${it.sha256.slice(0, 12)}..., now ${sha256.slice(0, 12)}...)`,
          );
        inputs[k] = await decodeItem(ds, bytes, cfg, { limitInputPixels: o.maxPixels });
        const { label } = ds.item(i);
        kept[k] = { source: it.source, label, labelName: ds.classNames[label] ?? null, sha256, bytes: bytes.length };
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
        skip(it, e.reason, e.message);
      }
    });
    const ks = kept.flatMap((c, k) => (c ? [k] : []));
    const images = new Float32Array(ks.length * per);
    ks.forEach((k, b) => images.set(inputs[k]!, b * per));
    const vectors = ks.length ? (await encoder.encode(images, meta.ffnDims)).embeddings : new Float32Array(0);
    const data: CommitJob = { spec, items: ks.map((k) => kept[k]!), vectors: packVectors(vectors), skipped };
    // Same id as the encode job: a retry of this job after the add adds nothing (jobs.ts).
    await commits.add('commit', data, jobOptions(meta.settings, 'commit', job.id!));
    return { embedded: ks.length, skipped: skipped.length };
  };

  const s = meta.settings;
  const worker = new Worker<EncodeJob>(names.encode, encodeJob, {
    connection: connection(address, log),
    prefix: PREFIX,
    concurrency: o.concurrency,
    lockDuration: s.lockDurationMs,
    stalledInterval: s.stalledIntervalMs,
    maxStalledCount: s.maxStalledCount,
  });
  worker.on('completed', (job, r: { embedded: number; skipped: number }) => {
    p.jobs++;
    p.embedded += r.embedded;
    p.skipped += r.skipped;
    p.elapsedMs = performance.now() - t0;
    log.info({ job: job.id, ...r }, 'encoded');
    o.onProgress?.(p);
  });
  worker.on('failed', (job, e) => log.warn({ job: job?.id, attempt: job?.attemptsMade, err: e.message }, 'encode job failed'));
  worker.on('error', (e) => log.warn({ err: e.message }, 'worker error'));
  log.info({ queue: address.url, engine: encoder.description, concurrency: o.concurrency }, 'worker started');

  const drain: Drain = untilDrained([new Queue(names.encode, { connection: connection(address, log), prefix: PREFIX })], o);
  try {
    await drain.done;
  } finally {
    await worker.close();
    await drain.close();
    await commits.close();
    await encoder.dispose();
  }
  p.elapsedMs = performance.now() - t0;
  return { ...p, imgPerSec: p.embedded / (p.elapsedMs / 1000), engine: encoder.description };
}
