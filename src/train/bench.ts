// `matvit bench train`: forward-only and training throughput of the tfjs engine in one run, so the
// ratio is free of the machine's drift. Random weights and images; the step is the trainer's own.
import * as tf from '@tensorflow/tfjs-core';
import { granularityDims } from '../model/config.ts';
import { forward } from '../model/matvit.ts';
import { initWeights } from '../model/weights.ts';
import { initTfjs, wasmThreads } from '../engine/tfjs-backend.ts';
import { TrainConfig, type TrainConfigInput } from './config.ts';
import { makeOptimizer, mixBatch, toVariables, trainStep } from './step.ts';

export interface TrainBench {
  backend: string;
  /** tfjs-wasm's thread pool (other backends: undefined). */
  threads?: number;
  model: string;
  batchSize: number;
  forwardImgPerSec: number;
  trainImgPerSec: { xl: number; sum: number };
  ratio: number; // train (xl) / forward (xl)
  /** With `profile`: kernel time (ms per call) by kernel name, in a forward pass and in an xl training step. */
  kernels?: { kernel: string; forwardMs: number; stepMs: number }[];
}

export async function benchTrain(
  cfgIn: TrainConfigInput,
  opts: { backend?: string; threads?: number; seconds?: number; rounds?: number; profile?: boolean } = {},
): Promise<TrainBench> {
  const cfg = TrainConfig.parse(cfgIn);
  const c = cfg.model;
  const backend = await initTfjs(opts.backend ?? 'auto', { threads: opts.threads });
  const B = cfg.batchSize;
  const raw = Float32Array.from({ length: B * c.channels * c.imageSize ** 2 }, (_, i) => Math.sin(i));
  const labels = Int32Array.from({ length: B }, (_, i) => i % Math.max(1, c.numClasses));
  const { images, targets } = mixBatch(cfg, raw, labels, 0);
  const params = toVariables(c, initWeights(c, cfg.seed));
  const opt = makeOptimizer(cfg, params);
  const xl = { name: 'xl', ffnDims: granularityDims(c, 'xl') };
  const all = (['s', 'm', 'l', 'xl'] as const).map((g) => ({ name: g, ffnDims: granularityDims(c, g) }));
  const seconds = opts.seconds ?? 3;

  /** Runs `fn` once to warm up, then repeatedly for `seconds`; returns images per second. */
  const rate = async (fn: () => Promise<unknown>) => {
    await fn();
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      await fn();
      n++;
    }
    return (n * B * 1000) / (performance.now() - t0);
  };
  const forward1 = async () => {
    const out = tf.tidy(() => forward(c, params, tf.tensor4d(images, [B, c.channels, c.imageSize, c.imageSize]), xl.ffnDims));
    await out.logits.data();
    tf.dispose([out.embedding, out.logits]);
  };
  const stepXl = () => trainStep(c, params, opt, images, targets, [xl], 1e-4);
  // Interleaved rounds, best of each: load from other processes hits the three measures alike.
  let [forwardImgPerSec, trainXl, trainSum] = [0, 0, 0];
  for (let r = 0; r < (opts.rounds ?? 3); r++) {
    forwardImgPerSec = Math.max(forwardImgPerSec, await rate(forward1));
    trainXl = Math.max(trainXl, await rate(stepXl));
    trainSum = Math.max(trainSum, await rate(() => trainStep(c, params, opt, images, targets, all, 1e-4)));
  }
  let kernels: TrainBench['kernels'];
  if (opts.profile) {
    const [f, s] = [await kernelTimes(forward1, backend), await kernelTimes(stepXl, backend)];
    kernels = [...new Set([...Object.keys(f), ...Object.keys(s)])]
      .map((k) => ({ kernel: k, forwardMs: f[k] ?? 0, stepMs: s[k] ?? 0 }))
      .sort((a, b) => b.stepMs - a.stepMs);
  }
  tf.dispose(Object.values(params));
  return {
    backend,
    threads: await wasmThreads(),
    model: c.name,
    batchSize: B,
    forwardImgPerSec,
    trainImgPerSec: { xl: trainXl, sum: trainSum },
    ratio: trainXl / forwardImgPerSec,
    kernels,
  };
}

/**
 * Milliseconds per call of `fn` spent in each kernel (by name), the mean of `rounds` calls under
 * tf.profile. Only registered kernels count: the profile also lists each custom-gradient op as an
 * entry whose time includes its kernels'.
 */
async function kernelTimes(fn: () => Promise<unknown>, backend: string, rounds = 3): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let r = 0; r < rounds; r++)
    for (const k of (await tf.profile(fn as () => Promise<tf.TensorContainer>)).kernels)
      if (tf.getKernel(k.name, backend)) out[k.name] = (out[k.name] ?? 0) + (k.kernelTimeMs as number) / rounds;
  return out;
}
