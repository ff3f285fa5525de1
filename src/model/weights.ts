// The named weight map of a MatViT: timm-style names, one list of specs used by initialization,
// checkpoint loading, the optimizer (which names get weight decay) and the ONNX graph builder.
//
// Layout in memory is the compute layout: every linear weight is [in, out] so that y = x @ W needs
// no transposed matmul (several times slower in tfjs-wasm: docs/tfjs-wasm-training.md); the patch embedding is a
// [P*P*C, D] matrix over patches flattened in (row, col, channel) order. On disk (safetensors) the
// layout is timm's/PyTorch's: linear [out, in], patch conv [D, C, P, P]; see checkpoint.ts.
import seedrandom from 'seedrandom';
import { type ModelConfig, posEmbedLength } from './config.ts';

/** A float32 tensor on the host: row-major data and its shape. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}
export type WeightMap = Record<string, HostTensor>;

/** linear: [in, out] in memory, [out, in] on disk; patch: [P*P*C, D] vs [D, C, P, P]; same: identical. */
export type Layout = 'linear' | 'patch' | 'same';
export interface WeightSpec {
  name: string;
  shape: number[]; // memory layout
  layout: Layout;
  /** Decoupled weight decay applies to matrices only: not norms, biases, layer scales, prefix tokens or position embeddings. */
  decay: boolean;
  /** layer_scale: 1e-5, LayerScale's init_values in timm's CaiT and DINOv2 configs. */
  init: 'trunc_normal' | 'zeros' | 'ones' | 'layer_scale';
}

/** The specs of a config, in the fixed order the fingerprint hashes; a variant adds its weights only when on. */
export function weightSpecs(c: ModelConfig): WeightSpec[] {
  const D = c.dim;
  const specs: WeightSpec[] = [];
  const add = (name: string, shape: number[], layout: Layout, decay: boolean, init: WeightSpec['init']) =>
    specs.push({ name, shape, layout, decay, init });
  const linear = (prefix: string, inDim: number, outDim: number, bias = true) => {
    add(`${prefix}.weight`, [inDim, outDim], 'linear', true, 'trunc_normal');
    if (bias) add(`${prefix}.bias`, [outDim], 'same', false, 'zeros');
  };
  const norm = (prefix: string) => {
    add(`${prefix}.weight`, [D], 'same', false, 'ones');
    add(`${prefix}.bias`, [D], 'same', false, 'zeros');
  };
  add('patch_embed.proj.weight', [c.patchSize * c.patchSize * c.channels, D], 'patch', true, 'trunc_normal');
  if (!c.preNorm) add('patch_embed.proj.bias', [D], 'same', false, 'zeros'); // timm: bias=not pre_norm
  if (c.classToken) add('cls_token', [1, 1, D], 'same', false, 'trunc_normal');
  if (c.regTokens > 0) add('reg_token', [1, c.regTokens, D], 'same', false, 'trunc_normal');
  add('pos_embed', [1, posEmbedLength(c), D], 'same', false, 'trunc_normal');
  if (c.preNorm) norm('norm_pre');
  const layerScale = (name: string) => c.layerScale && add(name, [D], 'same', false, 'layer_scale');
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;
    norm(`${b}.norm1`);
    linear(`${b}.attn.qkv`, D, 3 * D, c.qkvBias);
    linear(`${b}.attn.proj`, D, D);
    layerScale(`${b}.ls1.gamma`);
    norm(`${b}.norm2`);
    linear(`${b}.mlp.fc1`, D, c.mlpDim);
    linear(`${b}.mlp.fc2`, c.mlpDim, D);
    layerScale(`${b}.ls2.gamma`);
  }
  norm(c.fcNorm ? 'fc_norm' : 'norm');
  if (c.numClasses > 0) linear('head', D, c.numClasses, c.headBias);
  return specs;
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Random initialization as in timm's ViT: truncated normal (std 0.02, cut at 2 std), zero biases, unit norms. */
export function initWeights(c: ModelConfig, seed = 0): WeightMap {
  const rng = seedrandom(`matvit:${seed}`);
  const normal = () => {
    // Box-Muller, redrawn outside [-2, 2] (truncation).
    for (;;) {
      const u = 1 - rng();
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
      if (Math.abs(z) <= 2) return z;
    }
  };
  const out: WeightMap = {};
  for (const s of weightSpecs(c)) {
    const data = new Float32Array(size(s.shape));
    if (s.init === 'ones') data.fill(1);
    else if (s.init === 'layer_scale') data.fill(1e-5);
    else if (s.init === 'trunc_normal') for (let i = 0; i < data.length; i++) data[i] = 0.02 * normal();
    out[s.name] = { shape: [...s.shape], data };
  }
  return out;
}

/** Checks names and shapes against the config; the error lists every mismatch. */
export function checkWeights(c: ModelConfig, w: WeightMap): void {
  const problems: string[] = [];
  const specs = weightSpecs(c);
  const expected = new Set(specs.map((s) => s.name));
  for (const s of specs) {
    const t = w[s.name];
    if (!t) problems.push(`missing ${s.name} [${s.shape}]`);
    else if (t.shape.join() !== s.shape.join()) problems.push(`${s.name}: shape [${t.shape}], expected [${s.shape}]`);
    else if (t.data.length !== size(s.shape)) problems.push(`${s.name}: ${t.data.length} values for shape [${s.shape}]`);
  }
  for (const name of Object.keys(w)) if (!expected.has(name)) problems.push(`unexpected ${name} [${w[name].shape}]`);
  if (problems.length) throw new Error(`weights do not match model "${c.name}":\n  ${problems.join('\n  ')}`);
}

export const numel = size;
