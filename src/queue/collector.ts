// `matvit index collect`: the only writer of the index, of either store (open-store.ts). Takes
// commit jobs one at a time, adds their items (IndexStore add: the store commits first, durably,
// and skips any sha256 the index holds, so a job delivered twice adds nothing), records the items
// the worker could not use, and only then returns, which is what acknowledges the job to BullMQ.
// Killed at any point, it loses nothing: a job not yet acknowledged comes back once its lock
// expires, and reopening the index finds every commit (SQLite replays the store past the last graph
// snapshot). Snapshots as `index build` does: every `snapshotEvery` commits and when it stops.
import { type Job, Queue, Worker } from 'bullmq';
import type { Logger } from 'pino';
import { openIndex } from '../index/open-store.ts';
import { type CommitJob, unpackVectors } from './jobs.ts';
import { PREFIX, type QueueAddress, Redis, connection, keys, queueNames, readMeta } from './redis.ts';
import { untilDrained } from './drain.ts';

export interface CollectorOptions {
  address: QueueAddress;
  index: string;
  snapshotEvery: number;
  /** Exit once both queues hold nothing waiting, delayed or active. */
  drain: boolean;
  /** How many skipped items the summary lists (all are counted, and kept in Redis for `index status`). */
  listLimit: number;
  log: Logger;
  signal?: AbortSignal;
  onProgress?: (p: CollectorProgress) => void;
}

export interface CollectorProgress {
  commits: number;
  added: number;
  /** Items of a redelivered job (or content another job added first): already in the index. */
  alreadyIndexed: number;
  skipped: number;
  /** Live items in the index. */
  live: number;
  /** Items of the queue's jobs done so far (added, already indexed or skipped), and enqueued in all. */
  done: number;
  enqueued: number;
  elapsedMs: number;
}

export interface CollectorSummary extends CollectorProgress {
  index: string;
  queue: string;
  snapshots: number;
  imgPerSec: number;
  skippedItems: { spec: string; source: string; reason: string; message: string }[];
}

/**
 * Counts a commit job's items in the queue's progress once, however often the job is delivered,
 * and records the index's live count and the collector's rate (for `index status`).
 */
const COUNT_ONCE = `
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[2], 'done', ARGV[2]) end
redis.call('HSET', KEYS[2], 'live', ARGV[3], 'rate', ARGV[4], 'at', ARGV[5])
return redis.call('HMGET', KEYS[2], 'done', 'enqueued')`;

export async function runCollector(o: CollectorOptions): Promise<CollectorSummary> {
  const { log, address } = o;
  const redis = new Redis(connection(address, log));
  const k = keys(address.name);
  const meta = await readMeta(redis, address);
  const index = openIndex(o.index, { expectedFingerprint: meta.fingerprint });
  const names = queueNames(address.name);
  const t0 = performance.now();
  const p: CollectorProgress = {
    commits: 0,
    added: 0,
    alreadyIndexed: 0,
    skipped: 0,
    live: index.size,
    done: 0,
    enqueued: 0,
    elapsedMs: 0,
  };
  const skippedItems: CollectorSummary['skippedItems'] = [];
  let snapshots = 0,
    dirty = false;
  try {
    const { ffnDims } = index.info().manifest;
    if (ffnDims.join() !== meta.ffnDims.join())
      throw new Error(`${o.index} was embedded with ffnDims ${ffnDims.join(',')}; ${address.url} encodes with ${meta.ffnDims.join(',')}`);
    log.info({ queue: address.url, index: o.index, live: index.size, opened: index.opened }, 'collector started');

    const commit = async (job: Job<CommitJob>) => {
      const { items, vectors, skipped } = job.data;
      const { dim } = index.params;
      const v = unpackVectors(vectors, items.length, dim);
      const r = index.add(items.map((it, j) => ({ ...it, vector: v.subarray(j * dim, (j + 1) * dim) })));
      const added = r.ids.filter((id) => id !== null).length;
      dirty = true;
      if (skipped.length)
        await redis.hset(
          k.skipped,
          Object.fromEntries(skipped.map((s) => [`${s.spec}\t${s.source}`, JSON.stringify({ reason: s.reason, message: s.message })])),
        );
      p.commits++;
      p.added += added;
      p.alreadyIndexed += items.length - added;
      p.skipped += skipped.length;
      p.live = index.size;
      p.elapsedMs = performance.now() - t0;
      for (const s of skipped) if (skippedItems.length < o.listLimit) skippedItems.push(s);
      if (o.snapshotEvery > 0 && p.commits % o.snapshotEvery === 0) snapshot();
      const rate = (p.added + p.alreadyIndexed + p.skipped) / (p.elapsedMs / 1000);
      const [done, enqueued] = (await redis.eval(
        COUNT_ONCE,
        2,
        k.counted,
        k.progress,
        job.id!,
        items.length + skipped.length,
        p.live,
        rate.toFixed(1),
        Date.now(),
      )) as [string | null, string | null];
      p.done = Number(done ?? 0);
      p.enqueued = Number(enqueued ?? 0);
      log.info({ job: job.id, added, alreadyIndexed: items.length - added, skipped: skipped.length, live: p.live }, 'committed');
      o.onProgress?.(p);
      return { added, alreadyIndexed: items.length - added, skipped: skipped.length };
    };
    const snapshot = () => {
      index.snapshot();
      snapshots++;
      dirty = false;
    };

    const s = meta.settings;
    // Concurrency 1: commits are synchronous and in turn; the next job is fetched once this one is acknowledged.
    const worker = new Worker<CommitJob>(names.commit, commit, {
      connection: connection(address, log),
      prefix: PREFIX,
      concurrency: 1,
      lockDuration: s.lockDurationMs,
      stalledInterval: s.stalledIntervalMs,
      maxStalledCount: s.maxStalledCount,
    });
    worker.on('failed', (job, e) => log.warn({ job: job?.id, attempt: job?.attemptsMade, err: e.message }, 'commit job failed'));
    worker.on('error', (e) => log.warn({ err: e.message }, 'collector error'));
    const queues = [names.encode, names.commit].map((n) => new Queue(n, { connection: connection(address, log), prefix: PREFIX }));
    const drain = untilDrained(queues, o);
    try {
      await drain.done;
    } finally {
      await worker.close();
      await drain.close();
    }
    if (dirty) snapshot();
  } finally {
    index.close({ snapshot: false });
    redis.disconnect();
  }
  p.elapsedMs = performance.now() - t0;
  return {
    index: o.index,
    queue: address.url,
    ...p,
    snapshots,
    imgPerSec: p.added / (p.elapsedMs / 1000),
    skippedItems,
  };
}
