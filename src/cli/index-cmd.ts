// `matvit index ...`: build, add, remove, compact (the commands that write an index; info, verify,
// recover and merge are in index-maintain.ts). The work is in src/index/ (build.ts and pipeline.ts
// embed, vector-index.ts holds the index).
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { DEFAULT_PIXEL_LIMIT } from '../data/limits.ts';
import { ENGINES } from '../engine/encoder.ts';
import type { BuildSummary } from '../index/build.ts';
import { isUri } from '../index/lance-tables.ts';
import { IndexParams, readManifest } from '../index/manifest.ts';
import type { Progress } from '../index/pipeline.ts';
import { DEFAULT_SNAPSHOT_EVERY } from '../index/pipeline-defaults.ts';
import type { ModelConfig } from '../model/config.ts';
import { UsageError, flag, modelDir, parseOptions, printJson, submodelOption } from './common.ts';
import { phaseBar } from './progress.ts';

import { IndexOnly, NewIndex, count, lanceParamsOf, newIndexAt, parsedFlag, withNewIndex } from './index-flags.ts';

/** Options of every command that embeds images. */
const Pipeline = {
  engine: z.enum(ENGINES).default('onnx'),
  workers: count(1).optional(),
  batch: count(1).optional(),
  concurrency: count(1).optional(),
  snapshotEvery: count(0).default(DEFAULT_SNAPSHOT_EVERY),
  maxPixels: count(1).default(DEFAULT_PIXEL_LIMIT),
  progress: z.boolean().default(true),
  json: z.boolean().default(false),
};
const withPipeline = (cmd: Command, O: z.ZodObject) =>
  cmd
    .addOption(flag(O, '--engine <name>', `engine: ${ENGINES.join(', ')}`))
    .addOption(
      flag(
        O,
        '--workers <n>',
        'onnx: encoder worker threads sharing the cores, each running whole batches and holding a copy of the model (default: one per core under 1000 MFLOPs per image, else 1)',
      ),
    )
    .addOption(flag(O, '--batch <n>', 'images per encoder call (default: 256 for small inputs, 32 for 224x224)'))
    .addOption(flag(O, '--concurrency <n>', 'images read and decoded at once (default: 2 per core)'))
    .addOption(flag(O, '--snapshot-every <n>', 'write the graph snapshot every N batches; 0: only at the end'))
    .addOption(flag(O, '--max-pixels <n>', 'refuse images of more pixels, a decompression-bomb guard'))
    .addOption(flag(O, '--no-progress', 'no progress bar'))
    .addOption(flag(O, '--json', 'print the summary as JSON'));

/** The pipeline's progress on the CLI's progress bar (none with --no-progress). */
function buildProgress(enabled: boolean): { onProgress?: (p: Progress) => void; stop: () => void } {
  if (!enabled) return { stop: () => {} };
  const bar = phaseBar();
  const counts = (p: Progress) => `added ${p.added}, duplicates ${p.duplicates}, already indexed ${p.alreadyIndexed}, skipped ${p.skipped}`;
  return { onProgress: (p) => bar.update('index', p.processed, p.total, 'img', counts(p)), stop: bar.stop };
}

function printSummary(s: BuildSummary, json: boolean): void {
  if (json) return void printJson(s);
  const out = (line: string) => process.stdout.write(line + '\n');
  out(`${s.index}: ${s.items} item${s.items === 1 ? '' : 's'} of ${s.data}${s.shard ? ` (shard ${s.shard})` : ''}`);
  out(
    `  added ${s.added}, duplicates ${s.duplicates.count}, already indexed ${s.alreadyIndexed}, skipped ${s.skipped.count}; ${s.live} live items`,
  );
  out(`  ${s.seconds.toFixed(1)} s, ${s.imgPerSec.toFixed(0)} img/s, peak RSS ${s.peakRssMB} MB; ${s.engine}, submodel ${s.submodel.name}`);
  const t = s.timings;
  out(
    `  main loop waited ${(t.encodeWaitMs / 1000).toFixed(1)} s on the encoder and ${(t.decodeWaitMs / 1000).toFixed(1)} s on reading/decoding; commits ${(t.commitMs / 1000).toFixed(1)} s, ${s.snapshots} snapshots ${(t.snapshotMs / 1000).toFixed(1)} s`,
  );
  for (const d of s.duplicates.items) out(`  duplicate ${d.ref}: same content as ${d.sameAs}`);
  for (const k of s.skipped.items) out(`  skipped ${k.ref}: ${k.reason}: ${k.message}`);
  const unlisted = s.duplicates.count - s.duplicates.items.length + s.skipped.count - s.skipped.items.length;
  if (unlisted > 0) out(`  (${unlisted} more duplicates or skipped items not listed; see --json)`);
}

// ---- build -------------------------------------------------------------------------------------

const BuildOptions = z.object({
  model: modelDir,
  data: z.string().min(1),
  out: z.string().min(1).optional(),
  ...NewIndex,
  granularity: z.string().optional(),
  ffnDims: z.string().optional(),
  shard: z.string().optional(),
  m: count(2).optional(),
  efConstruction: count(1).optional(),
  ef: count(1).optional(),
  metadata: z.string().min(1).optional(),
  ...Pipeline,
});

const B = BuildOptions;
const buildCommand = withPipeline(
  withNewIndex(
    new Command('build')
      .description(
        'embed a corpus with the corpus submodel (XL by default) into an index; re-running adds only what is new, also after an interruption',
      )
      .addOption(flag(B, '--model <dir>', 'checkpoint directory'))
      .addOption(
        flag(
          B,
          '--data <spec>',
          'dataset: a folder (root/<class>/<image>), files:DIR (any images, no classes), idx:IMAGES,LABELS, fashion-mnist:train|test; optionally [a:b]',
        ),
      )
      .addOption(flag(B, '--out <dir>', 'index directory (created, or continued when it holds an index of this model)')),
    B,
    '--out',
  )
    .addOption(flag(B, '--granularity <g>', 'corpus submodel: s, m, l or xl (default xl: every query submodel searches its space)'))
    .addOption(flag(B, '--ffn-dims <w,w,...>', "corpus submodel as one FFN width per layer (Mix'n'Match)"))
    .addOption(
      flag(B, '--shard <i/n>', 'index only shard i of n (1-based; split by a hash of each source), to merge later with `index merge`'),
    )
    .addOption(
      flag(B, '--metadata <file>', 'JSON lines {"path": SOURCE, "payload": {...}}: each item\'s payload (search filters and returns it)'),
    )
    .addOption(flag(IndexParams, '--m <n>', 'HNSW links per node (new index)', 'M'))
    .addOption(flag(IndexParams, '--ef-construction <n>', 'HNSW build breadth (new index)'))
    .addOption(flag(IndexParams, '--ef <n>', 'HNSW search breadth (new index)')),
  B,
).action(async (raw) => {
  const o = parseOptions(BuildOptions, raw);
  const out = newIndexAt(o, o.out, '--out');
  const [{ loadCheckpoint }, { buildIndex }, { parseShard }, { readMetadata }] = await Promise.all([
    import('../model/checkpoint.ts'),
    import('../index/build.ts'),
    import('../index/pipeline.ts'),
    import('../index/metadata.ts'),
  ]);
  const payloads = o.metadata === undefined ? undefined : readMetadata(o.metadata);
  const shard = o.shard === undefined ? undefined : parsedFlag('--shard', o.shard, parseShard);
  const checkpoint = loadCheckpoint(o.model);
  const sub = submodelOption(checkpoint.meta.model, o);
  await warnCorpusFit(o.data, checkpoint.meta.model, o.model);
  const bar = buildProgress(o.progress);
  let s: BuildSummary;
  try {
    s = await buildIndex({
      checkpoint,
      modelDir: o.model,
      data: o.data,
      out,
      store: o.store,
      lance: lanceParamsOf(o),
      ffnDims: sub.ffnDims,
      engine: o.engine,
      workers: o.workers,
      shard,
      M: o.m,
      efConstruction: o.efConstruction,
      ef: o.ef,
      batch: o.batch,
      concurrency: o.concurrency,
      snapshotEvery: o.snapshotEvery,
      maxPixels: o.maxPixels,
      payloads,
      onProgress: bar.onProgress,
    });
  } finally {
    bar.stop();
  }
  printSummary(s, o.json);
  if (!o.json) calibrationHint(out);
});

/** Says on stderr when the corpus does not look like the model's input (colour for a grayscale model, sizes far off), before anything is embedded. */
async function warnCorpusFit(spec: string, c: ModelConfig, modelDir: string): Promise<void> {
  const [{ parseDatasetSpec }, { corpusFit }] = await Promise.all([import('../data/dataset.ts'), import('../data/corpus-fit.ts')]);
  const fit = await corpusFit(await parseDatasetSpec(spec), c);
  for (const w of fit.warnings) process.stderr.write(`warning: ${w}\n`);
  if (fit.warnings.length)
    process.stderr.write(
      `warning: embeddings of images unlike a model's training data are not meaningful (every pair may score near 1); ${modelDir} is for images like its own. For other images import a pretrained ViT (matvit import, README "Use your own ViT").\n`,
    );
}

/** After a build of a labelled corpus: the command that makes `auto` save compute (until it runs, serve's auto is the corpus submodel). */
function calibrationHint(dir: string): void {
  if (isUri(dir)) return; // no local manifest.json to read (lance-store.ts writes it for a directory only)
  const classes = readManifest(dir).corpus.classNames;
  if (Array.isArray(classes) && classes.length > 0)
    process.stdout.write(
      `  next: \`matvit calibrate --index ${dir}\` chooses auto's cascade on a sample of these labelled items (until then matvit serve answers auto with the corpus submodel)\n`,
    );
}

// ---- add ---------------------------------------------------------------------------------------

const AddOptions = z.object({ index: z.string().min(1), model: modelDir.optional(), ...Pipeline });

const addCommand = withPipeline(
  new Command('add')
    .description(
      "embed image files (folders: every image inside, recursively) with the index's model and corpus submodel and add what is new",
    )
    .addOption(flag(AddOptions, '--index <dir>', 'index directory'))
    .addOption(
      flag(AddOptions, '--model <dir>', "the index's model, when not where the manifest's modelPath says (its fingerprint must match)"),
    )
    .argument('<paths...>', 'image files or folders'),
  AddOptions,
).action(async (paths: string[], raw) => {
  const o = parseOptions(AddOptions, raw);
  const { addPaths } = await import('../index/build.ts');
  const bar = buildProgress(o.progress);
  let s: BuildSummary;
  try {
    s = await addPaths({ ...o, paths, onProgress: bar.onProgress });
  } finally {
    bar.stop();
  }
  printSummary(s, o.json);
});

// ---- remove ------------------------------------------------------------------------------------

const RemoveOptions = z.object({
  index: z.string().min(1),
  id: z.array(count(1)).optional(),
  path: z.array(z.string().min(1)).optional(),
  json: z.boolean().default(false),
});

const removeCommand = new Command('remove')
  .description('delete items by id or by source path; removed items are never returned again (compact reclaims their space)')
  .addOption(flag(RemoveOptions, '--index <dir>', 'index directory'))
  .addOption(flag(RemoveOptions, '--id <ids...>', 'item ids'))
  .addOption(
    flag(RemoveOptions, '--path <paths...>', 'sources as stored (relative to the corpus root, idx:#N), or files as given to `index add`'),
  )
  .addOption(flag(RemoveOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(RemoveOptions, raw);
    const [{ openIndex }, { sourcesToRemove }] = await Promise.all([import('../index/open-store.ts'), import('../index/file-list.ts')]);
    if (!o.id === !o.path) throw new UsageError('give one of --id ID... or --path PATH...');
    const index = openIndex(o.index);
    try {
      const r = o.id ? index.remove(o.id) : index.removeSources(sourcesToRemove(o.index, o.path!));
      const out = { removed: r.removed, missing: r.missing, live: index.size };
      if (o.json) printJson(out);
      else {
        process.stdout.write(
          `${o.index}: removed ${r.removed.length} item${r.removed.length === 1 ? '' : 's'}${r.removed.length ? ` (ids ${r.removed.join(', ')})` : ''}; ${index.size} live\n`,
        );
        if (r.missing.length) process.stdout.write(`  not found (no live item): ${r.missing.join(', ')}\n`);
      }
    } finally {
      index.close();
    }
  });

/** Options of the commands that only name an index. */

// ---- compact -----------------------------------------------------------------------------------

const compactCommand = new Command('compact')
  .description(
    "rebuild the graph from the stored vectors, reclaiming the slots of removed items (lance: LanceDB's optimize: compaction, ANN index update, old versions pruned)",
  )
  .addOption(flag(IndexOnly, '--index <dir>', 'index directory'))
  .addOption(flag(IndexOnly, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(IndexOnly, raw);
    const [{ openIndex }, { STORE_FILE }, { badVectorsMessage }] = await Promise.all([
      import('../index/open-store.ts'),
      import('../index/vector-index.ts'),
      import('../index/errors.ts'),
    ]);
    const index = openIndex(o.index);
    try {
      const r = index.compact();
      if (o.json) printJson({ ...r, live: index.size });
      else {
        const what = index.kind === 'lance' ? 'rows' : 'graph points';
        process.stdout.write(`${o.index}: ${what} ${r.before} -> ${r.after} in ${r.ms} ms; ${index.size} live\n`);
        for (const w of [...index.opened.damage, ...index.opened.warnings]) process.stdout.write(`  on open: ${w}\n`);
        const bad = r.badVectors;
        if (bad.length)
          process.stdout.write(
            `  damage: ${index.kind === 'lance' ? `${bad.length} live vectors are not finite unit vectors (ids ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', ...' : ''}): remove those items and add their images again` : badVectorsMessage(path.join(o.index, STORE_FILE), bad)}\n`,
          );
      }
      if (r.badVectors.length) process.exitCode = 1;
    } finally {
      index.close();
    }
  });

import { infoCommand, mergeCommand, recoverCommand, verifyCommand } from './index-maintain.ts';
import { collectCommand, enqueueCommand, statusCommand, workerCommand } from './index-queue.ts';

export const indexCommand = new Command('index').description(
  'corpus indexes: build, add, remove, compact, info, verify, recover, merge; on many machines: enqueue, worker, collect, status',
);
for (const cmd of [buildCommand, addCommand, removeCommand, compactCommand, infoCommand, verifyCommand, recoverCommand, mergeCommand])
  indexCommand.addCommand(cmd);
for (const cmd of [enqueueCommand, workerCommand, collectCommand, statusCommand]) indexCommand.addCommand(cmd);
