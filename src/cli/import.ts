// `matvit import`: a pretrained ViT from timm, big_vision or scenic as a checkpoint of this project.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { SOURCE_FORMATS } from '../import/source.ts';
import { Interpolation, embeddingDim } from '../model/config.ts';
import { UsageError, csv, flag, parseOptions } from './common.ts';

const numbers = z.string().transform((s, ctx) => {
  const v = csv(s).map(Number);
  if (v.length === 0 || v.some((x) => !Number.isFinite(x)))
    ctx.addIssue({ code: 'custom', message: 'expected comma-separated numbers, one per channel' });
  return v;
});

const Options = z.object({
  from: z.enum(SOURCE_FORMATS),
  weights: z.string().min(1),
  out: z.string().min(1),
  imageSize: z.coerce.number().int().positive().optional(),
  mean: numbers.optional(),
  std: numbers.optional(),
  cropPct: z.coerce.number().gt(0).lte(1).optional(),
  interpolation: Interpolation.optional(),
  name: z.string().min(1).optional(),
  embedding: z.enum(['pre_logits', 'head']).optional(),
});

export const importCommand = new Command('import')
  .description('write a checkpoint of this project from a pretrained ViT (timm hub folder, big_vision/AugReg .npz, scenic MatViT msgpack)')
  .addOption(flag(Options, '--from <format>', `source format: ${SOURCE_FORMATS.join(', ')}`))
  .addOption(
    flag(
      Options,
      '--weights <path>',
      'timm: the hub folder (config.json + model.safetensors); big_vision: the .npz; scenic: the msgpack checkpoint',
    ),
  )
  .addOption(flag(Options, '--out <dir>', 'checkpoint directory to write (must not hold a checkpoint yet)'))
  .addOption(
    flag(
      Options,
      '--image-size <n>',
      "another input size: the position embedding is resampled (bicubic, antialiased, as timm's resample_abs_pos_embed)",
    ),
  )
  .addOption(flag(Options, '--mean <a,b,c>', "preprocessing mean per channel (default: the source's)"))
  .addOption(flag(Options, '--std <a,b,c>', "preprocessing std per channel (default: the source's)"))
  .addOption(flag(Options, '--crop-pct <x>', "center crop fraction in (0, 1] (default: the source's)"))
  .addOption(flag(Options, '--interpolation <name>', `resize filter: ${Interpolation.options.join(', ')} (default: the source's)`))
  .addOption(flag(Options, '--name <name>', 'model name (default: the architecture or file name)'))
  .addOption(
    flag(Options, '--embedding <which>', 'retrieval embedding: pre_logits or head (default: head for a CLIP projection, else pre_logits)'),
  )
  .action(async (raw) => {
    const o = parseOptions(Options, raw);
    const { importCheckpoint } = await import('../import/import.ts');
    if (!fs.existsSync(o.weights)) throw new UsageError(`--weights: ${o.weights} does not exist`);
    if (fs.existsSync(path.join(o.out, 'config.json')))
      throw new UsageError(`--out: ${o.out} already holds a checkpoint; choose another directory or remove it`);
    const command = ['matvit', ...process.argv.slice(2)].join(' ');
    const { meta, notes } = importCheckpoint({ ...o, command });
    const c = meta.model;
    const lines = [
      `imported ${(meta.provenance.import as { architecture: string }).architecture} (${o.from}) -> ${o.out}`,
      `  ${c.imageSize}x${c.imageSize} x${c.channels}, patch ${c.patchSize}, dim ${c.dim}, depth ${c.depth}, heads ${c.heads}, mlp ${c.mlpDim}, ${c.numClasses} outputs; ` +
        `embedding ${c.embedding} (${embeddingDim(c)}-d)`,
      `  preprocessing: mean [${c.mean}], std [${c.std}], crop ${c.cropPct}, ${c.interpolation}`,
      ...notes.map((n) => `  note: ${n}`),
      `fingerprint ${meta.fingerprint}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  });
