// Tiny configs for shape and correctness tests (dim 16, depth 1-2: small enough for the plain-loop references).
import { ModelConfig, type ModelConfigInput } from '../../src/model/config.ts';

export const tinyConfig = (o: Partial<ModelConfigInput> = {}): ModelConfig =>
  ModelConfig.parse({
    name: 'tiny',
    imageSize: 8,
    patchSize: 4,
    channels: 3,
    dim: 16,
    depth: 2,
    heads: 2,
    mlpDim: 32,
    numClasses: 5,
    mean: [0.5, 0.5, 0.5],
    std: [0.25, 0.25, 0.25],
    ...o,
  });

/** A tiny model for Fashion-MNIST's 28x28 grayscale images (its mean and std, 10 classes, 4 patches of 14). */
export const tinyFmnistConfig = (o: Partial<ModelConfigInput> = {}): ModelConfig =>
  tinyConfig({ imageSize: 28, patchSize: 14, channels: 1, numClasses: 10, mean: [0.286], std: [0.353], ...o });
