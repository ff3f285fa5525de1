// The one interface every caller (embed, train eval, index, serve, eval) encodes through
// (types.ts), the factory of its engines, and batch-1 latency.
import type { ModelConfig } from '../model/config.ts';
import type { WeightMap } from '../model/weights.ts';
import type { EngineName, EngineOptions, Encoder } from './types.ts';

export { ENGINES } from './types.ts';
export type { EncodeOutput, Encoder, EngineName, EngineOptions } from './types.ts';

export async function createEncoder(
  engine: EngineName,
  config: ModelConfig,
  weights: WeightMap,
  opts: EngineOptions = {},
): Promise<Encoder> {
  if (engine === 'tfjs') return (await import('./tfjs.ts')).TfjsEncoder.create(config, weights, opts);
  if (opts.offThread) return new (await import('./onnx-worker.ts')).OnnxWorkerEncoder(config, weights, opts);
  return (await import('./onnx.ts')).OnnxEncoder.create(config, weights, opts);
}

/**
 * Batch-1 latency of each submodel: one warm-up call each (it also builds the engine's session),
 * then `runs` interleaved rounds (a, b, c, a, b, c, ...) so load from other processes hits every
 * config alike; the median of each one's runs, in ms.
 */
export async function batch1Latency(
  encoder: Encoder,
  ffnDims: readonly (readonly number[])[],
  runs: number,
  onRound?: (done: number) => void,
): Promise<number[]> {
  const c = encoder.config;
  const input = new Float32Array(c.channels * c.imageSize * c.imageSize); // [1, C, H, W]
  for (const dims of ffnDims) await encoder.encode(input, dims);
  const times = ffnDims.map((): number[] => []);
  for (let r = 0; r < runs; r++) {
    for (const [j, dims] of ffnDims.entries()) {
      const t0 = performance.now();
      await encoder.encode(input, dims);
      times[j].push(performance.now() - t0);
    }
    onRound?.(r + 1);
  }
  return times.map((t) => t.sort((a, b) => a - b)[Math.floor(t.length / 2)]);
}
