// When a worker or the collector stops: on its abort signal (SIGINT/SIGTERM), or with --drain once
// the queues it depends on hold nothing that may still come its way (waiting, delayed for a retry,
// or active: an active job whose worker dies comes back). Failed jobs are kept, not waited for.
import type { Queue } from 'bullmq';

const PENDING = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

export interface Drain {
  done: Promise<void>;
  close: () => Promise<void>;
}

/** Jobs not yet finished in a queue (what --drain waits for). */
export async function pendingJobs(q: Queue): Promise<number> {
  const c = await q.getJobCounts(...PENDING);
  return PENDING.reduce((n, k) => n + (c[k] ?? 0), 0);
}

export function untilDrained(queues: Queue[], o: { drain: boolean; signal?: AbortSignal; pollMs?: number }): Drain {
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<void>((resolve) => {
    if (o.signal?.aborted) return resolve();
    o.signal?.addEventListener('abort', () => resolve(), { once: true });
    if (!o.drain) return;
    const poll = async () => {
      try {
        const n = await Promise.all(queues.map(pendingJobs));
        if (n.every((k) => k === 0)) return resolve();
      } catch {
        // Redis unreachable: the connection retries (redis.ts); ask again later
      }
      timer = setTimeout(poll, o.pollMs ?? 500);
    };
    timer = setTimeout(poll, o.pollMs ?? 500);
  });
  return {
    done: done.finally(() => clearTimeout(timer)),
    close: async () => {
      clearTimeout(timer);
      await Promise.all(queues.map((q) => q.close()));
    },
  };
}
