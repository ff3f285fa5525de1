// MatViT: the Vision Transformer of MatFormer (Devvrit, Kudugunta et al., "MatFormer: Nested
// Transformer for Elastic Inference", arXiv 2310.07707), written as pure functions of tfjs-core ops
// over a flat, named weight map (timm names, compute layout: see weights.ts).
//
// Only the FFN is nested. A submodel is `ffnDims`, one hidden width m_i per layer, and layer i runs
//   FFN_i(x) = gelu(x @ fc1.weight[:, :m_i] + fc1.bias[:m_i]) @ fc2.weight[:m_i, :] + fc2.bias
// i.e. the first m_i columns of the up projection and the first m_i rows of the down projection;
// the output bias, attention, embeddings, norms and head are shared. The weights are sliced, not
// masked, so a smaller submodel does less work. s/m/l/xl are uniform widths of 1/8, 1/4, 1/2, 1 of
// mlpDim; Mix'n'Match is any other ffnDims. Full width is the default.
//
// Notation: B batch, C channels, H=W image size, P patch size, G = H/P, N = G*G patches,
// T = N + 1 tokens (CLS first), D model width, h heads, d = D/h head width, K classes.
import * as tf from '@tensorflow/tfjs-core';
import { type ModelConfig, checkFfnDims, granularityDims } from './config.ts';
import { type WeightMap, weightSpecs } from './weights.ts';

export type TensorMap = Record<string, tf.Tensor>;

export type ForwardOutput = {
  embedding: tf.Tensor2D; // [B, D], L2-normalized pre-logits (the CLS token after the final norm)
  logits: tf.Tensor2D; // [B, K] (K = 0 for a headless model)
};

const swapLastTwo = (rank: number) => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];

/**
 * Column sums of a [M, N] matrix -> [N], as 1 [1, M] @ x: tfjs-wasm reduces over a non-inner axis by
 * transposing first; as a product it is one matrix-vector kernel, ~10x faster at [2176, 512].
 */
const colSum = (x: tf.Tensor) => tf.reshape(tf.matMul(tf.ones([1, x.shape[0]]), x as tf.Tensor2D), [x.shape[1]!]);

/**
 * a @ b for [M, K] x [K, N] (or the same with one shared leading batch dim), with a gradient that
 * multiplies by explicitly transposed operands. Autodiff's own gradient of matMul sets the
 * transposeA/transposeB flags, which tfjs-wasm runs 6-20x slower than a plain product
 * (REFERENCE section 2); one copy-transpose per operand is far cheaper.
 */
export const matmul = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, [sa, sb]: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, tf.transpose(sb, swapLastTwo(sb.rank)) as tf.Tensor2D), // dA = dY @ B^T
      tf.matMul(tf.transpose(sa, swapLastTwo(sa.rank)) as tf.Tensor2D, dy as tf.Tensor2D), // dB = A^T @ dY
    ],
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * x [M, in] @ w [in, out] + b [out] -> [M, out], as one fused kernel, with the same explicitly
 * transposed gradient as `matmul` plus db = the column sums of dY.
 */
const dense = tf.customGrad(((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b }),
    gradFunc: (dy: tf.Tensor, [sx, sw]: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, tf.transpose(sw) as tf.Tensor2D), // dX = dY @ W^T   [M, in]
      tf.matMul(tf.transpose(sx) as tf.Tensor2D, dy as tf.Tensor2D), // dW = X^T @ dY   [in, out]
      colSum(dy), // db [out]
    ],
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * LayerNorm over the last axis, x [..., D] -> [..., D], with its analytic gradient: autodiff of the
 * moments runs ~20 small kernels per norm in the backward pass, this runs 8. With xh = (x - mean) * r,
 * r = 1/sqrt(var + eps), g = dY * gamma:  dX = r * (g - mean(g) - xh * mean(g * xh)) per row,
 * dgamma = sum over rows of dY * xh, dbeta = sum over rows of dY.
 */
function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const op = tf.customGrad(((x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, save: tf.GradSaveFunc) => {
    const { mean, variance } = tf.moments(x, -1, true);
    const r = tf.rsqrt(tf.add(variance, eps)); // [..., 1]
    const xh = tf.mul(tf.sub(x, mean), r); // [..., D]
    save([xh, r, gamma]);
    return {
      value: tf.add(tf.mul(xh, gamma), beta),
      gradFunc: (dy: tf.Tensor, [sxh, sr, sg]: tf.Tensor[]) => {
        const D = sxh.shape[sxh.rank - 1];
        const rows = sxh.size / D;
        const dy2 = tf.reshape(dy, [rows, D]);
        const xh2 = tf.reshape(sxh, [rows, D]);
        const g = tf.mul(dy2, sg); // [rows, D]
        const centered = tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(xh2, tf.mean(tf.mul(g, xh2), -1, true)));
        const dx = tf.reshape(tf.mul(centered, tf.reshape(sr, [rows, 1])), sxh.shape);
        return [dx, colSum(tf.mul(dy2, xh2)), colSum(dy2)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;
  return op(x, gamma, beta);
}

/**
 * Exact (erf) GELU, as torch.nn.GELU in timm's ViT: x * Phi(x). Its gradient Phi(x) + x * phi(x)
 * reuses Phi from the forward pass (erf is the slowest elementwise kernel in tfjs-wasm).
 */
const gelu = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  const cdf = tf.mul(tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))), 0.5); // Phi(x)
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy: tf.Tensor, [sx, scdf]: tf.Tensor[]) => {
      const pdf = tf.mul(tf.exp(tf.mul(tf.square(sx), -0.5)), 1 / Math.sqrt(2 * Math.PI)); // phi(x)
      return [tf.mul(dy, tf.add(scdf, tf.mul(sx, pdf)))];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

/** Patches as rows: images [B, C, H, W] -> [B*N, P*P*C], each row in (row, col, channel) order. */
function patchify(c: ModelConfig, images: tf.Tensor4D): tf.Tensor2D {
  const [B] = images.shape;
  const P = c.patchSize;
  const G = c.imageSize / P;
  const nhwc = tf.transpose(images, [0, 2, 3, 1]); // [B, H, W, C]
  const rows = tf.reshape(nhwc, [B * G, P, G, P * c.channels]); // [B*G, P(py), G(gx), P*C (px, c)]
  const patches = tf.transpose(rows, [0, 2, 1, 3]); // [B*G, G(gx), P(py), P*C]
  return tf.reshape(patches, [B * G * G, P * P * c.channels]);
}

/** Multi-head self-attention. x [B, T, D] -> [B, T, D] */
function attention(c: ModelConfig, w: TensorMap, i: number, x: tf.Tensor3D): tf.Tensor3D {
  const [B, T, D] = x.shape;
  const h = c.heads;
  const d = D / h;
  const p = `blocks.${i}.attn`;
  const qkv = dense(tf.reshape(x, [B * T, D]), w[`${p}.qkv.weight`], w[`${p}.qkv.bias`]); // [B*T, 3D]
  const [q, k, v] = tf.split(qkv, 3, 1); // each [B*T, D], heads-major within D (timm)
  const heads = (t: tf.Tensor, perm: number[]) => tf.transpose(tf.reshape(t, [B, T, h, d]), perm);
  const qh = tf.reshape(heads(tf.mul(q, 1 / Math.sqrt(d)), [0, 2, 1, 3]), [B * h, T, d]); // [B*h, T, d]
  const kt = tf.reshape(heads(k, [0, 2, 3, 1]), [B * h, d, T]); // [B*h, d, T], k pre-transposed
  const vh = tf.reshape(heads(v, [0, 2, 1, 3]), [B * h, T, d]); // [B*h, T, d]
  const attn = tf.softmax(matmul(qh, kt)); // [B*h, T, T]
  const o = tf.reshape(matmul(attn, vh), [B, h, T, d]); // [B, h, T, d]
  const merged = tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, D]); // [B*T, D]
  return tf.reshape(dense(merged, w[`${p}.proj.weight`], w[`${p}.proj.bias`]), [B, T, D]);
}

/** The nested FFN at hidden width m. x [B, T, D] -> [B, T, D] */
function ffn(c: ModelConfig, w: TensorMap, i: number, x: tf.Tensor3D, m: number): tf.Tensor3D {
  const [B, T, D] = x.shape;
  const p = `blocks.${i}.mlp`;
  const full = m === c.mlpDim;
  const w1 = full ? w[`${p}.fc1.weight`] : tf.slice(w[`${p}.fc1.weight`], [0, 0], [D, m]); // [D, m]
  const b1 = full ? w[`${p}.fc1.bias`] : tf.slice(w[`${p}.fc1.bias`], [0], [m]); // [m]
  const w2 = full ? w[`${p}.fc2.weight`] : tf.slice(w[`${p}.fc2.weight`], [0, 0], [m, D]); // [m, D]
  const hidden = gelu(dense(tf.reshape(x, [B * T, D]), w1, b1)); // [B*T, m]
  return tf.reshape(dense(hidden, w2, w[`${p}.fc2.bias`]), [B, T, D]);
}

/**
 * The forward pass of the submodel `ffnDims` (default: full width).
 * images [B, C, H, W], normalized -> embedding [B, D] and logits [B, K].
 * Call inside tf.tidy (or dispose the outputs).
 */
export function forward(c: ModelConfig, w: TensorMap, images: tf.Tensor4D, ffnDims?: readonly number[]): ForwardOutput {
  const dims = ffnDims ? checkFfnDims(c, ffnDims) : granularityDims(c, 'xl');
  const [B, C, H, W] = images.shape;
  if (C !== c.channels || H !== c.imageSize || W !== c.imageSize)
    throw new Error(`images [${images.shape}]: expected [B, ${c.channels}, ${c.imageSize}, ${c.imageSize}]`);
  const D = c.dim;
  const N = (c.imageSize / c.patchSize) ** 2;
  const eps = c.layerNormEps;

  const patches = dense(patchify(c, images), w['patch_embed.proj.weight'], w['patch_embed.proj.bias']); // [B*N, D]
  const cls = tf.tile(w['cls_token'], [B, 1, 1]); // [B, 1, D]
  let x = tf.add(tf.concat([cls, tf.reshape(patches, [B, N, D])], 1), w['pos_embed']) as tf.Tensor3D; // [B, T, D]

  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;
    const input = x;
    // One scope per block: inference frees the block's intermediates at once (a 224 model at batch
    // 32 would otherwise hold every layer's activations and exhaust the wasm heap); under a
    // gradient tape tfjs keeps what the backward pass needs.
    x = tf.tidy(() => {
      const h = tf.add(input, attention(c, w, i, layerNorm(input, w[`${b}.norm1.weight`], w[`${b}.norm1.bias`], eps) as tf.Tensor3D)) as tf.Tensor3D;
      return tf.add(h, ffn(c, w, i, layerNorm(h, w[`${b}.norm2.weight`], w[`${b}.norm2.bias`], eps) as tf.Tensor3D, dims[i])) as tf.Tensor3D;
    });
  }

  const clsOut = tf.reshape(tf.slice(x, [0, 0, 0], [B, 1, D]), [B, D]); // [B, D]
  const pre = layerNorm(clsOut, w['norm.weight'], w['norm.bias'], eps) as tf.Tensor2D; // [B, D]
  // Normalizing the CLS token is a per-row op, so normalizing the token alone equals slicing the
  // normalized sequence.
  const embedding = tf.div(pre, tf.maximum(tf.norm(pre, 'euclidean', 1, true), 1e-12)) as tf.Tensor2D;
  const logits = (c.numClasses > 0 ? dense(pre, w['head.weight'], w['head.bias']) : tf.zeros([B, 0])) as tf.Tensor2D;
  return { embedding, logits };
}

/** Host weights -> tfjs tensors (the caller owns and disposes them). */
export function toTensors(c: ModelConfig, weights: WeightMap): TensorMap {
  const out: TensorMap = {};
  for (const s of weightSpecs(c)) out[s.name] = tf.tensor(weights[s.name].data, weights[s.name].shape, 'float32');
  return out;
}
