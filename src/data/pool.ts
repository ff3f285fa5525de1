// A bounded number of async jobs in flight. sharp decodes on libuv's thread pool, so starting every
// image of a batch at once would only queue them there while holding all their buffers in memory.

/** Runs fn(0) .. fn(n - 1) with at most `concurrency` running at a time; rejects on the first failure. */
export async function forEachLimited(n: number, concurrency: number, fn: (k: number) => Promise<void>): Promise<void> {
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new Error(`concurrency ${concurrency}: expected an integer >= 1`);
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
}
