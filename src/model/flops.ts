// Exact parameter and FLOP counts of a submodel. Convention: a multiply-add is 2 FLOPs; only the
// matrix products are counted (patch embedding, qkv, attention scores and weighted sum, output
// projection, FFN, head); norms, layer scales, softmax, GELU, pooling and additions are O(T*D) and
// left out, as in the usual ViT FLOP tables.
import { type ModelConfig, checkFfnDims, numPatches, numPrefixTokens } from './config.ts';
import { numel, weightSpecs } from './weights.ts';

/**
 * Parameters used by the submodel: every weight of the config, less the FFN rows and columns past
 * each layer's width (fc1's columns and bias entries, fc2's rows; fc2's bias is shared by every width).
 */
export function paramCount(c: ModelConfig, ffnDims: readonly number[]): number {
  checkFfnDims(c, ffnDims);
  const all = weightSpecs(c).reduce((n, s) => n + numel(s.shape), 0);
  return all - ffnDims.reduce((n, m) => n + (c.mlpDim - m) * (2 * c.dim + 1), 0);
}

/** Multiply-adds for one image. */
export function macs(c: ModelConfig, ffnDims: readonly number[]): number {
  checkFfnDims(c, ffnDims);
  const D = c.dim;
  const N = numPatches(c);
  const T = N + numPrefixTokens(c); // class and register tokens take part in every layer
  let m = N * c.patchSize * c.patchSize * c.channels * D; // patch embedding (prefix tokens are not projected)
  for (const f of ffnDims) {
    m += T * D * 3 * D; // qkv
    m += 2 * T * T * D; // q k^T and attn @ v, summed over heads (heads * T * T * D/heads each)
    m += T * D * D; // output projection
    m += 2 * T * D * f; // fc1 + fc2
  }
  if (c.numClasses > 0) m += D * c.numClasses; // head on the pooled vector
  return m;
}

export const mflops = (c: ModelConfig, ffnDims: readonly number[]) => (2 * macs(c, ffnDims)) / 1e6;
