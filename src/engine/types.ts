// What every engine implements and every caller encodes through; the engines and the factory
// (encoder.ts) all import it, so the engine files never import each other in a circle.
import type { ModelConfig } from '../model/config.ts';

export interface EncodeOutput {
  embeddings: Float32Array; // [B, E], L2-normalized (E = embeddingDim of the config)
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

/** Number of images in a flat NCHW batch; throws when the length does not fit the model. */
export function batchSize(c: ModelConfig, images: Float32Array): number {
  const per = c.channels * c.imageSize * c.imageSize;
  if (images.length === 0 || images.length % per !== 0)
    throw new Error(
      `image batch of ${images.length} floats is not a whole number of [${c.channels}, ${c.imageSize}, ${c.imageSize}] images`,
    );
  return images.length / per;
}
