import { Command } from 'commander';
import { z } from 'zod';
import { parseDatasetSpec } from '../data/dataset.ts';
import { exportDataset } from '../data/export.ts';
import { writeSynthFolder } from '../data/synth.ts';
import { parseOptions } from './common.ts';

const ExportOptions = z.object({ data: z.string().min(1), out: z.string().min(1), limit: z.coerce.number().int().positive().optional() });

const exportCommand = new Command('export')
  .description('write a dataset as an ImageNet-style PNG folder: OUT/<NN>_<class>/<index>.png')
  .requiredOption('--data <spec>', 'dataset spec: a folder, idx:IMAGES,LABELS, fashion-mnist:train|test (slices: spec[a:b])')
  .requiredOption('--out <dir>', 'output folder')
  .option('--limit <n>', 'export the first N images only')
  .action(async (raw) => {
    const o = parseOptions(ExportOptions, raw);
    const ds = await parseDatasetSpec(o.data);
    const r = await exportDataset(ds, o.out, { limit: o.limit });
    process.stdout.write(`wrote ${r.written} images in ${r.classFolders.length} class folders under ${o.out}; ${r.skipped.length} skipped\n`);
    for (const s of r.skipped) process.stderr.write(`skipped ${s.ref}: ${s.reason}: ${s.message}\n`);
  });

const SynthOptions = z.object({
  out: z.string().min(1),
  count: z.coerce.number().int().positive(),
  classes: z.coerce.number().int().positive(),
  minSize: z.coerce.number().int().positive(),
  maxSize: z.coerce.number().int().positive(),
  seed: z.coerce.number().int(),
});

const synthCommand = new Command('synth')
  .description('write a reproducible ImageNet-style folder of synthetic RGB photos of mixed sizes and formats (jpg, png, webp)')
  .requiredOption('--out <dir>', 'output folder: OUT/<NN>_classNN/<index>.<ext>')
  .requiredOption('--count <n>', 'number of images')
  .option('--classes <n>', 'class folders', '20')
  .option('--min-size <px>', 'smallest width or height', '64')
  .option('--max-size <px>', 'largest width or height', '800')
  .option('--seed <n>', 'the same seed writes the same files', '0')
  .action(async (raw) => {
    const o = parseOptions(SynthOptions, raw);
    const r = await writeSynthFolder(o.out, o);
    const formats = Object.entries(r.byFormat).sort().map(([f, n]) => `${f} ${n}`).join(', ');
    process.stdout.write(`wrote ${r.written} images (${formats}; ${(r.bytes / 2 ** 20).toFixed(1)} MB) in ${o.classes} class folders under ${o.out}\n`);
  });

export const datasetCommand = new Command('dataset').description('dataset tools').addCommand(exportCommand.exitOverride()).addCommand(synthCommand.exitOverride());
