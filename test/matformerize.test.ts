// matformerize: reordering the FFN's hidden units keeps the full-width function and makes the
// prefixes the chosen neurons. Golden values: the float64 plain-loop reference (helpers/reference-vit.ts)
// of the original weights, with the dropped neurons masked out.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { parseDatasetSpec } from '../src/data/dataset.ts';
import { granularityDims } from '../src/model/config.ts';
import { forward, toTensors } from '../src/model/matvit.ts';
import type { WeightMap } from '../src/model/weights.ts';
import { initTfjs } from '../src/engine/tfjs-backend.ts';
import { hiddenStats } from '../src/train/hidden-stats.ts';
import { importance, importanceOrder, permuteFfn } from '../src/train/neuron-order.ts';
import { maxAbsDiff, randomImages, referenceOutputs, strongWeights } from './helpers/model-fixtures.ts';
import { tinyConfig } from './helpers/tiny.ts';

const c = tinyConfig({ depth: 2, mlpDim: 32, layerScale: true, regTokens: 1 });

/** A seeded shuffle per layer (Fisher-Yates), independent of the importance code. */
function shuffles(seed: number): Int32Array[] {
  let s = seed;
  const rand = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  return Array.from({ length: c.depth }, () => {
    const p = Int32Array.from({ length: c.mlpDim }, (_, i) => i);
    for (let i = p.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  });
}

/** The original weights with every hidden unit outside `keep[i]` removed: fc2 row and fc1 column zeroed, fc1 bias zeroed. */
function masked(w: WeightMap, keep: readonly Set<number>[]): WeightMap {
  const out: WeightMap = structuredClone(w);
  const [D, H] = [c.dim, c.mlpDim];
  keep.forEach((k, i) => {
    const p = `blocks.${i}.mlp`;
    for (let j = 0; j < H; j++) {
      if (k.has(j)) continue;
      for (let r = 0; r < D; r++) out[`${p}.fc1.weight`].data[r * H + j] = 0;
      out[`${p}.fc1.bias`].data[j] = 0;
      out[`${p}.fc2.weight`].data.fill(0, j * D, (j + 1) * D);
    }
  });
  return out;
}

describe('matformerize', () => {
  const w = strongWeights(c, 3);
  const images = randomImages(c, 3, 4);
  const perms = shuffles(7);
  const permuted = permuteFfn(c, w, perms);

  test('a permutation leaves the full-width model unchanged (reference, and the tfjs forward within float32 rounding)', async () => {
    const xl = granularityDims(c, 'xl');
    const [a, b] = [referenceOutputs(c, w, images, xl), referenceOutputs(c, permuted, images, xl)];
    assert.ok(maxAbsDiff(a.logits, b.logits) < 1e-9 && maxAbsDiff(a.embeddings, b.embeddings) < 1e-9);
    await initTfjs('cpu');
    const run = (weights: WeightMap) =>
      tf.tidy(() => {
        const params = toTensors(c, weights);
        return forward(c, params, tf.tensor4d(images, [3, c.channels, c.imageSize, c.imageSize])).logits.dataSync();
      });
    const d = maxAbsDiff(run(w), run(permuted));
    assert.ok(d < 1e-4, `tfjs logits differ by ${d}`);
    assert.ok(maxAbsDiff(run(w), Float32Array.from(a.logits)) < 1e-3); // and they are the model's outputs
  });

  test("the permuted model's prefix of width m is the original with only the first m chosen neurons", () => {
    for (const m of [4, 8, 16]) {
      const sliced = referenceOutputs(c, permuted, images, [m, m]);
      const want = referenceOutputs(
        c,
        masked(
          w,
          perms.map((p) => new Set(p.subarray(0, m))),
        ),
        images,
        granularityDims(c, 'xl'),
      );
      const d = maxAbsDiff(sliced.logits, want.logits);
      assert.ok(d < 1e-9, `width ${m}: ${d}`);
      // and it is a different function from the unpermuted prefix (the test would pass vacuously otherwise)
      assert.ok(maxAbsDiff(referenceOutputs(c, w, images, [m, m]).logits, sliced.logits) > 1e-3);
    }
  });

  test('importanceOrder sorts by decreasing score, ties in index order; permuteFfn refuses a non-permutation', () => {
    assert.deepEqual([...importanceOrder(Float64Array.from([1, 3, 3, 0, 2]))], [1, 2, 4, 0, 3]);
    const bad = perms.map((p) => Int32Array.from(p));
    bad[1][0] = bad[1][1];
    assert.throws(() => permuteFfn(c, w, bad), /layer 1: not a permutation/);
  });

  test('the weight score is ||fc1[:, j]|| * ||fc2[j, :]|| (plain loops)', () => {
    const scores = importance(c, w, 'weight');
    const [D, H] = [c.dim, c.mlpDim];
    for (let i = 0; i < c.depth; i++)
      for (let j = 0; j < H; j++) {
        let [a, b] = [0, 0];
        for (let r = 0; r < D; r++) a += w[`blocks.${i}.mlp.fc1.weight`].data[r * H + j] ** 2;
        for (let r = 0; r < D; r++) b += w[`blocks.${i}.mlp.fc2.weight`].data[j * D + r] ** 2;
        assert.ok(Math.abs(scores[i][j] - Math.sqrt(a) * Math.sqrt(b)) < 1e-9 * (1 + scores[i][j]));
      }
  });

  test('activation statistics rank a dead neuron last and a loud one first, over every token of every image', async () => {
    const g = tinyConfig({ imageSize: 28, patchSize: 7, channels: 1, mean: [0.3], std: [0.35], numClasses: 10, depth: 1 });
    const wg = strongWeights(g, 5);
    const [D, H] = [g.dim, g.mlpDim];
    const fc1 = wg['blocks.0.mlp.fc1.weight'];
    for (let r = 0; r < D; r++) fc1.data[r * H + 5] = 0; // neuron 5: constant pre-activation -20, GELU(-20) = 0
    wg['blocks.0.mlp.fc1.bias'].data[5] = -20;
    for (let r = 0; r < D; r++) fc1.data[r * H + 9] *= 10; // neuron 9: 10x the input and output weights
    for (let r = 0; r < D; r++) wg['blocks.0.mlp.fc2.weight'].data[9 * D + r] *= 10;
    const ds = await parseDatasetSpec('fashion-mnist:test[:20]');
    const stats = await hiddenStats(g, wg, ds, { samples: 20, batchSize: 8, backend: 'cpu' });
    assert.equal(stats.images, 20);
    assert.equal(stats.tokens, 20 * (16 + 1)); // 16 patches + the class token per image
    for (const score of ['activation', 'energy'] as const) {
      const order = importanceOrder(importance(g, wg, score, stats)[0]);
      assert.equal(order[H - 1], 5, `${score}: the dead neuron is last`);
      assert.equal(order[0], 9, `${score}: the loud neuron is first`);
    }
  });
});
