// The activation statistics that matformerize's data-driven importance scores need
// (src/train/neuron-order.ts): every FFN hidden unit's |h| and h^2 summed over the tokens of a
// sample of images, from the tfjs forward pass's taps.
import * as tf from '@tensorflow/tfjs-core';
import { type Dataset, batches } from '../data/dataset.ts';
import type { ModelConfig } from '../model/config.ts';
import { forward, toTensors } from '../model/matvit.ts';
import type { WeightMap } from '../model/weights.ts';
import { initTfjs } from '../engine/tfjs-backend.ts';
import type { HiddenStats } from './neuron-order.ts';

/**
 * Sums of |h| and h^2 of every FFN hidden unit (after the activation, full width) over the tokens of
 * the first `samples` images of `ds`, with the tfjs forward pass.
 */
export async function hiddenStats(
  c: ModelConfig,
  w: WeightMap,
  ds: Dataset,
  opts: { samples: number; batchSize?: number; backend?: string; onBatch?: (done: number, total: number) => void },
): Promise<HiddenStats> {
  await initTfjs(opts.backend ?? 'auto');
  const params = toTensors(c, w);
  const absSum = Array.from({ length: c.depth }, () => new Float64Array(c.mlpDim));
  const sqSum = Array.from({ length: c.depth }, () => new Float64Array(c.mlpDim));
  let [tokens, images] = [0, 0];
  const n = Math.min(opts.samples, ds.size);
  try {
    for await (const batch of batches(
      ds,
      Array.from({ length: n }, (_, i) => i),
      opts.batchSize ?? 64,
      c,
    )) {
      const B = batch.labels.length;
      if (B > 0) {
        const sums: tf.Tensor[] = [];
        let rows = 0;
        tf.tidy(() => {
          const x = tf.tensor4d(batch.images, [B, c.channels, c.imageSize, c.imageSize]);
          forward(c, params, x, undefined, {
            onFfnHidden: (_i, h) => {
              rows = h.shape[0]; // B*T: every token, prefix tokens included, goes through the FFN
              sums.push(tf.keep(tf.sum(tf.abs(h), 0)), tf.keep(tf.sum(tf.square(h), 0))); // h [B*T, H] -> [H], [H]
            },
          });
        });
        for (let i = 0; i < c.depth; i++) {
          const [a, s] = await Promise.all([sums[2 * i].data(), sums[2 * i + 1].data()]);
          for (let j = 0; j < c.mlpDim; j++) [absSum[i][j], sqSum[i][j]] = [absSum[i][j] + a[j], sqSum[i][j] + s[j]];
        }
        tf.dispose(sums);
        tokens += rows;
        images += B;
      }
      opts.onBatch?.(images + batch.skipped.length, n);
    }
  } finally {
    tf.dispose(Object.values(params));
  }
  if (images === 0) throw new Error(`--data ${ds.spec}: no image decoded`);
  return { absSum, sqSum, tokens, images };
}
