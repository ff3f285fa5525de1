// `matvit bench index --synthetic N`: both stores side by side on N synthetic unit vectors. Each is
// built through its own add() in batches (the path a build takes), timed; then a fresh child
// process opens it read-only, as `serve --read-only` does, runs the same held-out queries twice
// (warm-up, then timed) and reports per-query latency and its RSS (bench-probe.ts). Recall@10 is
// against exact top 10 computed here by a plain scan over the same vectors, independent of either
// store. The vectors are a seeded Gaussian mixture (clusters, like real embeddings; uniform random
// vectors in high dimension have no near neighbours for an ANN index to find), each varying in a
// low-dimensional subspace around its centre.
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import seedrandom from 'seedrandom';
import { TopK } from '../util/topk.ts';
import type { LanceParamsInput } from './lance-params.ts';
import { createLance } from './lance-create.ts';
import type { IndexStore, StoreKind } from './store-api.ts';
import { VectorIndex } from './vector-index.ts';

export interface SyntheticOptions {
  n: number;
  dim: number;
  queries: number;
  /** Where the two indexes are built (removed afterwards unless keep). */
  dir: string;
  stores: StoreKind[];
  lance?: LanceParamsInput;
  keep?: boolean;
  /** The serving child's LanceDB index cache bound (OpenOptions.indexCacheMB). */
  indexCacheMB?: number;
  onProgress?: (line: string) => void;
}

export interface StoreBench {
  store: StoreKind;
  buildSeconds: number;
  diskMB: number;
  recallAt10: number;
  p50Ms: number;
  p99Ms: number;
  /** The serving child's RSS after the timed queries, and its peak (open included). */
  rssMB: number;
  peakRssMB: number;
  /** The child's RSS before it opened the index (Node, tsx and the modules: the same for both stores). */
  baseRssMB: number;
  openMs: number;
}

const CHUNK = 10_000;
const FP = 'b'.repeat(64);

/** Intrinsic dimension of each cluster: real embeddings vary along few directions around each mode. */
const LOCAL_DIM = 8;

interface Mixture {
  dim: number;
  k: number;
  /** [k, dim] cluster centres, and per cluster a [LOCAL_DIM, dim] basis its points vary along. */
  centres: Float32Array;
  bases: Float32Array;
}

/** Standard normal deviates (Box-Muller). */
const gauss = (rng: () => number) => Math.sqrt(-2 * Math.log(rng() || 1e-12)) * Math.cos(2 * Math.PI * rng());

function mixture(n: number, dim: number): Mixture {
  const rng = seedrandom('synthetic-mixture');
  const k = Math.max(16, Math.round(n / 1000));
  const centres = Float32Array.from({ length: k * dim }, () => gauss(rng) / Math.sqrt(dim));
  const bases = Float32Array.from({ length: k * LOCAL_DIM * dim }, () => (0.6 * gauss(rng)) / Math.sqrt(dim * LOCAL_DIM));
  return { dim, k, centres, bases };
}

/**
 * Rows `rows` of chunk c (the same on every call): a random cluster's centre, plus a Gaussian
 * point of its LOCAL_DIM-d subspace, plus a little isotropic noise, scaled to unit length.
 */
function chunk(c: number, rows: number, m: Mixture, seed: string): Float32Array {
  const { dim, k, centres, bases } = m;
  const rng = seedrandom(`${seed}-${c}`);
  const out = new Float32Array(rows * dim);
  const z = new Float32Array(LOCAL_DIM);
  for (let r = 0; r < rows; r++) {
    const cl = Math.floor(rng() * k);
    for (let l = 0; l < LOCAL_DIM; l++) z[l] = gauss(rng);
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      let x = centres[cl * dim + j] + (0.05 * gauss(rng)) / Math.sqrt(dim);
      for (let l = 0; l < LOCAL_DIM; l++) x += z[l] * bases[(cl * LOCAL_DIM + l) * dim + j];
      out[r * dim + j] = x;
      norm += x * x;
    }
    norm = Math.sqrt(norm);
    for (let j = 0; j < dim; j++) out[r * dim + j] /= norm;
  }
  return out;
}

const dirBytes = (p: string): number =>
  fs.statSync(p).isDirectory() ? fs.readdirSync(p).reduce((s, f) => s + dirBytes(path.join(p, f)), 0) : fs.statSync(p).size;

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

export async function benchSynthetic(o: SyntheticOptions): Promise<{ n: number; dim: number; queries: number; stores: StoreBench[] }> {
  const { n, dim } = o;
  const say = o.onProgress ?? (() => {});
  const mix = mixture(n, dim);
  const chunks = Math.ceil(n / CHUNK);
  const rowsOf = (c: number) => Math.min(CHUNK, n - c * CHUNK);
  const queries = chunk(0, o.queries, mix, 'synthetic-queries');
  fs.mkdirSync(o.dir, { recursive: true });
  const qFile = path.join(o.dir, 'queries.f32');
  fs.writeFileSync(qFile, queries);

  // Exact top 10 by a plain scan (ids are insertion order + 1 in both stores).
  const tops = Array.from({ length: o.queries }, () => new TopK(10));
  for (let c = 0; c < chunks; c++) {
    const v = chunk(c, rowsOf(c), mix, 'synthetic');
    for (let r = 0; r < rowsOf(c); r++)
      for (let q = 0; q < o.queries; q++) {
        let dot = 0;
        for (let j = 0; j < dim; j++) dot += queries[q * dim + j] * v[r * dim + j];
        tops[q].push(c * CHUNK + r + 1, dot);
      }
  }
  const truth = tops.map((t) => new Set(t.result().map((s) => s.id)));
  say(`exact top 10 of ${o.queries} queries over ${n} vectors done`);

  const out: StoreBench[] = [];
  for (const store of o.stores) {
    const dir = path.join(o.dir, store);
    fs.rmSync(dir, { recursive: true, force: true });
    const params = {
      fingerprint: FP,
      modelName: 'synthetic',
      ffnDims: [dim],
      dim,
      space: 'cosine' as const,
      corpus: { spec: `synthetic:${n}x${dim}` },
    };
    const t0 = performance.now();
    const index: IndexStore = store === 'lance' ? createLance(dir, params, o.lance) : VectorIndex.create(dir, params);
    try {
      for (let c = 0; c < chunks; c++) {
        const v = chunk(c, rowsOf(c), mix, 'synthetic');
        index.add(
          Array.from({ length: rowsOf(c) }, (_, r) => {
            const i = c * CHUNK + r;
            return {
              source: `synthetic:#${i}`,
              sha256: createHash('sha256').update(`synthetic ${i}`).digest('hex'),
              bytes: 0,
              vector: v.subarray(r * dim, (r + 1) * dim),
            };
          }),
        );
        // As a build does every few batches (pipeline.ts): B-tree and ANN indexes kept up.
        if ((c + 1) % 10 === 0) index.snapshot();
        if ((c + 1) % 10 === 0) say(`${store}: ${(c + 1) * CHUNK} added, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
      index.snapshot();
    } finally {
      index.close();
    }
    const buildSeconds = (performance.now() - t0) / 1000;
    say(`${store}: built in ${buildSeconds.toFixed(1)} s; serving child...`);
    const probe = await probeServing(dir, qFile, dim, o.indexCacheMB);
    const hits = probe.ids.reduce((s, ids, q) => s + ids.filter((id) => truth[q].has(id)).length, 0);
    out.push({
      store,
      buildSeconds,
      diskMB: dirBytes(dir) / 2 ** 20,
      recallAt10: hits / (10 * o.queries),
      p50Ms: percentile(probe.ms, 0.5),
      p99Ms: percentile(probe.ms, 0.99),
      rssMB: probe.rssMB,
      peakRssMB: probe.peakRssMB,
      baseRssMB: probe.baseRssMB,
      openMs: probe.openMs,
    });
    if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
  if (!o.keep) fs.rmSync(qFile, { force: true });
  return { n, dim, queries: o.queries, stores: out };
}

interface Probe {
  ids: number[][];
  ms: number[];
  rssMB: number;
  peakRssMB: number;
  /** The child's RSS before it opened the index (Node, tsx and the modules: the same for both stores). */
  baseRssMB: number;
  openMs: number;
}

/** Runs bench-probe.ts in a child process (its RSS is the serving store's alone) and returns what it measured. */
function probeServing(dir: string, queries: string, dim: number, indexCacheMB?: number): Promise<Probe> {
  const child = fork(new URL('./bench-probe.ts', import.meta.url), [dir, queries, String(dim), String(indexCacheMB ?? '')], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m as Probe));
    child.once('exit', (code) => reject(new Error(`the serving probe exited with ${code} before reporting`)));
  });
}
