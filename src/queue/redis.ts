// Where a distributed indexing queue lives (`redis://HOST:PORT/NAME`), the Redis connection every
// process of it uses, and the few keys of its own next to BullMQ's (the shared settings, progress,
// skipped items). The job engine is BullMQ (https://docs.bullmq.io); everything about delivery
// (retries, stalled jobs, job ids) is left to it.
import type { RedisOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';

/** BullMQ's key prefix for this project's queues: keys are matvit:NAME.encode:..., matvit:NAME.commit:... */
export const PREFIX = 'matvit';

export interface QueueAddress {
  /** The URL without a password, for logs and summaries. */
  url: string;
  name: string;
  redis: RedisOptions;
}

const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

/** `redis://[user:password@]HOST:PORT/NAME[?db=N]` (rediss:// for TLS); the error says what is expected. */
export function parseQueueUrl(url: string): QueueAddress {
  const want = 'expected redis://HOST:PORT/NAME (NAME: letters, digits, . _ -; optionally user:password@ and ?db=N)';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`${want}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`protocol ${u.protocol.slice(0, -1)}: ${want}`);
  const name = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!NAME.test(name)) throw new Error(`queue name "${name}": ${want}`);
  const db = u.searchParams.get('db');
  if (db !== null && !/^\d+$/.test(db)) throw new Error(`db=${db}: expected a database number`);
  const redis: RedisOptions = {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username && { username: decodeURIComponent(u.username) }),
    ...(u.password && { password: decodeURIComponent(u.password) }),
    ...(db !== null && { db: Number(db) }),
    ...(u.protocol === 'rediss:' && { tls: {} }),
  };
  const shown = new URL(url);
  shown.password = '';
  return { url: shown.toString(), name, redis };
}

/**
 * Connection options for a long-running process (worker, collector): a lost connection is retried
 * forever with back-off up to 5 s, and every attempt is logged; BullMQ's blocking commands need
 * maxRetriesPerRequest null (https://docs.bullmq.io/guide/going-to-production#maxretriesperrequest).
 * A one-shot command (enqueue, status) gives up after `retries` attempts instead.
 */
export function connection(a: QueueAddress, log?: Logger, retries = Infinity): RedisOptions {
  return {
    ...a.redis,
    maxRetriesPerRequest: retries === Infinity ? null : retries,
    connectTimeout: 5000,
    retryStrategy: (times) => {
      if (times > retries) return null;
      const ms = Math.min(200 * 2 ** Math.min(times - 1, 5), 5000);
      log?.warn({ redis: `${a.redis.host}:${a.redis.port}`, attempt: times, retryInMs: ms }, 'redis connection lost: reconnecting');
      return ms;
    },
  };
}

export const queueNames = (name: string) => ({ encode: `${name}.encode`, commit: `${name}.commit` });

/** This project's own keys of a queue (BullMQ's are under PREFIX:NAME.encode and PREFIX:NAME.commit). */
export const keys = (name: string) => ({
  /** JSON QueueMeta (written by enqueue). */
  meta: `${PREFIX}:${name}:meta`,
  /** Hash: counts written by enqueue (enqueued, base) and the collector (done, live, rate, at). */
  progress: `${PREFIX}:${name}:progress`,
  /** Set of commit job ids already counted in progress.done (a redelivered job counts once). */
  counted: `${PREFIX}:${name}:counted`,
  /** Hash: "SPEC\tSOURCE" -> JSON {reason, message} of every item a worker could not use. */
  skipped: `${PREFIX}:${name}:skipped`,
});

/**
 * BullMQ's delivery settings, shared by every process of a queue (enqueue stores them in QueueMeta).
 * Defaults are BullMQ's own except attempts (BullMQ: 1) and maxStalledCount (BullMQ: 1): a job
 * gets 3 tries, and may lose its worker twice before it fails.
 */
export const QueueSettings = z
  .object({
    /** Tries per job (job option `attempts`); then it stays in the failed set with its error. */
    attempts: z.number().int().min(1).default(3),
    /** First retry delay, doubled at each retry (job option `backoff: { type: 'exponential' }`). */
    backoffMs: z.number().int().min(0).default(1000),
    /** How long a job's lock lasts unless its worker renews it (worker option `lockDuration`). */
    lockDurationMs: z.number().int().min(100).default(30_000),
    /** How often workers look for jobs whose lock expired (worker option `stalledInterval`). */
    stalledIntervalMs: z.number().int().min(100).default(30_000),
    /** Times a job may stall (its worker died) and go back to wait before it fails (worker option `maxStalledCount`). */
    maxStalledCount: z.number().int().min(0).default(2),
  })
  .strict();
export type QueueSettings = z.infer<typeof QueueSettings>;

/** What every process of a queue must agree on, from the index the collector writes. */
export const QueueMeta = z
  .object({
    version: z.literal(1),
    /** The index directory as enqueue saw it (the collector may see it elsewhere). */
    index: z.string(),
    fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
    modelName: z.string(),
    ffnDims: z.array(z.number().int().positive()).min(1),
    dim: z.number().int().positive(),
    settings: QueueSettings,
  })
  .strict();
export type QueueMeta = z.infer<typeof QueueMeta>;

export async function readMeta(redis: Redis, a: QueueAddress): Promise<QueueMeta> {
  const text = await redis.get(keys(a.name).meta);
  if (text === null) throw new Error(`${a.url}: no such queue (nothing was enqueued on it yet: run matvit index enqueue first)`);
  return QueueMeta.parse(JSON.parse(text));
}

export { Redis };
