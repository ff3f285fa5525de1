// The one interface every caller (embed, train eval, index, serve, eval) encodes through.
import type { ModelConfig } from '../model/config.ts';
import type { WeightMap } from '../model/weights.ts';

export interface EncodeOutput {
  embeddings: Float32Array; // [B, D], L2-normalized
  logits: Float32Array; // [B, K]
}

export interface Encoder {
  readonly engine: EngineName;
  /** e.g. "onnxruntime-node 1.30.0 (cpu)", "tfjs 4.22.0 (wasm)" */
  readonly description: string;
  readonly config: ModelConfig;
  /** images: [B, C, H, W] float32, already normalized; B = images.length / (C*H*W). */
  encode(images: Float32Array, ffnDims: readonly number[]): Promise<EncodeOutput>;
  dispose(): Promise<void>;
}

export const ENGINES = ['onnx', 'tfjs'] as const;
export type EngineName = (typeof ENGINES)[number];

export interface EngineOptions {
  /** tfjs only: 'auto' (tensorflow-gpu, tensorflow, wasm, cpu in that order) or a backend name. */
  backend?: string;
  /** onnx: intra-op threads; tfjs-wasm: its thread pool, sized once per process (default: all cores). */
  threads?: number;
  /**
   * onnx only: run the sessions in a worker thread, so encode() does not block the event loop
   * (servers, pipelines).
   */
  offThread?: boolean;
  /** onnx offThread only: split `threads` over this many workers, each running whole batches (throughput). */
  workers?: number;
}

export async function createEncoder(engine: EngineName, config: ModelConfig, weights: WeightMap, opts: EngineOptions = {}): Promise<Encoder> {
  if (engine === 'tfjs') return (await import('./tfjs.ts')).TfjsEncoder.create(config, weights, opts);
  if (opts.offThread) return new (await import('./onnx-worker.ts')).OnnxWorkerEncoder(config, weights, opts);
  return (await import('./onnx.ts')).OnnxEncoder.create(config, weights, opts);
}

/** Number of images in a flat NCHW batch; throws when the length does not fit the model. */
export function batchSize(c: ModelConfig, images: Float32Array): number {
  const per = c.channels * c.imageSize * c.imageSize;
  if (images.length === 0 || images.length % per !== 0)
    throw new Error(`image batch of ${images.length} floats is not a whole number of [${c.channels}, ${c.imageSize}, ${c.imageSize}] images`);
  return images.length / per;
}

/**
 * Batch-1 latency of each submodel: one warm-up call each (it also builds the engine's session),
 * then `runs` interleaved rounds (a, b, c, a, b, c, ...) so load from other processes hits every
 * config alike; the median of each one's runs, in ms.
 */
export async function batch1Latency(encoder: Encoder, ffnDims: readonly (readonly number[])[], runs: number, onRound?: (done: number) => void): Promise<number[]> {
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
