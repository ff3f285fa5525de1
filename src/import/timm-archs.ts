// timm's ViT architectures as data: each name's constructor arguments, exactly as its register_model
// function passes them to VisionTransformer (timm/models/vision_transformer.py and deit.py in
// https://github.com/huggingface/pytorch-image-models), over VisionTransformer's own defaults.
// Only the architectures this project's model can run are listed (no attention pooling, SwiGLU,
// parallel blocks, RMSNorm or distillation tokens).

/** The VisionTransformer.__init__ arguments the importer understands, with timm's names. */
export interface TimmArgs {
  img_size: number;
  patch_size: number;
  in_chans: number;
  num_classes: number;
  global_pool: string;
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  init_values: number | null;
  class_token: boolean;
  no_embed_class: boolean;
  reg_tokens: number;
  pre_norm: boolean;
  fc_norm: boolean | null;
  act_layer: string;
  /** LayerNorm epsilon: timm's LayerNorm default, or the CLIP towers' partial(LayerNorm, eps=1e-5). */
  norm_eps: number;
}

/** VisionTransformer's defaults (img_size 224, patch 16, ViT-B widths, class token, no layer scale). */
export const VIT_DEFAULTS: TimmArgs = {
  img_size: 224,
  patch_size: 16,
  in_chans: 3,
  num_classes: 1000,
  global_pool: 'token',
  embed_dim: 768,
  depth: 12,
  num_heads: 12,
  mlp_ratio: 4,
  qkv_bias: true,
  init_values: null,
  class_token: true,
  no_embed_class: false,
  reg_tokens: 0,
  pre_norm: false,
  fc_norm: null,
  act_layer: 'gelu',
  norm_eps: 1e-6,
};

// [embed_dim, depth, num_heads] of the named widths.
const W = {
  xsmall: [256, 10, 4],
  tiny: [192, 12, 3],
  small: [384, 12, 6],
  medium: [512, 12, 8],
  betwixt: [640, 12, 10],
  base: [768, 12, 12],
  plus: [896, 12, 14],
  large: [1024, 24, 16],
  huge: [1280, 32, 16],
} as const;
type Width = keyof typeof W;

const arch = (width: Width, patch_size: number, img_size: number, extra: Partial<TimmArgs> = {}): Partial<TimmArgs> => {
  const [embed_dim, depth, num_heads] = W[width];
  return { embed_dim, depth, num_heads, patch_size, img_size, ...extra };
};
const CLIP = { pre_norm: true, norm_eps: 1e-5 };
const QUICK = { ...CLIP, act_layer: 'quick_gelu' };
const DEIT3 = { no_embed_class: true, init_values: 1e-6 };
const DINOV2 = { init_values: 1e-5 };
const REG4 = { init_values: 1e-5, reg_tokens: 4, no_embed_class: true };
const GAP = { class_token: false, global_pool: 'avg', fc_norm: false };

export const TIMM_ARCHITECTURES: Record<string, Partial<TimmArgs>> = {
  // The original ViT family and AugReg weights.
  vit_tiny_patch16_224: arch('tiny', 16, 224),
  vit_tiny_patch16_384: arch('tiny', 16, 384),
  vit_small_patch32_224: arch('small', 32, 224),
  vit_small_patch32_384: arch('small', 32, 384),
  vit_small_patch16_224: arch('small', 16, 224),
  vit_small_patch16_384: arch('small', 16, 384),
  vit_small_patch8_224: arch('small', 8, 224),
  vit_base_patch32_224: arch('base', 32, 224),
  vit_base_patch32_384: arch('base', 32, 384),
  vit_base_patch16_224: arch('base', 16, 224),
  vit_base_patch16_384: arch('base', 16, 384),
  vit_base_patch8_224: arch('base', 8, 224),
  vit_large_patch32_224: arch('large', 32, 224),
  vit_large_patch32_384: arch('large', 32, 384),
  vit_large_patch16_224: arch('large', 16, 224),
  vit_large_patch16_384: arch('large', 16, 384),
  vit_large_patch14_224: arch('large', 14, 224),
  vit_huge_patch14_224: arch('huge', 14, 224),
  vit_base_patch16_224_miil: arch('base', 16, 224, { qkv_bias: false }),
  // Global average pooling, no class token.
  vit_base_patch16_gap_224: arch('base', 16, 224, { ...GAP, num_heads: 16 }),
  vit_medium_patch16_gap_240: arch('medium', 16, 240, { ...GAP, qkv_bias: false, init_values: 1e-6 }),
  vit_medium_patch16_gap_256: arch('medium', 16, 256, { ...GAP, qkv_bias: false, init_values: 1e-6 }),
  vit_medium_patch16_gap_384: arch('medium', 16, 384, { ...GAP, qkv_bias: false, init_values: 1e-6 }),
  vit_huge_patch14_gap_224: arch('huge', 14, 224, GAP),
  // DeiT (plain ViT) and DeiT-III (layer scale, no position embedding for the class token).
  deit_tiny_patch16_224: arch('tiny', 16, 224),
  deit_small_patch16_224: arch('small', 16, 224),
  deit_base_patch16_224: arch('base', 16, 224),
  deit_base_patch16_384: arch('base', 16, 384),
  deit3_small_patch16_224: arch('small', 16, 224, DEIT3),
  deit3_small_patch16_384: arch('small', 16, 384, DEIT3),
  deit3_medium_patch16_224: arch('medium', 16, 224, DEIT3),
  deit3_base_patch16_224: arch('base', 16, 224, DEIT3),
  deit3_base_patch16_384: arch('base', 16, 384, DEIT3),
  deit3_large_patch16_224: arch('large', 16, 224, DEIT3),
  deit3_large_patch16_384: arch('large', 16, 384, DEIT3),
  deit3_huge_patch14_224: arch('huge', 14, 224, DEIT3),
  // CLIP image towers: norm_pre, LayerNorm eps 1e-5; the projection is the head.
  vit_xsmall_patch16_clip_224: arch('xsmall', 16, 224, CLIP),
  vit_medium_patch32_clip_224: arch('medium', 32, 224, CLIP),
  vit_medium_patch16_clip_224: arch('medium', 16, 224, CLIP),
  vit_betwixt_patch32_clip_224: arch('betwixt', 32, 224, CLIP),
  vit_base_patch32_clip_224: arch('base', 32, 224, CLIP),
  vit_base_patch32_clip_256: arch('base', 32, 256, CLIP),
  vit_base_patch32_clip_384: arch('base', 32, 384, CLIP),
  vit_base_patch32_clip_448: arch('base', 32, 448, CLIP),
  vit_base_patch16_clip_224: arch('base', 16, 224, CLIP),
  vit_base_patch16_clip_384: arch('base', 16, 384, CLIP),
  vit_base_patch16_plus_clip_240: arch('plus', 16, 240, CLIP),
  vit_large_patch14_clip_224: arch('large', 14, 224, CLIP),
  vit_large_patch14_clip_336: arch('large', 14, 336, CLIP),
  vit_huge_patch14_clip_224: arch('huge', 14, 224, CLIP),
  vit_huge_patch14_clip_336: arch('huge', 14, 336, CLIP),
  vit_huge_patch14_clip_378: arch('huge', 14, 378, CLIP),
  vit_base_patch32_clip_quickgelu_224: arch('base', 32, 224, QUICK),
  vit_base_patch16_clip_quickgelu_224: arch('base', 16, 224, QUICK),
  vit_large_patch14_clip_quickgelu_224: arch('large', 14, 224, QUICK),
  vit_large_patch14_clip_quickgelu_336: arch('large', 14, 336, QUICK),
  vit_huge_patch14_clip_quickgelu_224: arch('huge', 14, 224, QUICK),
  vit_huge_patch14_clip_quickgelu_378: arch('huge', 14, 378, QUICK),
  // DINOv2: layer scale, patch 14 at 518; the register variants keep no position embedding for
  // the class and register tokens.
  vit_small_patch14_dinov2: arch('small', 14, 518, DINOV2),
  vit_base_patch14_dinov2: arch('base', 14, 518, DINOV2),
  vit_large_patch14_dinov2: arch('large', 14, 518, DINOV2),
  vit_small_patch14_reg4_dinov2: arch('small', 14, 518, REG4),
  vit_base_patch14_reg4_dinov2: arch('base', 14, 518, REG4),
  vit_large_patch14_reg4_dinov2: arch('large', 14, 518, REG4),
};
