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

/**
 * An op with a hand-written gradient: tf.customGrad over tensor inputs, its gradient run in a tidy
 * scope. tfjs runs a custom gradient outside the per-input scopes of its backward pass, so without
 * one the gradient's intermediates (transposes, products) stay allocated until the whole backward
 * pass ends (a batch-128 fmnist-tiny step peaked at ~900 MB of live tensors).
 */
function customOp(
  f: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] },
): (...inputs: tf.Tensor[]) => tf.Tensor {
  const op = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const { value, gradFunc } = f(args as tf.Tensor[], save);
    return { value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => gradFunc(dy, saved)) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op as unknown as (...inputs: tf.Tensor[]) => tf.Tensor;
}

/**
 * x [M, in] @ w [in, out] + b [out] -> [M, out], as one fused kernel, with a gradient built for
 * tfjs-wasm, whose only fast product is an unflagged 2-D one (XNNPACK):
 * - operands are transposed explicitly: autodiff's gradient of matMul sets the transposeA/B flags,
 *   which tfjs-wasm runs 6-20x slower (REFERENCE section 2); one copy-transpose is far cheaper;
 * - XNNPACK packs the right operand of each product, and dW's has the long dimension M = B*T, so dW
 *   takes the smaller of X and dY there: X^T @ dY when out < in, else (dY^T @ X)^T (at [2176, 512]
 *   dY vs [2176, 128] X, 16 vs 12.6 ms). On a tie X is packed: XNNPACK caches packed operands by
 *   tensor data, and q, k and v share theirs;
 * - db, the column sums of dY, is a product with ones: 1 [1, M] @ dY when dY is already dW's packed
 *   right operand (XNNPACK caches it by tensor), else dY^T @ 1 [M, 1]. tfjs-wasm's Sum transposes
 *   to reduce a non-inner axis and is a scalar loop on an inner one (1.1 vs 0.8 ms at [512, 2176]).
 * `inputGrad` false skips dX (zeros): tfjs asks a custom gradient for every input, and the patch
 * embedding's input is the images.
 */
const linear = (inputGrad: boolean) => customOp(([x, w, b], save) => {
  save([x, w]);
  return {
    value: tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b }),
    gradFunc: (dy: tf.Tensor, [sx, sw]: tf.Tensor[]) => {
      const [M, out] = dy.shape as [number, number];
      const dx = inputGrad ? tf.matMul(dy as tf.Tensor2D, tf.transpose(sw) as tf.Tensor2D) : tf.zerosLike(sx); // dY @ W^T  [M, in]
      if (out < sx.shape[1]!) {
        const dw = tf.matMul(tf.transpose(sx) as tf.Tensor2D, dy as tf.Tensor2D); // X^T @ dY  [in, out]
        return [dx, dw, tf.reshape(tf.matMul(tf.ones([1, M]), dy as tf.Tensor2D), [out])];
      }
      const dyt = tf.transpose(dy) as tf.Tensor2D; // [out, M]
      return [dx, tf.transpose(tf.matMul(dyt, sx as tf.Tensor2D)), tf.reshape(tf.matMul(dyt, tf.ones([M, 1])), [out])];
    },
  };
});
const [dense, embed] = [linear(true), linear(false)];

/**
 * LayerNorm's normalization over rows, without the affine part: x [M, D] -> xh = (x - mean) * r,
 * r = 1/sqrt(var + eps), with its analytic gradient dX = r * (dXh - mean(dXh) - xh * mean(dXh * xh))
 * per row (autodiff of the moments runs ~20 small kernels per norm in the backward pass, this 7).
 */
const normalize = (eps: number) =>
  customOp(([x], save) => {
    // Not tf.moments: it copies x (a float32 -> float32 cast) and subtracts the mean a second time.
    const centered = tf.sub(x, tf.mean(x, -1, true)); // [M, D]
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), eps)); // [M, 1]
    const xh = tf.mul(centered, r); // [M, D]
    save([xh, r]);
    return {
      value: xh,
      gradFunc: (dy, [sxh, sr]) => [tf.mul(tf.sub(tf.sub(dy, tf.mean(dy, -1, true)), tf.mul(sxh, tf.mean(tf.mul(dy, sxh), -1, true))), sr)],
    };
  });

/**
 * The affine part of a LayerNorm folded into the linear layer that reads it:
 * (xh * gamma + beta) @ w + b = xh @ (gamma[:, None] * w) + (beta @ w + b), for w [D, out], b [out].
 * Exact, and it moves the norm's per-token work onto the weights: the forward pass drops a multiply
 * and an add over [B*T, D], and the backward pass gets dgamma and dbeta from dW' and db' by ops on
 * [D, out] (autodiff of these two lines) instead of two column sums over [B*T, D] (tfjs-wasm's Sum
 * transposes to reduce a non-inner axis: 1.2 ms per norm at fmnist-tiny's [2176, 128]).
 */
function foldNorm(gamma: tf.Tensor, beta: tf.Tensor, w: tf.Tensor, b: tf.Tensor): [tf.Tensor2D, tf.Tensor1D] {
  const D = gamma.shape[0]!;
  return [
    tf.mul(tf.reshape(gamma, [D, 1]), w) as tf.Tensor2D, // [D, out]
    // beta @ w as a column sum of beta[:, None] * w: a matMul's autodiff gradient sets transpose flags.
    tf.add(tf.sum(tf.mul(tf.reshape(beta, [D, 1]), w), 0), b) as tf.Tensor1D, // [out]
  ];
}

/**
 * One product per batch item: a [C, M, K] @ b [C, K, N] -> [C, M, N] (each operand optionally given
 * with its last two axes swapped: a as [C, K, M], b as [C, N, K]). tfjs-wasm runs batched matMul in
 * a scalar loop (only unbatched products reach XNNPACK), so this is a depthwise convolution, one
 * group per batch item: input [1, M, K, C] (rows as height, K as width, items as channels) and filter
 * [1, K, C, N] (a 1 x K kernel, channel multiplier N) give out[0, i, 0, c*N + n] = sum_k a[c,i,k] b[c,k,n],
 * which XNNPACK vectorizes across items: 2-4x faster than the loop at fmnist-tiny's and vit-s16's
 * attention shapes, bit-identical at the former, within 4e-5 at the latter.
 */
function batchProduct(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor3D {
  const [C, M, K] = (transposeA ? [a.shape[0], a.shape[2], a.shape[1]] : a.shape) as [number, number, number];
  const N = (transposeB ? b.shape[1] : b.shape[2]) as number;
  const input = tf.reshape(tf.transpose(a, transposeA ? [2, 1, 0] : [1, 2, 0]), [1, M, K, C]) as tf.Tensor4D;
  const filter = tf.reshape(tf.transpose(b, transposeB ? [2, 0, 1] : [1, 0, 2]), [1, K, C, N]) as tf.Tensor4D;
  const out = tf.depthwiseConv2d(input, filter, 1, 'valid'); // [1, M, 1, C*N]
  return tf.transpose(tf.reshape(out, [M, C, N]), [1, 0, 2]);
}

/** a [C, M, K] @ b [C, K, N] (b as [C, N, K] when transposeB), differentiable: dA and dB are products too. */
const bmm = (transposeB: boolean) =>
  customOp(([a, b], save) => {
    save([a, b]);
    return {
      value: batchProduct(a, b, false, transposeB),
      gradFunc: (dc, [sa, sb]) =>
        transposeB
          ? [batchProduct(dc, sb), batchProduct(dc, sa, true)] // C = A B^T: dA = dC B, dB = dC^T A
          : [batchProduct(dc, sb, false, true), batchProduct(sa, dc, true)], // C = A B: dA = dC B^T, dB = A^T dC
    };
  });
const [bmmNN, bmmNT] = [bmm(false), bmm(true)];

/**
 * Exact (erf) GELU, as torch.nn.GELU in timm's ViT: x * Phi(x). Its gradient Phi(x) + x * phi(x)
 * reuses Phi from the forward pass (erf is the slowest elementwise kernel in tfjs-wasm), and takes
 * exp(-x^2 / 2) as elu(-x^2 / 2) + 1 (exact for arguments <= 0): tfjs-wasm's Exp calls libm per
 * element, its Elu is XNNPACK's vectorized kernel, ~4x faster at [2176, 512].
 */
const gelu = customOp(([x], save) => {
  const cdf = tf.mul(tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))), 0.5); // Phi(x)
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy: tf.Tensor, [sx, scdf]: tf.Tensor[]) => {
      const gauss = tf.add(tf.elu(tf.mul(tf.square(sx), -0.5)), 1); // exp(-x^2 / 2)
      const xPdf = tf.mul(tf.mul(sx, 1 / Math.sqrt(2 * Math.PI)), gauss); // x * phi(x)
      return [tf.mul(dy, tf.add(scdf, xPdf))];
    },
  };
});

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

/**
 * Multi-head self-attention over the rows of B images, after norm1 (its affine part folded into
 * qkv, see foldNorm). xh [B*T, D], normalized rows -> [B*T, D]
 * q, k and v are three products on column blocks of qkv.weight [D, 3D] (timm's q | k | v order):
 * splitting the [B*T, 3D] product instead costs ~7 ms per layer in tfjs-wasm, whose Slice copies
 * the whole input once per output. The per-head products are batched over B*h items (bmm).
 */
function attention(c: ModelConfig, w: TensorMap, i: number, xh: tf.Tensor2D, B: number): tf.Tensor2D {
  const [BT, D] = xh.shape;
  const T = BT / B;
  const h = c.heads;
  const d = D / h;
  const p = `blocks.${i}.attn`;
  const [wqkv, bqkv] = foldNorm(w[`blocks.${i}.norm1.weight`], w[`blocks.${i}.norm1.bias`], w[`${p}.qkv.weight`], w[`${p}.qkv.bias`]); // [D, 3D], [3D]
  const cols = (j: number): [tf.Tensor, tf.Tensor] => [tf.slice(wqkv, [0, j * D], [D, D]), tf.slice(bqkv, [j * D], [D])];
  const heads = (t: tf.Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [B, T, h, d]), [0, 2, 1, 3]), [B * h, T, d]); // [B*T, D] -> [B*h, T, d]
  // 1/sqrt(d) is folded into q's projection ([D, D] and [D]) rather than applied to the [B*h, T, T] scores.
  const [wq, bq] = cols(0);
  const q = heads(dense(xh, tf.mul(wq, 1 / Math.sqrt(d)), tf.mul(bq, 1 / Math.sqrt(d))));
  const [k, v] = [1, 2].map((j) => heads(dense(xh, ...cols(j))));
  const attn = tf.softmax(bmmNT(q, k)); // q @ k^T / sqrt(d)  [B*h, T, T]
  const o = tf.reshape(bmmNN(attn, v), [B, h, T, d]); // [B, h, T, d]
  const merged = tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, D]); // [B*T, D]
  return dense(merged, w[`${p}.proj.weight`], w[`${p}.proj.bias`]) as tf.Tensor2D;
}

/** The nested FFN at hidden width m, after norm2 (its affine part folded into fc1). xh [B*T, D] -> [B*T, D] */
function ffn(c: ModelConfig, w: TensorMap, i: number, xh: tf.Tensor2D, m: number): tf.Tensor2D {
  const D = c.dim;
  const p = `blocks.${i}.mlp`;
  const full = m === c.mlpDim;
  const w1 = full ? w[`${p}.fc1.weight`] : tf.slice(w[`${p}.fc1.weight`], [0, 0], [D, m]); // [D, m]
  const b1 = full ? w[`${p}.fc1.bias`] : tf.slice(w[`${p}.fc1.bias`], [0], [m]); // [m]
  const w2 = full ? w[`${p}.fc2.weight`] : tf.slice(w[`${p}.fc2.weight`], [0, 0], [m, D]); // [m, D]
  const hidden = gelu(dense(xh, ...foldNorm(w[`blocks.${i}.norm2.weight`], w[`blocks.${i}.norm2.bias`], w1, b1))); // [B*T, m]
  return dense(hidden, w2, w[`${p}.fc2.bias`]) as tf.Tensor2D;
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
  const norm = normalize(c.layerNormEps) as (x: tf.Tensor2D) => tf.Tensor2D;

  const patches = embed(patchify(c, images), w['patch_embed.proj.weight'], w['patch_embed.proj.bias']); // [B*N, D]
  // [B, 1, D] by a broadcasting add: its gradient is one sum over the batch, Tile's slices dy per image.
  const cls = tf.add(tf.zeros([B, 1, D]), w['cls_token']);
  const T = N + 1;
  // The residual stream as rows, [B*T, D]: every op but attention's per-image products is per token.
  let x = tf.reshape(tf.add(tf.concat([cls, tf.reshape(patches, [B, N, D])], 1), w['pos_embed']), [B * T, D]) as tf.Tensor2D;

  for (let i = 0; i < c.depth; i++) {
    const input = x;
    // One scope per block: inference frees the block's intermediates at once (a 224 model at batch
    // 32 would otherwise hold every layer's activations and exhaust the wasm heap); under a
    // gradient tape tfjs keeps what the backward pass needs.
    x = tf.tidy(() => {
      const h = tf.add(input, attention(c, w, i, norm(input), B)) as tf.Tensor2D;
      return tf.add(h, ffn(c, w, i, norm(h), dims[i])) as tf.Tensor2D;
    });
  }

  const clsOut = tf.reshape(tf.slice(tf.reshape(x, [B, T, D]), [0, 0, 0], [B, 1, D]), [B, D]) as tf.Tensor2D; // [B, D]
  // The final norm keeps its affine part: the embedding reads it, not only the head.
  const pre = tf.add(tf.mul(norm(clsOut), w['norm.weight']), w['norm.bias']) as tf.Tensor2D; // [B, D]
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
