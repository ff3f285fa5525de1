// `matvit index status`: what a queue holds and how far it is, from BullMQ's job counts and the
// progress the collector records (collector.ts): images committed, img/s, ETA, failed jobs with
// their error, and the items workers could not use.
import { Queue } from 'bullmq';
import { PREFIX, type QueueAddress, Redis, connection, keys, queueNames, readMeta } from './redis.ts';

type Counts = Record<'waiting' | 'active' | 'delayed' | 'completed' | 'failed', number>;

export interface QueueStatus {
  queue: string;
  index: string;
  model: string;
  encode: Counts;
  commit: Counts;
  /** Items the queue's commits added to the index (its live items now, less those before the first enqueue). */
  committed: number;
  live: number;
  /** Items of finished jobs (added, already indexed or skipped) of all enqueued. */
  done: number;
  enqueued: number;
  /** The collector's last rate, items per second, and when it was recorded. */
  imgPerSec: number | null;
  updatedAt: string | null;
  etaSeconds: number | null;
  failed: { queue: 'encode' | 'commit'; id: string; attempts: number; error: string }[];
  skipped: { count: number; byReason: Record<string, number>; items: { spec: string; source: string; reason: string; message: string }[] };
}

const COUNTED = ['waiting', 'active', 'delayed', 'completed', 'failed'] as const;

export async function queueStatus(address: QueueAddress, listLimit = 20): Promise<QueueStatus> {
  const redis = new Redis(connection(address, undefined, 2));
  const names = queueNames(address.name);
  const queues = [names.encode, names.commit].map((n) => new Queue(n, { connection: connection(address, undefined, 2), prefix: PREFIX }));
  try {
    const meta = await readMeta(redis, address);
    const k = keys(address.name);
    const [encode, commit] = (await Promise.all(queues.map((q) => q.getJobCounts(...COUNTED)))) as Counts[];
    const pr = await redis.hgetall(k.progress);
    const num = (key: string) => Number(pr[key] ?? 0);
    const failed: QueueStatus['failed'] = [];
    for (const [q, which] of [
      [queues[0], 'encode'],
      [queues[1], 'commit'],
    ] as const)
      for (const j of await q.getFailed(0, listLimit - 1))
        failed.push({ queue: which, id: j.id!, attempts: j.attemptsMade, error: j.failedReason });
    const skippedAll = await redis.hgetall(k.skipped);
    const byReason: Record<string, number> = {};
    const items: QueueStatus['skipped']['items'] = [];
    for (const [key, v] of Object.entries(skippedAll)) {
      const { reason, message } = JSON.parse(v) as { reason: string; message: string };
      byReason[reason] = (byReason[reason] ?? 0) + 1;
      const [spec, source] = key.split('\t');
      if (items.length < listLimit) items.push({ spec, source, reason, message });
    }
    const rate = pr.rate === undefined ? null : Number(pr.rate);
    const remaining = Math.max(0, num('enqueued') - num('done'));
    return {
      queue: address.url,
      index: meta.index,
      model: `${meta.modelName} (fingerprint ${meta.fingerprint.slice(0, 12)}...)`,
      encode,
      commit,
      committed: Math.max(0, num('live') - num('base')),
      live: num('live'),
      done: num('done'),
      enqueued: num('enqueued'),
      imgPerSec: rate,
      updatedAt: pr.at ? new Date(Number(pr.at)).toISOString() : null,
      etaSeconds: remaining === 0 ? 0 : rate ? remaining / rate : null,
      failed,
      skipped: { count: Object.keys(skippedAll).length, byReason, items },
    };
  } finally {
    await Promise.all(queues.map((q) => q.close()));
    redis.disconnect();
  }
}
