// Flax ViT parameters (big_vision / AugReg .npz, scenic msgpack) -> timm names and layouts, as timm's
// _load_weights (timm/models/vision_transformer.py) maps them. Sizes come from the shapes:
//   embedding/kernel [P, P, C, D] (conv, HWIO)         -> patch_embed.proj.weight [D, C, P, P]
//   cls [1, 1, D]                                       -> cls_token (absent: global average pooling)
//   Transformer/posembed_input/pos_embedding [1, T, D]  -> pos_embed (big_vision: pos_embedding, patches only)
//   Transformer/encoderblock_i/ LayerNorm_0, MultiHeadDotProductAttention_{0|1}/{query,key,value} kernel
//     [D, heads, head_dim] and out kernel [heads, head_dim, D], LayerNorm_{1|2}, MlpBlock_{0|3}/Dense_0|1
//     (the AugReg release numbers the block's modules 0-3, newer code 0-1; both are read)
//   Transformer/encoder_norm                            -> norm
//   head | output_projection kernel [D, K]              -> head [K, D]
// Flax's LayerNorm epsilon is 1e-6 and nn.gelu is the tanh approximation.
import type { ModelConfigInput } from '../model/config.ts';
import type { HostTensor, WeightMap } from '../model/weights.ts';
import type { ArrayMap } from './arrays.ts';

/** Where the parameters sit in a checkpoint: the root, a train state's params, an optimizer's target. */
const PREFIXES = ['', 'params/', 'opt/target/', 'optimizer/target/', 'params/img/'];

/** a [rows, cols] row-major -> [cols, rows] */
function transpose(t: HostTensor, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[r * cols + c];
  return out;
}

export interface FlaxVit {
  config: Omit<ModelConfigInput, 'name' | 'mean' | 'std'>;
  tensors: WeightMap;
  notes: string[];
}

export function flaxVitToTimm(arrays: ArrayMap, what: string, headName: 'head' | 'output_projection'): FlaxVit {
  const prefix = PREFIXES.find((p) => `${p}embedding/kernel` in arrays);
  if (prefix === undefined) {
    const found = Object.keys(arrays).filter((k) => k.endsWith('embedding/kernel'));
    throw new Error(
      `${what}: no ViT parameters: embedding/kernel not found under ${PREFIXES.map((p) => `"${p}"`).join(', ')}${found.length ? ` (found ${found.join(', ')})` : ''}`,
    );
  }
  const used = new Set<string>();
  const has = (name: string) => `${prefix}${name}` in arrays;
  const get = (name: string, rank?: number): HostTensor => {
    const t = arrays[`${prefix}${name}`];
    if (!t) throw new Error(`${what}: missing ${prefix}${name}`);
    if (rank !== undefined && t.shape.length !== rank)
      throw new Error(`${what}: ${prefix}${name} has shape [${t.shape}], expected ${rank} dimensions`);
    used.add(`${prefix}${name}`);
    return t;
  };
  const notes: string[] = [];
  if (has('MAPHead_0/probe'))
    throw new Error(`${what}: attention pooling (MAPHead_0) is not supported; only class-token and average pooling are`);
  if (has('Transformer/encoderblock/LayerNorm_0/scale'))
    throw new Error(
      `${what}: scanned blocks (Transformer/encoderblock with a layer axis) are not supported; save the unrolled encoderblock_i form`,
    );

  const kernel = get('embedding/kernel', 4);
  const [P, P2, C, D] = kernel.shape;
  if (P !== P2) throw new Error(`${what}: embedding/kernel [${kernel.shape}] has a non-square patch`);
  const tensors: WeightMap = {};
  // HWIO [P, P, C, D] -> OIHW [D, C, P, P]
  const conv = new Float32Array(kernel.data.length);
  for (let y = 0; y < P; y++)
    for (let x = 0; x < P; x++)
      for (let c = 0; c < C; c++)
        for (let d = 0; d < D; d++) conv[((d * C + c) * P + y) * P + x] = kernel.data[((y * P + x) * C + c) * D + d];
  tensors['patch_embed.proj.weight'] = { shape: [D, C, P, P], data: conv };
  tensors['patch_embed.proj.bias'] = get('embedding/bias', 1);

  const classToken = has('cls');
  if (classToken) tensors.cls_token = get('cls', 3);
  // Without a class token the pooling is not in the weights: big_vision's and scenic's default is the mean ('gap').
  else
    notes.push(
      "no class token: pooled by the mean of the tokens (pool_type / classifier 'gap', the default; 'gmp', 'gsp' and '0' are not supported)",
    );
  const posName = ['Transformer/posembed_input/pos_embedding', 'pos_embedding', 'Transformer/pos_embedding'].find(has);
  if (!posName) throw new Error(`${what}: no position embedding (Transformer/posembed_input/pos_embedding or pos_embedding)`);
  const pos = get(posName, 3);
  const T = pos.shape[1];
  const isSquare = (n: number) => n > 0 && Number.isInteger(Math.sqrt(n));
  // The class token has a position embedding when it was concatenated before the embeddings were
  // added (AugReg, scenic); big_vision adds them to the patches first (timm's no_embed_class).
  const noEmbedClass = !(classToken && isSquare(T - 1));
  const N = noEmbedClass ? T : T - 1;
  if (!isSquare(N))
    throw new Error(
      `${what}: ${posName} [${pos.shape}] is not a square grid of patches${classToken ? ' (with or without the class token)' : ''}`,
    );
  tensors.pos_embed = pos;

  let depth = 0;
  while (has(`Transformer/encoderblock_${depth}/LayerNorm_0/scale`)) depth++;
  if (depth === 0) throw new Error(`${what}: no Transformer/encoderblock_0`);
  const augreg = has('Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel');
  const [mha, ln2, mlp] = augreg
    ? ['MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3']
    : ['MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'];
  const heads = get(`Transformer/encoderblock_0/${mha}/query/kernel`, 3).shape[1];
  let mlpDim = 0;
  for (let i = 0; i < depth; i++) {
    const f = `Transformer/encoderblock_${i}`;
    const b = `blocks.${i}`;
    tensors[`${b}.norm1.weight`] = get(`${f}/LayerNorm_0/scale`, 1);
    tensors[`${b}.norm1.bias`] = get(`${f}/LayerNorm_0/bias`, 1);
    // query/key/value kernels [D, heads, head_dim] are [D, D] matrices (in, out): qkv.weight rows are their columns.
    const qkv = new Float32Array(3 * D * D);
    const qkvBias = new Float32Array(3 * D);
    ['query', 'key', 'value'].forEach((n, j) => {
      const k = get(`${f}/${mha}/${n}/kernel`, 3);
      if (k.shape.join() !== [D, heads, D / heads].join())
        throw new Error(`${what}: ${prefix}${f}/${mha}/${n}/kernel has shape [${k.shape}], expected [${D}, ${heads}, ${D / heads}]`);
      qkv.set(transpose(k, D, D), j * D * D);
      qkvBias.set(get(`${f}/${mha}/${n}/bias`, 2).data, j * D);
    });
    tensors[`${b}.attn.qkv.weight`] = { shape: [3 * D, D], data: qkv };
    tensors[`${b}.attn.qkv.bias`] = { shape: [3 * D], data: qkvBias };
    const out = get(`${f}/${mha}/out/kernel`, 3); // [heads, head_dim, D]: rows are the input features
    tensors[`${b}.attn.proj.weight`] = { shape: [D, D], data: transpose(out, D, D) };
    tensors[`${b}.attn.proj.bias`] = get(`${f}/${mha}/out/bias`, 1);
    tensors[`${b}.norm2.weight`] = get(`${f}/${ln2}/scale`, 1);
    tensors[`${b}.norm2.bias`] = get(`${f}/${ln2}/bias`, 1);
    const fc1 = get(`${f}/${mlp}/Dense_0/kernel`, 2); // [D, M]
    const fc2 = get(`${f}/${mlp}/Dense_1/kernel`, 2); // [M, D]
    mlpDim = fc1.shape[1];
    tensors[`${b}.mlp.fc1.weight`] = { shape: [fc1.shape[1], fc1.shape[0]], data: transpose(fc1, fc1.shape[0], fc1.shape[1]) };
    tensors[`${b}.mlp.fc1.bias`] = get(`${f}/${mlp}/Dense_0/bias`, 1);
    tensors[`${b}.mlp.fc2.weight`] = { shape: [fc2.shape[1], fc2.shape[0]], data: transpose(fc2, fc2.shape[0], fc2.shape[1]) };
    tensors[`${b}.mlp.fc2.bias`] = get(`${f}/${mlp}/Dense_1/bias`, 1);
  }
  tensors['norm.weight'] = get('Transformer/encoder_norm/scale', 1);
  tensors['norm.bias'] = get('Transformer/encoder_norm/bias', 1);

  let numClasses = 0;
  if (has('pre_logits/kernel')) {
    // A representation layer (Dense + tanh) before the head: timm drops it and the head with it
    // (its orig_in21k weights have num_classes 0); so does this import.
    used.add(`${prefix}pre_logits/kernel`).add(`${prefix}pre_logits/bias`);
    if (has(`${headName}/kernel`)) used.add(`${prefix}${headName}/kernel`).add(`${prefix}${headName}/bias`);
    notes.push(`pre_logits (a Dense + tanh representation layer) and ${headName} dropped, as timm does: imported without a head`);
  } else if (has(`${headName}/kernel`)) {
    const head = get(`${headName}/kernel`, 2); // [D, K]
    numClasses = head.shape[1];
    tensors['head.weight'] = { shape: [numClasses, D], data: transpose(head, D, numClasses) };
    tensors['head.bias'] = get(`${headName}/bias`, 1);
  }
  const unused = Object.keys(arrays).filter((k) => k.startsWith(prefix) && !used.has(k));
  if (unused.length)
    throw new Error(
      `${what}: parameters this ViT mapping does not know (an unsupported architecture?): ${unused.slice(0, 10).join(', ')}${unused.length > 10 ? `, ... (${unused.length})` : ''}`,
    );

  return {
    config: {
      imageSize: Math.sqrt(N) * P,
      patchSize: P,
      channels: C as 1 | 3,
      dim: D,
      depth,
      heads,
      mlpDim,
      numClasses,
      layerNormEps: 1e-6,
      act: 'gelu_tanh',
      classToken,
      noEmbedClass: classToken && noEmbedClass,
      globalPool: classToken ? 'token' : 'avg',
      fcNorm: false,
      embedding: 'pre_logits',
    },
    tensors,
    notes,
  };
}
