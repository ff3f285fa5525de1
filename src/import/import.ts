// `matvit import`: a pretrained ViT (timm, big_vision, scenic) -> a checkpoint of this project. Every
// source is read into timm's names and layouts (source.ts), checked tensor by tensor against the
// layout its config implies, optionally given a resampled position embedding for another image
// size, and saved with saveCheckpoint like any trained model, its provenance naming the source.
import path from 'node:path';
import { type CheckpointMeta, fromDisk, saveCheckpoint } from '../model/checkpoint.ts';
import { ModelConfig, type ModelConfigInput, numPatches, posEmbedLength } from '../model/config.ts';
import { type WeightMap, type WeightSpec, weightSpecs } from '../model/weights.ts';
import { formatZodError } from '../util/zod-error.ts';
import { readBigVision, readScenic } from './flax-sources.ts';
import { resamplePosEmbed } from './resample.ts';
import type { SourceFormat, SourceModel } from './source.ts';
import { readTimm } from './timm.ts';

export interface ImportOptions {
  from: SourceFormat;
  /** timm: the hub folder (or its model.safetensors); big_vision: the .npz; scenic: the msgpack checkpoint. */
  weights: string;
  out: string;
  /** Resample the position embedding to this image size. */
  imageSize?: number;
  /** Preprocessing overrides (else the source's). */
  mean?: number[];
  std?: number[];
  cropPct?: number;
  interpolation?: ModelConfig['interpolation'];
  name?: string;
  /** Which vector is the retrieval embedding (else pre_logits, or the projection of a CLIP tower). */
  embedding?: ModelConfig['embedding'];
  /** The command line that ran the import, for the provenance. */
  command?: string;
}

export interface ImportResult {
  meta: CheckpointMeta;
  notes: string[];
}

export function readSource(o: Pick<ImportOptions, 'from' | 'weights' | 'embedding'>): SourceModel {
  const source =
    o.from === 'timm'
      ? readTimm(o.weights, { embedding: o.embedding })
      : o.from === 'big_vision'
        ? readBigVision(o.weights)
        : readScenic(o.weights);
  if (o.embedding && o.from !== 'timm') {
    if (o.embedding === 'head' && !source.config.numClasses) throw new Error(`--embedding head: ${o.weights} has no head`);
    source.config.embedding = o.embedding;
  }
  return source;
}

/** The shape a weight has on disk (timm's layout) for its spec. */
function diskShape(c: ModelConfig, s: WeightSpec): number[] {
  if (s.layout === 'linear') return [s.shape[1], s.shape[0]];
  if (s.layout === 'patch') return [c.dim, c.channels, c.patchSize, c.patchSize];
  return s.shape;
}

/** Every tensor against the layout the config implies; the error lists each mismatch with both shapes. */
export function checkSourceTensors(c: ModelConfig, tensors: WeightMap, what: string): void {
  const problems: string[] = [];
  const specs = weightSpecs(c);
  for (const s of specs) {
    const t = tensors[s.name];
    const want = diskShape(c, s);
    if (!t) problems.push(`${s.name}: missing (expected [${want}])`);
    else if (t.shape.join() !== want.join()) problems.push(`${s.name}: [${t.shape}] in the source, [${want}] expected`);
  }
  const names = new Set(specs.map((s) => s.name));
  for (const [name, t] of Object.entries(tensors))
    if (!names.has(name)) problems.push(`${name} [${t.shape}]: not part of this architecture`);
  if (problems.length) throw new Error(`${what} does not match ${c.name}:\n  ${problems.join('\n  ')}`);
}

const parseConfig = (input: ModelConfigInput, what: string): ModelConfig => {
  const r = ModelConfig.safeParse(input);
  if (!r.success) throw new Error(`${what}: ${formatZodError(r.error, input, { separator: '; ' })}`);
  return r.data;
};

export function importCheckpoint(o: ImportOptions): ImportResult {
  const source = readSource(o);
  const what = `${o.weights} (${o.from})`;
  const sourceConfig = parseConfig(source.config, what);
  checkSourceTensors(sourceConfig, source.tensors, what);
  const notes = [...source.notes];
  const tensors = { ...source.tensors };
  let imageSize = sourceConfig.imageSize;
  if (o.imageSize !== undefined && o.imageSize !== imageSize) {
    const P = sourceConfig.patchSize;
    if (o.imageSize % P !== 0) throw new Error(`--image-size ${o.imageSize}: must be a multiple of the patch size ${P}`);
    const prefix = posEmbedLength(sourceConfig) - numPatches(sourceConfig); // prefix tokens with a position embedding
    const [g0, g1] = [imageSize / P, o.imageSize / P];
    tensors.pos_embed = resamplePosEmbed(tensors.pos_embed, prefix, [g0, g0], [g1, g1]);
    const kept = prefix ? `; the ${prefix} prefix row(s) kept` : '';
    notes.push(
      `pos_embed resampled from a ${g0}x${g0} to a ${g1}x${g1} grid (bicubic, antialiased, as timm's resample_abs_pos_embed${kept})`,
    );
    imageSize = o.imageSize;
  }
  const config = parseConfig(
    {
      ...sourceConfig,
      imageSize,
      name: o.name ?? sourceConfig.name,
      ...(o.mean && { mean: o.mean }),
      ...(o.std && { std: o.std }),
      ...(o.cropPct !== undefined && { cropPct: o.cropPct }),
      ...(o.interpolation && { interpolation: o.interpolation }),
    },
    'import options',
  );
  const weights: WeightMap = {};
  for (const s of weightSpecs(config)) weights[s.name] = fromDisk(config, s.layout, tensors[s.name]);
  const provenance = {
    import: {
      format: o.from,
      architecture: source.architecture,
      files: source.files.map((f) => ({ file: path.resolve(f.path), sha256: f.sha256 })),
      command: o.command,
      notes,
    },
  };
  const meta = saveCheckpoint(o.out, config, weights, { provenance });
  return { meta, notes };
}
