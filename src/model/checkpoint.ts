// Model checkpoints: a directory with model.safetensors (timm names and layouts, float32) and
// config.json (the zod-validated model config, the weights' fingerprint, and the submodel menu).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../util/durable.ts';
import { formatZodError } from '../util/zod-error.ts';
import { ModelConfig } from './config.ts';
import { decodeSafetensors, encodeSafetensors } from './safetensors.ts';
import { type HostTensor, type Layout, type WeightMap, checkWeights, weightSpecs } from './weights.ts';

/** A named submodel offered to queries (Mix'n'Match menus add entries beyond s/m/l/xl). */
export const MenuEntry = z
  .object({
    name: z.string().min(1),
    ffnDims: z.array(z.number().int().positive()),
    mflops: z.number().positive(),
    latencyMs: z.number().positive().optional(),
    top1: z.number().min(0).max(1).optional(),
    recallAt10: z.number().min(0).max(1).optional(),
  })
  .strict();
export type MenuEntry = z.infer<typeof MenuEntry>;

export const CheckpointMeta = z
  .object({
    format: z.literal('matvit-checkpoint'),
    version: z.literal(1),
    model: ModelConfig,
    fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
    menu: z.array(MenuEntry).default([]),
    /** What produced the weights (training config, step), for the model card; free-form. */
    provenance: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type CheckpointMeta = z.infer<typeof CheckpointMeta>;

export interface Checkpoint {
  meta: CheckpointMeta;
  weights: WeightMap; // compute layout
}

/** sha256 over the weights in spec order (name, shape, float32 bytes): independent of file layout. */
export function fingerprint(c: ModelConfig, w: WeightMap): string {
  const h = createHash('sha256');
  for (const s of weightSpecs(c)) {
    const t = w[s.name];
    h.update(`${s.name}:${t.shape.join('x')};`);
    h.update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

// Layout conversion between memory ([in, out], patches as rows) and disk (timm/PyTorch).
function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}
function toDisk(c: ModelConfig, layout: Layout, t: HostTensor): HostTensor {
  if (layout === 'linear') return { shape: [t.shape[1], t.shape[0]], data: transpose2d(t.data, t.shape[0], t.shape[1]) };
  if (layout === 'patch') {
    // [(py*P + px)*C + ch, D] -> [D, C, P, P]
    const P = c.patchSize,
      C = c.channels,
      D = c.dim;
    const out = new Float32Array(t.data.length);
    for (let py = 0; py < P; py++)
      for (let px = 0; px < P; px++)
        for (let ch = 0; ch < C; ch++)
          for (let d = 0; d < D; d++) out[((d * C + ch) * P + py) * P + px] = t.data[((py * P + px) * C + ch) * D + d];
    return { shape: [D, C, P, P], data: out };
  }
  return t;
}
/** A tensor in timm's (disk) layout -> memory layout (also used by the importers, src/import). */
export function fromDisk(c: ModelConfig, layout: Layout, t: HostTensor): HostTensor {
  if (layout === 'linear' && t.shape.length === 2)
    return { shape: [t.shape[1], t.shape[0]], data: transpose2d(t.data, t.shape[0], t.shape[1]) };
  if (layout === 'patch' && t.shape.length === 4) {
    const P = c.patchSize,
      C = c.channels,
      D = c.dim;
    if (t.shape.join() !== [D, C, P, P].join()) return t; // left for checkWeights to report
    const out = new Float32Array(t.data.length);
    for (let py = 0; py < P; py++)
      for (let px = 0; px < P; px++)
        for (let ch = 0; ch < C; ch++)
          for (let d = 0; d < D; d++) out[((py * P + px) * C + ch) * D + d] = t.data[((d * C + ch) * P + py) * P + px];
    return { shape: [P * P * C, D], data: out };
  }
  return t;
}

/**
 * Writes a checkpoint directory. Each file is replaced atomically (temp, fsync, rename), weights
 * first: a crash in between leaves config.json with the old fingerprint, which loading detects.
 */
export function saveCheckpoint(
  dir: string,
  model: ModelConfig,
  weights: WeightMap,
  extra: Partial<Pick<CheckpointMeta, 'menu' | 'provenance'>> = {},
): CheckpointMeta {
  checkWeights(model, weights);
  const meta = CheckpointMeta.parse({ format: 'matvit-checkpoint', version: 1, model, fingerprint: fingerprint(model, weights), ...extra });
  const disk: WeightMap = {};
  for (const s of weightSpecs(model)) disk[s.name] = toDisk(model, s.layout, weights[s.name]);
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(path.join(dir, 'model.safetensors'), encodeSafetensors(disk, { format: 'pt', fingerprint: meta.fingerprint }));
  saveMeta(dir, meta);
  return meta;
}

/** Updates config.json only (e.g. a new menu); the weights and fingerprint stay. */
export function saveMeta(dir: string, meta: CheckpointMeta): void {
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(CheckpointMeta.parse(meta), null, 2) + '\n');
}

export function readMeta(dir: string): CheckpointMeta {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new Error(`${dir} is not a MatViT checkpoint: ${file} is missing`);
  const json: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
  const parsed = CheckpointMeta.safeParse(json);
  if (!parsed.success) throw new Error(`${file}: ${formatZodError(parsed.error, json, { separator: '; ' })}`);
  return parsed.data;
}

/** Loads and checks a checkpoint: every name and shape, and the fingerprint against the weights. */
export function loadCheckpoint(dir: string): Checkpoint {
  const meta = readMeta(dir);
  const file = path.join(dir, 'model.safetensors');
  if (!fs.existsSync(file)) throw new Error(`${dir}: ${file} is missing`);
  const { tensors } = decodeSafetensors(fs.readFileSync(file), file);
  const specs = new Map(weightSpecs(meta.model).map((s) => [s.name, s]));
  const weights: WeightMap = {};
  for (const [name, t] of Object.entries(tensors)) {
    const s = specs.get(name);
    weights[name] = s ? fromDisk(meta.model, s.layout, t) : t;
  }
  checkWeights(meta.model, weights);
  const fp = fingerprint(meta.model, weights);
  if (fp !== meta.fingerprint) throw new Error(`${dir}: weights fingerprint ${fp} does not match config.json's ${meta.fingerprint}`);
  return { meta, weights };
}
