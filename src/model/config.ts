// Model configuration: one zod schema, types inferred from it, defaults only here.
// The resolved config is saved in every checkpoint (config.json) and index manifest.
import { z } from 'zod';

export const Interpolation = z.enum(['bicubic', 'bilinear', 'nearest']);

export const ModelConfig = z
  .object({
    name: z.string().min(1),
    imageSize: z.number().int().positive(),
    patchSize: z.number().int().positive(),
    channels: z.union([z.literal(1), z.literal(3)]),
    dim: z.number().int().positive(),
    depth: z.number().int().positive(),
    heads: z.number().int().positive(),
    /** The XL hidden width of every FFN; s/m/l are 1/8, 1/4, 1/2 of it. */
    mlpDim: z.number().int().positive(),
    numClasses: z.number().int().nonnegative(),
    classNames: z.array(z.string()).default([]),
    layerNormEps: z.number().positive().default(1e-6),
    // Architecture variants, as timm's VisionTransformer (timm/models/vision_transformer.py); the
    // defaults are the plain ViT this project trains. A variant adds weights only when it is on.
    /** false: qkv has no bias (blocks.i.attn.qkv.bias absent). */
    qkvBias: z.boolean().default(true),
    /** LayerScale (CaiT, DeiT-III, DINOv2): blocks.i.ls1.gamma, ls2.gamma [D] scale each residual branch. */
    layerScale: z.boolean().default(false),
    /** A class token cls_token [1, 1, D] first in the sequence. */
    classToken: z.boolean().default(true),
    /** Register tokens reg_token [1, R, D] after the class token (DINOv2 with registers). */
    regTokens: z.number().int().nonnegative().default(0),
    /** pos_embed covers the patches only: added to them before the prefix tokens are concatenated (DeiT-III, DINOv2). */
    noEmbedClass: z.boolean().default(false),
    /** norm_pre after the position embedding (CLIP); the patch embedding then has no bias. */
    preNorm: z.boolean().default(false),
    /** token: the class token; avg: the mean of the patch tokens (prefix tokens excluded). */
    globalPool: z.enum(['token', 'avg']).default('token'),
    /** The final norm after pooling, named fc_norm (no `norm`); else `norm` on every token before pooling. */
    fcNorm: z.boolean().default(false),
    /** FFN activation: exact erf GELU; its tanh approximation (flax's nn.gelu); x * sigmoid(1.702 x) (OpenAI CLIP). */
    act: z.enum(['gelu', 'gelu_tanh', 'quick_gelu']).default('gelu'),
    /** false: head.weight only (a CLIP image projection, stored by timm as a bias-free head). */
    headBias: z.boolean().default(true),
    /** The retrieval embedding, L2-normalized: the pooled features after the final norm, or the head's output (CLIP projection). */
    embedding: z.enum(['pre_logits', 'head']).default('pre_logits'),
    // Preprocessing (timm conventions): resize short side to floor(imageSize / cropPct), center crop.
    mean: z.array(z.number()).min(1),
    std: z.array(z.number().positive()).min(1),
    interpolation: Interpolation.default('bicubic'),
    cropPct: z.number().gt(0).lte(1).default(0.875),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (c.imageSize % c.patchSize !== 0) issue('patchSize', `patchSize ${c.patchSize} must divide imageSize ${c.imageSize}`);
    if (c.dim % c.heads !== 0) issue('heads', `heads ${c.heads} must divide dim ${c.dim}`);
    if (c.mlpDim % 8 !== 0) issue('mlpDim', `mlpDim ${c.mlpDim} must be a multiple of 8 (s = mlpDim/8)`);
    if (c.mean.length !== c.channels) issue('mean', `mean has ${c.mean.length} values, channels is ${c.channels}`);
    if (c.std.length !== c.channels) issue('std', `std has ${c.std.length} values, channels is ${c.channels}`);
    if (c.classNames.length > 0 && c.classNames.length !== c.numClasses)
      issue('classNames', `${c.classNames.length} class names for numClasses ${c.numClasses}`);
    if (c.globalPool === 'token' && !c.classToken)
      issue('globalPool', "globalPool 'token' pools the class token: set classToken true or globalPool 'avg'");
    if (c.embedding === 'head' && c.numClasses === 0)
      issue('embedding', "embedding 'head' needs a head: numClasses is 0 (use 'pre_logits')");
    if (!c.headBias && c.numClasses === 0) issue('headBias', 'headBias false describes a head, but numClasses is 0 (no head)');
  });
export type ModelConfig = z.infer<typeof ModelConfig>;
export type ModelConfigInput = z.input<typeof ModelConfig>;

/** The named granularities: the FFN hidden width of every layer is this fraction of mlpDim. */
export const GRANULARITIES = { s: 1 / 8, m: 1 / 4, l: 1 / 2, xl: 1 } as const;
export type Granularity = keyof typeof GRANULARITIES;
export const GRANULARITY_NAMES = Object.keys(GRANULARITIES) as Granularity[];

/** Number of patch tokens (without CLS). */
export const numPatches = (c: ModelConfig) => (c.imageSize / c.patchSize) ** 2;
/** Tokens before the patches: the class token, then the register tokens. */
export const numPrefixTokens = (c: ModelConfig) => (c.classToken ? 1 : 0) + c.regTokens;
/** Rows of pos_embed: the patches, plus the prefix tokens unless noEmbedClass. */
export const posEmbedLength = (c: ModelConfig) => numPatches(c) + (c.noEmbedClass ? 0 : numPrefixTokens(c));
/** Width of the retrieval embedding: D, or K when the head's output is the embedding. */
export const embeddingDim = (c: ModelConfig) => (c.embedding === 'head' ? c.numClasses : c.dim);

/** Which vector is the retrieval embedding, in words: "16-d, L2-normalized: the class token after the final norm (pre-logits)". */
export function describeEmbedding(c: ModelConfig): string {
  const pooled =
    c.globalPool === 'token'
      ? 'the class token'
      : `the mean of the patch tokens${numPrefixTokens(c) ? ` (${numPrefixTokens(c)} prefix tokens excluded)` : ''}`;
  const features = `${pooled} after the final norm${c.fcNorm ? ' (fc_norm, after pooling)' : ''}`;
  const what =
    c.embedding === 'head' ? `the head's output (${c.headBias ? 'with' : 'no'} bias) on ${features}` : `${features} (pre-logits)`;
  return `${embeddingDim(c)}-d, L2-normalized: ${what}`;
}

/** A named submodel: one FFN hidden width per layer (a granularity or a Mix'n'Match mix). */
export interface Submodel {
  name: string;
  ffnDims: number[];
}

/** ffnDims of a named granularity: the same width in every layer. */
export function granularityDims(c: ModelConfig, g: Granularity): number[] {
  return Array.from({ length: c.depth }, () => c.mlpDim * GRANULARITIES[g]);
}

/** Checks a submodel against the config; throws naming the bad value and what is accepted. */
export function checkFfnDims(c: ModelConfig, ffnDims: readonly number[]): number[] {
  if (ffnDims.length !== c.depth)
    throw new Error(`ffnDims has ${ffnDims.length} entries, the model has ${c.depth} layers (one width per layer)`);
  ffnDims.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 1 || d > c.mlpDim)
      throw new Error(`ffnDims[${i}] = ${d}: each width must be an integer in 1..${c.mlpDim}`);
  });
  return [...ffnDims];
}

/** The name of a submodel: s/m/l/xl when uniform at a named width, else the widths joined. */
export function submodelName(c: ModelConfig, ffnDims: readonly number[]): string {
  for (const g of GRANULARITY_NAMES) if (ffnDims.every((d) => d === c.mlpDim * GRANULARITIES[g])) return g;
  return ffnDims.join(',');
}

/**
 * Parses what a user typed for a submodel: a granularity name (s, m, l, xl) or explicit
 * per-layer widths ("96,96,192,..."). Returns the checked ffnDims.
 */
export function parseSubmodel(c: ModelConfig, spec: string): number[] {
  const s = spec.trim().toLowerCase();
  if (s in GRANULARITIES) return granularityDims(c, s as Granularity);
  const parts = s.split(',').map((p) => Number(p.trim()));
  if (parts.some((p) => !Number.isFinite(p)))
    throw new Error(`submodel "${spec}": expected one of ${GRANULARITY_NAMES.join(', ')} or ${c.depth} comma-separated widths`);
  return checkFfnDims(c, parts);
}
