// Commands of the search service: serve, calibrate, bench serve.
import { Command } from 'commander';
import { pino } from 'pino';
import { z } from 'zod';
import { parseDatasetSpec } from '../data/dataset.ts';
import { ENGINES, createEncoder } from '../engine/encoder.ts';
import { openCorpus } from '../index/corpus.ts';
import { type RowMetrics, calibrate, evaluateStored } from '../serve/calibrate.ts';
import { benchServe } from '../serve/bench.ts';
import { ServeConfig, type ServeConfigInput } from '../serve/config.ts';
import { startServer } from '../serve/server.ts';
import { csv, parseOptions, printJson } from './common.ts';
import { phaseBar } from './progress.ts';
import { markdownTable } from '../util/format.ts';

const int = z.coerce.number().int();
/** The service defaults, for the help texts (they live in the schema only). */
const D = ServeConfig.parse({});

const ServeOptions = z.object({
  index: z.string().min(1),
  model: z.string().min(1).optional(),
  port: int.min(0).max(65535).default(8080),
  host: z.string().min(1).default('127.0.0.1'),
  engine: z.enum(ENGINES).default('onnx'),
  threads: int.positive().optional(),
  maxWaitMs: z.coerce.number().nonnegative().optional(),
  maxBatch: int.positive().optional(),
  maxQueue: int.positive().optional(),
  maxImageMb: z.coerce.number().positive().optional(),
  p95Ms: z.coerce.number().positive().optional(),
  queueTarget: int.positive().optional(),
  loadShedding: z.boolean().default(true),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

/** The service config from the flags given; everything else keeps the schema's defaults. */
function serveConfig(o: z.infer<typeof ServeOptions>): ServeConfigInput {
  const defined = <T extends object>(x: T) => Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined));
  return {
    ...(o.maxImageMb !== undefined && { maxImageBytes: Math.round(o.maxImageMb * 1024 * 1024) }),
    batch: defined({ maxWaitMs: o.maxWaitMs, maxBatch: o.maxBatch, maxQueue: o.maxQueue }),
    load: defined({ enabled: o.loadShedding, p95Ms: o.p95Ms, queueDepth: o.queueTarget }),
    defaultMetrics: true,
  };
}

export const serveCommand = new Command('serve')
  .description('serve image search over an index: HTTP API (/v1/search, /v1/index, /v1/items), web page at /, /metrics; writes need MATVIT_ADMIN_TOKEN')
  .requiredOption('--index <dir>', 'index directory')
  .option('--model <dir>', "model checkpoint (default: the index manifest's modelPath); another fingerprint is refused")
  .option('--port <n>', 'port (0: any free one)', '8080')
  .option('--host <addr>', 'address to listen on', '127.0.0.1')
  .option('--engine <name>', `engine: ${ENGINES.join(', ')}`, 'onnx')
  .option('--threads <n>', 'engine threads (default: every core)')
  .option('--max-wait-ms <ms>', `micro-batching: longest wait for companions of a query (default ${D.batch.maxWaitMs})`)
  .option('--max-batch <n>', `micro-batching: images per engine call (default ${D.batch.maxBatch})`)
  .option('--max-queue <n>', `images waiting for the engine before 503 (default ${D.batch.maxQueue})`)
  .option('--max-image-mb <mb>', `largest image accepted (default ${D.maxImageBytes / 1024 / 1024})`)
  .option('--p95-ms <ms>', `auto steps down to smaller encoders above this p95 latency (default ${D.load.p95Ms})`)
  .option('--queue-target <n>', `auto steps down above this many waiting images (default ${D.load.queueDepth})`)
  .option('--no-load-shedding', 'auto never steps down under load')
  .option('--log-level <level>', 'pino log level', 'info')
  .action(async (raw) => {
    const o = parseOptions(ServeOptions, raw);
    const log = pino({ level: o.logLevel });
    const adminToken = process.env.MATVIT_ADMIN_TOKEN || undefined;
    const s = await startServer({
      index: o.index, model: o.model, port: o.port, host: o.host, engine: o.engine, engineOptions: { threads: o.threads },
      config: serveConfig(o), adminToken, log, handleSignals: true,
    });
    const info = s.service.info();
    process.stderr.write(
      `matvit serve: listening on ${s.url} (index ${o.index}: ${info.index.counts.live} items, model ${info.model.name}, ${info.engine}; ` +
        `auto: ${info.policy.auto[0]}; writes ${adminToken ? 'enabled' : 'disabled (set MATVIT_ADMIN_TOKEN)'})\n`,
    );
    await s.warm;
  });

const CalibrateOptions = z.object({
  index: z.string().min(1),
  model: z.string().min(1).optional(),
  queries: z.string().min(1),
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
  rows.map((r) => [r.name, pct(r.accuracy), pct(r.precisionAt10), pct(r.recallAt10), r.mflopsFraction.toFixed(3), pct(r.escalationRate), r.queries]);
const METRIC_HEADER = ['encoder', '1-NN acc', 'P@10', 'R@10 vs XL', 'MFLOPs / XL', 'escalated', 'queries'];

export const calibrateCommand = new Command('calibrate')
  .description("choose auto's cascade thresholds on held-out labelled queries (within --tolerance of always-XL at the least query MFLOPs) and store them with the index")
  .requiredOption('--index <dir>', 'index directory')
  .option('--model <dir>', "model checkpoint (default: the index manifest's modelPath)")
  .requiredOption('--queries <spec>', 'held-out queries (dataset spec, e.g. fashion-mnist:train[55000:]); never items of the index')
  .option('--tolerance <x>', 'allowed drop of 1-NN accuracy and precision@10 against always-XL (0.005 = 0.5 pt)', '0.005')
  .option('--min-recall <x>', 'without labels: least recall@10 against the XL queries\' neighbours', '0.95')
  .option('--k <n>', 'neighbours the confidence (and P@k, R@k) is computed on', '10')
  .option('--candidates <names>', 'first-stage encoders to consider (default: every menu entry cheaper than the corpus submodel)')
  .option('--eval <spec>', 'then report the stored cascade on these queries (e.g. fashion-mnist:test)')
  .option('--engine <name>', `engine: ${ENGINES.join(', ')}`, 'onnx')
  .option('--batch <n>', 'batch size', '64')
  .option('--json', 'print JSON')
  .action(async (raw) => {
    const o = parseOptions(CalibrateOptions, raw);
    const corpus = openCorpus(o.index, { model: o.model });
    const encoder = await createEncoder(o.engine, corpus.checkpoint.meta.model, corpus.checkpoint.weights);
    try {
      const ds = await parseDatasetSpec(o.queries);
      const bar = phaseBar();
      const r = await calibrate(corpus, encoder, ds, { tolerance: o.tolerance, minRecall: o.minRecall, k: o.k, batchSize: o.batch, candidates: o.candidates ? csv(o.candidates) : undefined, onProgress: o.json ? undefined : (done, total) => bar.update('calibrating', done, total, 'queries') });
      bar.stop();
      let evaluation;
      if (o.eval && r.cascade) {
        const bar2 = phaseBar();
        evaluation = await evaluateStored(corpus, encoder, await parseDatasetSpec(o.eval), { batchSize: o.batch, onProgress: o.json ? undefined : (done, total) => bar2.update('evaluating', done, total, 'queries') });
        bar2.stop();
      }
      if (o.json) return void printJson({ ...r, evaluation });
      const w = (s: string) => process.stdout.write(s + '\n');
      if (r.inIndex > 0) w(`note: ${r.inIndex} queries are items of the index: each was searched without its own item (leave-one-out)`);
      w(`calibrated on ${o.queries} (${r.reference.queries} queries${r.skipped ? `, ${r.skipped} undecodable skipped` : ''}), basis: ${r.basis}, ${r.basis === 'labels' ? `tolerance ${o.tolerance}` : `min recall@10 ${o.minRecall}`}`);
      w(markdownTable(METRIC_HEADER, metricRows([...r.submodels, ...(r.cascade ? [r.chosen] : [])])));
      if (r.cascade) {
        const rule = r.cascade.rules[0];
        w(`cascade: ${r.cascade.stages.map((s) => s.name).join(' -> ')}, escalate when ${[rule.agreement !== undefined && `agreement@${r.cascade.k} < ${rule.agreement.toFixed(3)}`, rule.margin !== undefined && `margin@${r.cascade.k} < ${rule.margin.toFixed(5)}`].filter(Boolean).join(' or ')}`);
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
  model: z.string().min(1).optional(),
  seconds: z.coerce.number().positive().default(15),
  warmup: z.coerce.number().nonnegative().default(2),
  connections: int.positive().default(8),
  encoders: z.string().default('s,m,l,xl,auto'),
  threads: int.positive().optional(),
  json: z.boolean().default(false),
});

export const benchServeCommand = new Command('serve')
  .description('HTTP QPS and p50/p99 latency per query encoder (autocannon on loopback against a child `matvit serve`, fixed connections)')
  .requiredOption('--index <dir>', 'index directory')
  .option('--model <dir>', 'model checkpoint (default: the manifest\'s modelPath)')
  .option('--seconds <n>', 'seconds of load per encoder', '15')
  .option('--warmup <n>', 'seconds of warm-up load per encoder', '2')
  .option('--connections <n>', 'concurrent connections', '8')
  .option('--encoders <list>', 'encoders to measure', 's,m,l,xl,auto')
  .option('--threads <n>', "the server's engine threads")
  .option('--json', 'print JSON')
  .action(async (raw) => {
    const o = parseOptions(BenchServeOptions, raw);
    const r = await benchServe({
      index: o.index, model: o.model, seconds: o.seconds, warmupSeconds: o.warmup, connections: o.connections, encoders: csv(o.encoders),
      serverArgs: o.threads ? ['--threads', String(o.threads)] : [], log: (s) => process.stderr.write(`${s}\n`),
    });
    if (o.json) return void printJson(r);
    process.stdout.write(`${r.model} on ${r.engine}; ${r.items} items; ${r.connections} connections, ${r.seconds} s per encoder\n`);
    process.stdout.write(
      markdownTable(
        ['encoder', 'MFLOPs/query', 'of XL', 'QPS', 'p50 ms', 'p99 ms', 'escalated', 'errors'],
        r.rows.map((x) => [x.encoder, x.mflops.toFixed(2), x.fractionOfXl.toFixed(3), x.qps.toFixed(1), x.latencyMs.p50.toFixed(1), x.latencyMs.p99.toFixed(1), `${(100 * x.escalationRate).toFixed(1)}%`, x.errors + x.non2xx]),
      ) + '\n',
    );
    if (r.speedup) process.stdout.write(`QPS(s)/QPS(xl) = ${r.speedup.qps.toFixed(2)}, MFLOPs(xl)/MFLOPs(s) = ${r.speedup.mflops.toFixed(2)}: ${(100 * r.speedup.ratio).toFixed(0)}% of the compute saving becomes throughput\n`);
  });

/** Registers serve, calibrate and bench serve (main.ts calls this). */
export function addServeCommands(program: Command, bench: Command): void {
  for (const cmd of [serveCommand, calibrateCommand]) program.addCommand(cmd.exitOverride());
  bench.addCommand(benchServeCommand.exitOverride());
}
