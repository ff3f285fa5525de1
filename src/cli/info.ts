import { Command } from 'commander';
import { z } from 'zod';
import { GRANULARITY_NAMES, describeEmbedding, embeddingDim, granularityDims } from '../model/config.ts';
import { loadCheckpoint } from '../model/checkpoint.ts';
import { mflops, paramCount } from '../model/flops.ts';
import { flag, modelDir, parseOptions, printJson } from './common.ts';
import { compact, markdownTable } from '../util/format.ts';

const Options = z.object({ model: modelDir, json: z.boolean().default(false) });

export const infoCommand = new Command('info')
  .description("show a checkpoint's config, fingerprint, and each submodel's ffnDims, params and MFLOPs")
  .addOption(flag(Options, '--model <dir>', 'checkpoint directory'))
  .addOption(flag(Options, '--json', 'print JSON'))
  .action((raw) => {
    const o = parseOptions(Options, raw);
    const { meta } = loadCheckpoint(o.model); // loads the weights too: checks names, shapes and fingerprint
    const c = meta.model;
    const submodels = [
      ...GRANULARITY_NAMES.map((g) => ({ name: g, ffnDims: granularityDims(c, g) })),
      ...meta.menu.filter((m) => !(GRANULARITY_NAMES as string[]).includes(m.name)),
    ].map((s) => ({ name: s.name, ffnDims: s.ffnDims, params: paramCount(c, s.ffnDims), mflops: mflops(c, s.ffnDims) }));
    if (o.json) {
      printJson({
        model: c,
        fingerprint: meta.fingerprint,
        embedding: { dim: embeddingDim(c), description: describeEmbedding(c) },
        submodels,
        menu: meta.menu,
        provenance: meta.provenance,
      });
      return;
    }
    const { classNames, ...rest } = c;
    process.stdout.write(`model ${o.model}\nfingerprint ${meta.fingerprint}\n`);
    for (const [k, v] of Object.entries(rest)) process.stdout.write(`  ${k}: ${JSON.stringify(v)}\n`);
    process.stdout.write(`  classNames: ${classNames.length ? classNames.join(', ') : '(none)'}\n`);
    process.stdout.write(`retrieval embedding: ${describeEmbedding(c)}\n`);
    const resize = Math.floor(c.imageSize / c.cropPct); // timm's eval transform (src/data/preprocess.ts)
    process.stdout.write(
      `preprocessing: short side resized to ${resize} (${c.interpolation}), center crop ${c.imageSize}, mean [${c.mean}], std [${c.std}]\n`,
    );
    const source = meta.provenance.import as { format: string; architecture: string } | undefined;
    process.stdout.write(source ? `imported from: ${source.format} ${source.architecture}\n\n` : '\n');
    const xl = submodels.find((s) => s.name === 'xl')!;
    const rows = submodels.map((s) => [
      s.name,
      compact(s.ffnDims),
      (s.params / 1e6).toFixed(3) + 'M',
      s.mflops.toFixed(1),
      (s.mflops / xl.mflops).toFixed(3),
    ]);
    process.stdout.write(markdownTable(['submodel', 'ffnDims', 'params', 'MFLOPs', 'of XL'], rows) + '\n');
  });
