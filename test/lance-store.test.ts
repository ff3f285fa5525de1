// The LanceDB store (src/index/lance-store.ts): its items and searches against a plain loop over
// the same vectors, `index build --store lance` killed with SIGKILL at several points and resumed
// (compared with an uninterrupted build into the SQLite store), and two `serve --read-only`
// replicas picking up a writer's adds and removes within their refresh interval.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import seedrandom from 'seedrandom';
import { buildIndex } from '../src/index/build.ts';
import { createLance } from '../src/index/lance-create.ts';
import { LanceIndex } from '../src/index/lance-store.ts';
import type { NewItem } from '../src/index/store-schema.ts';
import { VectorIndex } from '../src/index/vector-index.ts';
import { verifyDir } from '../src/index/verify.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint.ts';
import { initWeights } from '../src/model/weights.ts';
import { BIN } from './helpers/cli.ts';
import { spawnServe } from './helpers/serve-child.ts';
import { SERVE_CONFIG, call, fmnistPng } from './helpers/serve-fixture.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-lance-test-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const FP = 'ab'.repeat(32);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Items with seeded random vectors and labels 0..3; content i has sha256 of "item i". */
function items(from: number, n: number, dim: number): NewItem[] {
  const rng = seedrandom(`lance-${from}`);
  return Array.from({ length: n }, (_, j) => {
    const i = from + j;
    return {
      source: `img/${i}.png`,
      label: i % 4,
      sha256: createHash('sha256').update(`item ${i}`).digest('hex'),
      bytes: i,
      vector: Array.from({ length: dim }, () => rng() - 0.5),
      payload: { i },
    };
  });
}

/** The reference: cosine top k by a plain loop over (id, vector) pairs. */
function topK(q: readonly number[], live: Map<number, { vector: readonly number[]; label: number }>, k: number, label?: number): number[] {
  const norm = (v: readonly number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const scored: [number, number][] = [];
  for (const [id, it] of live) {
    if (label !== undefined && it.label !== label) continue;
    let dot = 0;
    for (let j = 0; j < q.length; j++) dot += q[j] * it.vector[j];
    scored.push([id, dot / norm(q) / norm(it.vector)]);
  }
  return scored
    .sort((a, b) => b[1] - a[1] || a[0] - b[0])
    .slice(0, k)
    .map((s) => s[0]);
}

describe('LanceIndex against a plain loop', () => {
  test('adds, duplicates, removes, exact and ANN search, payloads, a read-only replica refreshing', () => {
    const dim = 16;
    const uri = path.join(root, 'unit');
    const index = createLance(
      uri,
      { fingerprint: FP, modelName: 't', ffnDims: [4], dim, space: 'cosine', corpus: {} },
      { annMinRows: 300 },
    );
    const live = new Map<number, { vector: readonly number[]; label: number }>();
    try {
      for (let b = 0; b < 4; b++) {
        const batch = items(b * 100, 100, dim);
        const r = index.add(b === 3 ? [...batch, items(5, 1, dim)[0], batch[0]] : batch);
        assert.equal(r.duplicates.length, b === 3 ? 2 : 0);
        batch.forEach((it, i) => live.set(r.ids[i]!, { vector: it.vector as number[], label: it.label! }));
        if (b === 3) {
          assert.deepEqual(
            r.duplicates.map((d) => [d.index, d.existingSource]),
            [
              [100, 'img/5.png'],
              [101, 'img/300.png'],
            ],
          );
        }
      }
      assert.equal(index.size, 400);
      assert.equal(index.info().store.ann, null, 'no ANN index before a snapshot');
      index.snapshot();
      assert.ok(index.info().store.ann, 'an ANN index past annMinRows');
      const removed = [...live.keys()].filter((id) => id % 7 === 0);
      const rr = index.remove([...removed, 99999]);
      assert.deepEqual(rr.removed, removed);
      assert.deepEqual(rr.missing, [99999]);
      for (const id of removed) live.delete(id);
      // Content removed can be added again, under a new id.
      const again = index.add(items(6, 1, dim));
      assert.ok(again.ids[0]! > 400);
      live.set(again.ids[0]!, { vector: items(6, 1, dim)[0].vector as number[], label: 2 });
      assert.deepEqual(index.item(again.ids[0]!)?.payload, { i: 6 });
      assert.equal(index.size, live.size);

      const queries = items(1000, 40, dim);
      let hit = 0;
      for (const q of queries) {
        const v = q.vector as number[];
        for (const label of [undefined, 1]) {
          const exact = index.searchExact(v, 10, { label }).map((h) => h.id);
          assert.deepEqual(exact, topK(v, live, 10, label));
        }
        const ann = index.search(v, 10).map((h) => h.id);
        for (const id of ann) assert.ok(live.has(id), `search returned ${id}, not live`);
        const truth = new Set(topK(v, live, 10));
        hit += ann.filter((id) => truth.has(id)).length;
      }
      const recall = hit / (queries.length * 10);
      assert.ok(recall >= 0.9, `recall@10 ${recall}`);

      const replica = LanceIndex.open(uri, { mode: 'read' });
      try {
        assert.equal(replica.size, live.size);
        assert.throws(() => replica.add(items(2000, 1, dim)), /read-only/);
        const more = index.add(items(3000, 5, dim));
        index.remove([again.ids[0]!]);
        assert.equal(replica.size, live.size, 'a replica reads its version until refresh');
        assert.deepEqual(replica.refresh(), { added: 5, deleted: 1 });
        assert.equal(replica.size, live.size + 4);
        assert.equal(replica.item(more.ids[0]!)?.source, 'img/3000.png');
      } finally {
        replica.close();
      }
    } finally {
      index.close();
    }
    const v = verifyDir(uri, { sampleSize: 50 });
    assert.ok(v.ok, v.problems.join('; '));
  });
});

describe('index build --store lance', () => {
  const modelDir = path.join(root, 'model');
  saveCheckpoint(modelDir, SERVE_CONFIG, initWeights(SERVE_CONFIG, 3));
  const data = 'fashion-mnist:train[:1200]';

  test('SIGKILL at several points, then resumed: the items of an uninterrupted build, none twice', async () => {
    const uri = path.join(root, 'crash');
    const versions = () => {
      try {
        return fs.readdirSync(path.join(uri, 'items.lance', '_versions')).length;
      } catch {
        return 0;
      }
    };
    const args = ['index', 'build', '--model', modelDir, '--data', data, '--store', 'lance', '--uri', uri, '--batch', '32'];
    const sizes: number[] = [];
    // Each run is killed once LanceDB has committed a few more versions than the run before left.
    for (const more of [2, 5, 9]) {
      const child = spawn(process.execPath, [BIN, ...args, '--ann-min-rows', '400', '--no-progress'], { stdio: 'ignore' });
      const exited = new Promise((r) => child.once('exit', r));
      const from = versions();
      while (versions() < from + more && child.exitCode === null) await sleep(20);
      child.kill('SIGKILL');
      await exited;
      try {
        const index = LanceIndex.open(uri, { mode: 'read' });
        sizes.push(index.size);
        index.close();
      } catch (e) {
        assert.match((e as Error).message, /creation did not finish/); // killed while creating the tables
        sizes.push(0);
      }
    }
    assert.ok(sizes[2] < 1200, `the last kill came before the end (${sizes})`);
    for (let i = 1; i < sizes.length; i++) assert.ok(sizes[i] >= sizes[i - 1], `items lost between kills: ${sizes}`);
    const done = spawn(process.execPath, [BIN, ...args, '--no-progress', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    done.stdout.on('data', (d) => (out += d));
    assert.equal(await new Promise((r) => done.once('exit', r)), 0);
    const summary = JSON.parse(out) as { added: number; alreadyIndexed: number; live: number };
    assert.equal(summary.alreadyIndexed, sizes[2]);

    // The reference: the same corpus built in one go into the SQLite store.
    const ref = path.join(root, 'crash-ref');
    await buildIndex({ checkpoint: loadCheckpoint(modelDir), modelDir, data, out: ref, snapshotEvery: 0 });
    const refIndex = VectorIndex.open(ref, { mode: 'read' });
    const lance = LanceIndex.open(uri, { mode: 'read' });
    try {
      const bySource = (ix: VectorIndex | LanceIndex, ids: number[]) =>
        new Map(ids.map((id) => [ix.item(id)!.source, ix.item(id)!.sha256]));
      const want = bySource(refIndex, refIndex.liveMatrix().ids);
      const got = bySource(lance, lance.liveMatrix().ids);
      assert.equal(lance.size, refIndex.size);
      assert.deepEqual([...got].sort(), [...want].sort());
    } finally {
      refIndex.close();
      lance.close();
    }
    const v = verifyDir(uri, { sampleSize: 50 });
    assert.ok(v.ok, v.problems.join('; '));
    console.log(`lance crash test: live after each kill ${sizes.join(', ')}; resumed run added ${summary.added}`);
  });
});

describe('serve replicas of a LanceDB index', () => {
  test('two serve --read-only replicas answer with what the writer adds and removes, within the refresh interval', async () => {
    const modelDir = path.join(root, 'model-serve');
    saveCheckpoint(modelDir, SERVE_CONFIG, initWeights(SERVE_CONFIG, 7));
    const uri = path.join(root, 'served');
    await buildIndex({ checkpoint: loadCheckpoint(modelDir), modelDir, data: 'fashion-mnist:test[:60]', out: uri, store: 'lance' });
    const token = 'replica-test-token';
    const REFRESH = 500;
    const env = { MATVIT_ADMIN_TOKEN: token };
    const writer = await spawnServe(['--index', uri, '--log-level', 'warn'], env);
    const replicas = await Promise.all(
      [0, 1].map(() => spawnServe(['--index', uri, '--read-only', '--refresh-ms', String(REFRESH), '--log-level', 'warn'], env)),
    );
    const all = [writer, ...replicas];
    try {
      await Promise.all(all.map((s) => s.ready(60_000)));
      for (const r of replicas) {
        const info = await call(`${r.url}/v1/index`);
        assert.equal(info.body.index.store.kind, 'lance');
        assert.equal(info.body.index.store.refreshMs, REFRESH);
      }
      const png = await fmnistPng(500);
      const auth = { authorization: `Bearer ${token}` };
      const added = await call(`${writer.url}/v1/items`, {
        method: 'POST',
        body: new Uint8Array(png),
        headers: { 'content-type': 'image/png', ...auth },
      });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      const id = added.body.id as number;
      const search = (url: string) =>
        call(`${url}/v1/search?encoder=xl&k=3`, { method: 'POST', body: new Uint8Array(png), headers: { 'content-type': 'image/png' } });
      /** Polls every replica until `ok` holds for it; returns how long each took. */
      const until = (ok: (url: string) => Promise<boolean>) =>
        Promise.all(
          replicas.map(async (r) => {
            const t0 = performance.now();
            while (!(await ok(r.url))) {
              assert.ok(performance.now() - t0 < REFRESH + 5000, `replica ${r.url} did not catch up`);
              await sleep(25);
            }
            return performance.now() - t0;
          }),
        );
      const seen = await until(async (url) => (await search(url)).body.results?.[0]?.id === id);
      for (const r of replicas) assert.equal((await call(`${r.url}/v1/items/${id}`)).status, 200);
      const del = await call(`${writer.url}/v1/items/${id}`, { method: 'DELETE', headers: auth });
      assert.equal(del.status, 200);
      const gone = await until(async (url) => (await call(`${url}/v1/items/${id}`)).status === 404);
      for (const r of replicas) assert.ok(!(await search(r.url)).body.results.some((h: { id: number }) => h.id === id));
      const writes = await call(`${replicas[0].url}/v1/items/${id}`, { method: 'DELETE', headers: auth });
      assert.equal(writes.status, 503);
      console.log(
        `replicas saw the add after ${seen.map(Math.round).join(', ')} ms and the remove after ${gone.map(Math.round).join(', ')} ms (refresh ${REFRESH} ms)`,
      );
    } finally {
      for (const s of all) s.child.kill('SIGTERM');
      await Promise.all(all.map((s) => s.exit));
    }
  });
});
