import { Command } from 'commander';
import { z } from 'zod';
import { parseDatasetSpec } from '../data/dataset.ts';
import { exportDataset } from '../data/export.ts';
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

export const datasetCommand = new Command('dataset').description('dataset tools').addCommand(exportCommand.exitOverride());
