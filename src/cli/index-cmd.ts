// `matvit index ...`: build, add, remove, compact, info, verify, recover, merge. The work is in src/index/
// (build.ts and pipeline.ts embed, vector-index.ts holds the index, verify.ts and merge.ts).
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { DEFAULT_PIXEL_LIMIT } from '../data/limits.ts';
import { ENGINES } from '../engine/encoder.ts';
import type { BuildSummary } from '../index/build.ts';
import { IndexParams, MANIFEST_FILE, readManifest } from '../index/manifest.ts';
import type { Progress } from '../index/pipeline.ts';
import { DEFAULT_SNAPSHOT_EVERY } from '../index/pipeline-defaults.ts';
import { type ModelConfig, submodelName } from '../model/config.ts';
import { UsageError, csv, flag, modelDir, parseOptions, printJson, submodelOption } from './common.ts';
import { phaseBar } from './progress.ts';
import { markdownTable } from '../util/format.ts';

const count = (min: number) => {
  const error = `expected an integer >= ${min}`;
  return z.coerce.number({ error }).int(error).min(min, error);
};
/** `--flag value` parsed by `parse` (loaded with the action); its error names the flag and the value. */
function parsedFlag<T>(name: string, value: string, parse: (v: string) => T): T {
  try {
    return parse(value);
  } catch (e) {
    throw new UsageError(`${name}: ${(e as Error).message} (received ${JSON.stringify(value)})`);
  }
}

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
  out: z.string().min(1),
  granularity: z.string().optional(),
  ffnDims: z.string().optional(),
  shard: z.string().optional(),
  m: count(2).optional(),
  efConstruction: count(1).optional(),
  ef: count(1).optional(),
  ...Pipeline,
});

const B = BuildOptions;
const buildCommand = withPipeline(
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
    .addOption(flag(B, '--out <dir>', 'index directory (created, or continued when it holds an index of this model)'))
    .addOption(flag(B, '--granularity <g>', 'corpus submodel: s, m, l or xl (default xl: every query submodel searches its space)'))
    .addOption(flag(B, '--ffn-dims <w,w,...>', "corpus submodel as one FFN width per layer (Mix'n'Match)"))
    .addOption(
      flag(B, '--shard <i/n>', 'index only shard i of n (1-based; split by a hash of each source), to merge later with `index merge`'),
    )
    .addOption(flag(IndexParams, '--m <n>', 'HNSW links per node (new index)', 'M'))
    .addOption(flag(IndexParams, '--ef-construction <n>', 'HNSW build breadth (new index)'))
    .addOption(flag(IndexParams, '--ef <n>', 'HNSW search breadth (new index)')),
  B,
).action(async (raw) => {
  const o = parseOptions(BuildOptions, raw);
  const [{ loadCheckpoint }, { buildIndex }, { parseShard }] = await Promise.all([
    import('../model/checkpoint.ts'),
    import('../index/build.ts'),
    import('../index/pipeline.ts'),
  ]);
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
      out: o.out,
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
      onProgress: bar.onProgress,
    });
  } finally {
    bar.stop();
  }
  printSummary(s, o.json);
  if (!o.json) calibrationHint(o.out);
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
    const [{ VectorIndex }, { sourcesToRemove }] = await Promise.all([import('../index/vector-index.ts'), import('../index/file-list.ts')]);
    if (!o.id === !o.path) throw new UsageError('give one of --id ID... or --path PATH...');
    const index = VectorIndex.open(o.index);
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
const IndexOnly = z.object({ index: z.string().min(1), json: z.boolean().default(false) });

// ---- compact -----------------------------------------------------------------------------------

const compactCommand = new Command('compact')
  .description('rebuild the graph from the stored vectors, reclaiming the slots of removed items')
  .addOption(flag(IndexOnly, '--index <dir>', 'index directory'))
  .addOption(flag(IndexOnly, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(IndexOnly, raw);
    const [{ VectorIndex, STORE_FILE }, { badVectorsMessage }] = await Promise.all([
      import('../index/vector-index.ts'),
      import('../index/errors.ts'),
    ]);
    const index = VectorIndex.open(o.index);
    try {
      const r = index.compact();
      if (o.json) printJson({ ...r, live: index.size });
      else {
        process.stdout.write(`${o.index}: graph points ${r.before} -> ${r.after} in ${r.ms} ms; ${index.size} live\n`);
        for (const w of [...index.opened.damage, ...index.opened.warnings]) process.stdout.write(`  on open: ${w}\n`);
        if (r.badVectors.length) process.stdout.write(`  damage: ${badVectorsMessage(path.join(o.index, STORE_FILE), r.badVectors)}\n`);
      }
      if (r.badVectors.length) process.exitCode = 1;
    } finally {
      index.close();
    }
  });

// ---- info --------------------------------------------------------------------------------------

const infoCommand = new Command('info')
  .description(
    "an index's model, parameters, counts, labels, graph snapshot and files, and what opening it found (opens read-only; `index verify` checks it all)",
  )
  .addOption(flag(IndexOnly, '--index <dir>', 'index directory'))
  .addOption(flag(IndexOnly, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(IndexOnly, raw);
    const [{ VectorIndex }, { corpusOf }] = await Promise.all([import('../index/vector-index.ts'), import('../index/file-list.ts')]);
    const index = VectorIndex.open(o.index, { mode: 'read' });
    try {
      const i = index.info();
      const runs = index.getMeta('runs');
      if (o.json) return void printJson({ ...i, runs });
      const m = i.manifest;
      const out = (line: string) => process.stdout.write(line + '\n');
      out(`index ${o.index}`);
      out(`  model ${m.modelName}, fingerprint ${m.fingerprint}${m.modelPath ? `, at ${path.resolve(o.index, m.modelPath)}` : ''}`);
      out(
        `  corpus submodel ${m.model ? submodelName(m.model, m.ffnDims) : m.ffnDims.join(',')} (ffnDims ${m.ffnDims.join(',')}), ${m.dim}-d, space ${m.space}; HNSW M ${m.M}, efConstruction ${m.efConstruction}, ef ${m.ef}`,
      );
      const described = (c: Record<string, unknown>) => `${c.spec}${c.shard ? ` (shard ${c.shard})` : ''}`;
      const merged = m.corpus.mergedFrom as Record<string, unknown>[] | undefined;
      out(`  corpus ${merged ? `merged from ${merged.map(described).join(', ')}` : described(m.corpus)}`);
      out(`  items: ${i.counts.live} live, ${i.counts.deleted} removed; store seq ${i.storeSeq}`);
      const names = corpusOf(o.index).classNames;
      const labels = Object.entries(i.labels).map(([k, n]) => `${k === '-1' ? 'no label' : (names[Number(k)] ?? k)}: ${n}`);
      if (labels.length) out(`  labels: ${labels.join(', ')}`);
      out(`  graph: ${i.graph.points} points (${i.graph.deletedSlots} removed), capacity ${i.graph.capacity}`);
      out(
        i.snapshot
          ? `  snapshot: seq ${i.snapshot.seq} (${i.snapshot.behind} changes behind the store), ${i.snapshot.bytes} bytes, written ${i.snapshot.writtenAt}`
          : '  snapshot: none usable',
      );
      out(
        `  opened: snapshot ${i.opened.snapshot}${i.opened.reason ? ` (${i.opened.reason})` : ''}${i.opened.rebuilt ? ', graph rebuilt in memory' : ''}, replayed +${i.opened.replayed.added} -${i.opened.replayed.deleted}, ${i.opened.ms} ms`,
      );
      for (const d of i.opened.damage) out(`  damage: ${d}`);
      for (const w of i.opened.warnings) out(`  warning: ${w}`);
      out(
        `  files: ${Object.entries(i.files)
          .map(([f, b]) => `${f} ${b}`)
          .join(', ')}`,
      );
      const last = Array.isArray(runs) ? (runs.at(-1) as Record<string, unknown> | undefined) : undefined;
      if (last) out(`  last build/add (${(runs as unknown[]).length} recorded): ${JSON.stringify(last)}`);
    } finally {
      index.close();
    }
  });

// ---- verify ------------------------------------------------------------------------------------

const VerifyOptions = z.object({
  index: z.string().min(1),
  sample: count(1).default(200),
  minRecall: z.coerce.number().min(0, 'expected a number in 0..1').max(1, 'expected a number in 0..1').optional(),
  full: z.boolean().default(false),
  json: z.boolean().default(false),
});

const verifyCommand = new Command('verify')
  .description(
    "check the index (opens read-only): what opening finds (lost acknowledged writes, a missing or damaged graph snapshot), SQLite's check of the store, every stored vector against its checksum, manifest, store and graph agreeing, and recall@10 of the graph against exact search; exit code 1 when not ok",
  )
  .addOption(flag(VerifyOptions, '--index <dir>', 'index directory'))
  .addOption(flag(VerifyOptions, '--sample <n>', 'stored vectors used as queries for recall@10'))
  .addOption(flag(VerifyOptions, '--min-recall <r>', 'also fail when recall@10 is below r'))
  .addOption(flag(VerifyOptions, '--full', "SQLite's integrity_check (every index against its table; slower) instead of quick_check"))
  .addOption(flag(VerifyOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(VerifyOptions, raw);
    const { verifyDir } = await import('../index/verify.ts');
    const r = verifyDir(o.index, { sampleSize: o.sample, minRecall: o.minRecall, full: o.full });
    if (o.json) printJson(r);
    else {
      const out: string[] = [`${o.index}: ${r.ok ? 'ok' : 'NOT OK'}`];
      if (r.integrity)
        out.push(`  SQLite ${r.integrity.check}: ${r.integrity.faults.length ? `${r.integrity.faults.length} fault(s)` : 'ok'}`);
      if (r.vectors)
        out.push(
          `  vector checksums: ${r.vectors.checked} match, ${r.vectors.bad.length} do not${r.vectors.unchecked ? `, ${r.vectors.unchecked} have none yet` : ''}`,
        );
      const c = r.counts;
      if (c)
        out.push(
          `  manifest live ${c.manifest.live}, removed ${c.manifest.deleted} (as of seq ${c.manifest.seq}); store live ${c.store.live}, removed ${c.store.deleted}; graph ${c.graphPoints} points, ${c.graphLive} live`,
        );
      const q = r.recall;
      if (q)
        out.push(
          `  recall@${q.k} ${q.recallAt10.toFixed(4)} at ef ${q.ef} over ${q.queries} queries; graph ${q.graphQps} queries/s, exact search ${q.exactMs} ms for all`,
        );
      out.push(...r.problems.map((p) => `  problem: ${p}`), ...r.notes.map((n) => `  note: ${n}`));
      process.stdout.write(out.join('\n') + '\n');
    }
    if (!r.ok) process.exitCode = 1;
  });

// ---- recover -----------------------------------------------------------------------------------

const RecoverOptions = z.object({ index: z.string().min(1), acceptLoss: z.boolean().default(false), json: z.boolean().default(false) });

const recoverCommand = new Command('recover')
  .description(
    'after a loss of acknowledged writes (a lost write-ahead log): go on with what the store holds, recording the loss; ids are never handed out twice',
  )
  .addOption(flag(RecoverOptions, '--index <dir>', 'index directory'))
  .addOption(flag(RecoverOptions, '--accept-loss', 'give up the missing changes (without it, only says what is missing)'))
  .addOption(flag(RecoverOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(RecoverOptions, raw);
    const { recoverIndex } = await import('../index/recover.ts');
    const r = recoverIndex(o.index, { acceptLoss: o.acceptLoss });
    if (o.json) return void printJson(r);
    if (!r.after) return void process.stdout.write(`${o.index}: nothing to recover: the store holds every acknowledged change\n`);
    process.stdout.write(
      `${o.index}: recovered from the loss: ${r.loss?.what ?? r.ackedUnreadable}\n` +
        `  the store (new id ${r.after.storeId}) goes on from seq ${r.after.seq} and id ${r.after.maxId} with ${r.after.live} live items; the loss is recorded in its meta key 'losses'\n`,
    );
  });

// ---- merge -------------------------------------------------------------------------------------

const MergeOptions = z.object({ out: z.string().min(1), json: z.boolean().default(false) });

const mergeCommand = new Command('merge')
  .description(
    'join shard indexes built with the same model into one (new ids; content seen twice is kept once); re-running finishes an interrupted merge',
  )
  .addOption(flag(MergeOptions, '--out <dir>', 'the merged index (created, or continued)'))
  .addOption(flag(MergeOptions, '--json', 'print JSON'))
  .argument('<shards...>', 'shard index directories')
  .action(async (shards: string[], raw) => {
    const o = parseOptions(MergeOptions, raw);
    const [{ modelPathFor }, { VectorIndex }, { mergeIndexes }] = await Promise.all([
      import('../index/corpus.ts'),
      import('../index/vector-index.ts'),
      import('../index/merge.ts'),
    ]);
    const manifests = shards.map((d) => readManifest(d));
    const first = manifests[0];
    // The merged index records where the shards' model is, so that `index add` and `serve` find
    // it; mergeIndexes leaves that to its caller. Only when the shards agree on the model:
    // otherwise merge refuses them with the fingerprints named.
    if (first.modelPath && manifests.every((m) => m.fingerprint === first.fingerprint) && !fs.existsSync(path.join(o.out, MANIFEST_FILE))) {
      const { fingerprint, modelName, ffnDims, dim, space, M, efConstruction, ef, model } = first;
      const modelPath = modelPathFor(o.out, path.resolve(shards[0], first.modelPath));
      VectorIndex.create(o.out, {
        fingerprint,
        modelName,
        ffnDims,
        dim,
        space,
        M,
        efConstruction,
        ef,
        model,
        modelPath,
        corpus: { mergedFrom: manifests.map((m) => m.corpus) },
      }).close();
    }
    const r = mergeIndexes(o.out, shards);
    if (o.json) return void printJson(r);
    process.stdout.write(
      markdownTable(
        ['shard', 'live', 'added', 'duplicates'],
        r.shards.map((s) => [s.dir, s.live, s.added, s.duplicates]),
      ) + `\n${r.dir}: ${r.live} live items\n`,
    );
  });

// ---- bench index (under `matvit bench`) ------------------------------------------------------------

const intList = (v: string, ctx: z.RefinementCtx) => {
  const list = csv(v).map(Number);
  if (list.length > 0 && list.every((x) => Number.isInteger(x) && x >= 1)) return list;
  ctx.addIssue({ code: 'custom', message: 'expected a comma-separated list of positive integers' });
  return z.NEVER;
};

const BenchIndexOptions = z.object({
  index: z.string().min(1),
  efConstruction: z.string().default('200,100,64,48').transform(intList),
  ef: z.string().transform(intList).optional(),
  sample: count(1).default(500),
  json: z.boolean().default(false),
});

export const benchIndexCommand = new Command('index')
  .description(
    "insertion time per item, recall@10 and search time per query for several efConstruction (and ef), on the index's own vectors",
  )
  .addOption(flag(BenchIndexOptions, '--index <dir>', 'index directory (read only)'))
  .addOption(flag(BenchIndexOptions, '--ef-construction <list>', 'build breadths to compare'))
  .addOption(flag(BenchIndexOptions, '--ef <list>', "search breadths (default: the index's ef)"))
  .addOption(flag(BenchIndexOptions, '--sample <n>', 'stored items used as queries for recall@10'))
  .addOption(flag(BenchIndexOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(BenchIndexOptions, raw);
    const [{ VectorIndex }, { benchIndex }] = await Promise.all([import('../index/vector-index.ts'), import('../index/bench.ts')]);
    const index = VectorIndex.open(o.index, { mode: 'read' });
    try {
      const r = await benchIndex(index, o.efConstruction, { efs: o.ef, sample: o.sample });
      if (o.json) return void printJson(r);
      process.stdout.write(
        `${o.index}: ${r.items} items, ${r.dim}-d, M ${r.M}; recall@10 over ${r.queries} items against exact search; on this thread\n` +
          markdownTable(
            ['efConstruction', 'insert s', 'us/item', 'ef', 'recall@10', 'us/query'],
            r.rows.flatMap((x) =>
              x.search.map((q) => [
                x.efConstruction,
                x.insertSeconds.toFixed(1),
                x.usPerItem.toFixed(0),
                q.ef,
                q.recallAt10.toFixed(4),
                q.usPerQuery.toFixed(0),
              ]),
            ),
          ) +
          '\n',
      );
    } finally {
      index.close();
    }
  });

export const indexCommand = new Command('index').description('corpus indexes: build, add, remove, compact, info, verify, recover, merge');
for (const cmd of [buildCommand, addCommand, removeCommand, compactCommand, infoCommand, verifyCommand, recoverCommand, mergeCommand])
  indexCommand.addCommand(cmd);
