// Exact parameter and FLOP counts of a submodel. Convention: a multiply-add is 2 FLOPs; only the
// matrix products are counted (patch embedding, qkv, attention scores and weighted sum, output
// projection, FFN, head); norms, softmax, GELU and additions are O(N*D) and left out, as in the
// usual ViT FLOP tables.
import { type ModelConfig, checkFfnDims, numPatches } from './config.ts';

/** Parameters used by the submodel: FFN rows/columns past each layer's width are not counted. */
export function paramCount(c: ModelConfig, ffnDims: readonly number[]): number {
  checkFfnDims(c, ffnDims);
  const D = c.dim;
  const T = numPatches(c) + 1;
  let p = c.patchSize * c.patchSize * c.channels * D + D; // patch embedding
  p += D + T * D; // cls token, position embeddings
  for (const m of ffnDims) {
    p += 4 * D; // two LayerNorms
    p += D * 3 * D + 3 * D; // qkv
    p += D * D + D; // attention output projection
    p += D * m + m; // fc1, first m columns
    p += m * D + D; // fc2, first m rows; its bias is shared by every width
  }
  p += 2 * D; // final LayerNorm
  if (c.numClasses > 0) p += D * c.numClasses + c.numClasses;
  return p;
}

/** Multiply-adds for one image. */
export function macs(c: ModelConfig, ffnDims: readonly number[]): number {
  checkFfnDims(c, ffnDims);
  const D = c.dim;
  const N = numPatches(c);
  const T = N + 1;
  let m = N * c.patchSize * c.patchSize * c.channels * D; // patch embedding (CLS is not projected)
  for (const f of ffnDims) {
    m += T * D * 3 * D; // qkv
    m += 2 * T * T * D; // q k^T and attn @ v, summed over heads (heads * T * T * D/heads each)
    m += T * D * D; // output projection
    m += 2 * T * D * f; // fc1 + fc2
  }
  if (c.numClasses > 0) m += D * c.numClasses; // head on the CLS token
  return m;
}

export const mflops = (c: ModelConfig, ffnDims: readonly number[]) => (2 * macs(c, ffnDims)) / 1e6;
