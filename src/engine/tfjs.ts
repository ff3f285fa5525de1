// The tfjs engine: the reference forward of src/model/matvit.ts on whichever backend initTfjs picked.
// Used by training and as the checked fallback of the ONNX Runtime engine.
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../model/config.ts';
import { type TensorMap, forward, toTensors } from '../model/matvit.ts';
import type { WeightMap } from '../model/weights.ts';
import { type EncodeOutput, type Encoder, type EngineOptions, batchSize } from './types.ts';
import { backendLabel, initTfjs, wasmThreads } from './tfjs-backend.ts';

export class TfjsEncoder implements Encoder {
  readonly engine = 'tfjs' as const;
  private constructor(
    readonly config: ModelConfig,
    readonly description: string,
    private weights: TensorMap,
  ) {}

  static async create(config: ModelConfig, weights: WeightMap, opts: EngineOptions = {}): Promise<TfjsEncoder> {
    const backend = await initTfjs(opts.backend ?? 'auto', { threads: opts.threads });
    return new TfjsEncoder(config, `tfjs ${tf.version_core} (${backendLabel(backend, await wasmThreads())})`, toTensors(config, weights));
  }

  async encode(images: Float32Array, ffnDims: readonly number[]): Promise<EncodeOutput> {
    const c = this.config;
    const B = batchSize(c, images);
    const out = tf.tidy(() => forward(c, this.weights, tf.tensor4d(images, [B, c.channels, c.imageSize, c.imageSize]), ffnDims));
    try {
      const [embeddings, logits] = await Promise.all([out.embedding.data(), out.logits.data()]);
      return { embeddings: embeddings as Float32Array, logits: logits as Float32Array };
    } finally {
      out.embedding.dispose();
      out.logits.dispose();
    }
  }

  async dispose(): Promise<void> {
    tf.dispose(Object.values(this.weights));
  }
}
