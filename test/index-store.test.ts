// The index storage layer: store + HNSW snapshot + manifest, on seeded random unit vectors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import seedrandom from 'seedrandom';
import { benchIndex } from '../src/index/bench.ts';
import { mergeIndexes } from '../src/index/merge.ts';
import { type IndexParamsInput, type NewItem, VectorIndex } from '../src/index/vector-index.ts';
import { verifyIndex } from '../src/index/verify.ts';
import { CRASH_DIM, CRASH_SEED, FP_A, FP_B, makeItems, sha256 } from './fixtures/index-items.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-index-test-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const newDir = () => path.join(root, `idx${dirs++}`);

function create(dir: string, dim: number, extra: Partial<IndexParamsInput> = {}): VectorIndex {
  return VectorIndex.create(dir, { fingerprint: FP_A, modelName: 'test', ffnDims: [64], dim, ...extra });
}

/** Adds items and returns their ids, asserting that none was a duplicate. */
function addAll(index: VectorIndex, items: NewItem[]): number[] {
  const r = index.add(items);
  assert.equal(r.duplicates.length, 0);
  return r.ids as number[];
}

/** Share of the exact top-k that the graph search returns, over these queries. */
function recall(index: VectorIndex, queries: NewItem[], k: number): number {
  let hit = 0,
    total = 0;
  for (const q of queries) {
    const got = new Set(index.search(q.vector, k).map((h) => h.id));
    const truth = index.searchExact(q.vector, k);
    hit += truth.filter((h) => got.has(h.id)).length;
    total += truth.length;
  }
  return hit / total;
}

describe('VectorIndex', () => {
  test('add, search, remove: removed items never come back', () => {
    const items = makeItems(1000, 32, 'basic');
    const index = create(newDir(), 32);
    const ids = addAll(index, items);
    assert.deepEqual(
      ids,
      Array.from({ length: 1000 }, (_, i) => i + 1),
      'ids are assigned 1, 2, ... in input order',
    );
    for (const i of [0, 17, 999]) {
      const [top] = index.search(items[i].vector, 1);
      assert.equal(top.id, ids[i]);
      assert.ok(Math.abs(top.score - 1) < 1e-5, `a unit vector's dot product with itself is 1, got ${top.score}`);
      assert.equal(top.source, items[i].source);
      assert.equal(top.label, items[i].label);
    }
    const gone = new Set(ids.slice(0, 100));
    assert.deepEqual(index.remove([...gone, 5000]).removed, [...gone]);
    assert.deepEqual(index.remove([3]).missing, [3], 'removing twice reports it missing');
    for (const q of items.slice(0, 100)) {
      const hits = index.search(q.vector, 10);
      assert.equal(hits.length, 10);
      assert.ok(hits.every((h) => !gone.has(h.id)));
      const byLabel = index.search(q.vector, 10, { label: q.label });
      assert.ok(byLabel.every((h) => !gone.has(h.id) && h.label === q.label));
      assert.ok(index.searchExact(q.vector, 10).every((h) => !gone.has(h.id)));
    }
    const r = index.removeSources([items[100].source, 'no/such.png']);
    assert.deepEqual([r.removed, r.missing], [[ids[100]], ['no/such.png']]);
    assert.equal(index.size, 899);
    assert.ok(recall(index, items.slice(200, 260), 10) >= 0.99);
    index.close();
  });

  test('k larger than the live count returns every live item, never a removed one', () => {
    const items = makeItems(20, 16, 'small');
    const index = create(newDir(), 16);
    const ids = addAll(index, items);
    index.remove(ids.slice(0, 15));
    const live = new Set(ids.slice(15));
    for (const k of [5, 6, 100, 5000]) {
      // 5000 > the graph's capacity: searchKnn would throw
      for (const ef of [1, 64]) {
        const hits = index.search(items[0].vector, k, { ef });
        assert.deepEqual(new Set(hits.map((h) => h.id)), live, `k=${k} ef=${ef}`);
      }
      assert.equal(index.searchExact(items[0].vector, k).length, 5);
    }
    const label = items[19].label;
    assert.deepEqual(
      index.search(items[0].vector, 10, { label }).map((h) => h.id),
      [ids[19]],
    );
    assert.deepEqual(index.search(items[0].vector, 10, { label: items[0].label }), [], 'no live item has that label');
    index.remove(ids.slice(15));
    assert.deepEqual(index.search(items[0].vector, 10), []);
    assert.throws(() => index.search(items[0].vector, 0), /k = 0: expected a positive integer/);
    assert.throws(() => index.search([1, 2], 1), /query has 2 dimensions, the index has 16/);
    index.close();
  });

  test('duplicates by sha256 are reported, not added twice; ids are never reused', () => {
    const items = makeItems(150, 16, 'dups');
    const index = create(newDir(), 16);
    const first = addAll(index, items.slice(0, 100));
    const r = index.add(items.slice(50, 150));
    assert.deepEqual(r.ids.slice(0, 50), Array(50).fill(null));
    assert.ok(r.ids.slice(50).every((id) => id !== null));
    assert.deepEqual(
      r.duplicates.map((d) => d.existingId),
      first.slice(50),
    );
    assert.equal(r.duplicates[0].existingSource, items[50].source);
    // Same content under another name, within one batch.
    const twin = makeItems(1, 16, 'twin')[0];
    const r2 = index.add([twin, { ...twin, source: 'elsewhere/copy.png' }]);
    assert.equal(r2.duplicates.length, 1);
    assert.deepEqual([r2.duplicates[0].index, r2.duplicates[0].existingId], [1, r2.ids[0]]);
    assert.equal(index.size, 151);
    const known = index.existing([items[0].sha256, sha256('never added')]);
    assert.deepEqual([...known], [[items[0].sha256, first[0]]]);
    // A removed item may be added again: under a new id.
    index.remove([first[0]]);
    const [again] = index.add([items[0]]).ids;
    assert.equal(again, 152);
    assert.throws(() => index.add([{ ...items[1], sha256: 'abc' }]), /items\[0\]\.sha256 = "abc": expected 64 lowercase hex digits/);
    assert.throws(() => index.add([{ ...items[1], vector: new Float32Array(16) }]), /items\[0\]\.vector is the zero vector/);
    assert.equal(index.size, 151, 'a rejected batch adds nothing');
    index.close();
  });

  test('reopening replays the changes made after the last snapshot', () => {
    const dir = newDir();
    const items = makeItems(900, 32, 'replay');
    let index = create(dir, 32);
    const ids = addAll(index, items.slice(0, 600));
    index.snapshot();
    ids.push(...addAll(index, items.slice(600)));
    const gone = [...ids.slice(0, 50), ...ids.slice(600, 620)];
    index.remove(gone);
    index.close({ snapshot: false }); // as if killed: the snapshot on disk holds the first 600 only
    index = VectorIndex.open(dir, { expectedFingerprint: FP_A });
    assert.deepEqual(index.info().opened.replayed, { added: 280, deleted: 50 });
    assert.equal(index.info().opened.snapshot, 'loaded');
    assert.equal(index.size, 830);
    for (const q of items.slice(0, 50)) assert.ok(index.search(q.vector, 10).every((h) => !gone.includes(h.id)));
    assert.equal(index.search(items[700].vector, 1)[0].id, ids[700]);
    const v = verifyIndex(index, { sampleSize: 100 });
    assert.deepEqual(v.problems, []);
    assert.ok(v.recall!.recallAt10 >= 0.99, `recall@10 ${v.recall!.recallAt10}`);
    index.close();
  });

  test('killed between writing graph.json and renaming graph.bin: the previous graph is loaded and replayed', () => {
    const dir = newDir();
    const items = makeItems(600, 32, 'window');
    const index = create(dir, 32);
    const ids = addAll(index, items.slice(0, 400));
    index.snapshot();
    const older = fs.readFileSync(path.join(dir, 'graph.bin'));
    addAll(index, items.slice(400));
    index.snapshot();
    index.close();
    fs.writeFileSync(path.join(dir, 'graph.bin'), older); // the new sidecar, the old graph.bin
    const reopened = VectorIndex.open(dir);
    assert.deepEqual([reopened.info().opened.snapshot, reopened.info().opened.replayed], ['loaded', { added: 200, deleted: 0 }]);
    assert.equal(reopened.search(items[10].vector, 1)[0].id, ids[10]);
    assert.deepEqual(verifyIndex(reopened, { sampleSize: 50 }).problems, []);
    reopened.close();
  });

  describe('a damaged or missing snapshot is rebuilt from the store, without crashing', () => {
    const items = makeItems(800, 32, 'damage');
    /** Builds a clean index, damages it, reopens it, checks it and the next open. */
    function damaged(damage: (dir: string) => void, expected: string, reason: RegExp) {
      const dir = newDir();
      const built = create(dir, 32);
      const ids = addAll(built, items);
      built.remove(ids.slice(0, 10));
      built.close();
      damage(dir);
      const index = VectorIndex.open(dir, { expectedFingerprint: FP_A });
      const { opened } = index.info();
      assert.equal(opened.snapshot, expected);
      assert.equal(opened.rebuilt, true);
      assert.match(opened.reason!, reason);
      assert.equal(index.size, 790);
      assert.deepEqual(verifyIndex(index, { sampleSize: 50 }).problems, []);
      assert.equal(index.search(items[500].vector, 1)[0].id, ids[500]);
      assert.ok(
        index.search(items[0].vector, 10).every((h) => h.id > 10),
        'removed items stay removed after a rebuild',
      );
      index.close();
      const again = VectorIndex.open(dir);
      assert.equal(again.info().opened.snapshot, 'loaded', 'the rebuilt graph was snapshotted');
      again.close();
    }
    const graph = (dir: string) => path.join(dir, 'graph.bin');

    test('truncated graph.bin', () =>
      damaged((d) => fs.truncateSync(graph(d), Math.floor(fs.statSync(graph(d)).size / 2)), 'corrupt', /truncated/));
    test('bytes flipped in graph.bin', () =>
      damaged(
        (d) => {
          const buf = fs.readFileSync(graph(d));
          for (let i = 0; i < 16; i++) buf[(buf.length >> 1) + i] ^= 0xff;
          fs.writeFileSync(graph(d), buf);
        },
        'corrupt',
        /sha256 [0-9a-f]{64} does not match/,
      ));
    test('graph.bin missing', () => damaged((d) => fs.rmSync(graph(d)), 'missing', /graph\.bin is missing/));
    test('graph.json unreadable', () =>
      damaged((d) => fs.writeFileSync(path.join(d, 'graph.json'), '{"format": "matvit-gr'), 'corrupt', /graph\.json is unreadable/));
    test('a snapshot of another store', () =>
      damaged(
        (d) => {
          const other = newDir();
          const o = create(other, 32);
          addAll(o, items.slice(0, 5));
          o.close();
          for (const f of ['graph.bin', 'graph.json']) fs.copyFileSync(path.join(other, f), path.join(d, f));
        },
        'stale',
        /snapshot storeId is .*, the index's is/,
      ));
  });

  test('an index of another model is refused, naming both fingerprints', () => {
    const dir = newDir();
    create(dir, 16).close();
    assert.throws(
      () => VectorIndex.open(dir, { expectedFingerprint: FP_B }),
      (e: Error) => e.message.includes(FP_A) && e.message.includes(FP_B),
    );
    assert.throws(
      () => VectorIndex.openOrCreate(dir, { fingerprint: FP_A, modelName: 'test', ffnDims: [64], dim: 24 }),
      /dim 16; asked for dim 24/,
    );
    assert.throws(() => create(dir, 16), /already holds an index/);
    assert.throws(() => VectorIndex.open(path.join(root, 'nowhere')), /is not a MatViT index: .*manifest\.json is missing/);
    assert.throws(
      () => create(newDir(), 16, { space: 'l2' as 'ip' }),
      /space: Invalid option: expected one of "ip"\|"cosine" \(received "l2"\)/,
    );
  });

  test('compact reclaims deleted slots and keeps the results', () => {
    const dir = newDir();
    const items = makeItems(1000, 32, 'compact');
    const index = create(dir, 32);
    const ids = addAll(index, items);
    const gone = new Set(ids.filter((id) => id % 5 < 2)); // 400 items
    index.remove([...gone]);
    const queries = items.slice(0, 30);
    const exactBefore = queries.map((q) => index.searchExact(q.vector, 10));
    assert.deepEqual([index.info().graph.points, index.info().graph.deletedSlots], [1000, 400]);
    const c = index.compact();
    assert.deepEqual([c.before, c.after], [1000, 600]);
    assert.deepEqual([index.info().graph.points, index.info().graph.deletedSlots], [600, 0]);
    assert.deepEqual(
      queries.map((q) => index.searchExact(q.vector, 10)),
      exactBefore,
    );
    assert.ok(recall(index, queries, 10) >= 0.99);
    for (const q of queries) assert.ok(index.search(q.vector, 10).every((h) => !gone.has(h.id)));
    index.close();
    const reopened = VectorIndex.open(dir);
    assert.deepEqual([reopened.info().opened.snapshot, reopened.info().graph.points], ['loaded', 600]);
    assert.equal(reopened.search(items[2].vector, 1)[0].id, ids[2], 'ids survive compaction');
    reopened.close();
  });

  test('verify: store, graph and manifest agree; recall@10 >= 0.99 at the default ef (5k x 64-d)', () => {
    const index = create(newDir(), 64);
    const items = makeItems(5000, 64, 'recall');
    for (let i = 0; i < items.length; i += 1000) addAll(index, items.slice(i, i + 1000));
    index.remove([1, 2, 3]);
    index.snapshot();
    const v = verifyIndex(index, { sampleSize: 300, minRecall: 0.99 });
    assert.deepEqual(v.problems, []);
    assert.ok(v.ok);
    assert.equal(v.recall!.ef, 128);
    assert.ok(v.recall!.recallAt10 >= 0.99, `recall@10 ${v.recall!.recallAt10}`);
    assert.deepEqual(v.counts!.manifest, { live: 4997, deleted: 3, seq: 5003 });
    assert.deepEqual([v.counts!.graphPoints, v.counts!.graphLive], [5000, 4997]);
    index.close();
  });

  test('merge of two shards equals one index built from all items', () => {
    const items = makeItems(1200, 32, 'merge');
    const [a, b, one, out] = [newDir(), newDir(), newDir(), newDir()];
    const shardA = create(a, 32, { corpus: { shard: '0/2' } });
    addAll(
      shardA,
      items.filter((_, i) => i % 2 === 0),
    );
    shardA.add([items[1]]); // also in shard b: merged once
    shardA.close();
    const shardB = create(b, 32, { corpus: { shard: '1/2' } });
    addAll(
      shardB,
      items.filter((_, i) => i % 2 === 1),
    );
    shardB.close();
    const single = create(one, 32);
    addAll(single, items);

    const report = mergeIndexes(out, [a, b]);
    assert.deepEqual(
      report.shards.map((s) => [s.live, s.added, s.duplicates]),
      [
        [601, 601, 0],
        [600, 599, 1],
      ],
    );
    assert.equal(report.live, 1200);
    const merged = VectorIndex.open(out, { expectedFingerprint: FP_A });
    assert.equal(merged.existing(items.map((it) => it.sha256)).size, 1200, 'the same set of sha256');
    const strip = (hits: { score: number; source: string; label: number }[]) =>
      hits.map(({ score, source, label }) => ({ score, source, label }));
    const queries = makeItems(20, 32, 'merge-queries');
    for (const q of queries) assert.deepEqual(strip(merged.searchExact(q.vector, 10)), strip(single.searchExact(q.vector, 10)));
    assert.ok(recall(merged, queries, 10) >= 0.95, 'the merged graph finds them too');
    assert.deepEqual(verifyIndex(merged, { sampleSize: 50 }).problems, []);
    merged.close();
    single.close();
    // Running it again (e.g. after an interruption) adds nothing.
    assert.deepEqual(
      mergeIndexes(out, [a, b]).shards.map((s) => s.added),
      [0, 0],
    );
    const c = newDir();
    VectorIndex.create(c, { fingerprint: FP_B, modelName: 'other', ffnDims: [64], dim: 32 }).close();
    assert.throws(
      () => mergeIndexes(newDir(), [a, c]),
      (e: Error) => e.message.includes(FP_A) && e.message.includes(FP_B),
    );
  });

  test('two writers on one index: each applies what the other committed', () => {
    const dir = newDir();
    const items = makeItems(300, 16, 'writers');
    const a = create(dir, 16);
    const b = VectorIndex.open(dir, { expectedFingerprint: FP_A });
    const idsA = addAll(a, items.slice(0, 100));
    const idsB = addAll(b, items.slice(100, 200)); // b catches up with a's 100, then adds its own
    assert.deepEqual(b.remove([idsA[0]]).removed, [idsA[0]]);
    assert.deepEqual(a.refresh(), { added: 100, deleted: 1 });
    assert.equal(a.size, 199);
    assert.equal(a.add(items.slice(150, 151)).ids[0], null, "b's item is a duplicate for a");
    addAll(b, items.slice(200, 300));
    assert.equal(addAll(a, items.slice(0, 1))[0], 301, 'a catches up with b before applying its own');
    assert.equal(a.size, 300);
    assert.equal(a.search(items[150].vector, 1)[0].id, idsB[50]);
    assert.ok(a.search(items[0].vector, 10).every((h) => h.id !== idsA[0]));
    for (const ix of [a, b]) assert.deepEqual(verifyIndex(ix, { sampleSize: 50 }).problems, []);
    a.close();
    b.close();
    const reopened = VectorIndex.open(dir);
    assert.equal(reopened.size, 300);
    reopened.close();
  });

  test('create refuses a directory that holds a store without a manifest', () => {
    const dir = newDir();
    const index = create(dir, 16);
    addAll(index, makeItems(5, 16, 'lost'));
    index.close();
    fs.rmSync(path.join(dir, 'manifest.json'));
    assert.throws(() => create(dir, 16), /has no manifest\.json but its store\.sqlite holds 5 changes/);
  });

  test('metadata, info and read-only opening', () => {
    const dir = newDir();
    const index = create(dir, 16, { corpus: { data: 'fashion-mnist:train' } });
    addAll(index, makeItems(30, 16, 'meta'));
    index.setMeta('calibration', { s: { recallAt10: 0.97 } });
    index.close();
    const ro = VectorIndex.open(dir, { mode: 'read' });
    assert.deepEqual(ro.getMeta('calibration'), { s: { recallAt10: 0.97 } });
    assert.equal(ro.getMeta('absent'), undefined);
    const info = ro.info();
    assert.deepEqual(
      [info.counts, info.manifest.counts.live, info.manifest.corpus],
      [{ live: 30, deleted: 0 }, 30, { data: 'fashion-mnist:train' }],
    );
    assert.equal(
      Object.values(info.labels).reduce((s, n) => s + n, 0),
      30,
    );
    assert.deepEqual(info.metaKeys, ['calibration']);
    const { id, label, labelName, source, deletedSeq } = ro.item(1)!;
    assert.deepEqual(
      { id, label, labelName, source, deletedSeq },
      { id: 1, label: 0, labelName: 'class0', source: 'class0/img0.png', deletedSeq: null },
    );
    assert.throws(() => ro.add(makeItems(1, 16, 'late')), /read-only/);
    ro.close();
  });

  test('SIGKILL at random points: nothing committed is lost, nothing duplicated, a re-run adds only the rest', async (t) => {
    const dir = newDir();
    const total = 4000,
      batch = 100;
    const expectedSha = new Map(makeItems(total, CRASH_DIM, CRASH_SEED).map((it, i) => [i, it.sha256]));
    const rng = seedrandom('kills');
    const committed = new Map<number, number>(); // id -> item index, as reported by the children
    let addedByLast = 0,
      liveBeforeLast = 0;
    for (let round = 0; round < 5; round++) {
      const last = round === 4;
      // Kill after a random number of reported batches, plus a random delay, so that kills land
      // inside transactions, graph inserts and snapshot writes alike.
      const killAfter = 1 + Math.floor(rng() * 8),
        delayMs = Math.floor(rng() * 25);
      // Snapshotting after every batch in some rounds makes kills inside a snapshot write likely.
      const snapshotEvery = round % 2 === 1 ? 1 : 3;
      const run = await runChild(dir, total, batch, snapshotEvery, last ? undefined : { killAfter, delayMs });
      for (const line of run.lines) for (const [id, i] of line.added ?? []) committed.set(id, i);
      if (last) addedByLast = run.lines.reduce((s, l) => s + (l.added?.length ?? 0), 0);
      assert.equal(run.done, last, `round ${round}: the child should ${last ? 'finish' : 'be killed'}`);

      const leftovers = fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));
      const index = VectorIndex.open(dir, { expectedFingerprint: FP_A });
      const { snapshot, reason, replayed } = index.info().opened;
      t.diagnostic(
        `round ${round}: ${last ? 'finished' : `killed ${delayMs} ms after new batch ${killAfter}`} (snapshot every ${snapshotEvery}); ${committed.size} reported, ${index.size} live; reopen: snapshot ${snapshot}${reason ? ` (${reason})` : ''}, replayed +${replayed.added}/-${replayed.deleted}${leftovers.length ? `, temp files ${leftovers.join(' ')}` : ''}`,
      );
      for (const [id, i] of committed)
        assert.deepEqual(
          index.existing([expectedSha.get(i)!]).get(expectedSha.get(i)!),
          id,
          `round ${round}: committed item ${i} (id ${id})`,
        );
      assert.equal(index.size, index.info().counts.live);
      assert.ok(index.size >= committed.size);
      assert.deepEqual(verifyIndex(index, { sampleSize: 50 }).problems, [], `round ${round}`);
      if (round === 3) liveBeforeLast = index.size;
      index.close({ snapshot: rng() < 0.5 }); // sometimes leave the replay to the child
    }
    const index = VectorIndex.open(dir);
    assert.equal(index.size, total, 'every item once');
    assert.equal(addedByLast, total - liveBeforeLast, 'the re-run added only what was missing');
    assert.equal(index.existing([...expectedSha.values()]).size, total);
    index.close();
  });
});

interface ChildLine {
  added?: [number, number][];
  duplicates?: number;
  done?: boolean;
}

/** Runs the crash child; with `kill`, SIGKILLs it `delayMs` after its `killAfter`-th batch of new items. */
function runChild(
  dir: string,
  total: number,
  batch: number,
  snapshotEvery: number,
  kill?: { killAfter: number; delayMs: number },
): Promise<{ lines: ChildLine[]; done: boolean }> {
  const script = path.join(import.meta.dirname, 'fixtures', 'index-crash-child.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, dir, String(total), String(batch), String(snapshotEvery)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: ChildLine[] = [];
  let buf = '',
    stderr = '',
    batches = 0,
    killing = false;
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d) => {
    buf += d;
    for (let nl; (nl = buf.indexOf('\n')) >= 0; buf = buf.slice(nl + 1)) {
      const line = JSON.parse(buf.slice(0, nl)) as ChildLine;
      lines.push(line);
      // Batches the previous runs committed come back as duplicates: count only new progress.
      if (line.added?.length && ++batches >= (kill?.killAfter ?? Infinity) && !killing) {
        killing = true;
        setTimeout(() => child.kill('SIGKILL'), kill!.delayMs);
      }
    }
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      // Only whole lines count: a partial one was never reported.
      if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`crash child exited with ${code}: ${stderr}`));
      else resolve({ lines, done: lines.some((l) => l.done) });
    });
  });
}

describe('bench index', () => {
  test('one row per efConstruction over the live items; a graph searched with ef >= its size is exact', async () => {
    const index = create(newDir(), 16, { ef: 400 });
    try {
      const ids = addAll(index, makeItems(300, 16, 'bench'));
      index.remove(ids.slice(0, 20));
      const r = await benchIndex(index, [400, 4], { sample: 50 });
      assert.equal(r.items, 280);
      assert.deepEqual([r.dim, r.M, r.queries], [16, 16, 50]);
      assert.deepEqual(
        r.rows.map((x) => [x.efConstruction, x.search.map((q) => q.ef)]),
        [
          [400, [400]],
          [4, [400]],
        ],
      ); // the index's ef
      assert.equal(r.rows[0].search[0].recallAt10, 1);
      for (const x of r.rows) assert.ok(x.usPerItem > 0 && x.search[0].recallAt10 > 0 && x.search[0].recallAt10 <= 1, JSON.stringify(x));
      const widths = await benchIndex(index, [8], { efs: [10, 300], sample: 50 });
      assert.deepEqual(
        widths.rows[0].search.map((q) => q.ef),
        [10, 300],
      );
      assert.equal(widths.rows[0].search[1].recallAt10, 1); // ef >= live items: exact
    } finally {
      index.close();
    }
  });
});
