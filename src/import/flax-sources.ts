// The two flax sources: big_vision / AugReg .npz files and scenic MatViT msgpack checkpoints. Both
// hold the same flax ViT modules (flax-vit.ts); they differ in container, head name and the
// preprocessing their training used.
import fs from 'node:fs';
import path from 'node:path';
import { sha256Hex } from '../util/hash.ts';
import { readNpz } from './arrays.ts';
import { readFlaxMsgpack } from './flax-msgpack.ts';
import { flaxVitToTimm } from './flax-vit.ts';
import type { SourceModel } from './source.ts';

const describe = (c: { dim: number; depth: number; heads: number; mlpDim: number; patchSize: number; imageSize: number }) =>
  `ViT dim ${c.dim}, depth ${c.depth}, heads ${c.heads}, mlp ${c.mlpDim}, patch ${c.patchSize}, image ${c.imageSize}`;

/**
 * big_vision / AugReg .npz. Preprocessing: value_range(-1, 1), i.e. mean = std = 0.5 (the AugReg
 * and big_vision input pipelines); center crop 0.9 (1.0 from 384 px) and bicubic, timm's
 * pretrained config for the AugReg .npz files it loads (vision_transformer.py's augreg entries).
 */
export function readBigVision(file: string): SourceModel {
  const bytes = fs.readFileSync(file);
  const vit = flaxVitToTimm(readNpz(bytes, file), file, 'head');
  const c = vit.config;
  const config = {
    ...c,
    name: path.basename(file, '.npz'),
    mean: Array(c.channels).fill(0.5),
    std: Array(c.channels).fill(0.5),
    cropPct: c.imageSize >= 384 ? 1 : 0.9,
    interpolation: 'bicubic' as const,
  };
  return {
    format: 'big_vision',
    config,
    tensors: vit.tensors,
    files: [{ path: file, sha256: sha256Hex(bytes) }],
    architecture: `big_vision ${describe(c)}`,
    notes: vit.notes,
  };
}

/**
 * scenic MatViT msgpack (scenic/projects/matvit). Preprocessing of its ImageNet config
 * (configs/imagenet_augreg_matvit_config.py, pp_eval): resize_small(256) | central_crop(224) |
 * value_range(-1, 1): crop 224/256 = 0.875, mean = std = 0.5, bilinear (tf.image.resize's default).
 * The nested FFN keeps its order, so s/m/l/xl are the checkpoint's own granularities.
 */
export function readScenic(file: string): SourceModel {
  const bytes = fs.readFileSync(file);
  const vit = flaxVitToTimm(readFlaxMsgpack(bytes, file), file, 'output_projection');
  const c = vit.config;
  const config = {
    ...c,
    name: path.basename(file).replace(/\.[^.]*$/, ''),
    mean: Array(c.channels).fill(0.5),
    std: Array(c.channels).fill(0.5),
    cropPct: 0.875,
    interpolation: 'bilinear' as const,
  };
  return {
    format: 'scenic',
    config,
    tensors: vit.tensors,
    files: [{ path: file, sha256: sha256Hex(bytes) }],
    architecture: `scenic MatViT ${describe(c)}`,
    notes: vit.notes,
  };
}
