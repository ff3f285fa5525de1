// `matvit matformerize`: a dense ViT made nested by reordering each layer's FFN neurons by importance
// (src/train/neuron-order.ts), with sliced top-1 (and 1-NN against an XL corpus) per submodel before
// and after, so the effect of the reordering is measured where it is made.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { GRANULARITY_NAMES, parseSubmodel, submodelName } from '../model/config.ts';
import { SCORES } from '../train/neuron-order.ts';
import { UsageError, csv, flag, parseOptions } from './common.ts';

const Options = z.object({
  model: z.string().min(1),
  out: z.string().min(1),
  data: z.string().min(1).optional(),
  samples: z.coerce.number().int().positive().default(2048),
  score: z.enum(SCORES).default('activation'),
  val: z.string().min(1).optional(),
  corpus: z.string().min(1).optional(),
  limit: z.coerce.number().int().positive().optional(),
  granularities: z.string().default(GRANULARITY_NAMES.join(',')),
  batch: z.coerce.number().int().positive().default(64),
  backend: z.string().default('auto'),
});
type Options = z.infer<typeof Options>;

export const matformerizeCommand = new Command('matformerize')
  .description(
    "make a dense ViT nested: each layer's FFN neurons reordered by importance, so that s/m/l (the first 1/8, 1/4, 1/2) are good submodels before any training; the full-width model is unchanged",
  )
  .addOption(flag(Options, '--model <dir>', 'checkpoint of a dense ViT (trained or imported)'))
  .addOption(flag(Options, '--out <dir>', 'checkpoint directory to write (must not hold a checkpoint yet)'))
  .addOption(
    flag(Options, '--data <spec>', 'images to measure activations on (dataset spec; labels not needed); required unless --score weight'),
  )
  .addOption(flag(Options, '--samples <n>', 'images of --data to measure (the first N)'))
  .addOption(flag(Options, '--score <name>', `neuron importance: ${SCORES.join(', ')} (see src/train/neuron-order.ts)`))
  .addOption(flag(Options, '--val <spec>', 'labelled split: sliced top-1 per submodel before and after'))
  .addOption(
    flag(Options, '--corpus <spec>', 'labelled corpus embedded by XL: 1-NN accuracy of --val queries per submodel, before and after'),
  )
  .addOption(flag(Options, '--limit <n>', 'the first N images of --val (and of --corpus) only'))
  .addOption(flag(Options, '--granularities <list>', 'submodels to report (names or per-layer widths joined by "/")'))
  .addOption(flag(Options, '--batch <n>', 'batch size'))
  .addOption(flag(Options, '--backend <name>', 'tfjs backend for the activation statistics'))
  .action(async (raw) => {
    const o = parseOptions(Options, raw);
    if (o.score !== 'weight' && !o.data)
      throw new UsageError(`--data: the ${o.score} score measures activations on images; give --data SPEC or use --score weight`);
    if (o.corpus && !o.val) throw new UsageError('--corpus: 1-NN needs --val queries');
    if (fs.existsSync(path.join(o.out, 'config.json')))
      throw new UsageError(`--out: ${o.out} already holds a checkpoint; choose another directory or remove it`);
    const [{ loadCheckpoint, saveCheckpoint }, { parseDatasetSpec }, mat, { hiddenStats }, { phaseBar }] = await Promise.all([
      import('../model/checkpoint.ts'),
      import('../data/dataset.ts'),
      import('../train/neuron-order.ts'),
      import('../train/hidden-stats.ts'),
      import('./progress.ts'),
    ]);
    const { meta, weights } = loadCheckpoint(o.model);
    const c = meta.model;
    const bars = phaseBar();
    let permuted, stats;
    try {
      stats = o.data
        ? await hiddenStats(c, weights, await parseDatasetSpec(o.data), {
            samples: o.samples,
            batchSize: o.batch,
            backend: o.backend,
            onBatch: (d, t) => bars.update('activations', d, t),
          })
        : undefined;
      const perms = mat.importance(c, weights, o.score, stats).map(mat.importanceOrder);
      permuted = mat.permuteFfn(c, weights, perms);
    } finally {
      bars.stop();
    }
    const provenance = {
      matformerize: {
        from: path.resolve(o.model),
        fromFingerprint: meta.fingerprint,
        score: o.score,
        data: o.data,
        images: stats?.images ?? 0,
      },
    };
    const out = saveCheckpoint(o.out, c, permuted, { provenance: { ...meta.provenance, ...provenance } });
    process.stdout.write(
      `wrote ${o.out} (${o.score} score${stats ? ` on ${stats.images} images of ${o.data}` : ''}), fingerprint ${out.fingerprint}\n`,
    );
    if (o.val) await report(o, o.model, o.out);
  });

/** Sliced top-1 (and 1-NN against the model's own XL corpus) per submodel, before and after. */
async function report(o: Options, before: string, after: string): Promise<void> {
  const [{ loadCheckpoint }, { parseDatasetSpec }, { createEncoder }, { classify }, { evalRetrieval }, { phaseBar }, { markdownTable }] =
    await Promise.all([
      import('../model/checkpoint.ts'),
      import('../data/dataset.ts'),
      import('../engine/encoder.ts'),
      import('../eval/classify.ts'),
      import('../eval/retrieval.ts'),
      import('./progress.ts'),
      import('../util/format.ts'),
    ]);
  const val = await parseDatasetSpec(o.val!);
  const corpus = o.corpus ? await parseDatasetSpec(o.corpus) : undefined;
  const pct = (x: number) => (100 * x).toFixed(2);
  const columns: Record<string, string[]> = {};
  let names: string[] = [];
  for (const [label, dir] of [
    ['before', before],
    ['after', after],
  ] as const) {
    const checkpoint = loadCheckpoint(dir);
    const c = checkpoint.meta.model;
    const submodels = csv(o.granularities).map((g) => {
      const ffnDims = parseSubmodel(c, g.replaceAll('/', ','));
      return { name: submodelName(c, ffnDims), ffnDims };
    });
    names = submodels.map((s) => s.name);
    const bars = phaseBar();
    const encoder = await createEncoder('onnx', c, checkpoint.weights);
    try {
      if (c.numClasses > 0 && c.embedding === 'pre_logits') {
        const top1 = await classify(encoder, val, submodels, {
          batchSize: o.batch,
          limit: o.limit,
          onBatch: (d, t) => bars.update(`top-1 ${label}`, d, t),
        });
        columns[`top-1 ${label}`] = top1.rows.map((r) => pct(r.top1));
      }
      if (corpus) {
        const r = await evalRetrieval({
          modelDir: dir,
          checkpoint,
          corpus,
          queries: val,
          submodels,
          batchSize: o.batch,
          limitCorpus: o.limit,
          limitQueries: o.limit,
          onProgress: (p, d, t) => bars.update(`${p} ${label}`, d, t),
        });
        columns[`1-NN ${label}`] = submodels.map((s) => pct(r.rows.find((row) => row.ffnDims.join() === s.ffnDims.join())!.exact.top1));
      }
    } finally {
      bars.stop();
      await encoder.dispose();
    }
  }
  const header = Object.keys(columns);
  process.stdout.write(`${val.spec}${corpus ? `, 1-NN against ${corpus.spec} embedded by XL` : ''}:\n`);
  process.stdout.write(
    markdownTable(
      ['submodel', ...header],
      names.map((n, i) => [n, ...header.map((h) => columns[h][i])]),
    ) + '\n',
  );
}
