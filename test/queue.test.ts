// Distributed indexing (src/queue/): a real redis-server started here, enqueue, two workers and the
// collector as child processes of bin/matvit.js, over Fashion-MNIST items plus a folder with bad
// files. Workers are SIGKILLed 3 times and the collector twice at random moments and restarted;
// the index must end with every good image exactly once, with the embeddings a local `index build`
// of the same data gives them, the bad files reported with their reasons, and `index verify` ok.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as lancedb from '@lancedb/lancedb';
import Database from 'better-sqlite3';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { type RedisServer, startRedisServer } from '../src/queue/redis-server.ts';
import { PREFIX, keys, queueNames } from '../src/queue/redis.ts';
import { buildIndex } from '../src/index/build.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint.ts';
import { initWeights } from '../src/model/weights.ts';
import { BIN } from './helpers/cli.ts';
import { tinyConfig } from './helpers/tiny.ts';

const MODEL = path.resolve(import.meta.dirname, '../models/matvit-fmnist');
const FMNIST = 'fashion-mnist:train[0:3000]';
// Short locks so that a killed process's jobs come back within seconds (production keeps BullMQ's 30 s).
const FAST = ['--lock-duration-ms', '2000', '--stalled-interval-ms', '1000'];

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-queue-test-'));
let redis: RedisServer;
before(async () => {
  redis = await startRedisServer();
});
after(async () => {
  await redis?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

interface Proc {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  out: () => string;
  err: () => string;
}
function start(args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '',
    err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  return { child, exit, out: () => out, err: () => err };
}
async function ok(args: string[]): Promise<string> {
  const p = start(args);
  const { code } = await p.exit;
  assert.equal(code, 0, `matvit ${args.join(' ')} exited ${code}:\n${p.err()}`);
  return p.out();
}
const json = async <T>(args: string[]): Promise<T> => JSON.parse(await ok([...args, '--json'])) as T;

/** A folder of 12 small images (two pairs with the same bytes) and 4 bad files. */
async function mixedFolder(dir: string): Promise<Record<string, string>> {
  fs.mkdirSync(dir, { recursive: true });
  const rng = seedrandom('queue-folder');
  const noise = (w: number, h: number) =>
    sharp(Buffer.from(Array.from({ length: w * h }, () => Math.floor(rng() * 256))), { raw: { width: w, height: h, channels: 1 } });
  for (let k = 0; k < 10; k++)
    fs.writeFileSync(
      path.join(dir, `img${k}.png`),
      await noise(28 + k, 28)
        .png()
        .toBuffer(),
    );
  fs.copyFileSync(path.join(dir, 'img0.png'), path.join(dir, 'copy-of-0.png'));
  fs.copyFileSync(path.join(dir, 'img5.png'), path.join(dir, 'copy-of-5.png'));
  const jpeg = await noise(40, 40).jpeg().toBuffer();
  const png = await noise(60, 60).png().toBuffer();
  fs.writeFileSync(path.join(dir, 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
  fs.writeFileSync(
    path.join(dir, 'corrupt.png'),
    Buffer.from(png.map((v, i) => (i > png.length / 2 && i < png.length / 2 + 64 ? v ^ 0x55 : v))),
  );
  fs.writeFileSync(path.join(dir, 'zero.png'), Buffer.alloc(0));
  fs.writeFileSync(path.join(dir, 'text.jpg'), 'this is not an image\n');
  return { 'truncated.jpg': 'truncated', 'corrupt.png': 'corrupt', 'zero.png': 'empty', 'text.jpg': 'unsupported-format' };
}

/** Every row of the store (deleted ones too: a duplicate must not hide as a tombstone), read with plain SQL. */
function rows(indexDir: string): { sha256: string; source: string; vector: Float32Array }[] {
  const db = new Database(path.join(indexDir, 'store.sqlite'), { readonly: true });
  try {
    return (
      db.prepare('SELECT sha256, source, vector FROM items ORDER BY id').all() as { sha256: string; source: string; vector: Buffer }[]
    ).map((r) => ({
      ...r,
      vector: new Float32Array(r.vector.buffer.slice(r.vector.byteOffset, r.vector.byteOffset + r.vector.byteLength)),
    }));
  } finally {
    db.close();
  }
}

/** Every row of a LanceDB index's items table (tombstones too), read with LanceDB's own client. */
async function lanceRows(uri: string): Promise<{ sha256: string; source: string; vector: Float32Array }[]> {
  const db = await lancedb.connect(uri);
  try {
    const table = await db.openTable('items');
    const all = await table.query().select(['id', 'sha256', 'source', 'vector']).toArray();
    table.close();
    return all
      .sort((a, b) => Number(a.id) - Number(b.id))
      .map((r) => ({ sha256: r.sha256 as string, source: r.source as string, vector: Float32Array.from(r.vector as Iterable<number>) }));
  } finally {
    db.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('index enqueue / worker / collect / status', () => {
  test('crash storm: workers SIGKILLed 3 times and the collector twice; every good image is indexed exactly once, as a local build indexes it', async () => {
    const folder = path.join(root, 'mixed');
    const bad = await mixedFolder(folder);
    const specs = [FMNIST, `files:${folder}`];

    // The reference: a local build of the same data (in this process: one child process fewer to start).
    const local = path.join(root, 'local');
    const localSkipped: Record<string, string> = {};
    for (const data of specs) {
      const s = await buildIndex({ checkpoint: loadCheckpoint(MODEL), modelDir: MODEL, data, out: local });
      for (const k of s.skipped.items) localSkipped[k.ref] = k.reason;
    }
    assert.deepEqual(localSkipped, bad);

    const q = redis.url('storm');
    const dist = path.join(root, 'dist');
    const batch = ['--batch', '64', '--max-stalled-count', '5', ...FAST];
    const e1 = await json<{ jobs: { added: number }; enqueued: number }>(['index', 'enqueue', '--queue', q, '--data', FMNIST, '--index', dist, '--model', MODEL, ...batch, '--no-progress']); // prettier-ignore
    const e2 = await json<{ jobs: { added: number }; enqueued: number; duplicates: number }>(['index', 'enqueue', '--queue', q, '--data', `files:${folder}`, '--index', dist, ...batch, '--no-progress']); // prettier-ignore
    assert.equal(e1.jobs.added, Math.ceil(3000 / 64));
    assert.equal(e2.duplicates, 2);
    // Enqueueing the same corpus again adds nothing (deterministic job ids).
    const again = await json<{ jobs: { added: number; existing: number } }>(['index', 'enqueue', '--queue', q, '--data', FMNIST, '--index', dist, '--no-progress', '--batch', '64']); // prettier-ignore
    assert.deepEqual(again.jobs, { added: 0, existing: e1.jobs.added });

    const worker = () => start(['index', 'worker', '--queue', q, '--model', MODEL, '--drain', '--no-progress']);
    const collector = () => start(['index', 'collect', '--queue', q, '--index', dist, '--drain', '--no-progress', '--snapshot-every', '4']);
    const workers = [worker(), worker()];
    let coll = collector();
    const all = [...workers, coll];
    const killed: string[] = [];

    // Kills at random fractions of the work (the seed is in every message, so a failure can be
    // replayed): workers by the encode jobs done, the collector by the items committed. Encoding
    // runs ahead of committing, so the workers' kills come early.
    const seed = String(Date.now());
    const rng = seedrandom(seed);
    const total = e1.enqueued + e2.enqueued;
    const jobs = e1.jobs.added + e2.jobs.added;
    const plan = [
      ...[0.1, 0.25, 0.4].map((f) => ({ at: f + 0.1 * rng(), who: 'worker' as const })),
      ...[0.3, 0.6].map((f) => ({ at: f + 0.1 * rng(), who: 'collector' as const })),
    ].sort((a, b) => a.at - b.at);
    const client = new Redis({ port: redis.port, host: '127.0.0.1' });
    const encodeQueue = new Queue(queueNames('storm').encode, { connection: { host: '127.0.0.1', port: redis.port }, prefix: PREFIX });
    const progress = async (who: 'worker' | 'collector') =>
      who === 'worker'
        ? (await encodeQueue.getJobCounts('completed')).completed / jobs
        : Number((await client.hget(keys('storm').progress, 'done')) ?? 0) / total;
    try {
      for (const step of plan) {
        while ((await progress(step.who)) < step.at) await sleep(20);
        await sleep(200 * rng());
        if (step.who === 'worker') {
          const k = Math.floor(rng() * 2);
          workers[k].child.kill('SIGKILL');
          assert.equal((await workers[k].exit).signal, 'SIGKILL', `seed ${seed}: the worker exited before its kill:\n${workers[k].err()}`);
          all.push((workers[k] = worker()));
        } else {
          coll.child.kill('SIGKILL');
          assert.equal((await coll.exit).signal, 'SIGKILL', `seed ${seed}: the collector exited before its kill:\n${coll.err()}`);
          all.push((coll = collector()));
        }
        killed.push(`${step.who} at ${(step.at * 100).toFixed(0)}%`);
      }
      for (const p of [...workers, coll]) assert.equal((await p.exit).code, 0, `seed ${seed}: ${p.err()}`);
    } finally {
      for (const p of all) p.child.kill('SIGKILL'); // after a failure: none left running
      client.disconnect();
      await encodeQueue.close();
    }
    assert.equal(killed.length, 5);

    // Exactly once, and the same items as the local build with the same embeddings.
    const got = rows(dist);
    const want = new Map(rows(local).map((r) => [r.sha256, r]));
    assert.equal(new Set(got.map((r) => r.sha256)).size, got.length, `seed ${seed}: a sha256 is stored twice`);
    assert.equal(got.length, want.size, `seed ${seed}: ${got.length} items, the local build has ${want.size}`);
    let minCos = 1;
    for (const r of got) {
      const w = want.get(r.sha256);
      assert.ok(w, `seed ${seed}: ${r.source} is not in the local build`);
      assert.equal(r.source, w.source);
      let dot = 0;
      for (let i = 0; i < r.vector.length; i++) dot += r.vector[i] * w.vector[i];
      minCos = Math.min(minCos, dot);
    }
    assert.ok(minCos > 0.9999, `seed ${seed}: an embedding differs from the local build's (cosine ${minCos})`);

    // Bad files reported with their reasons; every job done, none failed.
    const st = await json<{
      encode: { failed: number; completed: number };
      commit: { failed: number };
      done: number;
      enqueued: number;
      committed: number;
      skipped: { items: { source: string; reason: string }[] };
    }>(['index', 'status', '--queue', q]);
    assert.deepEqual(Object.fromEntries(st.skipped.items.map((k) => [k.source, k.reason])), bad);
    assert.deepEqual([st.encode.failed, st.commit.failed, st.encode.completed], [0, 0, e1.jobs.added + e2.jobs.added]);
    assert.equal(st.done, st.enqueued);
    assert.equal(st.committed, want.size);
    const v = await json<{ ok: boolean; problems: string[] }>(['index', 'verify', '--index', dist]);
    assert.ok(v.ok, v.problems.join('\n'));
  });

  test('a job that fails 3 times is kept with its error; a worker refuses a model of another fingerprint', async () => {
    const q = redis.url('failing');
    const folder = path.join(root, 'vanishing');
    await mixedFolder(folder);
    const dist = path.join(root, 'dist-failing');
    await ok(['index', 'enqueue', '--queue', q, '--data', `files:${folder}`, '--index', dist, '--model', MODEL, '--backoff-ms', '50', '--no-progress']); // prettier-ignore
    fs.rmSync(folder, { recursive: true }); // the workers no longer see the corpus: not a bad file, a failed job
    const w = await ok(['index', 'worker', '--queue', q, '--model', MODEL, '--drain', '--no-progress', '--json']);
    assert.equal(JSON.parse(w).jobs, 0);
    const st = await json<{ encode: { failed: number }; failed: { attempts: number; error: string }[] }>(['index', 'status', '--queue', q]);
    assert.equal(st.encode.failed, 1);
    assert.equal(st.failed[0].attempts, 3);
    assert.match(st.failed[0].error, /vanishing/);

    const other = path.join(root, 'other-model');
    saveCheckpoint(other, tinyConfig({ imageSize: 28, patchSize: 14, channels: 1, mean: [0.5], std: [0.25] }), initWeights(tinyConfig({ imageSize: 28, patchSize: 14, channels: 1, mean: [0.5], std: [0.25] }), 1)); // prettier-ignore
    const p = start(['index', 'worker', '--queue', q, '--model', other, '--drain', '--no-progress']);
    assert.equal((await p.exit).code, 1);
    assert.match(p.err(), /fingerprint [0-9a-f]{64}.*Give the index's model/);
  });

  test('into a LanceDB index (enqueue --store lance --uri): the items and embeddings of a local build', async () => {
    const folder = path.join(root, 'mixed-lance');
    const bad = await mixedFolder(folder);
    const local = path.join(root, 'local-lance-ref');
    await buildIndex({ checkpoint: loadCheckpoint(MODEL), modelDir: MODEL, data: `files:${folder}`, out: local });
    const q = redis.url('lance');
    const dist = path.join(root, 'dist-lance');
    await ok(['index', 'enqueue', '--queue', q, '--data', `files:${folder}`, '--store', 'lance', '--uri', dist, '--model', MODEL, '--no-progress']); // prettier-ignore
    await Promise.all([
      ok(['index', 'worker', '--queue', q, '--model', MODEL, '--drain', '--no-progress']),
      ok(['index', 'collect', '--queue', q, '--index', dist, '--drain', '--no-progress']),
    ]);
    const got = await lanceRows(dist);
    const want = new Map(rows(local).map((r) => [r.sha256, r]));
    assert.equal(got.length, want.size);
    assert.equal(new Set(got.map((r) => r.sha256)).size, got.length, 'a sha256 is stored twice');
    for (const r of got) {
      const w = want.get(r.sha256);
      assert.ok(w, `${r.source} is not in the local build`);
      assert.equal(r.source, w.source);
      let dot = 0;
      for (let i = 0; i < r.vector.length; i++) dot += r.vector[i] * w.vector[i];
      assert.ok(dot > 0.9999, `${r.source}: cosine ${dot} to the local build's embedding`);
    }
    const st = await json<{ skipped: { items: { source: string; reason: string }[] } }>(['index', 'status', '--queue', q]);
    assert.deepEqual(Object.fromEntries(st.skipped.items.map((k) => [k.source, k.reason])), bad);
  });

  test('a bad --queue names the flag and what is expected', async () => {
    const p = start(['index', 'status', '--queue', 'http://x/y']);
    assert.equal((await p.exit).code, 2);
    assert.match(p.err(), /--queue: protocol http: expected redis:\/\/HOST:PORT\/NAME/);
  });
});
