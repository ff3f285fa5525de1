// Commands that run the encoder on images or export it: embed, export-onnx, bench encode.
import fs from 'node:fs';
import { Command } from 'commander';
import { z } from 'zod';
import { loadCheckpoint } from '../model/checkpoint.ts';
import { mflops } from '../model/flops.ts';
import { PRESETS, preset } from '../model/presets.ts';
import { initWeights } from '../model/weights.ts';
import { ENGINES, createEncoder } from '../engine/encoder.ts';
import { UsageError, csv, flag, modelDir, outputFile, parseOptions, printJson, submodelOption } from './common.ts';
import { markdownTable } from '../util/format.ts';

const Submodel = { granularity: z.string().optional(), ffnDims: z.string().optional() };
const withSubmodel = (cmd: Command, O: z.ZodObject) =>
  cmd
    .addOption(flag(O, '--granularity <g>', 'submodel: s, m, l or xl (default xl)'))
    .addOption(flag(O, '--ffn-dims <w,w,...>', "Mix'n'Match submodel: one FFN width per layer"));

const EmbedOptions = z.object({
  model: modelDir,
  ...Submodel,
  engine: z.enum(ENGINES).default('onnx'),
  backend: z.string().default('auto'),
  json: z.boolean().default(false),
});

export const embedCommand = withSubmodel(new Command('embed'), EmbedOptions)
  .description("print each image's embedding (and top-5 classes when the model has class names)")
  .addOption(flag(EmbedOptions, '--model <dir>', 'checkpoint directory'))
  .addOption(flag(EmbedOptions, '--engine <name>', `engine: ${ENGINES.join(', ')}`))
  .addOption(flag(EmbedOptions, '--backend <name>', 'tfjs backend (with --engine tfjs)'))
  .addOption(flag(EmbedOptions, '--json', 'print JSON'))
  .argument('<images...>', 'image files')
  .action(async (files: string[], raw) => {
    const o = parseOptions(EmbedOptions, raw);
    const [{ preprocessImage }, { topK }] = await Promise.all([import('../data/preprocess.ts'), import('../eval/classify.ts')]);
    const { meta, weights } = loadCheckpoint(o.model);
    const c = meta.model;
    const sub = submodelOption(c, o);
    const enc = await createEncoder(o.engine, c, weights, { backend: o.backend });
    try {
      const results = [];
      for (const file of files) {
        // One image at a time: a bad file is reported and the others still print.
        let input: Float32Array;
        try {
          input = await preprocessImage(fs.readFileSync(file), c);
        } catch (e) {
          results.push({ file, error: (e as Error).message });
          continue;
        }
        const { embeddings, logits } = await enc.encode(input, sub.ffnDims);
        const top5 = c.classNames.length
          ? topK(logits, c.numClasses, 0, Math.min(5, c.numClasses)).map((k) => ({ class: c.classNames[k], index: k, logit: logits[k] }))
          : undefined;
        results.push({ file, embedding: Array.from(embeddings), top5 });
      }
      if (o.json) printJson({ results, engine: enc.description, submodel: sub.name, ffnDims: sub.ffnDims, mflops: mflops(c, sub.ffnDims) });
      else {
        process.stdout.write(`${enc.description}, submodel ${sub.name} (${mflops(c, sub.ffnDims).toFixed(1)} MFLOPs)\n`);
        for (const r of results) {
          if ('error' in r) process.stdout.write(`${r.file}: error: ${r.error}\n`);
          else {
            const head = r
              .embedding!.slice(0, 8)
              .map((v) => v.toFixed(4))
              .join(' ');
            process.stdout.write(`${r.file}: [${r.embedding!.length}] ${head} ...\n`);
            if (r.top5) process.stdout.write(`  top-5: ${r.top5.map((t) => `${t.class} (${t.logit.toFixed(2)})`).join(', ')}\n`);
          }
        }
      }
      if (results.some((r) => 'error' in r)) process.exitCode = 1;
    } finally {
      await enc.dispose();
    }
  });

const ExportOptions = z.object({ model: modelDir, ...Submodel, out: outputFile });

export const exportOnnxCommand = withSubmodel(new Command('export-onnx'), ExportOptions)
  .description('write a standalone ONNX file of one submodel (input pixels [B,C,H,W] normalized; outputs embedding, logits)')
  .addOption(flag(ExportOptions, '--model <dir>', 'checkpoint directory'))
  .addOption(flag(ExportOptions, '--out <file.onnx>', 'output file'))
  .action(async (raw) => {
    const o = parseOptions(ExportOptions, raw);
    const { buildOnnxModel } = await import('../engine/onnx-graph.ts');
    const { meta, weights } = loadCheckpoint(o.model);
    const sub = submodelOption(meta.model, o);
    const bytes = buildOnnxModel(meta.model, weights, sub.ffnDims);
    fs.writeFileSync(o.out, bytes);
    process.stdout.write(
      `wrote ${o.out}: submodel ${sub.name}, ${(bytes.length / 1e6).toFixed(2)} MB, ${mflops(meta.model, sub.ffnDims).toFixed(1)} MFLOPs\n`,
    );
  });

const BenchOptions = z.object({
  model: modelDir.optional(),
  preset: z.enum(Object.keys(PRESETS) as [string, ...string[]]).optional(),
  engines: z.string().default(ENGINES.join(',')),
  batch: z.coerce.number().int().positive().default(32),
  seconds: z.coerce.number().positive().default(2),
  rounds: z.coerce.number().int().positive().default(3),
  backend: z.string().default('auto'),
  json: z.boolean().default(false),
});

export const benchEncodeCommand = new Command('encode')
  .description("per engine and granularity: batch-1 latency, batch throughput, GFLOP/s against the runtime's matmul ceiling")
  .addOption(flag(BenchOptions, '--model <dir>', 'checkpoint directory'))
  .addOption(flag(BenchOptions, '--preset <name>', `or a preset with random weights: ${Object.keys(PRESETS).join(', ')}`))
  .addOption(flag(BenchOptions, '--engines <list>', 'engines to measure'))
  .addOption(flag(BenchOptions, '--batch <n>', 'batch size of the throughput runs'))
  .addOption(flag(BenchOptions, '--seconds <n>', 'seconds per measurement'))
  .addOption(flag(BenchOptions, '--rounds <n>', 'interleaved rounds over the submodels; the best round of each is kept'))
  .addOption(flag(BenchOptions, '--backend <name>', 'tfjs backend'))
  .addOption(flag(BenchOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(BenchOptions, raw);
    const { benchEncode } = await import('../engine/bench.ts');
    if (!o.model === !o.preset) throw new UsageError('give one of --model DIR or --preset NAME');
    const engines = csv(o.engines).map((e) => parseOptions(z.object({ engines: z.enum(ENGINES) }), { engines: e }).engines);
    const ckpt = o.model ? loadCheckpoint(o.model) : undefined;
    const c = ckpt ? ckpt.meta.model : preset(o.preset!);
    const weights = ckpt ? ckpt.weights : initWeights(c, 0);
    const r = await benchEncode(c, weights, {
      engines,
      batch: o.batch,
      seconds: o.seconds,
      rounds: o.rounds,
      engineOptions: { backend: o.backend },
      log: (s) => process.stderr.write(`measuring ${s}\n`),
    });
    if (o.json) return void printJson(r);
    process.stdout.write(`${r.model}, batch ${r.batch}\n`);
    for (const e of r.engines) process.stdout.write(`${e.engine}: ${e.description}; matmul ceiling ${e.sgemmGflops.toFixed(1)} GFLOP/s\n`);
    const rows = r.rows.map((row) => {
      const eng = r.engines.find((e) => e.engine === row.engine)!;
      const xl = r.rows.find((x) => x.engine === row.engine && x.submodel === 'xl')!;
      return [
        row.engine,
        row.submodel,
        row.mflops.toFixed(1),
        row.latencyMs.median.toFixed(2),
        row.latencyMs.p90.toFixed(2),
        row.imgPerSec.toFixed(1),
        row.gflops.toFixed(1),
        `${((100 * row.gflops) / eng.sgemmGflops).toFixed(0)}%`,
        (xl.imgPerSec / row.imgPerSec).toFixed(3),
        (row.mflops / xl.mflops).toFixed(3),
      ];
    });
    process.stdout.write(
      markdownTable(
        [
          'engine',
          'submodel',
          'MFLOPs',
          'b1 median ms',
          'b1 p90 ms',
          `b${r.batch} img/s`,
          'GFLOP/s',
          'of ceiling',
          'time/time(xl)',
          'MFLOPs/MFLOPs(xl)',
        ],
        rows,
      ) + '\n',
    );
    const onnxXl = r.rows.find((x) => x.engine === 'onnx' && x.submodel === 'xl');
    const tfjsXl = r.rows.find((x) => x.engine === 'tfjs' && x.submodel === 'xl');
    if (onnxXl && tfjsXl) process.stdout.write(`onnx / tfjs throughput at xl: ${(onnxXl.imgPerSec / tfjsXl.imgPerSec).toFixed(1)}x\n`);
  });
