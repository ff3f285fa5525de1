// The ONNX graph of one MatViT submodel (MatFormer, arXiv 2310.07707), built from the named weight
// map of src/model/weights.ts and computing what the reference forward of src/model/matvit.ts does.
//
// The graph is sliced, not masked: layer i's FFN carries only the first ffnDims[i] columns of fc1
// (and of its bias) and the first ffnDims[i] rows of fc2, so a smaller submodel is a smaller graph
// with smaller initializers and really does less work. Standard opset-17 ops only (LayerNormalization
// is native there), so any ONNX runtime can load the bytes. The graph is written in the shapes ONNX
// Runtime's optimizer fuses (checked with its profiler): 2-D MatMul + bias Add -> Gemm, the exact
// erf GELU pattern -> Gelu, the score scale -> FusedMatMul's alpha; what remains besides the
// matrix products (transposes, softmax, norms, GELU) is ~6% of the time of vit-s16 XL.
//
// Notation as in matvit.ts: B batch (dynamic), C channels, H=W image size, P patch size, G = H/P,
// N = G*G patches, T = N + prefix tokens (class token, registers), D model width, h heads, d = D/h,
// K classes. The architecture variants of the config are timm's, as in matvit.ts.
import onnxProto from 'onnx-proto';
import { type ModelConfig, checkFfnDims, embeddingDim, numPrefixTokens, submodelName } from '../model/config.ts';
import { type HostTensor, type WeightMap, checkWeights } from '../model/weights.ts';

const { onnx } = onnxProto;
type Attr = number | number[] | { float: number };

/** Opset 17 (ONNX 1.12) is the first with LayerNormalization; its IR version is 8. */
export const OPSET = 17;
export const IR_VERSION = 8;
export const PRODUCER = 'matvit-retrieval';
const PRODUCER_VERSION = '0.1.0';

const bytesOf = (a: Float32Array | BigInt64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * The one helper set for writing a graph: initializers, constants, nodes and the model around them.
 * Every op returns the name of its output, so the model code reads like the tfjs forward.
 */
class GraphBuilder {
  readonly nodes: onnxProto.onnx.INodeProto[] = [];
  readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private count = 0;

  /** A float32 initializer. */
  weight(name: string, dims: number[], data: Float32Array): string {
    this.initializers.push({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: bytesOf(data) });
    return name;
  }

  /** An int64 initializer (shapes, axes, indices). */
  ints(values: number[]): string {
    const name = `const_${this.count++}`;
    const data = BigInt64Array.from(values.map(BigInt));
    this.initializers.push({ name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, rawData: bytesOf(data) });
    return name;
  }

  /** A float32 scalar initializer. */
  scalar(value: number): string {
    const name = `const_${this.count++}`;
    this.initializers.push({ name, dims: [], dataType: onnx.TensorProto.DataType.FLOAT, rawData: bytesOf(Float32Array.of(value)) });
    return name;
  }

  /**
   * Adds a node with one output, named `output` for a graph output, else generated; returns that
   * name. Numbers and number arrays are INT(S) attributes; FLOAT ones are written { float: x }.
   */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, output = `${opType}_${this.count}`): string {
    const T = onnx.AttributeProto.AttributeType;
    const attribute = Object.entries(attrs).map(([name, v]) => {
      if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
      if (typeof v === 'number') return { name, type: T.INT, i: v };
      return { name, type: T.FLOAT, f: v.float };
    });
    this.nodes.push({ name: `${opType}_${this.count++}`, opType, input: inputs, output: [output], attribute });
    return output;
  }

  /** The model around this graph, serialized. */
  serialize(name: string, input: onnxProto.onnx.IValueInfoProto[], output: onnxProto.onnx.IValueInfoProto[], docString = ''): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: PRODUCER,
      producerVersion: PRODUCER_VERSION,
      docString,
      graph: { name, node: this.nodes, initializer: this.initializers, input, output },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

/** A float32 graph input/output; a string dimension is symbolic (the batch). */
const floatValue = (name: string, dims: (number | string)[]): onnxProto.onnx.IValueInfoProto => ({
  name,
  type: {
    tensorType: {
      elemType: onnx.TensorProto.DataType.FLOAT,
      shape: { dim: dims.map((v) => (typeof v === 'string' ? { dimParam: v } : { dimValue: v })) },
    },
  },
});

/** Columns [start, start + cols) of a row-major [rows, allCols] matrix, copied: [rows, cols]. */
function columns(t: HostTensor, start: number, cols: number): Float32Array {
  const [rows, allCols] = t.shape;
  if (start === 0 && cols === allCols) return t.data;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) out.set(t.data.subarray(r * allCols + start, r * allCols + start + cols), r * cols);
  return out;
}

/** The patch matrix's rows reordered from (py, px, c) to (c, py, px): [P*P*C, D] -> [C*P*P, D]. */
function channelsFirstRows(t: HostTensor, P: number, C: number): Float32Array {
  const D = t.shape[1];
  const out = new Float32Array(t.data.length);
  for (let py = 0; py < P; py++)
    for (let px = 0; px < P; px++)
      for (let ch = 0; ch < C; ch++) {
        const from = ((py * P + px) * C + ch) * D;
        out.set(t.data.subarray(from, from + D), ((ch * P + py) * P + px) * D);
      }
  return out;
}

/**
 * The ONNX model of the submodel `ffnDims` (one FFN width per layer), serialized.
 * Input `pixels` float32 [B, C, H, W] (normalized); outputs `embedding` [B, E] (L2-normalized
 * pre-logits, or the head's output when config.embedding is 'head') and `logits` [B, K].
 *
 * The residual stream is kept as a matrix [B*T, D], so every MatMul + bias Add is 2-D and ORT fuses
 * it into one Gemm; only attention reshapes to [B, h, T, d]. -1 in a Reshape stands for the dynamic
 * batch.
 */
export function buildOnnxModel(c: ModelConfig, w: WeightMap, ffnDims: readonly number[]): Uint8Array {
  const dims = checkFfnDims(c, ffnDims);
  checkWeights(c, w);
  const g = new GraphBuilder();
  const { channels: C, patchSize: P, dim: D, heads: h, layerNormEps: epsilon } = c;
  const G = c.imageSize / P;
  const N = G * G;
  const prefixTokens = numPrefixTokens(c);
  const T = N + prefixTokens;
  const d = D / h;

  /** A shared weight, whole. */
  const param = (name: string) => g.weight(name, w[name].shape, w[name].data);
  /** x [M, in] @ W [in, out] (+ b [out]) -> [M, out] */
  const dense = (x: string, W: string, b?: string) => (b ? g.op('Add', [g.op('MatMul', [x, W]), b]) : g.op('MatMul', [x, W]));
  /** A linear layer by name; its bias is absent in the weight map when the config has none. */
  const linear = (x: string, prefix: string) => dense(x, param(`${prefix}.weight`), w[`${prefix}.bias`] && param(`${prefix}.bias`));
  const layerNorm = (x: string, prefix: string) =>
    g.op('LayerNormalization', [x, param(`${prefix}.weight`), param(`${prefix}.bias`)], { axis: -1, epsilon: { float: epsilon } });
  /** LayerScale: x * gamma, or x without it. */
  const layerScale = (x: string, name: string) => (c.layerScale ? g.op('Mul', [x, param(name)]) : x);
  const ACTIVATIONS: Record<ModelConfig['act'], (x: string) => string> = {
    // Exact GELU, x * 0.5 * (1 + erf(x / sqrt 2)): the pattern ORT fuses into one Gelu kernel.
    gelu: (x) => {
      const erf = g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2)])]);
      return g.op('Mul', [g.op('Mul', [x, g.op('Add', [erf, g.scalar(1)])]), g.scalar(0.5)]);
    },
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    gelu_tanh: (x) => {
      const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, g.scalar(0.044715)])]), g.scalar(Math.sqrt(2 / Math.PI))]);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [g.op('Tanh', [inner]), g.scalar(1)])]);
    },
    // x * sigmoid(1.702 x)
    quick_gelu: (x) => g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalar(1.702)])])]),
  };
  const reshape = (x: string, shape: number[]) => g.op('Reshape', [x, g.ints(shape)]);
  const transpose = (x: string, perm: number[]) => g.op('Transpose', [x], { perm });

  // Patch embedding on patches as rows. Gathering patches as (c, py, px) keeps runs of P contiguous
  // pixels (a (py, px, c) gather moves one float at a time and is several times slower), so the
  // weight's rows are permuted to match; the product is the same.
  const grid = reshape('pixels', [-1, C, G, P, G, P]); // [B, C, G(gy), P(py), G(gx), P(px)]
  const patches = reshape(transpose(grid, [0, 2, 4, 1, 3, 5]), [-1, C * P * P]); // [B*N, C*P*P]
  const patchW = g.weight('patch_embed.proj.weight', [C * P * P, D], channelsFirstRows(w['patch_embed.proj.weight'], P, C));
  const patchB = c.preNorm ? undefined : param('patch_embed.proj.bias'); // timm: bias=not pre_norm
  let tokens = reshape(dense(patches, patchW, patchB), [-1, N, D]); // [B, N, D]

  // timm's _pos_embed: [class token, registers, patches], pos_embed added to the patches alone
  // (noEmbedClass) or to the whole sequence.
  const batch = g.op('Shape', ['pixels'], { start: 0, end: 1 }); // [1] = (B)
  const expand = (name: string, n: number) => g.op('Expand', [param(name), g.op('Concat', [batch, g.ints([n, D])], { axis: 0 })]); // [B, n, D]
  const prefix = [...(c.classToken ? [expand('cls_token', 1)] : []), ...(c.regTokens > 0 ? [expand('reg_token', c.regTokens)] : [])];
  if (c.noEmbedClass) tokens = g.op('Add', [tokens, param('pos_embed')]);
  let embedded = prefix.length ? g.op('Concat', [...prefix, tokens], { axis: 1 }) : tokens; // [B, T, D]
  if (!c.noEmbedClass) embedded = g.op('Add', [embedded, param('pos_embed')]);
  let x = reshape(embedded, [-1, D]); // [B*T, D]
  if (c.preNorm) x = layerNorm(x, 'norm_pre');

  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;

    // Attention. qkv's columns are q | k | v, heads-major within each (timm); one Gemm per third
    // instead of a Split of one [B*T, 3D] product saves copying it.
    const xn = layerNorm(x, `${b}.norm1`); // [B*T, D]
    const qkvW = w[`${b}.attn.qkv.weight`]; // [D, 3D]
    const qkvB = w[`${b}.attn.qkv.bias`]; // [3D], absent without qkvBias
    const [q, k, v] = ['q', 'k', 'v'].map((name, j) => {
      const Wj = g.weight(`${b}.attn.${name}.weight`, [D, D], columns(qkvW, j * D, D)); // [D, D]
      const bj = qkvB && g.weight(`${b}.attn.${name}.bias`, [D], qkvB.data.subarray(j * D, (j + 1) * D)); // [D]
      return dense(xn, Wj, bj); // [B*T, D]
    });
    const qh = transpose(reshape(q, [-1, T, h, d]), [0, 2, 1, 3]); // [B, h, T, d]
    const kt = transpose(reshape(k, [-1, T, h, d]), [0, 2, 3, 1]); // [B, h, d, T], k pre-transposed
    const vh = transpose(reshape(v, [-1, T, h, d]), [0, 2, 1, 3]); // [B, h, T, d]
    // The scale right before the MatMul: ORT folds it into the product (FusedMatMul alpha).
    const scores = g.op('MatMul', [g.op('Mul', [qh, g.scalar(1 / Math.sqrt(d))]), kt]); // [B, h, T, T]
    const o = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), vh]); // [B, h, T, d]
    const merged = reshape(transpose(o, [0, 2, 1, 3]), [-1, D]); // [B*T, D]
    x = g.op('Add', [x, layerScale(linear(merged, `${b}.attn.proj`), `${b}.ls1.gamma`)]); // [B*T, D]

    // The nested FFN at width m: the first m columns of fc1 (and its bias), the first m rows of fc2.
    const m = dims[i];
    const p = `${b}.mlp`;
    const w1 = g.weight(`${p}.fc1.weight`, [D, m], columns(w[`${p}.fc1.weight`], 0, m)); // [D, m]
    const b1 = g.weight(`${p}.fc1.bias`, [m], w[`${p}.fc1.bias`].data.subarray(0, m)); // [m]
    const w2 = g.weight(`${p}.fc2.weight`, [m, D], w[`${p}.fc2.weight`].data.subarray(0, m * D)); // [m, D]
    const hidden = ACTIVATIONS[c.act](dense(layerNorm(x, `${b}.norm2`), w1, b1)); // [B*T, m]
    x = g.op('Add', [x, layerScale(dense(hidden, w2, param(`${p}.fc2.bias`)), `${b}.ls2.gamma`)]); // [B*T, D]
  }

  // timm: norm on every token, pool, then fc_norm (one of the two exists). LayerNorm is per token,
  // so the class token is pooled first and normalized alone.
  /** The class token, or the mean of the patch tokens: [B*T, D] -> [B, D] */
  const pool = (rows: string) => {
    const seq = reshape(rows, [-1, T, D]);
    if (c.globalPool === 'token') return reshape(g.op('Gather', [seq, g.ints([0])], { axis: 1 }), [-1, D]);
    return g.op('ReduceMean', [g.op('Slice', [seq, g.ints([prefixTokens]), g.ints([T]), g.ints([1])])], { axes: [1], keepdims: 0 });
  };
  const poolFirst = c.fcNorm || c.globalPool === 'token';
  const pre = poolFirst ? layerNorm(pool(x), c.fcNorm ? 'fc_norm' : 'norm') : pool(layerNorm(x, 'norm')); // [B, D]
  const K = c.numClasses;
  const logits =
    K > 0
      ? linear(pre, 'head') // [B, K]
      : g.op('Slice', [pre, g.ints([0]), g.ints([0]), g.ints([1])]); // [B, 0]: a headless model
  const e = c.embedding === 'head' ? logits : pre;
  const norm = g.op('Max', [g.op('ReduceL2', [e], { axes: [1], keepdims: 1 }), g.scalar(1e-12)]); // [B, 1]
  const embedding = g.op('Div', [e, norm]); // [B, E]
  // Identity names the graph outputs; ORT removes it.
  g.op('Identity', [embedding], {}, 'embedding');
  g.op('Identity', [logits], {}, 'logits');

  const sub = submodelName(c, dims);
  return g.serialize(
    `matvit-${c.name}-${sub}`,
    [floatValue('pixels', ['batch', C, c.imageSize, c.imageSize])],
    [floatValue('embedding', ['batch', embeddingDim(c)]), floatValue('logits', ['batch', K])],
    `MatViT ${c.name}, submodel ${sub} (ffnDims ${dims.join(',')})`,
  );
}

/**
 * A one-MatMul model, A [M, K] (input `a`) @ W [K, N] (a constant initializer) -> [M, N]: the sgemm
 * ceiling that the MatViT graph's throughput is judged against.
 */
export function buildMatMulModel(M: number, K: number, N: number): Uint8Array {
  const g = new GraphBuilder();
  const W = new Float32Array(K * N);
  for (let i = 0; i < W.length; i++) W[i] = ((i * 7919) % 1000) / 1000 - 0.5; // any values: only speed matters
  g.op('MatMul', ['a', g.weight('w', [K, N], W)], {}, 'y');
  return g.serialize(`matmul-${M}x${K}x${N}`, [floatValue('a', [M, K])], [floatValue('y', [M, N])]);
}

/**
 * Exact inner-product k-NN of a block of queries against a block of corpus vectors:
 * q [Q, D], c [M, D], k [1] (int64) -> scores [Q, k], indices [Q, k] (best first, indices into c).
 * Gemm with transB reads c row-major as stored, so no transposed copy is made.
 */
export function buildKnnModel(): Uint8Array {
  const g = new GraphBuilder();
  const s = g.op('Gemm', ['q', 'c'], { transB: 1 });
  g.nodes.push({
    opType: 'TopK',
    input: [s, 'k'],
    output: ['scores', 'indices'],
    attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
  });
  const kValue: onnxProto.onnx.IValueInfoProto = {
    name: 'k',
    type: { tensorType: { elemType: onnx.TensorProto.DataType.INT64, shape: { dim: [{ dimValue: 1 }] } } },
  };
  const indices: onnxProto.onnx.IValueInfoProto = {
    name: 'indices',
    type: { tensorType: { elemType: onnx.TensorProto.DataType.INT64, shape: { dim: [{ dimParam: 'queries' }, { dimParam: 'k' }] } } },
  };
  return g.serialize(
    'knn',
    [floatValue('q', ['queries', 'dim']), floatValue('c', ['items', 'dim']), kValue],
    [floatValue('scores', ['queries', 'k']), indices],
  );
}
