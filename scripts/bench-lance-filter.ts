// `node --import tsx scripts/bench-lance-filter.ts [--n 50000] [--dim 128] [--sample 100] [--nprobes P] [--dir DIR]`:
// search filters evaluated inside the LanceDB store (src/index/lance-filter.ts) on a synthetic table
// (item i: label i % 10, payload {fold: i % 100, tag: 'a' | 'b', price: (i % 1000) / 10}, vectors a
// seeded Gaussian mixture), IVF-PQ trained as a build does. Per filter: recall@10 against exact
// filtered search and latency per query (src/index/filter-bench.ts); unfiltered search beside it.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import seedrandom from 'seedrandom';
import { Filter } from '../src/index/filter.ts';
import { benchFilters } from '../src/index/filter-bench.ts';
import { createLance } from '../src/index/lance-create.ts';
import { seededSample } from '../src/util/sample.ts';

const { values: o } = parseArgs({
  options: {
    n: { type: 'string', default: '50000' },
    dim: { type: 'string', default: '128' },
    sample: { type: 'string', default: '100' },
    nprobes: { type: 'string' },
    dir: { type: 'string' },
  },
});
const [n, dim] = [Number(o.n), Number(o.dim)];
const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-lance-filter-bench-'));
const rng = seedrandom('lance-filter-bench');
const gauss = () => Math.sqrt(-2 * Math.log(rng() || 1e-12)) * Math.cos(2 * Math.PI * rng());
const centres = Array.from({ length: 256 }, () => Array.from({ length: dim }, gauss));
const vector = () => {
  const c = centres[Math.floor(rng() * centres.length)];
  const v = c.map((x) => x + 0.5 * gauss());
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
};

const t0 = performance.now();
const index = createLance(
  path.join(dir, 'lance'),
  { fingerprint: 'f'.repeat(64), modelName: 'synthetic', ffnDims: [dim], dim, space: 'cosine', corpus: {} },
  { annMinRows: Math.min(n, 50_000), ...(o.nprobes && { nprobes: Number(o.nprobes) }) },
);
try {
  for (let from = 0; from < n; from += 5000)
    index.add(
      Array.from({ length: Math.min(5000, n - from) }, (_, j) => {
        const i = from + j;
        const payload = { fold: i % 100, tag: i % 2 ? 'b' : 'a', price: (i % 1000) / 10 };
        return {
          source: `synthetic:#${i}`,
          label: i % 10,
          sha256: createHash('sha256').update(`${i}`).digest('hex'),
          bytes: 0,
          vector: vector(),
          payload,
        };
      }),
    );
  index.snapshot(); // trains the ANN index once the table holds annMinRows items
  const ann = index.info().store.ann;
  console.log(
    `${n} x ${dim} built in ${((performance.now() - t0) / 1000).toFixed(1)} s; ANN: ${JSON.stringify(ann)}, nprobes ${index.info().graph.ef}`,
  );

  const filters = [{ 'payload.tag': 'a' }, { label: 3 }, { 'payload.fold': 7 }, { 'payload.price': { gte: 10, lt: 10.5 } }].map((f) =>
    Filter.parse(f),
  );
  const nprobes = index.info().graph.ef; // what an unfiltered search probes (the bench's ef is LanceDB's nprobes)
  const r = await benchFilters(index, filters, { sample: Number(o.sample), routes: ['auto'], ef: nprobes });
  // Unfiltered, from the same sample of stored items as the bench's queries.
  const { ids, vectors } = index.liveMatrix();
  const sample = seededSample(Array.from(ids.keys()), r.queries, 'bench-filter');
  const ms = sample.map((row) => {
    const t = performance.now();
    index.search(vectors.subarray(row * dim, (row + 1) * dim), 10, { ef: nprobes });
    return performance.now() - t;
  });
  ms.sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  console.log(`| filter | kept | recall@10 | ms mean / p95 |\n| --- | --- | --- | --- |`);
  console.log(`| none | 100% | | ${mean.toFixed(1)} / ${ms[Math.floor(0.95 * (ms.length - 1))].toFixed(1)} |`);
  for (const row of r.rows) {
    const a = row.routes[0];
    console.log(
      `| \`${JSON.stringify(row.filter)}\` | ${(100 * row.fraction).toFixed(1)}% (${row.matching}) | ${a.recall.toFixed(4)} | ${a.msMean.toFixed(1)} / ${a.msP95.toFixed(1)} |`,
    );
  }
} finally {
  index.close();
  if (!o.dir) fs.rmSync(dir, { recursive: true, force: true });
}
