import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { parseDatasetSpec } from '../data/dataset.ts';
import { GRANULARITY_NAMES, granularityDims } from '../model/config.ts';
import { loadCheckpoint } from '../model/checkpoint.ts';
import { ENGINES, createEncoder } from '../engine/encoder.ts';
import { type ClassifyRow, classify } from '../eval/classify.ts';
import { renderSvg, xyChart } from '../eval/plot.ts';
import { UsageError, csv, markdownTable, parseOptions, submodelOption } from './common.ts';
import { compact } from './info.ts';

const ClassifyOptions = z.object({
  model: z.string().min(1),
  data: z.string().min(1),
  granularities: z.string().default(GRANULARITY_NAMES.join(',')),
  ffnDims: z.array(z.string()).default([]),
  engine: z.enum(ENGINES).default('onnx'),
  backend: z.string().default('auto'),
  batch: z.coerce.number().int().positive().default(64),
  limit: z.coerce.number().int().positive().optional(),
  json: z.string().optional(),
  csv: z.string().optional(),
});

/** timm's results columns, plus the submodel, its widths and MFLOPs. Accuracies in percent, params in millions, as timm. */
function timmCsv(model: string, c: { imageSize: number; cropPct: number; interpolation: string }, rows: ClassifyRow[]): string {
  const header = ['model', 'granularity', 'ffn_dims', 'top1', 'top1_err', 'top5', 'top5_err', 'param_count', 'img_size', 'crop_pct', 'interpolation', 'mflops', 'consistency_with_xl', 'img_per_sec'];
  const pct = (x: number) => (100 * x).toFixed(3);
  const lines = rows.map((r) =>
    [model, r.name, `"${r.ffnDims.join(',')}"`, pct(r.top1), pct(1 - r.top1), pct(r.top5), pct(1 - r.top5), (r.params / 1e6).toFixed(3), c.imageSize, c.cropPct, c.interpolation, r.mflops.toFixed(2), pct(r.consistency), r.imgPerSec.toFixed(1)].join(','),
  );
  return [header.join(','), ...lines].join('\n') + '\n';
}

const classifyCommand = new Command('classify')
  .description('top-1/top-5 of each submodel on a labelled dataset (ImageNet-style folder, IDX, fashion-mnist:test)')
  .requiredOption('--model <dir>', 'checkpoint directory')
  .requiredOption('--data <spec>', 'dataset spec')
  .option('--granularities <list>', 'named submodels to evaluate', GRANULARITY_NAMES.join(','))
  .option('--ffn-dims <w,w,...>', "a Mix'n'Match submodel (repeatable)", (v: string, prev: string[] = []) => [...prev, v])
  .option('--engine <name>', `engine: ${ENGINES.join(', ')}`, 'onnx')
  .option('--backend <name>', 'tfjs backend (with --engine tfjs)', 'auto')
  .option('--batch <n>', 'batch size', '64')
  .option('--limit <n>', 'evaluate the first N images only')
  .option('--json <file>', 'write results as JSON (and an SVG plot of top-1 vs MFLOPs next to it)')
  .option('--csv <file>', "write timm's results CSV")
  .action(async (raw) => {
    const o = parseOptions(ClassifyOptions, raw);
    const { meta, weights } = loadCheckpoint(o.model);
    const c = meta.model;
    const submodels = [
      ...csv(o.granularities).map((g) => {
        if (!(GRANULARITY_NAMES as string[]).includes(g)) throw new UsageError(`--granularities: "${g}" is not one of ${GRANULARITY_NAMES.join(', ')}`);
        return { name: g, ffnDims: granularityDims(c, g as 's') };
      }),
      ...o.ffnDims.map((f) => submodelOption(c, { ffnDims: f })).map((s) => ({ name: compact(s.ffnDims), ffnDims: s.ffnDims })),
    ];
    const ds = await parseDatasetSpec(o.data);
    // Labels are class indices (sorted folder names, or the IDX labels); names may differ (an
    // exported folder is 00_T-shirt_top, ...), counts may not.
    if (ds.classNames.length !== c.numClasses) throw new UsageError(`--data: ${ds.spec} has ${ds.classNames.length} classes, the model ${c.numClasses}`);
    const enc = await createEncoder(o.engine, c, weights, { backend: o.backend });
    const bar = new cliProgress.SingleBar({ format: 'classify [{bar}] {value}/{total} {percentage}% | {speed} img/s | eta {eta_formatted}', stream: process.stderr }, cliProgress.Presets.shades_classic);
    const t0 = performance.now();
    bar.start(Math.min(ds.size, o.limit ?? ds.size), 0, { speed: '0' });
    let result;
    try {
      result = await classify(enc, ds, submodels, {
        batchSize: o.batch,
        limit: o.limit,
        onBatch: (done) => bar.update(done, { speed: ((done * 1000) / (performance.now() - t0)).toFixed(0) }),
      });
    } finally {
      bar.stop();
      await enc.dispose();
    }
    const table = markdownTable(
      ['submodel', 'ffnDims', 'top-1', 'top-5', 'consistency w/ xl', 'params', 'MFLOPs', 'img/s'],
      result.rows.map((r) => [r.name, compact(r.ffnDims), (100 * r.top1).toFixed(2), (100 * r.top5).toFixed(2), (100 * r.consistency).toFixed(2), (r.params / 1e6).toFixed(3) + 'M', r.mflops.toFixed(1), r.imgPerSec.toFixed(0)]),
    );
    process.stdout.write(`${o.model} on ${ds.spec}: ${result.count} images, ${result.skipped.length} skipped, engine ${enc.description}\n${table}\n`);
    for (const s of result.skipped) process.stderr.write(`skipped ${s.ref}: ${s.reason}: ${s.message}\n`);
    const out = { model: o.model, fingerprint: meta.fingerprint, data: ds.spec, count: result.count, engine: enc.description, rows: result.rows, skipped: result.skipped, command: process.argv.slice(2).join(' ') };
    if (o.json) {
      fs.writeFileSync(o.json, JSON.stringify(out, null, 2) + '\n');
      const svg = await renderSvg(xyChart({ title: `${c.name}: top-1 vs MFLOPs (${ds.spec})`, x: 'MFLOPs per image', y: 'top-1', series: [{ name: path.basename(o.model), points: result.rows.map((r) => ({ x: r.mflops, y: r.top1, label: r.name })) }] }));
      fs.writeFileSync(o.json.replace(/\.json$/, '') + '.svg', svg);
    }
    if (o.csv) fs.writeFileSync(o.csv, timmCsv(path.basename(o.model), c, result.rows));
  });

export const evalCommand = new Command('eval').description('evaluation').addCommand(classifyCommand.exitOverride());
