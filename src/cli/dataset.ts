import { Command } from 'commander';
import { z } from 'zod';
import { flag, parseOptions } from './common.ts';

const ExportOptions = z.object({ data: z.string().min(1), out: z.string().min(1), limit: z.coerce.number().int().positive().optional() });

const exportCommand = new Command('export')
  .description('write a dataset as an ImageNet-style PNG folder: OUT/<NN>_<class>/<index>.png')
  .addOption(
    flag(ExportOptions, '--data <spec>', 'dataset spec: a folder, idx:IMAGES,LABELS, fashion-mnist:train|test (slices: spec[a:b])'),
  )
  .addOption(flag(ExportOptions, '--out <dir>', 'output folder'))
  .addOption(flag(ExportOptions, '--limit <n>', 'export the first N images only'))
  .action(async (raw) => {
    const o = parseOptions(ExportOptions, raw);
    const [{ parseDatasetSpec }, { exportDataset }] = await Promise.all([import('../data/dataset.ts'), import('../data/export.ts')]);
    const ds = await parseDatasetSpec(o.data);
    const r = await exportDataset(ds, o.out, { limit: o.limit });
    process.stdout.write(
      `wrote ${r.written} images in ${r.classFolders.length} class folders under ${o.out}; ${r.skipped.length} skipped\n`,
    );
    for (const s of r.skipped) process.stderr.write(`skipped ${s.ref}: ${s.reason}: ${s.message}\n`);
  });

const SynthOptions = z.object({
  out: z.string().min(1),
  count: z.coerce.number().int().positive(),
  classes: z.coerce.number().int().positive().default(20),
  minSize: z.coerce.number().int().positive().default(64),
  maxSize: z.coerce.number().int().positive().default(800),
  seed: z.coerce.number().int().default(0),
});

const synthCommand = new Command('synth')
  .description('write a reproducible ImageNet-style folder of synthetic RGB photos of mixed sizes and formats (jpg, png, webp)')
  .addOption(flag(SynthOptions, '--out <dir>', 'output folder: OUT/<NN>_classNN/<index>.<ext>'))
  .addOption(flag(SynthOptions, '--count <n>', 'number of images'))
  .addOption(flag(SynthOptions, '--classes <n>', 'class folders'))
  .addOption(flag(SynthOptions, '--min-size <px>', 'smallest width or height'))
  .addOption(flag(SynthOptions, '--max-size <px>', 'largest width or height'))
  .addOption(flag(SynthOptions, '--seed <n>', 'the same seed writes the same files'))
  .action(async (raw) => {
    const o = parseOptions(SynthOptions, raw);
    const { writeSynthFolder } = await import('../data/synth.ts');
    const r = await writeSynthFolder(o.out, o);
    const formats = Object.entries(r.byFormat)
      .sort()
      .map(([f, n]) => `${f} ${n}`)
      .join(', ');
    process.stdout.write(
      `wrote ${r.written} images (${formats}; ${(r.bytes / 2 ** 20).toFixed(1)} MB) in ${o.classes} class folders under ${o.out}\n`,
    );
  });

export const datasetCommand = new Command('dataset').description('dataset tools').addCommand(exportCommand).addCommand(synthCommand);
