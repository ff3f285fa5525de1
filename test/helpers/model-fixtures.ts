// Weights, images and comparisons shared by the engine tests (engines, variants): random but strong
// weights, so that every part of a model changes its outputs by more than the tolerance.
import assert from 'node:assert/strict';
import seedrandom from 'seedrandom';
import type { ModelConfig } from '../../src/model/config.ts';
import { type WeightMap, initWeights } from '../../src/model/weights.ts';
import { concatRows, referenceForward } from './reference-vit.ts';

/**
 * initWeights, then scaled so that every part of the model matters: timm's init (std 0.02, zero
 * biases, unit norms) makes the FFN's contribution so small that a wrong width or a wrong bias
 * slice would stay under the tolerance. Matrices get std 1/sqrt(fan_in); biases, norms, layer
 * scales, the prefix tokens and position embeddings get non-trivial random values.
 */
export function strongWeights(c: ModelConfig, seed = 0): WeightMap {
  const w = initWeights(c, seed);
  const rng = seedrandom(`engines-test:${seed}`);
  const u = () => 2 * rng() - 1; // uniform in [-1, 1)
  for (const [name, t] of Object.entries(w)) {
    const d = t.data;
    if (/norm(\d|_pre)?\.weight$/.test(name)) for (let i = 0; i < d.length; i++) d[i] = 1 + 0.3 * u();
    else if (name.endsWith('.gamma'))
      for (let i = 0; i < d.length; i++) d[i] = 0.6 + 0.4 * u(); // layer scale in [0.2, 1)
    else if (name.endsWith('.bias')) for (let i = 0; i < d.length; i++) d[i] = 0.3 * u();
    else if (t.shape.length === 2) for (let i = 0; i < d.length; i++) d[i] *= 1 / (0.02 * Math.sqrt(t.shape[0]));
    else for (let i = 0; i < d.length; i++) d[i] *= 25; // cls_token, reg_token, pos_embed: std 0.5
  }
  return w;
}

export function randomImages(c: ModelConfig, B: number, seed = 1): Float32Array {
  const rng = seedrandom(`images:${seed}`);
  return Float32Array.from({ length: B * c.channels * c.imageSize * c.imageSize }, () => 4 * rng() - 2);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, `lengths ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

type Outputs = { embeddings: ArrayLike<number>; logits: ArrayLike<number> };

export function assertClose(got: Outputs, want: Outputs, tol: number, what: string) {
  const e = maxAbsDiff(got.embeddings, want.embeddings);
  const l = maxAbsDiff(got.logits, want.logits);
  assert.ok(e <= tol && l <= tol, `${what}: max |diff| embeddings ${e.toExponential(2)}, logits ${l.toExponential(2)} (tolerance ${tol})`);
}

/** The float64 plain-loop reference (reference-vit.ts), flat as the engines return it. */
export function referenceOutputs(
  c: ModelConfig,
  w: WeightMap,
  images: Float32Array,
  ffnDims: readonly number[],
): { embeddings: Float64Array; logits: Float64Array } {
  const r = referenceForward(c, w, images, images.length / (c.channels * c.imageSize ** 2), ffnDims);
  return { embeddings: concatRows(r.embedding), logits: concatRows(r.logits) };
}
