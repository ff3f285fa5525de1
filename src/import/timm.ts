// timm / Hugging Face hub ViTs: a folder with config.json (architecture, num_classes, global_pool,
// pretrained_cfg, optional model_args) and model.safetensors with timm's tensor names and layouts,
// resolved as timm.create_model(architecture, **model_args) would resolve them
// (timm/models/_hub.py load_model_config_from_hf, _builder.py _update_default_model_kwargs):
// model_args > the pretrained config's num_classes, global_pool and input_size > the
// architecture's arguments (timm-archs.ts) > VisionTransformer's defaults.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { ModelConfigInput } from '../model/config.ts';
import { decodeSafetensors } from '../model/safetensors.ts';
import { sha256Hex } from '../util/hash.ts';
import { formatZodError } from '../util/zod-error.ts';
import { TIMM_ARCHITECTURES, type TimmArgs, VIT_DEFAULTS } from './timm-archs.ts';
import type { SourceModel } from './source.ts';

const square = (what: string) =>
  z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])]).transform((v, ctx) => {
    if (typeof v === 'number') return v;
    if (v[0] !== v[1]) ctx.addIssue({ code: 'custom', message: `${what} [${v}] is not square; only square inputs are supported` });
    return v[0];
  });

/**
 * model_args: the arguments this project's model can honour, plus training-only ones that do not
 * change the function of a trained model (accepted and ignored). Anything else is an error that
 * names it, rather than a model that silently differs from the source.
 */
const ModelArgs = z
  .object({
    img_size: square('img_size'),
    patch_size: square('patch_size'),
    in_chans: z.union([z.literal(1), z.literal(3)]),
    num_classes: z.number().int().nonnegative(),
    global_pool: z.string(),
    embed_dim: z.number().int().positive(),
    depth: z.number().int().positive(),
    num_heads: z.number().int().positive(),
    mlp_ratio: z.number().positive(),
    qkv_bias: z.boolean(),
    init_values: z.number().nullable(),
    class_token: z.boolean(),
    no_embed_class: z.boolean(),
    reg_tokens: z.number().int().nonnegative(),
    pre_norm: z.boolean(),
    fc_norm: z.boolean().nullable(),
    act_layer: z.string(),
    // Must keep timm's default to be representable.
    final_norm: z.literal(true),
    qk_norm: z.literal(false),
    proj_bias: z.literal(true),
    pos_embed: z.literal('learn'),
    dynamic_img_size: z.literal(false),
    dynamic_img_pad: z.literal(false),
    // Training-only.
    drop_rate: z.number(),
    pos_drop_rate: z.number(),
    patch_drop_rate: z.number(),
    proj_drop_rate: z.number(),
    attn_drop_rate: z.number(),
    drop_path_rate: z.number(),
    weight_init: z.string(),
    fix_init: z.boolean(),
  })
  .partial()
  .strict();

const PretrainedCfg = z
  .object({
    tag: z.string().optional(),
    input_size: z.tuple([z.number().int(), z.number().int(), z.number().int()]).optional(),
    mean: z.array(z.number()).optional(),
    std: z.array(z.number()).optional(),
    crop_pct: z.number().optional(),
    crop_mode: z.string().optional(),
    interpolation: z.string().optional(),
    num_classes: z.number().int().nonnegative().optional(),
    global_pool: z.string().optional(),
    label_names: z.array(z.string()).optional(),
    notes: z.array(z.string()).optional(),
  })
  .loose();

const HubConfig = z
  .object({
    architecture: z.string(),
    num_classes: z.number().int().nonnegative().optional(),
    global_pool: z.string().optional(),
    label_names: z.array(z.string()).optional(),
    pretrained_cfg: PretrainedCfg.optional(),
    model_args: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();
export type HubConfig = z.infer<typeof HubConfig>;

/** timm's default pretrained config (_cfg in vision_transformer.py): Inception mean/std, crop 0.9, bicubic. */
const TIMM_CFG_DEFAULTS = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 0.9, interpolation: 'bicubic' };
const INTERPOLATIONS = ['bicubic', 'bilinear', 'nearest'];

/** The resolved constructor arguments of a hub config, and what the resolution decided beyond timm. */
export function resolveTimmArgs(hub: HubConfig, what: string): { args: TimmArgs; notes: string[] } {
  const table = TIMM_ARCHITECTURES[hub.architecture];
  if (!table)
    throw new Error(
      `${what}: architecture "${hub.architecture}" is not in the import table (supported: ${Object.keys(TIMM_ARCHITECTURES).join(', ')})`,
    );
  const parsed = ModelArgs.safeParse(hub.model_args ?? {});
  if (!parsed.success) throw new Error(`${what}: model_args: ${formatZodError(parsed.error, hub.model_args, { separator: '; ' })}`);
  const modelArgs = parsed.data;
  const cfg = hub.pretrained_cfg ?? {};
  const fromCfg: Partial<TimmArgs> = {};
  const numClasses = hub.num_classes ?? cfg.num_classes;
  if (numClasses !== undefined) fromCfg.num_classes = numClasses;
  const pool = hub.global_pool ?? cfg.global_pool;
  if (pool !== undefined) fromCfg.global_pool = pool;
  if (cfg.input_size) {
    const [c, h, w] = cfg.input_size;
    if (h !== w) throw new Error(`${what}: pretrained_cfg.input_size [${cfg.input_size}] is not square`);
    if (c !== 1 && c !== 3) throw new Error(`${what}: pretrained_cfg.input_size has ${c} channels (accepted: 1, 3)`);
    Object.assign(fromCfg, { img_size: h, in_chans: c });
  }
  const definedArgs = Object.fromEntries(Object.entries(modelArgs).filter(([, v]) => v !== undefined)) as Partial<TimmArgs>;
  const args: TimmArgs = { ...VIT_DEFAULTS, ...table, ...fromCfg, ...definedArgs };
  const notes: string[] = [];
  // OpenAI's CLIP towers (and some OpenCLIP ones) were trained with QuickGELU; timm registers them
  // under the GELU architecture with a note naming the quickgelu variant for the original results.
  const natively = cfg.tag === 'openai' || (cfg.notes ?? []).some((n) => /quickgelu/i.test(n));
  if (modelArgs.act_layer === undefined && args.act_layer === 'gelu' && hub.architecture.includes('_clip_') && natively) {
    args.act_layer = 'quick_gelu';
    notes.push(`act quick_gelu: pretrained weights "${cfg.tag ?? hub.architecture}" are natively QuickGELU (timm's quickgelu variant)`);
  }
  return { args, notes };
}

/** Preprocessing from the pretrained config (timm's defaults where it is silent). */
function timmPreprocess(hub: HubConfig, channels: number, what: string, notes: string[]) {
  const cfg = hub.pretrained_cfg ?? {};
  const fit = (v: number[]) => (v.length === channels ? v : channels === 1 ? [v.reduce((a, b) => a + b, 0) / v.length] : v);
  const interpolation = cfg.interpolation ?? TIMM_CFG_DEFAULTS.interpolation;
  if (!INTERPOLATIONS.includes(interpolation))
    throw new Error(
      `${what}: pretrained_cfg.interpolation "${interpolation}" is not supported (accepted: ${INTERPOLATIONS.join(', ')}); pass --interpolation`,
    );
  if (cfg.crop_mode && cfg.crop_mode !== 'center')
    notes.push(`pretrained_cfg.crop_mode "${cfg.crop_mode}": this project resizes the short side and center-crops (crop_mode "center")`);
  return {
    mean: fit(cfg.mean ?? TIMM_CFG_DEFAULTS.mean),
    std: fit(cfg.std ?? TIMM_CFG_DEFAULTS.std),
    cropPct: Math.min(cfg.crop_pct ?? TIMM_CFG_DEFAULTS.crop_pct, 1),
    interpolation: interpolation as 'bicubic' | 'bilinear' | 'nearest',
  };
}

/** The project's model config for resolved timm arguments (the layout's variant fields). */
export function timmModelConfig(name: string, a: TimmArgs, what: string): ModelConfigInput {
  const pools: Record<string, 'token' | 'avg'> = { token: 'token', avg: 'avg' };
  const globalPool = pools[a.global_pool];
  if (!globalPool) throw new Error(`${what}: global_pool "${a.global_pool}" is not supported (accepted: token, avg)`);
  const acts: Record<string, 'gelu' | 'gelu_tanh' | 'quick_gelu'> = { gelu: 'gelu', gelu_tanh: 'gelu_tanh', quick_gelu: 'quick_gelu' };
  const act = acts[a.act_layer];
  if (!act) throw new Error(`${what}: act_layer "${a.act_layer}" is not supported (accepted: ${Object.keys(acts).join(', ')})`);
  const mlpDim = Math.trunc(a.embed_dim * a.mlp_ratio); // int(dim * mlp_ratio), as timm's Block
  return {
    name,
    imageSize: a.img_size,
    patchSize: a.patch_size,
    channels: a.in_chans as 1 | 3,
    dim: a.embed_dim,
    depth: a.depth,
    heads: a.num_heads,
    mlpDim,
    numClasses: a.num_classes,
    layerNormEps: a.norm_eps,
    qkvBias: a.qkv_bias,
    layerScale: Boolean(a.init_values), // timm: LayerScale if init_values else Identity
    classToken: a.class_token,
    regTokens: a.reg_tokens,
    noEmbedClass: a.no_embed_class,
    preNorm: a.pre_norm,
    globalPool,
    fcNorm: a.fc_norm ?? globalPool === 'avg', // timm: fc_norm None -> enabled for avg pooling
    act,
    mean: [],
    std: [], // filled by the caller from the pretrained config
  };
}

/** config.json's path and model.safetensors' path of a hub folder (or of a file inside one). */
function hubFiles(weights: string): { configFile: string; weightsFile: string } {
  const dir = fs.existsSync(weights) && fs.statSync(weights).isDirectory() ? weights : path.dirname(weights);
  const weightsFile = dir === weights ? path.join(dir, 'model.safetensors') : weights;
  const configFile = path.join(dir, 'config.json');
  if (!fs.existsSync(configFile)) throw new Error(`${weights}: a timm hub folder needs config.json (${configFile} is missing)`);
  if (!fs.existsSync(weightsFile)) {
    const pickle = fs.existsSync(path.join(dir, 'pytorch_model.bin'))
      ? ' (pytorch_model.bin is a pickle; only model.safetensors is read)'
      : '';
    throw new Error(`${weights}: ${weightsFile} is missing${pickle}`);
  }
  return { configFile, weightsFile };
}

export function readTimm(weights: string, opts: { embedding?: 'pre_logits' | 'head' }): SourceModel {
  const { configFile, weightsFile } = hubFiles(weights);
  const configBytes = fs.readFileSync(configFile);
  let json: unknown;
  try {
    json = JSON.parse(configBytes.toString('utf8'));
  } catch (e) {
    throw new Error(`${configFile}: not JSON (${(e as Error).message})`);
  }
  // The old hub form kept the pretrained config's fields at the top level (timm _hub.py).
  if (typeof json === 'object' && json !== null && !('pretrained_cfg' in json)) {
    const { architecture, num_classes, label_names, labels, model_args, ...rest } = json as Record<string, unknown>;
    json = { architecture, num_classes, label_names: label_names ?? labels, model_args, pretrained_cfg: rest };
  }
  const parsed = HubConfig.safeParse(json);
  if (!parsed.success) throw new Error(`${configFile}: ${formatZodError(parsed.error, json, { separator: '; ' })}`);
  const hub = parsed.data;
  const { args, notes } = resolveTimmArgs(hub, configFile);
  const config = timmModelConfig(hub.architecture, args, configFile);
  Object.assign(config, timmPreprocess(hub, args.in_chans, configFile, notes));

  const bytes = fs.readFileSync(weightsFile);
  const { tensors } = decodeSafetensors(bytes, weightsFile);
  const tag = hub.pretrained_cfg?.tag ?? '';
  // A CLIP tower's head is the image projection (its embedding), unless fine-tuned into a classifier.
  const projection = hub.architecture.includes('_clip_') && args.num_classes > 0 && !/ft/.test(tag);
  config.embedding = opts.embedding ?? (projection ? 'head' : 'pre_logits');
  if (config.embedding === 'head' && args.num_classes === 0)
    throw new Error(`${configFile}: embedding "head" needs a head, and num_classes is 0`);
  // timm converts OpenAI's bias-free projection into a Linear with a zero bias: drop it again.
  const bias = tensors['head.bias'];
  if (projection && bias && bias.data.every((v) => v === 0)) {
    delete tensors['head.bias'];
    notes.push('head.bias is all zeros (a bias-free CLIP projection): dropped');
  }
  if (args.num_classes > 0 && !('head.bias' in tensors)) config.headBias = false;
  const labels = hub.label_names ?? hub.pretrained_cfg?.label_names;
  if (labels && config.embedding === 'pre_logits' && labels.length === args.num_classes) config.classNames = labels;
  return {
    format: 'timm',
    config,
    tensors,
    files: [
      { path: configFile, sha256: sha256Hex(configBytes) },
      { path: weightsFile, sha256: sha256Hex(bytes) },
    ],
    architecture: tag ? `${hub.architecture}.${tag}` : hub.architecture,
    notes,
  };
}
