// `matvit index enqueue | worker | collect | status`: indexing spread over machines through a
// BullMQ queue on Redis (src/queue/). Workers and the collector log JSON lines with pino on stderr
// (with the progress bar, when stderr is a terminal); stdout gets the final summary.
import { Command } from 'commander';
import { z } from 'zod';
import { DEFAULT_PIXEL_LIMIT } from '../data/limits.ts';
import { DEFAULT_SNAPSHOT_EVERY } from '../index/pipeline-defaults.ts';
import { QueueSettings } from '../queue/redis.ts';
import { UsageError, flag, modelDir, parseOptions, printJson, submodelOption } from './common.ts';
import { NewIndex, count, lanceParamsOf, newIndexAt, parsedFlag, withNewIndex } from './index-flags.ts';
import { phaseBar } from './progress.ts';

const QUEUE_HELP = 'the queue: redis://HOST:PORT/NAME (every process of one indexing run names the same)';
const queueUrl = z.string().min(1);

async function address(url: string) {
  const { parseQueueUrl } = await import('../queue/redis.ts');
  return parsedFlag('--queue', url, parseQueueUrl);
}

/**
 * A pino logger on stderr, and an AbortSignal that SIGINT/SIGTERM trigger: the process finishes its
 * current job and stops. A second signal exits at once (a job it held comes back to the queue when
 * its lock expires), for a stop that cannot finish, e.g. while Redis is unreachable.
 */
async function runtime(name: string) {
  const { pino } = await import('pino');
  const log = pino({ name, level: process.env.LOG_LEVEL ?? 'info' }, pino.destination(2));
  const ac = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.on(sig, () => {
      if (ac.signal.aborted) process.exit(sig === 'SIGINT' ? 130 : 143);
      log.info({ signal: sig }, 'stopping after the current job (a second signal stops at once)');
      ac.abort();
    });
  return { log, signal: ac.signal };
}

// ---- enqueue -------------------------------------------------------------------------------------

const EnqueueOptions = z.object({
  queue: queueUrl,
  data: z.string().min(1),
  index: z.string().min(1).optional(),
  ...NewIndex,
  model: modelDir.optional(),
  granularity: z.string().optional(),
  batch: count(1).optional(),
  attempts: count(1).optional(),
  backoffMs: count(0).optional(),
  lockDurationMs: count(100).optional(),
  stalledIntervalMs: count(100).optional(),
  maxStalledCount: count(0).optional(),
  progress: z.boolean().default(true),
  json: z.boolean().default(false),
});
const E = EnqueueOptions;
export const enqueueCommand = withNewIndex(
  new Command('enqueue')
    .description('add one encode job per batch of corpus items (references and sha256, not pixels); enqueueing again adds nothing')
    .addOption(flag(E, '--queue <url>', QUEUE_HELP))
    .addOption(flag(E, '--data <spec>', 'dataset spec, as for index build; workers must see it at the same path'))
    .addOption(flag(E, '--index <dir>', 'the index the collector writes; items it holds are left out')),
  E,
  '--index',
)
  .addOption(flag(E, '--model <dir>', 'create the index with this checkpoint when --index holds none'))
  .addOption(flag(E, '--granularity <g>', 'with --model: the corpus submodel of a new index (default xl)'))
  .addOption(flag(E, '--batch <n>', 'items per job (default: 256 for small inputs, 32 for 224x224)'))
  .addOption(flag(QueueSettings, '--attempts <n>', 'tries per job before it is kept as failed'))
  .addOption(flag(QueueSettings, '--backoff-ms <ms>', 'first retry delay, doubled at each retry'))
  .addOption(flag(QueueSettings, '--lock-duration-ms <ms>', "a job's lock: a job whose worker died is taken again after it expires"))
  .addOption(flag(QueueSettings, '--stalled-interval-ms <ms>', 'how often workers look for expired locks'))
  .addOption(flag(QueueSettings, '--max-stalled-count <n>', 'times a job may lose its worker before it fails'))
  .addOption(flag(E, '--no-progress', 'no progress bar'))
  .addOption(flag(E, '--json', 'print the summary as JSON'))
  .action(async (raw) => {
    const o = parseOptions(EnqueueOptions, raw);
    const index = newIndexAt(o, o.index, '--index');
    const a = await address(o.queue);
    const [fs, path, { enqueue }, { defaultBatch }, { isUri }, { openIndex }] = await Promise.all([
      import('node:fs'),
      import('node:path'),
      import('../queue/enqueue.ts'),
      import('../index/pipeline.ts'),
      import('../index/lance-tables.ts'),
      import('../index/open-store.ts'),
    ]);
    let model;
    // An object-storage URI is asked whether it holds an index by opening (or creating) it.
    if (isUri(index) ? o.model : !fs.existsSync(path.join(index, 'manifest.json'))) {
      if (!o.model) throw new UsageError(`--index ${index} holds no index: give --model DIR to create it`);
      const [{ loadCheckpoint }, { openBuildIndex }, { parseDatasetSpec }] = await Promise.all([
        import('../model/checkpoint.ts'),
        import('../index/build.ts'),
        import('../data/dataset.ts'),
      ]);
      const checkpoint = loadCheckpoint(o.model);
      const sub = submodelOption(checkpoint.meta.model, o);
      const lance = lanceParamsOf(o);
      openBuildIndex(
        { checkpoint, modelDir: o.model, out: index, store: o.store, lance },
        sub.ffnDims,
        await parseDatasetSpec(o.data),
      ).close();
      model = checkpoint.meta.model;
    } else if (isUri(index)) {
      const opened = openIndex(index, { mode: 'read' });
      model = opened.info().manifest.model;
      opened.close();
    } else model = (await import('../index/manifest.ts')).readManifest(index).model;
    const bar = o.progress ? phaseBar() : undefined;
    const settings = {
      attempts: o.attempts,
      backoffMs: o.backoffMs,
      lockDurationMs: o.lockDurationMs,
      stalledIntervalMs: o.stalledIntervalMs,
      maxStalledCount: o.maxStalledCount,
    };
    let s;
    try {
      s = await enqueue({
        address: a,
        data: o.data,
        index,
        batch: o.batch ?? (model ? defaultBatch(model) : 32),
        settings: Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined)),
        onProgress: bar && ((done, total) => bar.update('hash', done, total, 'img')),
      });
    } finally {
      bar?.stop();
    }
    if (o.json) return void printJson(s);
    process.stdout.write(
      `${s.queue}: ${s.jobs.added} job${s.jobs.added === 1 ? '' : 's'} added (${s.enqueued} items of ${s.items} in ${s.data}), ${s.jobs.existing} already queued; ${s.alreadyIndexed} already indexed, ${s.duplicates} duplicates; ${s.seconds.toFixed(1)} s\n`,
    );
  });

// ---- worker --------------------------------------------------------------------------------------

const WorkerOptions = z.object({
  queue: queueUrl,
  model: modelDir,
  concurrency: count(1).default(2),
  workers: count(1).default(1),
  threads: count(1).default(1),
  maxPixels: count(1).default(DEFAULT_PIXEL_LIMIT),
  drain: z.boolean().default(false),
  progress: z.boolean().default(true),
  json: z.boolean().default(false),
});
const W = WorkerOptions;
export const workerCommand = new Command('worker')
  .description("take encode jobs: read and embed their images with the index's corpus submodel, and hand the embeddings to the collector")
  .addOption(flag(W, '--queue <url>', QUEUE_HELP))
  .addOption(flag(W, '--model <dir>', "the index's model (its fingerprint must match the queue's)"))
  .addOption(flag(W, '--concurrency <n>', 'jobs at once (one decoding while another embeds)'))
  .addOption(flag(W, '--workers <n>', 'ONNX Runtime worker threads, each embedding whole batches'))
  .addOption(flag(W, '--threads <n>', 'intra-op threads per ONNX worker'))
  .addOption(flag(W, '--max-pixels <n>', 'refuse images of more pixels, a decompression-bomb guard'))
  .addOption(flag(W, '--drain', 'exit once the queue holds no encode job'))
  .addOption(flag(W, '--no-progress', 'no progress bar'))
  .addOption(flag(W, '--json', 'print the summary as JSON'))
  .action(async (raw) => {
    const o = parseOptions(WorkerOptions, raw);
    const a = await address(o.queue);
    const [{ loadCheckpoint }, { runWorker }] = await Promise.all([import('../model/checkpoint.ts'), import('../queue/worker.ts')]);
    const { log, signal } = await runtime('worker');
    const bar = o.progress ? phaseBar() : undefined;
    let s;
    try {
      s = await runWorker({
        ...o,
        address: a,
        checkpoint: loadCheckpoint(o.model),
        log,
        signal,
        onProgress: bar && ((p) => bar.update('encode', p.embedded, p.embedded, 'img', `jobs ${p.jobs}, skipped ${p.skipped}`)),
      });
    } finally {
      bar?.stop();
    }
    if (o.json) return void printJson(s);
    process.stdout.write(
      `${a.url}: ${s.jobs} jobs, ${s.embedded} images embedded, ${s.skipped} skipped; ${(s.elapsedMs / 1000).toFixed(1)} s, ${s.imgPerSec.toFixed(0)} img/s; ${s.engine}\n`,
    );
  });

// ---- collect -------------------------------------------------------------------------------------

const CollectOptions = z.object({
  queue: queueUrl,
  index: z.string().min(1),
  snapshotEvery: count(0).default(DEFAULT_SNAPSHOT_EVERY),
  listLimit: count(0).default(1000),
  drain: z.boolean().default(false),
  progress: z.boolean().default(true),
  json: z.boolean().default(false),
});
const C = CollectOptions;
export const collectCommand = new Command('collect')
  .description('the one writer: commit the embeddings workers hand over into the index, each job once, acknowledged after the commit')
  .addOption(flag(C, '--queue <url>', QUEUE_HELP))
  .addOption(flag(C, '--index <dir>', 'the index enqueue created or named: a directory, or a LanceDB URI'))
  .addOption(flag(C, '--snapshot-every <n>', 'write the graph snapshot every N commits; 0: only at the end'))
  .addOption(flag(C, '--list-limit <n>', 'skipped items the summary lists one by one (all are counted)'))
  .addOption(flag(C, '--drain', 'exit once no encode or commit job is left'))
  .addOption(flag(C, '--no-progress', 'no progress bar'))
  .addOption(flag(C, '--json', 'print the summary as JSON'))
  .action(async (raw) => {
    const o = parseOptions(CollectOptions, raw);
    const a = await address(o.queue);
    const { runCollector } = await import('../queue/collector.ts');
    const { log, signal } = await runtime('collector');
    const bar = o.progress ? phaseBar() : undefined;
    let s;
    try {
      s = await runCollector({
        ...o,
        address: a,
        log,
        signal,
        onProgress:
          bar &&
          ((p) =>
            bar.update('commit', p.done, p.enqueued, 'img', `added ${p.added}, already indexed ${p.alreadyIndexed}, skipped ${p.skipped}`)),
      });
    } finally {
      bar?.stop();
    }
    if (o.json) return void printJson(s);
    const out = (line: string) => process.stdout.write(line + '\n');
    out(
      `${s.index}: ${s.commits} commits from ${s.queue}: added ${s.added}, already indexed ${s.alreadyIndexed}, skipped ${s.skipped}; ${s.live} live items`,
    );
    out(`  ${(s.elapsedMs / 1000).toFixed(1)} s, ${s.imgPerSec.toFixed(0)} img/s, ${s.snapshots} snapshots`);
    for (const k of s.skippedItems) out(`  skipped ${k.source} (${k.spec}): ${k.reason}: ${k.message}`);
  });

// ---- status --------------------------------------------------------------------------------------

const StatusOptions = z.object({ queue: queueUrl, json: z.boolean().default(false) });
export const statusCommand = new Command('status')
  .description('jobs waiting, active, done and failed, images committed, img/s and ETA of a queue')
  .addOption(flag(StatusOptions, '--queue <url>', QUEUE_HELP))
  .addOption(flag(StatusOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(StatusOptions, raw);
    const a = await address(o.queue);
    const { queueStatus } = await import('../queue/status.ts');
    const s = await queueStatus(a);
    if (o.json) return void printJson(s);
    const out = (line: string) => process.stdout.write(line + '\n');
    const jobs = (c: typeof s.encode) =>
      `waiting ${c.waiting}, active ${c.active}, delayed ${c.delayed}, done ${c.completed}, failed ${c.failed}`;
    out(`${s.queue}: index ${s.index}, model ${s.model}`);
    out(`  encode jobs: ${jobs(s.encode)}`);
    out(`  commit jobs: ${jobs(s.commit)}`);
    const eta = s.etaSeconds === null ? '?' : `${Math.round(s.etaSeconds)} s`;
    out(`  images: ${s.committed} committed (${s.live} live), ${s.done} of ${s.enqueued} done; ${s.imgPerSec ?? '?'} img/s, ETA ${eta}`);
    for (const f of s.failed) out(`  failed ${f.queue} job ${f.id} after ${f.attempts} attempts: ${f.error}`);
    out(
      `  skipped ${s.skipped.count}${
        s.skipped.count
          ? ` (${Object.entries(s.skipped.byReason)
              .map(([r, n]) => `${r} ${n}`)
              .join(', ')})`
          : ''
      }`,
    );
    for (const k of s.skipped.items) out(`  skipped ${k.source}: ${k.reason}: ${k.message}`);
  });
