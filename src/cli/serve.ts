// Commands of the search service: serve, calibrate, bench serve. Service defaults live in
// serve/config.ts only; the flags below take theirs from it.
import { Command } from 'commander';
import { z } from 'zod';
import { ENGINES } from '../engine/types.ts';
import type { RowMetrics } from '../serve/calibrate.ts';
import { ServeConfig, type ServeConfigInput } from '../serve/config.ts';
import { UsageError, csv, flag, modelDir, parseOptions, printJson } from './common.ts';
import { markdownTable } from '../util/format.ts';

const int = z.coerce.number().int();
/** The service defaults (serve/config.ts), which the serve flags' own defaults are. */
const D = ServeConfig.parse({});

const ServeOptions = z.object({
  index: z.string().min(1),
  model: modelDir.optional(),
  port: int.min(0).max(65535).default(8080),
  host: z.string().min(1).default('127.0.0.1'),
  engine: z.enum(ENGINES).default('onnx'),
  threads: int.positive().optional(),
  maxWaitMs: z.coerce.number().nonnegative().default(D.batch.maxWaitMs),
  maxBatch: int.positive().default(D.batch.maxBatch),
  maxQueue: int.positive().default(D.batch.maxQueue),
  maxImageMb: z.coerce
    .number()
    .positive()
    .default(D.maxImageBytes / 1024 / 1024),
  p95Ms: z.coerce.number().positive().default(D.load.p95Ms),
  queueTarget: int.positive().default(D.load.queueDepth),
  loadShedding: z.boolean().default(D.load.enabled),
  customWidths: z.boolean().default(D.sessions.customWidths),
  customSessions: int.positive().default(D.sessions.customSessions),
  readOnly: z.boolean().default(false),
  refreshMs: int.nonnegative().default(D.refreshMs),
  indexCacheMb: z.coerce.number().positive().optional(),
  cors: z.string().optional(),
  rateLimit: int.positive().optional(),
  maxBatchQueries: int.positive().default(D.searchBatch.maxQueries),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** The service config from the flags. */
function serveConfig(o: z.infer<typeof ServeOptions>): ServeConfigInput {
  return {
    maxImageBytes: Math.round(o.maxImageMb * 1024 * 1024),
    batch: { maxWaitMs: o.maxWaitMs, maxBatch: o.maxBatch, maxQueue: o.maxQueue },
    load: { enabled: o.loadShedding, p95Ms: o.p95Ms, queueDepth: o.queueTarget },
    sessions: { customWidths: o.customWidths, customSessions: o.customSessions },
    defaultMetrics: true,
    refreshMs: o.refreshMs,
    cors: o.cors ? csv(o.cors) : [],
    rateLimit: o.rateLimit ? { limit: o.rateLimit } : undefined,
    searchBatch: { maxQueries: o.maxBatchQueries },
  };
}

const S = ServeOptions;
export const serveCommand = new Command('serve')
  .description(
    'serve image search over an index: HTTP API (/v1/search, /v1/index, /v1/items), web page at /, /metrics; writes need MATVIT_ADMIN_TOKEN',
  )
  .addOption(flag(S, '--index <dir>', 'index directory'))
  .addOption(flag(S, '--model <dir>', "model checkpoint (default: the index manifest's modelPath); another fingerprint is refused"))
  .addOption(flag(S, '--port <n>', 'port (0: any free one)'))
  .addOption(flag(S, '--host <addr>', 'address to listen on'))
  .addOption(flag(S, '--engine <name>', `engine: ${ENGINES.join(', ')}`))
  .addOption(flag(S, '--threads <n>', 'engine threads (default: every core)'))
  .addOption(flag(S, '--max-wait-ms <ms>', 'micro-batching: longest wait for companions of a query'))
  .addOption(flag(S, '--max-batch <n>', 'micro-batching: images per engine call'))
  .addOption(flag(S, '--max-queue <n>', 'images waiting for the engine before 503'))
  .addOption(flag(S, '--max-image-mb <mb>', 'largest image accepted'))
  .addOption(flag(S, '--p95-ms <ms>', 'auto steps down to smaller encoders above this p95 latency'))
  .addOption(flag(S, '--queue-target <n>', 'auto steps down above this many waiting images'))
  .addOption(flag(S, '--no-load-shedding', 'auto never steps down under load'))
  .addOption(
    flag(
      S,
      '--custom-sessions <n>',
      'engine sessions kept for FFN widths outside the menu, least recently used released first (each holds a copy of the weights)',
    ),
  )
  .addOption(flag(S, '--no-custom-widths', 'refuse FFN widths outside the menu (ffnDims, encoder=a,b,...) with 400'))
  .addOption(flag(S, '--read-only', 'open the index read-only: a replica of an index another process writes (writes answer 503)'))
  .addOption(flag(S, '--refresh-ms <ms>', 'pick up what another process committed every this many ms (0: never)'))
  .addOption(
    flag(S, '--index-cache-mb <mb>', "LanceDB index: bound on this process's cache of ANN index partitions (default: LanceDB's, 6 GB)"),
  )
  .addOption(flag(S, '--cors <origins>', "comma-separated origins whose pages may call the API ('*': any); default: same origin only"))
  .addOption(
    flag(S, '--rate-limit <n>', 'requests per minute per client address, then 429 (health checks and metrics exempt); default: none'),
  )
  .addOption(flag(S, '--max-batch-queries <n>', 'queries per POST /v1/search/batch'))
  .addOption(flag(S, '--log-level <level>', 'pino log level'))
  .action(async (raw) => {
    const o = parseOptions(ServeOptions, raw);
    const [{ pino }, { startServer }] = await Promise.all([import('pino'), import('../serve/server.ts')]);
    const log = pino({ level: o.logLevel });
    const adminToken = process.env.MATVIT_ADMIN_TOKEN || undefined;
    const s = await startServer({
      index: o.index,
      model: o.model,
      port: o.port,
      host: o.host,
      engine: o.engine,
      engineOptions: { threads: o.threads },
      readOnly: o.readOnly,
      indexCacheMB: o.indexCacheMb,
      config: serveConfig(o),
      adminToken,
      log,
      handleSignals: true,
    }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE')
        throw new UsageError(
          `--port: ${o.host}:${o.port} is in use (another matvit serve?); choose another port, or --port 0 for any free one`,
        );
      if (e.code === 'EACCES')
        throw new UsageError(
          `--port: not allowed to listen on ${o.host}:${o.port} (ports below 1024 need privileges); choose a port >= 1024`,
        );
      throw e;
    });
    const info = s.service.info();
    const writes = s.service.readOnly ? 'read-only (see the log)' : adminToken ? 'enabled' : 'disabled (set MATVIT_ADMIN_TOKEN)';
    process.stderr.write(
      `matvit serve: listening on ${s.url} (index ${o.index}: ${info.index.counts.live} items, model ${info.model.name}, ${info.engine}; ` +
        `auto: ${info.policy.auto[0]}${info.policy.cascade ? '' : ' (uncalibrated)'}; writes ${writes})\n`,
    );
    await s.warm;
  });

const CalibrateOptions = z.object({
  index: z.string().min(1),
  model: modelDir.optional(),
  queries: z.string().min(1).optional(),
  sample: int.positive().default(5000),
  tolerance: z.coerce.number().min(0).max(1).default(0.005),
  minRecall: z.coerce.number().min(0).max(1).default(0.95),
  k: int.positive().default(10),
  candidates: z.string().optional(),
  eval: z.string().optional(),
  engine: z.enum(ENGINES).default('onnx'),
  batch: int.positive().default(64),
  json: z.boolean().default(false),
});

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(2)}%`);
const metricRows = (rows: RowMetrics[]) =>
  rows.map((r) => [
    r.name,
    pct(r.accuracy),
    pct(r.precisionAt10),
    pct(r.recallAt10),
    r.mflopsFraction.toFixed(3),
    pct(r.escalationRate),
    r.queries,
  ]);
const METRIC_HEADER = ['encoder', '1-NN acc', 'P@10', 'R@10 vs XL', 'MFLOPs / XL', 'escalated', 'queries'];

const C = CalibrateOptions;
export const calibrateCommand = new Command('calibrate')
  .description(
    "choose auto's cascade thresholds on labelled queries (within --tolerance of always-XL at the least query MFLOPs) and store them with the index",
  )
  .addOption(flag(C, '--index <dir>', 'index directory'))
  .addOption(flag(C, '--model <dir>', "model checkpoint (default: the index manifest's modelPath)"))
  .addOption(
    flag(
      C,
      '--queries <spec>',
      "labelled queries (dataset spec, e.g. fashion-mnist:train[55000:]); default: --sample items of the index's own corpus. Queries that are items of the index are searched without themselves (leave-one-out)",
    ),
  )
  .addOption(flag(C, '--sample <n>', "without --queries: how many of the index's corpus items to use (seeded)"))
  .addOption(flag(C, '--tolerance <x>', 'allowed drop of 1-NN accuracy and precision@10 against always-XL (0.005 = 0.5 pt)'))
  .addOption(flag(C, '--min-recall <x>', "without labels: least recall@10 against the XL queries' neighbours"))
  .addOption(flag(C, '--k <n>', 'neighbours the confidence (and P@k, R@k) is computed on'))
  .addOption(
    flag(C, '--candidates <names>', 'first-stage encoders to consider (default: every menu entry cheaper than the corpus submodel)'),
  )
  .addOption(flag(C, '--eval <spec>', 'then report the stored cascade on these queries (e.g. fashion-mnist:test)'))
  .addOption(flag(C, '--engine <name>', `engine: ${ENGINES.join(', ')}`))
  .addOption(flag(C, '--batch <n>', 'batch size'))
  .addOption(flag(C, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(CalibrateOptions, raw);
    const [{ parseDatasetSpec }, { createEncoder }, { openCorpus }, { calibrate, evaluateStored }, { ownItemsSample }, { phaseBar }] =
      await Promise.all([
        import('../data/dataset.ts'),
        import('../engine/encoder.ts'),
        import('../index/corpus.ts'),
        import('../serve/calibrate.ts'),
        import('../serve/queries.ts'),
        import('./progress.ts'),
      ]);
    const corpus = openCorpus(o.index, { model: o.model });
    const encoder = await createEncoder(o.engine, corpus.checkpoint.meta.model, corpus.checkpoint.weights);
    try {
      const ds = o.queries ? await parseDatasetSpec(o.queries) : await ownItemsSample(corpus, o.sample);
      const bar = phaseBar();
      const r = await calibrate(corpus, encoder, ds, {
        tolerance: o.tolerance,
        minRecall: o.minRecall,
        k: o.k,
        batchSize: o.batch,
        candidates: o.candidates ? csv(o.candidates) : undefined,
        onProgress: o.json ? undefined : (done, total) => bar.update('calibrating', done, total, 'queries'),
      });
      bar.stop();
      let evaluation;
      if (o.eval && r.cascade) {
        const bar2 = phaseBar();
        evaluation = await evaluateStored(corpus, encoder, await parseDatasetSpec(o.eval), {
          batchSize: o.batch,
          onProgress: o.json ? undefined : (done, total) => bar2.update('evaluating', done, total, 'queries'),
        });
        bar2.stop();
      }
      if (o.json) return void printJson({ ...r, evaluation });
      const w = (s: string) => process.stdout.write(s + '\n');
      if (r.inIndex > 0) w(`note: ${r.inIndex} queries are items of the index: each was searched without its own item (leave-one-out)`);
      w(
        `calibrated on ${ds.spec} (${r.reference.queries} queries${r.skipped ? `, ${r.skipped} undecodable skipped` : ''}), basis: ${r.basis}, ${r.basis === 'labels' ? `tolerance ${o.tolerance}` : `min recall@10 ${o.minRecall}`}`,
      );
      w(markdownTable(METRIC_HEADER, metricRows([...r.submodels, ...(r.cascade ? [r.chosen] : [])])));
      if (r.cascade) {
        const rule = r.cascade.rules[0];
        w(
          `cascade: ${r.cascade.stages.map((s) => s.name).join(' -> ')}, escalate when ${[rule.agreement !== undefined && `agreement@${r.cascade.k} < ${rule.agreement.toFixed(3)}`, rule.margin !== undefined && `margin@${r.cascade.k} < ${rule.margin.toFixed(5)}`].filter(Boolean).join(' or ')}`,
        );
        w(`stored in ${o.index} (restart matvit serve to use it)`);
      } else w('no cascade is cheaper than always-XL within the tolerance: auto will use the corpus submodel (stored)');
      if (evaluation) {
        w(`\nthe stored cascade on ${o.eval}:`);
        w(markdownTable(METRIC_HEADER, metricRows([evaluation.first, evaluation.reference, evaluation.cascade])));
      }
    } finally {
      await encoder.dispose();
      corpus.index.close();
    }
  });

const BenchServeOptions = z.object({
  index: z.string().min(1),
  model: modelDir.optional(),
  seconds: z.coerce.number().positive().default(15),
  warmup: z.coerce.number().nonnegative().default(2),
  connections: int.positive().default(8),
  encoders: z.string().default('s,m,l,xl,auto'),
  threads: int.positive().optional(),
  json: z.boolean().default(false),
});

const B = BenchServeOptions;
export const benchServeCommand = new Command('serve')
  .description('HTTP QPS and p50/p99 latency per query encoder (autocannon on loopback against a child `matvit serve`, fixed connections)')
  .addOption(flag(B, '--index <dir>', 'index directory'))
  .addOption(flag(B, '--model <dir>', "model checkpoint (default: the manifest's modelPath)"))
  .addOption(flag(B, '--seconds <n>', 'seconds of load per encoder'))
  .addOption(flag(B, '--warmup <n>', 'seconds of warm-up load per encoder'))
  .addOption(flag(B, '--connections <n>', 'concurrent connections'))
  .addOption(flag(B, '--encoders <list>', 'encoders to measure'))
  .addOption(flag(B, '--threads <n>', "the server's engine threads"))
  .addOption(flag(B, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(BenchServeOptions, raw);
    const { benchServe, speedupLine } = await import('../serve/bench.ts');
    const r = await benchServe({
      index: o.index,
      model: o.model,
      seconds: o.seconds,
      warmupSeconds: o.warmup,
      connections: o.connections,
      encoders: csv(o.encoders),
      serverArgs: o.threads ? ['--threads', String(o.threads)] : [],
      log: (s) => process.stderr.write(`${s}\n`),
    });
    if (o.json) return void printJson(r);
    process.stdout.write(`${r.model} on ${r.engine}; ${r.items} items; ${r.connections} connections, ${r.seconds} s per encoder\n`);
    process.stdout.write(
      markdownTable(
        ['encoder', 'MFLOPs/query', 'of XL', 'QPS', 'p50 ms', 'p99 ms', 'escalated', 'errors'],
        r.rows.map((x) => [
          x.encoder,
          x.mflops.toFixed(2),
          x.fractionOfXl.toFixed(3),
          x.qps.toFixed(1),
          x.latencyMs.p50.toFixed(1),
          x.latencyMs.p99.toFixed(1),
          `${(100 * x.escalationRate).toFixed(1)}%`,
          x.errors + x.non2xx,
        ]),
      ) + '\n',
    );
    if (r.speedup) process.stdout.write(speedupLine(r.speedup) + '\n');
  });
