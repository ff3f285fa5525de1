// The serving side of `bench index --synthetic` (bench-synthetic.ts), run in its own process so
// that its RSS is one store's: opens the index read-only as `serve --read-only` does, searches
// every query once to warm up and once timed, and sends the ids, latencies and its memory.
// Usage (a child of bench-synthetic.ts): node --import tsx bench-probe.ts DIR QUERIES.f32 DIM [INDEX_CACHE_MB]
import fs from 'node:fs';
import { openIndex } from './open-store.ts';

/**
 * This process's peak RSS in bytes: Linux's VmHWM. Not getrusage's maxRSS, which Linux carries
 * across exec, so a forked child reports its parent's peak when that was higher (see "ru_maxrss"
 * in getrusage(2)): the bench's parent holds the build and reported 1.6-2.5 GB for a 230 MB child.
 */
function peakRss(): number {
  try {
    return Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
  } catch {
    return process.resourceUsage().maxRSS * 1024;
  }
}

const [dir, file, dimArg, cacheArg] = process.argv.slice(2);
const dim = Number(dimArg);
const raw = fs.readFileSync(file);
const queries = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const n = queries.length / dim;
const baseRssMB = process.memoryUsage().rss / 2 ** 20;
const t0 = performance.now();
const index = openIndex(dir, { mode: 'read', indexCacheMB: cacheArg ? Number(cacheArg) : undefined });
const openMs = performance.now() - t0;
const q = (i: number) => queries.subarray(i * dim, (i + 1) * dim);
for (let i = 0; i < n; i++) index.search(q(i), 10);
const ms: number[] = [];
const ids: number[][] = [];
for (let i = 0; i < n; i++) {
  const t = performance.now();
  ids.push(index.search(q(i), 10).map((h) => h.id));
  ms.push(performance.now() - t);
}
const rssMB = process.memoryUsage().rss / 2 ** 20;
const peakRssMB = peakRss() / 2 ** 20;
index.close({ snapshot: false });
process.send!({ ids, ms, rssMB, peakRssMB, baseRssMB, openMs }, () => process.exit(0));
