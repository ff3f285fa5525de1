// Size presets are data. The 224 presets are the paper's ViT-S/16, B/16, L/16 with the reference
// FFN widths (MatViT-B/16: 384/768/1536/3072; L/16: 512/1024/2048/4096; arXiv 2310.07707).
import { ModelConfig, type ModelConfigInput } from './config.ts';

const IMAGENET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const vit224 = {
  imageSize: 224,
  patchSize: 16,
  channels: 3,
  numClasses: 1000,
  interpolation: 'bicubic',
  cropPct: 0.875,
  ...IMAGENET,
} as const;

export const PRESETS: Record<string, ModelConfigInput> = {
  // Fashion-MNIST, 28x28 grayscale. Patch 7 gives 16 tokens + CLS: a forward pass is ~40 MFLOPs,
  // small enough to train for tens of epochs on 2 CPU cores (models/matvit-fmnist/README.md: the
  // shipped model's 20 + 4 epochs). Mean/std are Fashion-MNIST's train statistics.
  'fmnist-tiny': {
    name: 'fmnist-tiny',
    imageSize: 28,
    patchSize: 7,
    channels: 1,
    dim: 128,
    depth: 6,
    heads: 4,
    mlpDim: 512,
    numClasses: 10,
    mean: [0.286],
    std: [0.353],
    interpolation: 'bilinear',
    cropPct: 1,
  },
  'vit-s16': { name: 'vit-s16', ...vit224, dim: 384, depth: 12, heads: 6, mlpDim: 1536 },
  'vit-b16': { name: 'vit-b16', ...vit224, dim: 768, depth: 12, heads: 12, mlpDim: 3072 },
  'vit-l16': { name: 'vit-l16', ...vit224, dim: 1024, depth: 24, heads: 16, mlpDim: 4096 },
};

export function preset(name: string, overrides: Partial<ModelConfigInput> = {}): ModelConfig {
  const p = PRESETS[name];
  if (!p) throw new Error(`unknown preset "${name}"; accepted: ${Object.keys(PRESETS).join(', ')}`);
  return ModelConfig.parse({ ...p, ...overrides });
}
