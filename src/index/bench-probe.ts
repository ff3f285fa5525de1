// The serving side of `bench index --synthetic` (bench-synthetic.ts), run in its own process so
// that its RSS is one store's: opens the index read-only as `serve --read-only` does, searches
// every query once to warm up and once timed, and sends the ids, latencies and its memory.
// Usage (a child of bench-synthetic.ts): node --import tsx bench-probe.ts DIR QUERIES.f32 DIM
import fs from 'node:fs';
import { openIndex } from './open-store.ts';

const [dir, file, dimArg] = process.argv.slice(2);
const dim = Number(dimArg);
const raw = fs.readFileSync(file);
const queries = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const n = queries.length / dim;
const t0 = performance.now();
const index = openIndex(dir, { mode: 'read' });
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
const peakRssMB = process.resourceUsage().maxRSS / 1024;
index.close({ snapshot: false });
process.send!({ ids, ms, rssMB, peakRssMB, openMs }, () => process.exit(0));
