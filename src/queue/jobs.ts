// The two kinds of job and how BullMQ keeps them. An encode job names a batch of corpus items
// (dataset spec, position, source, content sha256: never pixels); the worker that takes it adds a
// commit job with the embeddings (float32, base64) under the same job id, which the collector
// commits into the index. What carries each guarantee (https://docs.bullmq.io/guide/jobs):
// - deterministic job ids: adding a job whose id exists is a no-op (enqueue twice adds nothing; an
//   encode job retried after adding its commit job adds no second one while the first waits; once
//   committed and removed, a second one commits nothing: the sha256 check below);
// - attempts + exponential backoff: a job that throws is retried, and after `attempts` tries it is
//   kept in the failed set with its error (removeOnFail false);
// - the lock (lockDuration) and the stalled check (stalledInterval, maxStalledCount): a job whose
//   worker died goes back to wait and is taken again; the collector acknowledges a commit job only
//   by returning after the commit is durable, so a collector killed mid-commit gets it again, and
//   the store's sha256 check (store.ts insert) makes the second commit add nothing.
import type { JobsOptions } from 'bullmq';
import type { QueueSettings } from './redis.ts';

export interface EncodeItem {
  /** Position in the dataset of `spec`. */
  i: number;
  /** What the index records as its source (index/item-input.ts sourceOf). */
  source: string;
  /** Of the content enqueue read; '' when enqueue could not read it (the worker reports why). */
  sha256: string;
}

export interface EncodeJob {
  spec: string;
  items: EncodeItem[];
}

export interface SkippedItem {
  spec: string;
  source: string;
  /** data/preprocess.ts's DecodeReason, or 'changed' / 'missing' when the file is not what was enqueued. */
  reason: string;
  message: string;
}

export interface CommitItem {
  source: string;
  label: number;
  labelName: string | null;
  sha256: string;
  bytes: number;
}

export interface CommitJob {
  spec: string;
  items: CommitItem[];
  /** items.length x dim float32, little-endian, base64 (JSON carries no binary). */
  vectors: string;
  skipped: SkippedItem[];
}

export const packVectors = (v: Float32Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');

export function unpackVectors(s: string, rows: number, dim: number): Float32Array {
  const b = Buffer.from(s, 'base64');
  if (b.length !== rows * dim * 4) throw new Error(`commit job: ${b.length} bytes of vectors for ${rows} items of dim ${dim}`);
  const out = new Float32Array(rows * dim);
  b.copy(Buffer.from(out.buffer));
  return out;
}

/** Job options from the queue's settings: retries, and failed jobs kept with their error. */
export function jobOptions(s: QueueSettings, kind: 'encode' | 'commit', jobId: string): JobsOptions {
  return {
    jobId,
    attempts: s.attempts,
    backoff: { type: 'exponential', delay: s.backoffMs },
    removeOnFail: false,
    // Completed encode jobs stay (a few bytes per item) so that their ids keep re-enqueueing a no-op;
    // a completed commit job's embeddings are in the index and leave Redis.
    removeOnComplete: kind === 'commit',
  };
}
