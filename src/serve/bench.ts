// `matvit bench serve`: HTTP throughput of the service per query encoder, measured with autocannon
// on loopback at a fixed number of connections. The server runs as a child process (`matvit
// serve`), so the load generator does not share its event loop. Each encoder gets a warm-up and
// then `seconds` of load; the queries cycle over corpus images fetched from the server itself, so
// `auto`'s cascade sees a realistic mix of easy and hard queries. Query MFLOPs and escalations
// per point come from the server's /metrics, before and after.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const BIN = fileURLToPath(new URL('../../bin/matvit.js', import.meta.url));

export interface BenchServeOptions {
  index: string;
  model?: string;
  /** Seconds of load per encoder (at least 15 for the figures the issue asks for). */
  seconds?: number;
  connections?: number;
  warmupSeconds?: number;
  encoders?: string[];
  /** Distinct query images to cycle over. */
  images?: number;
  /** More `matvit serve` flags (e.g. --threads 2). */
  serverArgs?: string[];
  log?: (s: string) => void;
}

export interface BenchServeRow {
  encoder: string;
  /** MFLOPs of the encoder (for auto: the mean per query over the run, every encoder that ran). */
  mflops: number;
  fractionOfXl: number;
  qps: number;
  latencyMs: { p50: number; p99: number; mean: number };
  requests: number;
  errors: number;
  non2xx: number;
  escalationRate: number;
}

export interface BenchServe {
  url: string;
  model: string;
  engine: string;
  items: number;
  connections: number;
  seconds: number;
  rows: BenchServeRow[];
  /** s against xl: the QPS ratio, the MFLOPs ratio, and the share of the compute-bound speed-up realized. */
  speedup?: Speedup;
}

export interface Speedup {
  /** QPS(s) / QPS(xl). */
  qps: number;
  /** MFLOPs(xl) / MFLOPs(s): the QPS ratio of a server whose time all goes to the encoder. */
  mflops: number;
  /** (qps - 1) / (mflops - 1): 1 when the whole compute saving becomes throughput, <= 0 when none does. */
  realized: number;
}

/** The summary under bench serve's table, in the table's own figures (s and xl rows). */
export function speedupLine(s: Speedup): string {
  const head = `s vs xl: ${s.qps.toFixed(2)}x the QPS at 1/${s.mflops.toFixed(2)} of the MFLOPs per query`;
  if (s.qps <= 1)
    return `${head}: s is not faster in this run, so the encoder is not what limits its throughput (decoding, HTTP, search or other load on the machine is)`;
  return `${head}: ${(100 * s.realized).toFixed(0)}% of the ${s.mflops.toFixed(2)}x a compute-bound server would reach`;
}

interface Child {
  url: string;
  stop(): Promise<number | null>;
}

/** Starts `matvit serve --port 0` and resolves with its URL once /readyz answers 200. */
async function startChild(opts: BenchServeOptions): Promise<Child> {
  const args = [
    BIN,
    'serve',
    '--index',
    opts.index,
    '--port',
    '0',
    '--log-level',
    'warn',
    ...(opts.model ? ['--model', opts.model] : []),
    ...(opts.serverArgs ?? []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    exited.then((code) => reject(new Error(`matvit serve exited (${code}) before listening:\n${stderr}`)));
  });
  child.stderr!.resume();
  for (let i = 0; ; i++) {
    const r = await fetch(`${url}/readyz`).catch(() => null);
    if (r?.ok) break;
    if (i > 600) throw new Error(`${url}/readyz did not answer 200 within 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Sum of every series of a metric in Prometheus text format. */
function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface IndexInfo {
  model: { name: string };
  engine: string;
  index: { counts: { live: number; deleted: number } };
  xlMflops: number;
  menu: { name: string; mflops: number }[];
}

/** Corpus images fetched by id, spread over the id range. */
async function queryImages(url: string, info: IndexInfo, n: number): Promise<{ bytes: Buffer; type: string }[]> {
  const maxId = info.index.counts.live + info.index.counts.deleted;
  const out: { bytes: Buffer; type: string }[] = [];
  for (let j = 0; j < Math.min(n * 4, maxId) && out.length < n; j++) {
    const id = 1 + Math.floor((j * maxId) / Math.min(n * 4, maxId));
    const r = await fetch(`${url}/v1/items/${id}/image`);
    if (r.ok) out.push({ bytes: Buffer.from(await r.arrayBuffer()), type: r.headers.get('content-type') ?? 'image/png' });
  }
  if (out.length === 0)
    throw new Error(`${url}: no corpus image could be fetched (GET /v1/items/:id/image); the bench queries with corpus images`);
  return out;
}

export async function benchServe(opts: BenchServeOptions): Promise<BenchServe> {
  const seconds = opts.seconds ?? 15;
  const connections = opts.connections ?? 8;
  const warmup = opts.warmupSeconds ?? 2;
  const encoders = opts.encoders ?? ['s', 'm', 'l', 'xl', 'auto'];
  const log = opts.log ?? (() => {});
  log('starting matvit serve');
  const child = await startChild(opts);
  try {
    const { url } = child;
    const info = (await (await fetch(`${url}/v1/index`)).json()) as IndexInfo;
    const images = await queryImages(url, info, opts.images ?? 64);
    const run = (encoder: string, duration: number) => {
      let i = 0;
      return autocannon({
        url,
        connections,
        duration,
        timeout: 30,
        requests: [
          {
            method: 'POST',
            path: `/v1/search?encoder=${encodeURIComponent(encoder)}&k=10`,
            setupRequest: (req) => {
              const img = images[i++ % images.length];
              return { ...req, headers: { 'content-type': img.type }, body: img.bytes };
            },
          },
        ],
      });
    };
    const scrape = async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return {
        searches: metricSum(text, 'matvit_search_requests_total'),
        mflops: metricSum(text, 'matvit_query_mflops_total'),
        escalations: metricSum(text, 'matvit_escalations_total'),
      };
    };
    const rows: BenchServeRow[] = [];
    // The first point would otherwise also pay for the server's JIT warm-up.
    if (warmup > 0) await run(encoders[0], warmup);
    for (const encoder of encoders) {
      log(`${encoder}: ${warmup} s warm-up, ${seconds} s at ${connections} connections`);
      if (warmup > 0) await run(encoder, warmup);
      const before = await scrape();
      const r = await run(encoder, seconds);
      const after = await scrape();
      const searches = after.searches - before.searches;
      const mflops = searches > 0 ? (after.mflops - before.mflops) / searches : (info.menu.find((m) => m.name === encoder)?.mflops ?? NaN);
      rows.push({
        encoder,
        mflops,
        fractionOfXl: mflops / info.xlMflops,
        qps: r['2xx'] / r.duration,
        latencyMs: { p50: r.latency.p50, p99: r.latency.p99, mean: r.latency.mean },
        requests: r['2xx'],
        errors: r.errors,
        non2xx: r.non2xx,
        escalationRate: searches > 0 ? (after.escalations - before.escalations) / searches : 0,
      });
    }
    const s = rows.find((r) => r.encoder === 's'),
      xl = rows.find((r) => r.encoder === 'xl');
    const speedup =
      s && xl
        ? { qps: s.qps / xl.qps, mflops: xl.mflops / s.mflops, realized: (s.qps / xl.qps - 1) / (xl.mflops / s.mflops - 1) }
        : undefined;
    return { url, model: info.model.name, engine: info.engine, items: info.index.counts.live, connections, seconds, rows, speedup };
  } finally {
    const code = await child.stop();
    if (code !== 0) log(`matvit serve exited with code ${code}`);
  }
}
