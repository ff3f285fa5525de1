// `matvit mixnmatch`: measure the least-slope Mix'n'Match submodels (src/eval/mixnmatch.ts) on a
// validation split, keep the Pareto front over MFLOPs, top-1 and recall@k, write it as JSON + SVG,
// and with --write-menu store it as the checkpoint's menu (config.json only; weights untouched).
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { createEncoder } from '../engine/encoder.ts';
import { loadCheckpoint, readMeta, saveMeta } from '../model/checkpoint.ts';
import type { FrontPoint, MixRow, PairedDiff } from '../eval/mixnmatch.ts';
import { renderSvg, xyChart } from '../eval/plot.ts';
import { UsageError, flag, modelDir, outputFile, parseOptions } from './common.ts';
import { phaseBar } from './progress.ts';
import { compact, markdownTable } from '../util/format.ts';

const Options = z
  .object({
    model: modelDir,
    data: z.string().min(1),
    corpus: z.string().min(1).optional(),
    maxConfigs: z.coerce.number().int().min(4).optional(),
    k: z.coerce.number().int().positive().default(10),
    batch: z.coerce.number().int().positive().default(64),
    limit: z.coerce.number().int().positive().optional(),
    latencyRuns: z.coerce.number().int().positive().default(20),
    out: outputFile,
    writeMenu: z.boolean().default(false),
  })
  .strict();

const pct = (x: number) => (100 * x).toFixed(2);

export const mixnmatchCommand = new Command('mixnmatch')
  .description(
    "measure the Mix'n'Match submodels (granularity non-decreasing with depth, least slope) on a validation split and keep the Pareto front over MFLOPs, top-1 and recall@k against XL",
  )
  .addOption(flag(Options, '--model <dir>', 'checkpoint directory'))
  .addOption(flag(Options, '--data <spec>', 'labelled validation split (dataset spec): the queries'))
  .addOption(flag(Options, '--corpus <spec>', 'corpus embedded by XL (default: --data itself, each query excluding its own image)'))
  .addOption(flag(Options, '--max-configs <n>', 'evaluate N configs spread over MFLOPs (the 4 uniform ones always); default all'))
  .addOption(flag(Options, '--k <n>', 'neighbours for recall@k'))
  .addOption(flag(Options, '--batch <n>', 'batch size'))
  .addOption(flag(Options, '--limit <n>', 'the first N images of --data only'))
  .addOption(flag(Options, '--latency-runs <n>', 'batch-1 runs per config after a warm-up (the median is kept)'))
  .addOption(flag(Options, '--out <file>', 'write the results as JSON, and an SVG plot next to it'))
  .addOption(flag(Options, '--write-menu', "store the front (and s/m/l/xl) as the checkpoint's menu, read by `matvit serve`"))
  .action(async (raw) => {
    const o = parseOptions(Options, raw);
    const [
      { parseDatasetSpec },
      { checkFront, evaluateMixnmatch, menuEntries, mixnmatchConfigs, paretoFront, spreadByMflops, toMenuEntry },
    ] = await Promise.all([import('../data/dataset.ts'), import('../eval/mixnmatch.ts')]);
    if (o.writeMenu && o.k !== 10) throw new UsageError(`--k: the menu stores recall@10; use --k 10 with --write-menu (received ${o.k})`);
    const { meta, weights } = loadCheckpoint(o.model);
    const c = meta.model;
    const all = mixnmatchConfigs(c);
    const configs = o.maxConfigs ? spreadByMflops(all, o.maxConfigs) : all;
    const data = await parseDatasetSpec(o.data);
    if (data.classNames.length !== c.numClasses)
      throw new UsageError(`--data: ${data.spec} has ${data.classNames.length} classes, the model ${c.numClasses} (top-1 needs labels)`);
    const corpus = o.corpus ? await parseDatasetSpec(o.corpus) : undefined;

    const enc = await createEncoder('onnx', c, weights);
    const bars = phaseBar();
    let result;
    try {
      result = await evaluateMixnmatch(enc, data, corpus, configs, {
        k: o.k,
        batchSize: o.batch,
        limit: o.limit,
        latencyRuns: o.latencyRuns,
        onProgress: bars.update,
      });
    } finally {
      bars.stop();
      await enc.dispose();
    }
    const { rows, k } = result;
    const onFront = paretoFront(rows);
    const check = checkFront(rows, onFront);
    const menu = menuEntries(rows, onFront, k);
    const front = rows.filter((_, i) => onFront[i]).map((r) => toMenuEntry(r, k));
    for (const s of [...result.skipped, ...result.corpusSkipped]) process.stderr.write(`skipped ${s.ref}: ${s.reason}: ${s.message}\n`);

    const xl = rows.find((r) => r.name === 'xl')!;
    const corpusLabel = corpus ? `${corpus.spec} (XL)` : `${data.spec} (XL, self excluded)`;
    const table = markdownTable(
      ['submodel', 'ffnDims', 'MFLOPs', 'of XL', 'latency ms', 'top-1', `recall@${k}`, 'front'],
      rows.map((r, i) => [
        r.uniform ? r.name : '',
        compact(r.ffnDims),
        r.mflops.toFixed(1),
        (r.mflops / xl.mflops).toFixed(3),
        r.latencyMs.toFixed(2),
        pct(r.top1),
        pct(r.recall),
        onFront[i] ? 'yes' : '',
      ]),
    );
    const out = (line: string) => process.stdout.write(line + '\n');
    out(
      `${o.model} on ${data.spec}: ${result.count} queries, corpus ${corpusLabel}: ${result.corpusCount} items, engine ${enc.description}`,
    );
    out(table);
    out(
      `front: ${front.length} of ${rows.length} configs, ${check.betweenSAndXl} strictly between S and XL MFLOPs (want >= ${check.minBetween})`,
    );
    // A deficit counts only beyond noise: check.noiseZ standard errors of the paired difference,
    // the family-wise threshold over the mixes compared (eval/mixnmatch.ts).
    const pt = (d: PairedDiff) => `${(100 * d.diff).toFixed(2)} +- ${(100 * d.se).toFixed(2)} pt`;
    const beyond = `beyond ${check.noiseZ.toFixed(2)} standard errors: family-wise alpha ${check.alpha} over ${check.comparisons} mixes`;
    const worse = (what: string, bad: FrontPoint[], vs: (p: FrontPoint) => [string, { top1: PairedDiff; recall: PairedDiff }]) =>
      out(
        bad.length === 0
          ? `no front point is worse (${beyond}) than ${what}`
          : `worse (${beyond}) than ${what}: ${bad
              .map((p) => {
                const [u, d] = vs(p);
                return `${p.name} vs ${u}: top-1 ${pt(d.top1)}, recall ${pt(d.recall)}`;
              })
              .join('; ')}`,
      );
    worse(
      'the uniform granularity nearest in MFLOPs, in top-1',
      check.points.filter((p) => !p.atLeastAsGood),
      (p) => [p.nearestUniform, p.vsNearest],
    );
    worse(
      `the costliest uniform granularity no costlier, in top-1 or recall@${k}`,
      check.points.filter((p) => !p.atLeastAsGoodAsCheaper),
      (p) => [p.cheaperUniform, p.vsCheaper],
    );
    const closest = check.points
      .filter((p) => p.nearestUniform !== p.name)
      .sort((a, b) => a.vsNearest.top1.diff - b.vsNearest.top1.diff)[0];
    if (closest) {
      const d = closest.vsNearest.top1;
      out(
        `largest top-1 deficit against the nearest uniform granularity: ${closest.name} vs ${closest.nearestUniform}, ${pt(d)} (${d.se > 0 ? (d.diff / d.se).toFixed(2) : 'n/a'} standard errors)`,
      );
    }
    out(
      `check: ${check.pass ? 'pass' : 'fail'} (>= ${check.minBetween} front points between S and XL, none worse than the nearest uniform granularity)`,
    );

    const report = {
      kind: 'mixnmatch',
      command: process.argv.slice(2).join(' '),
      model: o.model,
      fingerprint: meta.fingerprint,
      data: data.spec,
      corpus: corpusLabel,
      count: result.count,
      corpusCount: result.corpusCount,
      k,
      latencyRuns: o.latencyRuns,
      engine: enc.description,
      configs: rows.map((r, i) => ({ ...r, onFront: onFront[i] })),
      front,
      menu,
      check,
      skipped: result.skipped.length + result.corpusSkipped.length,
    };
    fs.writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
    const svgFile = o.out.replace(/\.json$/, '') + '.svg';
    fs.writeFileSync(svgFile, await renderSvg(frontChart(c.name, data.spec, k, rows, onFront)));
    out(`wrote ${o.out} and ${svgFile}`);

    if (o.writeMenu) {
      const current = readMeta(o.model);
      if (current.fingerprint !== meta.fingerprint)
        throw new Error(
          `${o.model}: the weights changed during the run (fingerprint ${current.fingerprint}, measured ${meta.fingerprint}); menu not written`,
        );
      saveMeta(o.model, { ...current, menu });
      out(`menu of ${menu.length} entries (front + s/m/l/xl) written to ${path.join(o.model, 'config.json')}; fingerprint unchanged`);
    }
  });

/** top-1 and recall@k against MFLOPs: the uniform granularities, and the front. */
function frontChart(model: string, spec: string, k: number, rows: MixRow[], onFront: boolean[]) {
  const uniform = rows.filter((r) => r.uniform);
  const front = rows.filter((_, i) => onFront[i]);
  const series = (name: string, rs: MixRow[], y: (r: MixRow) => number, labelled: boolean) => ({
    name,
    points: rs.map((r) => ({ x: r.mflops, y: y(r), label: labelled ? r.name : undefined })),
  });
  return xyChart({
    title: `${model}: Mix'n'Match front (${spec})`,
    x: 'MFLOPs per image',
    y: `top-1 / recall@${k} vs XL`,
    series: [
      series('top-1, s/m/l/xl', uniform, (r) => r.top1, true),
      series('top-1, front', front, (r) => r.top1, false),
      series(`R@${k}, s/m/l/xl`, uniform, (r) => r.recall, true),
      series(`R@${k}, front`, front, (r) => r.recall, false),
    ],
  });
}
