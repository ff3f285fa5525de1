import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { GRANULARITY_NAMES, type ModelConfig, type Submodel, granularityDims, parseSubmodel } from '../model/config.ts';
import { loadCheckpoint } from '../model/checkpoint.ts';
import { ENGINES, createEncoder } from '../engine/encoder.ts';
import type { ClassifyRow } from '../eval/classify.ts';
import { renderSvg, xyChart } from '../eval/plot.ts';
import type { QueryModel, RetrievalRow } from '../eval/retrieval.ts';
import { UsageError, csv, flag, modelDir, outputFile, parseOptions, submodelOption } from './common.ts';
import { phaseBar } from './progress.ts';
import { compact, markdownTable } from '../util/format.ts';

/** A repeatable option's values, in order. */
const repeatable = (v: string, prev: string[] = []) => [...prev, v];

const ClassifyOptions = z.object({
  model: modelDir,
  data: z.string().min(1),
  granularities: z.string().default(GRANULARITY_NAMES.join(',')),
  ffnDims: z.array(z.string()).default([]),
  engine: z.enum(ENGINES).default('onnx'),
  backend: z.string().default('auto'),
  batch: z.coerce.number().int().positive().default(64),
  limit: z.coerce.number().int().positive().optional(),
  json: outputFile.optional(),
  csv: outputFile.optional(),
});

/** timm's results columns, plus the submodel, its widths and MFLOPs. Accuracies in percent, params in millions, as timm. */
function timmCsv(model: string, c: { imageSize: number; cropPct: number; interpolation: string }, rows: ClassifyRow[]): string {
  const header = [
    'model',
    'granularity',
    'ffn_dims',
    'top1',
    'top1_err',
    'top5',
    'top5_err',
    'param_count',
    'img_size',
    'crop_pct',
    'interpolation',
    'mflops',
    'consistency_with_xl',
    'img_per_sec',
  ];
  const pct = (x: number) => (100 * x).toFixed(3);
  const lines = rows.map((r) =>
    [
      model,
      r.name,
      `"${r.ffnDims.join(',')}"`,
      pct(r.top1),
      pct(1 - r.top1),
      pct(r.top5),
      pct(1 - r.top5),
      (r.params / 1e6).toFixed(3),
      c.imageSize,
      c.cropPct,
      c.interpolation,
      r.mflops.toFixed(2),
      pct(r.consistency),
      r.imgPerSec.toFixed(1),
    ].join(','),
  );
  return [header.join(','), ...lines].join('\n') + '\n';
}

/** --granularities and repeated --ffn-dims -> named submodels (Mix'n'Match ones named by their compact widths). */
function submodelList(c: ModelConfig, granularities: string, ffnDims: string[]): Submodel[] {
  return [
    ...csv(granularities).map((g) => {
      if (!(GRANULARITY_NAMES as string[]).includes(g))
        throw new UsageError(`--granularities: "${g}" is not one of ${GRANULARITY_NAMES.join(', ')}`);
      return { name: g, ffnDims: granularityDims(c, g as 's') };
    }),
    ...ffnDims.map((f) => submodelOption(c, { ffnDims: f })).map((s) => ({ name: compact(s.ffnDims), ffnDims: s.ffnDims })),
  ];
}

const classifyCommand = new Command('classify')
  .description('top-1/top-5 of each submodel on a labelled dataset (ImageNet-style folder, IDX, fashion-mnist:test)')
  .addOption(flag(ClassifyOptions, '--model <dir>', 'checkpoint directory'))
  .addOption(flag(ClassifyOptions, '--data <spec>', 'dataset spec'))
  .addOption(flag(ClassifyOptions, '--granularities <list>', 'named submodels to evaluate'))
  .addOption(flag(ClassifyOptions, '--ffn-dims <w,w,...>', "a Mix'n'Match submodel (repeatable)").argParser(repeatable))
  .addOption(flag(ClassifyOptions, '--engine <name>', `engine: ${ENGINES.join(', ')}`))
  .addOption(flag(ClassifyOptions, '--backend <name>', 'tfjs backend (with --engine tfjs)'))
  .addOption(flag(ClassifyOptions, '--batch <n>', 'batch size'))
  .addOption(flag(ClassifyOptions, '--limit <n>', 'evaluate the first N images only'))
  .addOption(flag(ClassifyOptions, '--json <file>', 'write results as JSON (and an SVG plot of top-1 vs MFLOPs next to it)'))
  .addOption(flag(ClassifyOptions, '--csv <file>', "write timm's results CSV"))
  .action(async (raw) => {
    const o = parseOptions(ClassifyOptions, raw);
    const [{ parseDatasetSpec }, { classify }] = await Promise.all([import('../data/dataset.ts'), import('../eval/classify.ts')]);
    const { meta, weights } = loadCheckpoint(o.model);
    const c = meta.model;
    const submodels = submodelList(c, o.granularities, o.ffnDims);
    const ds = await parseDatasetSpec(o.data);
    // Labels are class indices (sorted folder names, or the IDX labels); names may differ (an
    // exported folder is 00_T-shirt_top, ...), counts may not.
    if (ds.classNames.length !== c.numClasses)
      throw new UsageError(`--data: ${ds.spec} has ${ds.classNames.length} classes, the model ${c.numClasses}`);
    const enc = await createEncoder(o.engine, c, weights, { backend: o.backend });
    const bar = phaseBar();
    let result;
    try {
      result = await classify(enc, ds, submodels, {
        batchSize: o.batch,
        limit: o.limit,
        onBatch: (done, total) => bar.update('classify', done, total),
      });
    } finally {
      bar.stop();
      await enc.dispose();
    }
    const table = markdownTable(
      ['submodel', 'ffnDims', 'top-1', 'top-5', 'consistency w/ xl', 'params', 'MFLOPs', 'img/s'],
      result.rows.map((r) => [
        r.name,
        compact(r.ffnDims),
        (100 * r.top1).toFixed(2),
        (100 * r.top5).toFixed(2),
        (100 * r.consistency).toFixed(2),
        (r.params / 1e6).toFixed(3) + 'M',
        r.mflops.toFixed(1),
        r.imgPerSec.toFixed(0),
      ]),
    );
    process.stdout.write(
      `${o.model} on ${ds.spec}: ${result.count} images, ${result.skipped.length} skipped, engine ${enc.description}\n${table}\n`,
    );
    for (const s of result.skipped) process.stderr.write(`skipped ${s.ref}: ${s.reason}: ${s.message}\n`);
    const out = {
      kind: 'classify',
      model: o.model,
      fingerprint: meta.fingerprint,
      data: ds.spec,
      count: result.count,
      engine: enc.description,
      rows: result.rows,
      skipped: result.skipped,
      command: process.argv.slice(2).join(' '),
    };
    if (o.json) {
      fs.writeFileSync(o.json, JSON.stringify(out, null, 2) + '\n');
      const svg = await renderSvg(
        xyChart({
          title: `${c.name}: top-1 vs MFLOPs (${ds.spec})`,
          x: 'MFLOPs per image',
          y: 'top-1',
          series: [{ name: path.basename(o.model), points: result.rows.map((r) => ({ x: r.mflops, y: r.top1, label: r.name })) }],
        }),
      );
      fs.writeFileSync(o.json.replace(/\.json$/, '') + '.svg', svg);
    }
    if (o.csv) fs.writeFileSync(o.csv, timmCsv(path.basename(o.model), c, result.rows));
  });

const RetrievalArgs = z.object({
  model: modelDir,
  corpus: z.string().min(1),
  queries: z.string().min(1),
  index: z.string().min(1).optional(),
  granularities: z.string().default(GRANULARITY_NAMES.join(',')),
  ffnDims: z.array(z.string()).default([]),
  menu: z.boolean().default(false),
  queryModel: z.array(z.string()).default([]),
  k: z.coerce.number().int().positive().default(10),
  batch: z.coerce.number().int().positive().default(64),
  limitCorpus: z.coerce.number().int().positive().optional(),
  limitQueries: z.coerce.number().int().positive().optional(),
  json: outputFile.optional(),
});

/** --query-model NAME=DIR[:granularity|:w,w,...]; a colon stays part of DIR unless a submodel follows it. */
export function parseQueryModel(spec: string): { name: string; dir: string; submodel?: string } {
  const m = /^([^=]+)=(.+)$/.exec(spec);
  if (!m) throw new UsageError(`--query-model: "${spec}" is not NAME=DIR[:granularity|:w,w,...]`);
  const sub = /^(.+):((?:s|m|l|xl)|\d+(?:,\d+)*)$/i.exec(m[2]);
  return sub ? { name: m[1], dir: sub[1], submodel: sub[2] } : { name: m[1], dir: m[2] };
}

function loadQueryModel(spec: string): QueryModel {
  const { name, dir, submodel = 'xl' } = parseQueryModel(spec);
  const checkpoint = loadCheckpoint(dir);
  try {
    return { name, dir, checkpoint, ffnDims: parseSubmodel(checkpoint.meta.model, submodel) };
  } catch (e) {
    throw new UsageError(`--query-model ${spec}: ${(e as Error).message}`);
  }
}

const pct = (x: number) => (100 * x).toFixed(2);

const retrievalCommand = new Command('retrieval')
  .description(
    "elastic retrieval: the corpus embedded by XL, queries by each submodel; 1-NN accuracy, recall@k vs XL's queries, mAP@k, exact and HNSW",
  )
  .addOption(flag(RetrievalArgs, '--model <dir>', 'checkpoint directory'))
  .addOption(
    flag(RetrievalArgs, '--corpus <spec>', 'corpus dataset spec (embedded by XL, and by each submodel for the same-encoder figure)'),
  )
  .addOption(flag(RetrievalArgs, '--queries <spec>', 'query dataset spec'))
  .addOption(
    flag(
      RetrievalArgs,
      '--index <dir>',
      "search this index's vectors and graph (built with --model) instead of an in-memory HNSW over the corpus",
    ),
  )
  .addOption(flag(RetrievalArgs, '--granularities <list>', 'named query submodels'))
  .addOption(flag(RetrievalArgs, '--ffn-dims <w,w,...>', "a Mix'n'Match query submodel (repeatable)").argParser(repeatable))
  .addOption(flag(RetrievalArgs, '--menu', "also every entry of the checkpoint's menu"))
  .addOption(
    flag(
      RetrievalArgs,
      '--query-model <name=dir[:sub]>',
      'a query encoder from another checkpoint (a baseline), default submodel xl (repeatable)',
    ).argParser(repeatable),
  )
  .addOption(flag(RetrievalArgs, '--k <n>', 'neighbours for recall@k and mAP@k'))
  .addOption(flag(RetrievalArgs, '--batch <n>', 'batch size'))
  .addOption(
    flag(
      RetrievalArgs,
      '--limit-corpus <n>',
      'the first N corpus images only (with --index: of the same-encoder corpus; the index is searched whole)',
    ),
  )
  .addOption(flag(RetrievalArgs, '--limit-queries <n>', 'the first N query images only'))
  .addOption(
    flag(RetrievalArgs, '--json <file>', 'write results as JSON (and an SVG plot of 1-NN accuracy and recall@k vs MFLOPs next to it)'),
  )
  .action(async (raw) => {
    const o = parseOptions(RetrievalArgs, raw);
    const [{ parseDatasetSpec }, { evalRetrieval, querySubmodels }] = await Promise.all([
      import('../data/dataset.ts'),
      import('../eval/retrieval.ts'),
    ]);
    const checkpoint = loadCheckpoint(o.model);
    const { meta } = checkpoint;
    const c = meta.model;
    const submodels = [
      ...submodelList(c, o.granularities, o.ffnDims),
      ...(o.menu ? meta.menu.map((m) => ({ name: m.name, ffnDims: [...m.ffnDims] })) : []),
    ];
    const queryModels = o.queryModel.map(loadQueryModel);
    const names = [...querySubmodels(c, submodels).map((s) => s.name), ...queryModels.map((m) => m.name)];
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined) throw new UsageError(`--query-model: the name "${twice}" is taken; names in use: ${names.join(', ')}`);
    const [corpus, queries] = await Promise.all([parseDatasetSpec(o.corpus), parseDatasetSpec(o.queries)]);
    const bar = phaseBar();
    const units: Record<string, string> = { hnsw: 'item', search: 'encoder' };
    let result;
    try {
      result = await evalRetrieval({
        modelDir: o.model,
        checkpoint,
        corpus,
        queries,
        submodels,
        queryModels,
        indexDir: o.index,
        k: o.k,
        batchSize: o.batch,
        limitCorpus: o.limitCorpus,
        limitQueries: o.limitQueries,
        onProgress: (phase, done, total) => bar.update(phase, done, total, units[phase]),
      });
    } finally {
      bar.stop();
    }
    const { k, hnsw } = result;
    const own = result.rows.filter((r) => r.queryModel === undefined).sort((a, b) => a.mflops - b.mflops);
    const baselines = result.rows.filter((r) => r.queryModel !== undefined);
    const table = markdownTable(
      [
        'query encoder',
        'ffnDims',
        'MFLOPs',
        'of XL',
        '1-NN exact',
        '1-NN HNSW',
        `R@${k} exact`,
        `R@${k} HNSW`,
        `mAP@${k} exact`,
        `mAP@${k} HNSW`,
        '1-NN same-encoder',
        'img/s',
      ],
      [...own, ...baselines].map((r) => [
        r.name,
        compact(r.ffnDims),
        r.mflops.toFixed(1),
        r.mflopsFraction.toFixed(3),
        pct(r.exact.top1),
        pct(r.hnsw.top1),
        pct(r.exact.recall),
        pct(r.hnsw.recall),
        pct(r.exact.map),
        pct(r.hnsw.map),
        pct(r.sameEncoderTop1),
        r.imgPerSec.toFixed(0),
      ]),
    );
    const out = (line: string) => process.stdout.write(line + '\n');
    out(
      `${o.model}: corpus ${result.corpus} (${result.corpusCount} items${o.index ? ` from index ${o.index}` : ''}), queries ${result.queries} (${result.queryCount}), ${result.skipped.length} skipped, engine ${result.engine}`,
    );
    out(
      `${hnsw.ann ? `HNSW columns: the index's ${hnsw.ann}` : `HNSW (${hnsw.source === 'index' ? 'the index graph' : 'in memory'}): M ${hnsw.M}, efConstruction ${hnsw.efConstruction}, ef ${hnsw.ef}`}; accuracies, R@${k} (vs the XL queries' exact top ${k}) and mAP@${k} in percent`,
    );
    out(table);
    for (const b of baselines) out(`${b.name}: queries embedded by ${b.queryModel} (${compact(b.ffnDims)}); same-encoder: its corpus too`);
    const best = result.cheapest;
    if (best)
      out(
        `cheapest query submodel within 0.5 pt of XL's exact 1-NN (${pct(best.xlTop1)}): ${best.name}, ${pct(best.top1)} at ${best.mflopsFraction.toFixed(3)} of XL's MFLOPs`,
      );
    for (const s of result.skipped) process.stderr.write(`skipped ${s.set} ${s.ref}: ${s.reason}: ${s.message}\n`);
    if (o.json) {
      const { kind, ...rest } = result;
      fs.writeFileSync(o.json, JSON.stringify({ kind, command: process.argv.slice(2).join(' '), ...rest }, null, 2) + '\n');
      const point = (y: (r: RetrievalRow) => number) => (r: RetrievalRow) => ({ x: r.mflops, y: y(r), label: r.name });
      const series = [
        { name: `1-NN ${path.basename(o.model)}`, points: own.map(point((r) => r.exact.top1)) },
        { name: `R@${k} ${path.basename(o.model)}`, points: own.map(point((r) => r.exact.recall)) },
        ...baselines.flatMap((b) => [
          { name: `1-NN ${b.name}`, points: [point((r) => r.exact.top1)(b)] },
          { name: `R@${k} ${b.name}`, points: [point((r) => r.exact.recall)(b)] },
        ]),
      ];
      const svg = await renderSvg(
        xyChart({
          title: `${c.name}: retrieval vs query MFLOPs (exact search, ${result.queries})`,
          x: 'query MFLOPs per image',
          y: `1-NN accuracy / recall@${k} vs XL`,
          series,
        }),
      );
      fs.writeFileSync(o.json.replace(/\.json$/, '') + '.svg', svg);
    }
  });

export const evalCommand = new Command('eval').description('evaluation').addCommand(classifyCommand).addCommand(retrievalCommand);
