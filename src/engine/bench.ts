// `matvit bench encode`: per engine and submodel, batch-1 latency and batch-N throughput, the
// GFLOP/s they reach, and the float32 matmul GFLOP/s of the same runtime measured in the same run
// (the ceiling). Everything is a ratio within one run, since the machine is noisy.
import * as tf from '@tensorflow/tfjs-core';
import { GRANULARITY_NAMES, type ModelConfig, granularityDims } from '../model/config.ts';
import { mflops } from '../model/flops.ts';
import type { WeightMap } from '../model/weights.ts';
import { type EngineName, type EngineOptions, createEncoder } from './encoder.ts';
import { measureOrtSgemm } from './onnx.ts';

export interface EncodeBenchRow {
  engine: EngineName;
  submodel: string;
  ffnDims: number[];
  mflops: number;
  latencyMs: { median: number; p90: number }; // batch 1
  imgPerSec: number; // batch `batch`
  gflops: number; // achieved at batch `batch`
}
export interface EncodeBench {
  model: string;
  batch: number;
  engines: { engine: EngineName; description: string; sgemmGflops: number }[];
  rows: EncodeBenchRow[];
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** Times `fn` after one warm-up call: at least `minRuns` runs and about `seconds` in all. */
async function timeRuns(fn: () => Promise<unknown>, seconds: number, minRuns: number): Promise<number[]> {
  await fn();
  const times: number[] = [];
  const t0 = performance.now();
  while (times.length < minRuns || performance.now() - t0 < seconds * 1000) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return times;
}

/** tfjs matmul ceiling: a square product on the active backend. */
async function tfjsSgemm(n = 512, seconds = 1): Promise<number> {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  const times = await timeRuns(
    async () => {
      const c = tf.matMul(a, b);
      await c.data();
      c.dispose();
    },
    seconds,
    3,
  );
  tf.dispose([a, b]);
  return (2 * n ** 3) / (quantile(times, 0.5) / 1000) / 1e9;
}

/**
 * Measures each engine's submodels in interleaved rounds (s, m, l, xl, s, m, ...) and keeps each
 * one's best round, so load from other processes hits all submodels alike and the ratios hold.
 */
export async function benchEncode(
  c: ModelConfig,
  weights: WeightMap,
  opts: {
    engines: EngineName[];
    batch?: number;
    seconds?: number;
    rounds?: number;
    engineOptions?: EngineOptions;
    log?: (s: string) => void;
  },
): Promise<EncodeBench> {
  const batch = opts.batch ?? 32;
  const seconds = opts.seconds ?? 2;
  const rounds = opts.rounds ?? 3;
  const per = c.channels * c.imageSize * c.imageSize;
  const images = Float32Array.from({ length: batch * per }, (_, i) => Math.sin(i * 0.01));
  const one = images.subarray(0, per);
  const result: EncodeBench = { model: c.name, batch, engines: [], rows: [] };
  const subs = GRANULARITY_NAMES.map((g) => ({ name: g, ffnDims: granularityDims(c, g) }));
  for (const engine of opts.engines) {
    const enc = await createEncoder(engine, c, weights, opts.engineOptions);
    try {
      let sgemmGflops = 0;
      const lat = subs.map(() => [] as number[]);
      const best = subs.map(() => Infinity); // ms per batch
      for (let r = 0; r < rounds; r++) {
        opts.log?.(`${engine} round ${r + 1}/${rounds}`);
        const g =
          engine === 'onnx'
            ? (await measureOrtSgemm({ seconds: seconds / 2, threads: opts.engineOptions?.threads })).gflops
            : await tfjsSgemm(512, seconds / 2);
        sgemmGflops = Math.max(sgemmGflops, g);
        for (const [j, s] of subs.entries()) {
          lat[j].push(...(await timeRuns(() => enc.encode(one, s.ffnDims), seconds / 4, 3)));
          best[j] = Math.min(best[j], quantile(await timeRuns(() => enc.encode(images, s.ffnDims), seconds / 2, 1), 0.5));
        }
      }
      result.engines.push({ engine, description: enc.description, sgemmGflops });
      for (const [j, s] of subs.entries()) {
        const imgPerSec = batch / (best[j] / 1000);
        const mf = mflops(c, s.ffnDims);
        result.rows.push({
          engine,
          submodel: s.name,
          ffnDims: s.ffnDims,
          mflops: mf,
          latencyMs: { median: quantile(lat[j], 0.5), p90: quantile(lat[j], 0.9) },
          imgPerSec,
          gflops: (mf * imgPerSec) / 1000,
        });
      }
    } finally {
      await enc.dispose();
    }
  }
  return result;
}
