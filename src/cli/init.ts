import { Command } from 'commander';
import { z } from 'zod';
import { saveCheckpoint } from '../model/checkpoint.ts';
import { PRESETS, preset } from '../model/presets.ts';
import { initWeights } from '../model/weights.ts';
import { csv, flag, parseOptions } from './common.ts';

const Options = z.object({
  preset: z.enum(Object.keys(PRESETS) as [string, ...string[]]),
  out: z.string().min(1),
  seed: z.coerce.number().int().default(0),
  classes: z.string().optional(),
});

export const initCommand = new Command('init')
  .description('write a randomly initialized MatViT checkpoint')
  .addOption(flag(Options, '--preset <name>', `size preset: ${Object.keys(PRESETS).join(', ')}`))
  .addOption(flag(Options, '--out <dir>', 'checkpoint directory to write'))
  .addOption(flag(Options, '--seed <n>', 'initialization seed'))
  .addOption(flag(Options, '--classes <a,b,...>', 'class names (sets the number of classes)'))
  .action((raw) => {
    const o = parseOptions(Options, raw);
    const names = o.classes ? csv(o.classes) : undefined;
    const config = preset(o.preset, names ? { classNames: names, numClasses: names.length } : {});
    const meta = saveCheckpoint(o.out, config, initWeights(config, o.seed), { provenance: { init: { preset: o.preset, seed: o.seed } } });
    process.stdout.write(`wrote ${o.out} (${config.name}, fingerprint ${meta.fingerprint})\n`);
  });
