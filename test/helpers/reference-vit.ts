// A float64 plain-loop forward pass of a (Mat)ViT, written for tests independently of src/model and
// src/engine (it imports the config's type only): the golden values the engines are checked against.
// It follows timm's VisionTransformer (timm/models/vision_transformer.py: _pos_embed,
// forward_features, Block with LayerScale, forward_head with global_pool_nlc) literally, one token
// at a time, with every variant of ModelConfig.
//
//   referenceForward(config, weights, images, batch, ffnDims?) -> { embedding, logits }
//     config   a parsed ModelConfig (variant fields included)
//     weights  name -> { shape, data }: the project's names (timm's) in compute layout, as
//              src/model/weights.ts documents: linear weights [in, out], the patch embedding
//              [P*P*C, D] with rows in (py, px, channel) order, cls_token [1, 1, D],
//              reg_token [1, R, D], pos_embed [1, L, D], norms and biases [D] / [out]
//     images   [batch, C, H, W] row-major (normalized pixels), Float32Array or Float64Array
//     ffnDims  one FFN width per layer (default: mlpDim everywhere); layer i uses the first
//              ffnDims[i] columns of fc1 and rows of fc2
//   embedding  one Float64Array per image: the L2-normalized retrieval embedding (pre-logits, or
//              the head's output when config.embedding is 'head')
//   logits     one Float64Array per image: the head's output ([] entries of length 0 when headless)
import type { ModelConfig } from '../../src/model/config.ts';

export interface ReferenceTensor {
  shape: readonly number[];
  data: ArrayLike<number>;
}
export type ReferenceWeights = Record<string, ReferenceTensor>;

/** erf to ~1e-12: Maclaurin series for |x| < 3, the erfc continued fraction (Lentz) beyond. */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 80; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...)))))
  let f = a;
  let C = a;
  let D = 0;
  for (let n = 1; n < 100; n++) {
    const an = n / 2;
    D = 1 / (a + an * D);
    C = a + an / C;
    f *= C * D;
  }
  return Math.sign(x) * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f);
}

/** The FFN activations: torch.nn.GELU(), GELU(approximate='tanh') (= flax nn.gelu), OpenAI CLIP's QuickGELU. */
export const ACTIVATIONS: Record<ModelConfig['act'], (v: number) => number> = {
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  gelu_tanh: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
  quick_gelu: (v) => v / (1 + Math.exp(-1.702 * v)),
};

type Rows = Float64Array[]; // a sequence of tokens, one Float64Array per row

/** y = x @ W[:, :nOut] (+ b[:nOut]) for one row x of length nIn, W row-major [*, stride]. */
function linearRow(x: ArrayLike<number>, W: ArrayLike<number>, stride: number, nOut: number, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = b ? b[o] : 0;
    for (let k = 0; k < x.length; k++) s += x[k] * W[k * stride + o];
    y[o] = s;
  }
  return y;
}

function layerNormRow(x: Float64Array, g: ArrayLike<number>, b: ArrayLike<number>, eps: number): Float64Array {
  const D = x.length;
  let mean = 0;
  for (let k = 0; k < D; k++) mean += x[k] / D;
  let v = 0;
  for (let k = 0; k < D; k++) v += (x[k] - mean) ** 2 / D;
  return x.map((xk, k) => ((xk - mean) / Math.sqrt(v + eps)) * g[k] + b[k]);
}

export function referenceForward(
  c: ModelConfig,
  w: ReferenceWeights,
  images: ArrayLike<number>,
  batch: number,
  ffnDims: readonly number[] = Array(c.depth).fill(c.mlpDim),
): { embedding: Float64Array[]; logits: Float64Array[] } {
  const { channels: C, imageSize: S, patchSize: P, dim: D, heads: H, numClasses: K, mlpDim, layerNormEps: eps } = c;
  const G = S / P;
  const d = D / H;
  const W = (name: string) => {
    if (!w[name]) throw new Error(`reference: no weight ${name}`);
    return w[name].data;
  };
  const ln = (rows: Rows, prefix: string) => rows.map((r) => layerNormRow(r, W(`${prefix}.weight`), W(`${prefix}.bias`), eps));
  const act = ACTIVATIONS[c.act];
  if (images.length !== batch * C * S * S) throw new Error(`reference: ${images.length} pixels for ${batch} images of [${C}, ${S}, ${S}]`);
  const embedding: Float64Array[] = [];
  const logits: Float64Array[] = [];

  for (let img = 0; img < batch; img++) {
    // patch_embed: one row per patch, pixels in (py, px, channel) order; no bias when preNorm.
    let patches: Rows = [];
    for (let gy = 0; gy < G; gy++)
      for (let gx = 0; gx < G; gx++) {
        const row = new Float64Array(P * P * C);
        for (let py = 0; py < P; py++)
          for (let px = 0; px < P; px++)
            for (let ch = 0; ch < C; ch++) row[(py * P + px) * C + ch] = images[((img * C + ch) * S + gy * P + py) * S + gx * P + px];
        patches.push(linearRow(row, W('patch_embed.proj.weight'), D, D, c.preNorm ? undefined : W('patch_embed.proj.bias')));
      }

    // _pos_embed: [cls, reg..., patches]; pos_embed added to the patches alone (noEmbedClass) or to all.
    const prefix: Rows = [];
    if (c.classToken) prefix.push(Float64Array.from(W('cls_token')));
    for (let r = 0; r < c.regTokens; r++) prefix.push(Float64Array.from({ length: D }, (_, k) => W('reg_token')[r * D + k]));
    const pos = W('pos_embed');
    const addPos = (rows: Rows) => rows.map((row, t) => row.map((v, k) => v + pos[t * D + k]));
    if (c.noEmbedClass) patches = addPos(patches);
    let x: Rows = [...prefix, ...patches];
    if (!c.noEmbedClass) x = addPos(x);
    if (c.preNorm) x = ln(x, 'norm_pre');
    const T = x.length;

    for (let l = 0; l < c.depth; l++) {
      const b = `blocks.${l}`;
      const scale = (rows: Rows, ls: string) => (c.layerScale ? rows.map((r) => r.map((v, k) => v * W(`${b}.${ls}.gamma`)[k])) : rows);
      // x = x + ls1(attn(norm1(x)))
      const qkv = ln(x, `${b}.norm1`).map((r) =>
        linearRow(r, W(`${b}.attn.qkv.weight`), 3 * D, 3 * D, c.qkvBias ? W(`${b}.attn.qkv.bias`) : undefined),
      );
      const o: Rows = x.map(() => new Float64Array(D));
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++) {
          const scores = new Float64Array(T);
          for (let s = 0; s < T; s++) {
            let dot = 0;
            for (let j = 0; j < d; j++) dot += qkv[t][h * d + j] * qkv[s][D + h * d + j];
            scores[s] = dot / Math.sqrt(d);
          }
          const mx = Math.max(...scores);
          let z = 0;
          for (let s = 0; s < T; s++) z += scores[s] = Math.exp(scores[s] - mx);
          for (let j = 0; j < d; j++) {
            let acc = 0;
            for (let s = 0; s < T; s++) acc += (scores[s] / z) * qkv[s][2 * D + h * d + j];
            o[t][h * d + j] = acc;
          }
        }
      const attn = scale(
        o.map((r) => linearRow(r, W(`${b}.attn.proj.weight`), D, D, W(`${b}.attn.proj.bias`))),
        'ls1',
      );
      x = x.map((r, t) => r.map((v, k) => v + attn[t][k]));

      // x = x + ls2(mlp(norm2(x))), the FFN at width m: fc1's first m columns (row stride mlpDim), fc2's first m rows.
      const m = ffnDims[l];
      const hidden = ln(x, `${b}.norm2`).map((r) => linearRow(r, W(`${b}.mlp.fc1.weight`), mlpDim, m, W(`${b}.mlp.fc1.bias`)).map(act));
      const ffn = scale(
        hidden.map((r) => linearRow(r, W(`${b}.mlp.fc2.weight`), D, D, W(`${b}.mlp.fc2.bias`))),
        'ls2',
      );
      x = x.map((r, t) => r.map((v, k) => v + ffn[t][k]));
    }

    // norm (every token) -> pool -> fc_norm; exactly one of the two norms exists.
    const pool = (rows: Rows): Float64Array => {
      if (c.globalPool === 'token') return rows[0];
      const patchRows = rows.slice(c.regTokens + (c.classToken ? 1 : 0));
      return Float64Array.from({ length: D }, (_, k) => patchRows.reduce((s, r) => s + r[k], 0) / patchRows.length);
    };
    const pre = c.fcNorm ? ln([pool(x)], 'fc_norm')[0] : pool(ln(x, 'norm'));
    const out = K > 0 ? linearRow(pre, W('head.weight'), K, K, c.headBias ? W('head.bias') : undefined) : new Float64Array(0);
    const e = c.embedding === 'head' ? out : pre;
    const norm = Math.max(Math.hypot(...e), 1e-12);
    embedding.push(e.map((v) => v / norm));
    logits.push(out);
  }
  return { embedding, logits };
}

/** Per-image rows joined into one flat [batch, width] array (the engines' output layout). */
export function concatRows(rows: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(rows.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rows) out.set(r, (at += r.length) - r.length);
  return out;
}
