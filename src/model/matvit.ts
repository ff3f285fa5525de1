// MatViT: the Vision Transformer of MatFormer (Devvrit, Kudugunta et al., "MatFormer: Nested
// Transformer for Elastic Inference", arXiv 2310.07707) as pure functions of tfjs ops over a flat
// weight map (timm names, compute layout: weights.ts). Layer i's FFN at width m_i is
//   FFN_i(x) = gelu(x @ fc1.weight[:, :m_i] + fc1.bias[:m_i]) @ fc2.weight[:m_i, :] + fc2.bias
// (sliced, not masked: a smaller submodel does less work); everything else is shared. A submodel is
// `ffnDims`, one m_i per layer; s/m/l/xl are 1/8, 1/4, 1/2, 1 of mlpDim, full width the default.
// The architecture variants of ModelConfig (layer scale, registers, avg pooling, ...) follow timm's
// VisionTransformer (timm/models/vision_transformer.py). The ops with hand-written gradients
// (dense, normalize, foldNorm, foldScale, bmm, gelu) are in ops.ts.
//
// Notation: B batch, C channels, H=W image size, P patch size, G = H/P, N = G*G patches, T = N +
// prefix tokens (class token, then registers), D model width, h heads, d = D/h, K classes.
import * as tf from '@tensorflow/tfjs-core';
import { type ModelConfig, checkFfnDims, granularityDims, numPatches, numPrefixTokens } from './config.ts';
import { ACTIVATIONS, bmmNN, bmmNT, dense, embed, foldNorm, foldScale, normalize } from './ops.ts';
import { type WeightMap, weightSpecs } from './weights.ts';

export type TensorMap = Record<string, tf.Tensor>;

export type ForwardOutput = {
  embedding: tf.Tensor2D; // [B, D] L2-normalized pre-logits (pooled, after the final norm), or [B, K] the head's output (config.embedding)
  logits: tf.Tensor2D; // [B, K] (K = 0 for a headless model)
};

/** Read-only views of intermediate activations (matformerize's importance statistics), called inside the forward's tidy scopes. */
export interface Taps {
  onFfnHidden?: (layer: number, hidden: tf.Tensor2D) => void; // [B*T, m] after the activation
}

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
 * timm's _pos_embed: the prefix tokens, then the patches, plus pos_embed (added to the patches alone
 * when noEmbedClass). patches [B*N, D] -> the residual stream as rows [B*T, D].
 */
function embedTokens(c: ModelConfig, w: TensorMap, patches: tf.Tensor2D, B: number): tf.Tensor2D {
  const [N, D] = [numPatches(c), c.dim];
  // [B, 1|R, D] by a broadcasting add: its gradient is one sum over the batch (Tile's slices dy per image).
  const names = [...(c.classToken ? ['cls_token'] : []), ...(c.regTokens > 0 ? ['reg_token'] : [])];
  const prefix = names.map((n) => tf.add(tf.zeros([B, w[n].shape[1]!, D]), w[n]));
  let x: tf.Tensor = tf.reshape(patches, [B, N, D]);
  if (c.noEmbedClass) x = tf.add(x, w['pos_embed']);
  if (prefix.length) x = tf.concat([...prefix, x], 1); // [B, T, D]
  if (!c.noEmbedClass) x = tf.add(x, w['pos_embed']);
  return tf.reshape(x, [B * (N + numPrefixTokens(c)), D]);
}

/**
 * Multi-head self-attention after norm1, whose affine part is folded into qkv (ops.ts foldNorm).
 * xh [B*T, D], normalized rows -> [B*T, D]. q, k and v are three products on column blocks of
 * qkv.weight [D, 3D] (timm's q | k | v order), cheaper in tfjs-wasm than splitting one [B*T, 3D].
 */
function attention(c: ModelConfig, w: TensorMap, i: number, xh: tf.Tensor2D, B: number): tf.Tensor2D {
  const [BT, D] = xh.shape;
  const T = BT / B;
  const [h, d] = [c.heads, D / c.heads];
  const p = `blocks.${i}.attn`;
  // qkv.bias is absent without qkvBias; the folded norm's beta @ W is a bias all the same.
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
  return dense(merged, ...foldScale(w[`${p}.proj.weight`], w[`${p}.proj.bias`], w[`blocks.${i}.ls1.gamma`])); // ls1 (absent: identity)
}

/** The nested FFN at hidden width m, after norm2 (its affine part folded into fc1), with ls2. xh [B*T, D] -> [B*T, D] */
function ffn(c: ModelConfig, w: TensorMap, i: number, xh: tf.Tensor2D, m: number, taps: Taps): tf.Tensor2D {
  const D = c.dim;
  const p = `blocks.${i}.mlp`;
  const full = m === c.mlpDim;
  const w1 = full ? w[`${p}.fc1.weight`] : tf.slice(w[`${p}.fc1.weight`], [0, 0], [D, m]); // [D, m]
  const b1 = full ? w[`${p}.fc1.bias`] : tf.slice(w[`${p}.fc1.bias`], [0], [m]); // [m]
  const w2 = full ? w[`${p}.fc2.weight`] : tf.slice(w[`${p}.fc2.weight`], [0, 0], [m, D]); // [m, D]
  const hidden = ACTIVATIONS[c.act](dense(xh, ...foldNorm(w[`blocks.${i}.norm2.weight`], w[`blocks.${i}.norm2.bias`], w1, b1))); // [B*T, m]
  taps.onFfnHidden?.(i, hidden);
  return dense(hidden, ...foldScale(w2, w[`${p}.fc2.bias`], w[`blocks.${i}.ls2.gamma`]));
}

/** timm's global_pool_nlc: the class token, or the mean of the patch tokens. x [B*T, D] -> [B, D] */
function pool(c: ModelConfig, x: tf.Tensor2D, B: number): tf.Tensor2D {
  const [T, D, first] = [x.shape[0] / B, c.dim, numPrefixTokens(c)];
  const seq = tf.reshape(x, [B, T, D]);
  if (c.globalPool === 'token') return tf.reshape(tf.slice(seq, [0, 0, 0], [B, 1, D]), [B, D]);
  return tf.mean(tf.slice(seq, [0, first, 0], [B, T - first, D]), 1);
}

/**
 * The forward pass of the submodel `ffnDims` (default: full width).
 * images [B, C, H, W], normalized -> embedding [B, E] (E = embeddingDim: D, or K for a head embedding) and logits [B, K].
 * Call inside tf.tidy (or dispose the outputs).
 */
export function forward(c: ModelConfig, w: TensorMap, images: tf.Tensor4D, ffnDims?: readonly number[], taps: Taps = {}): ForwardOutput {
  const dims = ffnDims ? checkFfnDims(c, ffnDims) : granularityDims(c, 'xl');
  const [B, C, H, W] = images.shape;
  if (C !== c.channels || H !== c.imageSize || W !== c.imageSize)
    throw new Error(`images [${images.shape}]: expected [B, ${c.channels}, ${c.imageSize}, ${c.imageSize}]`);
  const norm = normalize(c.layerNormEps);
  const layerNorm = (x: tf.Tensor2D, name: string) => tf.add(tf.mul(norm(x), w[`${name}.weight`]), w[`${name}.bias`]) as tf.Tensor2D;

  const patches = embed(patchify(c, images), w['patch_embed.proj.weight'], w['patch_embed.proj.bias']); // [B*N, D] (no bias with preNorm)
  // The residual stream as rows, [B*T, D]: every op but attention's per-image products is per token.
  let x = embedTokens(c, w, patches, B);
  if (c.preNorm) x = layerNorm(x, 'norm_pre');

  for (let i = 0; i < c.depth; i++) {
    const input = x;
    // One scope per block frees its intermediates at inference (a 224 model at batch 32 would
    // otherwise exhaust the wasm heap); under a gradient tape tfjs keeps what the backward needs.
    x = tf.tidy(() => {
      const h = tf.add(input, attention(c, w, i, norm(input), B)) as tf.Tensor2D;
      return tf.add(h, ffn(c, w, i, norm(h), dims[i], taps)) as tf.Tensor2D;
    });
  }

  // timm: norm on every token, pool, then fc_norm (one of the two norms exists). LayerNorm is per
  // token, so the class token is pooled first and normalized alone.
  const poolFirst = c.fcNorm || c.globalPool === 'token';
  const pre = poolFirst ? layerNorm(pool(c, x, B), c.fcNorm ? 'fc_norm' : 'norm') : pool(c, layerNorm(x, 'norm'), B); // [B, D]
  const logits = c.numClasses > 0 ? dense(pre, w['head.weight'], w['head.bias']) : (tf.zeros([B, 0]) as tf.Tensor2D); // [B, K]
  const e = c.embedding === 'head' ? logits : pre;
  const embedding = tf.div(e, tf.maximum(tf.norm(e, 'euclidean', 1, true), 1e-12)) as tf.Tensor2D;
  return { embedding, logits };
}

/** Host weights -> tfjs tensors (the caller owns and disposes them). */
export function toTensors(c: ModelConfig, weights: WeightMap): TensorMap {
  const out: TensorMap = {};
  for (const s of weightSpecs(c)) out[s.name] = tf.tensor(weights[s.name].data, weights[s.name].shape, 'float32');
  return out;
}
