// `scripts/bench-queue.ts`: the queue's overhead, measured in one run on one machine. A local
// `index build` of the corpus, then the same corpus through a private redis-server with 1 and with 2
// workers (each one ONNX thread) plus the collector, as child processes of bin/matvit.js. Workers and
// the collector are started and warm before the clock starts (a running cluster), so the clock
// covers what a user waits for: enqueue (listing and hashing the corpus) to the last commit.
// Bytes through Redis per image are Redis's own counters (INFO stats total_net_input_bytes and
// total_net_output_bytes) over the run, divided by the images committed.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { startRedisServer } from './redis-server.ts';
import { PREFIX, keys } from './redis.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/matvit.js');

export interface BenchQueueOptions {
  model: string;
  data: string;
  /** Items per job (default: the model's default batch). */
  batch?: number;
  workers: number[];
  log?: (line: string) => void;
}

export interface QueueRun {
  workers: number;
  images: number;
  seconds: number;
  imgPerSec: number;
  /** Of `seconds`: the enqueue command (process start, listing and hashing the corpus, adding the jobs). */
  enqueueSeconds: number;
  /** Redis network bytes (in + out) per committed image, and the encode jobs' stored payload per image. */
  netBytesPerImage: number;
  encodeJobBytesPerImage: number;
  redisUsedMemoryMB: number;
}

export interface BenchQueueResult {
  data: string;
  cores: number;
  /** BullMQ's own ceiling here: no-op jobs carrying a commit job's payload, added and taken by one process. */
  ceiling: { jobs: number; payloadBytes: number; jobsPerSec: number };
  local: { images: number; seconds: number; imgPerSec: number };
  runs: QueueRun[];
}

function run(args: string[], stdio: 'pipe' | 'ignore' = 'pipe'): { child: ChildProcess; done: Promise<string>; stderr: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', stdio, 'pipe'] });
  let out = '',
    err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<string>((resolve, reject) =>
    child.once('close', (code, signal) =>
      code === 0 || signal === 'SIGTERM' ? resolve(out) : reject(new Error(`matvit ${args.join(' ')}: exit ${code ?? signal}\n${err}`)),
    ),
  );
  return { child, done, stderr: () => err };
}

/** Resolves once the process has logged `msg` (pino JSON on stderr). */
async function logged(p: ReturnType<typeof run>, msg: string): Promise<void> {
  for (let i = 0; !p.stderr().includes(`"msg":"${msg}"`); i++) {
    if (p.child.exitCode !== null) throw new Error(`exited before "${msg}":\n${p.stderr()}`);
    if (i > 1200) throw new Error(`no "${msg}" within 120 s:\n${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const netBytes = async (c: Redis) => {
  const info = await c.info('stats');
  const get = (k: string) => Number(new RegExp(`${k}:(\\d+)`).exec(info)![1]);
  return get('total_net_input_bytes') + get('total_net_output_bytes');
};

/**
 * Jobs per second through BullMQ and this Redis when the work is nothing: `jobs` jobs of
 * `payloadBytes` added in bulk, then taken by a worker of concurrency 8 that returns at once. What the
 * queue sustains before Redis, not encoding, is the limit (jobs/s x images per job = images/s).
 */
async function ceiling(port: number, jobs: number, payloadBytes: number): Promise<BenchQueueResult['ceiling']> {
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const q = new Queue('ceiling', { connection, prefix: PREFIX });
  const payload = 'x'.repeat(payloadBytes);
  const t0 = performance.now();
  for (let k = 0; k < jobs; k += 50)
    await q.addBulk(
      Array.from({ length: Math.min(50, jobs - k) }, () => ({ name: 'noop', data: { payload }, opts: { removeOnComplete: true } })),
    );
  let done = 0;
  const finished = new Promise<void>((resolve) => {
    const w = new Worker('ceiling', async () => {}, { connection, prefix: PREFIX, concurrency: 8 });
    w.on('completed', () => ++done === jobs && void w.close().then(resolve));
  });
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  await q.obliterate({ force: true });
  await q.close();
  return { jobs, payloadBytes, jobsPerSec: jobs / seconds };
}

export async function benchQueue(o: BenchQueueOptions): Promise<BenchQueueResult> {
  const log = o.log ?? (() => {});
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-bench-queue-'));
  const redis = await startRedisServer();
  const client = new Redis({ host: '127.0.0.1', port: redis.port });
  try {
    const batch = o.batch ? ['--batch', String(o.batch)] : [];
    log(`local index build of ${o.data}`);
    const b = JSON.parse(
      await run([
        'index',
        'build',
        '--model',
        o.model,
        '--data',
        o.data,
        '--out',
        path.join(tmp, 'local'),
        '--no-progress',
        '--json',
        ...batch,
      ]).done,
    ) as { added: number; seconds: number; imgPerSec: number };
    const result: BenchQueueResult = {
      data: o.data,
      cores: os.availableParallelism(),
      ceiling: { jobs: 0, payloadBytes: 0, jobsPerSec: 0 },
      local: { images: b.added, seconds: b.seconds, imgPerSec: b.imgPerSec },
      runs: [],
    };
    log(`  ${b.added} images, ${b.seconds.toFixed(1)} s, ${b.imgPerSec.toFixed(0)} img/s`);
    for (const n of o.workers) {
      const name = `bench${n}`;
      const q = redis.url(name);
      const index = path.join(tmp, name);
      // An empty index and an empty queue first (enqueue of an empty slice), so that workers and the collector can start and warm up.
      await run(['index', 'enqueue', '--queue', q, '--data', `${o.data}[0:0]`, '--index', index, '--model', o.model, '--no-progress']).done;
      const procs = [
        ...Array.from({ length: n }, () =>
          run(['index', 'worker', '--queue', q, '--model', o.model, '--threads', '1', '--workers', '1', '--no-progress'], 'ignore'),
        ),
        run(['index', 'collect', '--queue', q, '--index', index, '--no-progress'], 'ignore'),
      ];
      await Promise.all(procs.map((p, k) => logged(p, k < n ? 'worker started' : 'collector started')));
      log(`${n} worker${n > 1 ? 's' : ''} + collector, warm: enqueue ${o.data}`);
      const bytes0 = await netBytes(client);
      const t0 = performance.now();
      const e = JSON.parse(
        await run(['index', 'enqueue', '--queue', q, '--data', o.data, '--index', index, '--no-progress', '--json', ...batch]).done,
      ) as {
        enqueued: number;
      };
      const enqueueSeconds = (performance.now() - t0) / 1000;
      for (;;) {
        const done = Number((await client.hget(keys(name).progress, 'done')) ?? 0);
        if (done >= e.enqueued) break;
        if (procs.some((p) => p.child.exitCode !== null)) throw new Error(`a process exited:\n${procs.map((p) => p.stderr()).join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const seconds = (performance.now() - t0) / 1000;
      const net = (await netBytes(client)) - bytes0;
      const live = Number(await client.hget(keys(name).progress, 'live'));
      for (const p of procs) p.child.kill('SIGTERM');
      await Promise.all(procs.map((p) => p.done));
      let payload = 0;
      const encodeKeys = await client.keys(`matvit:${name}.encode:b*`);
      for (const k of encodeKeys) payload += (await client.hget(k, 'data'))?.length ?? 0;
      const mem = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
      const r: QueueRun = {
        workers: n,
        images: live,
        seconds,
        imgPerSec: live / seconds,
        enqueueSeconds,
        netBytesPerImage: net / live,
        encodeJobBytesPerImage: payload / e.enqueued,
        redisUsedMemoryMB: mem / 2 ** 20,
      };
      log(
        `  ${live} images, ${seconds.toFixed(1)} s (enqueue ${enqueueSeconds.toFixed(1)} s), ${r.imgPerSec.toFixed(0)} img/s (${(r.imgPerSec / b.imgPerSec).toFixed(2)} of local); ${r.netBytesPerImage.toFixed(0)} B/image through Redis (encode job ${r.encodeJobBytesPerImage.toFixed(0)} B/image stored); Redis used memory ${r.redisUsedMemoryMB.toFixed(1)} MB`,
      );
      result.runs.push(r);
    }
    // A commit job's payload: what went through Redis per image, minus the encode job's way in and out.
    const perJob = Math.round(((result.runs[0]?.netBytesPerImage ?? 2000) / 2) * (o.batch ?? 256));
    result.ceiling = await ceiling(redis.port, 1000, perJob);
    log(
      `BullMQ ceiling: ${result.ceiling.jobsPerSec.toFixed(0)} no-op jobs/s of ${(perJob / 1024).toFixed(0)} KB (added and taken by one process)`,
    );
    return result;
  } finally {
    client.disconnect();
    await redis.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
