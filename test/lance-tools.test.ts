// The maintenance commands on a LanceDB index: `bench index --index` measures the store's own search
// (nprobes) against exact search, `bench filter` its filtered search, and `index recover` says there is nothing of SQLite's kind to
// recover. Small synthetic tables (no model needed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { benchStoreSearch } from '../src/index/bench.ts';
import { createLance } from '../src/index/lance-create.ts';
import { LanceIndex } from '../src/index/lance-store.ts';
import { FP_A, makeItems } from './fixtures/index-items.ts';
import { fails, matvit } from './helpers/cli.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-lance-tools-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** A writer that adds items 100..149 of makeItems(150, 16, 'damaged'), prints their ids and is killed. */
const LAST_ADD = `
import { LanceIndex } from '${path.resolve(import.meta.dirname, '../src/index/lance-store.ts')}';
import { makeItems } from '${path.resolve(import.meta.dirname, 'fixtures/index-items.ts')}';
const index = LanceIndex.open(process.argv[1]);
process.stdout.write(JSON.stringify(index.add(makeItems(150, 16, 'damaged').slice(100)).ids), () => process.kill(process.pid, 'SIGKILL'));
`;

describe('maintenance commands on a LanceDB index', () => {
  const uri = path.join(root, 'lance');
  const index = createLance(uri, { fingerprint: FP_A, modelName: 'test', ffnDims: [64], dim: 16, corpus: {} });
  index.add(makeItems(300, 16, 'lance-tools'));
  index.close();

  test('bench index --index: recall@10 of its search (exact below annMinRows: 1) at the nprobes asked for', async () => {
    const { stdout } = await matvit('bench', 'index', '--index', uri, '--ef', '3,20', '--sample', '40', '--json');
    const r = JSON.parse(stdout) as { items: number; queries: number; search: { ef: number; recallAt10: number }[] };
    assert.deepEqual([r.items, r.queries], [300, 40]);
    assert.deepEqual(
      r.search.map((s) => [s.ef, s.recallAt10]),
      [
        [3, 1],
        [20, 1],
      ],
    );
    const table = await matvit('bench', 'index', '--index', uri, '--sample', '10');
    assert.match(table.stdout, /LanceDB, 300 items, 16-d/);
    assert.match(table.stdout, /\| nprobes \| recall@10 \| us\/query \|/);
  });

  test('bench index on an IVF-PQ table: recall@10 grows with nprobes, >= 0.95 with every partition searched', async () => {
    const dir = path.join(root, 'ann');
    const ann = createLance(dir, { fingerprint: FP_A, modelName: 'test', ffnDims: [64], dim: 16, corpus: {} }, { annMinRows: 256 });
    try {
      ann.add(makeItems(600, 16, 'lance-tools-ann'));
      ann.snapshot(); // trains IVF-PQ: 16 partitions (lance-params.ts's minimum)
      assert.equal(ann.info().store.ann?.type, 'IvfPq');
      const r = await benchStoreSearch(ann, { efs: [1, 16], sample: 100 });
      const [one, all] = r.search.map((x) => x.recallAt10);
      assert.ok(one < all, `nprobes 1: ${one}, 16: ${all}`);
      assert.ok(all >= 0.95, `nprobes 16: ${all}`);
    } finally {
      ann.close();
    }
  });

  test('bench filter --index: its one route (auto) against exact filtered search; other routes refused', async () => {
    const { stdout } = await matvit('bench', 'filter', '--index', uri, '--filter', '{"label":3}', '--sample', '20', '--json');
    const r = JSON.parse(stdout) as { rows: { matching: number; routes: { route: string; recall: number }[] }[] };
    assert.equal(r.rows[0].matching, 30, 'makeItems: label i % 10');
    assert.deepEqual(
      r.rows[0].routes.map((x) => [x.route, x.recall]),
      [['auto', 1]],
    );
    const refused = await fails(['bench', 'filter', '--index', uri, '--filter', '{"label":3}', '--routes', 'graph']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /a lance index has one route, auto/);
  });

  test('index recover: the data file of the last commit lost; refused without --accept-loss, then the readable version restored, no id handed out twice', async () => {
    const dir = path.join(root, 'damaged');
    const its = makeItems(100, 16, 'damaged');
    const data = path.join(dir, 'items.lance', 'data');
    const d = createLance(dir, { fingerprint: FP_A, modelName: 'test', ffnDims: [64], dim: 16, corpus: {} });
    d.add(its.slice(0, 50));
    d.add(its.slice(50));
    d.remove([5]);
    d.close();
    const before = new Set(fs.readdirSync(data));
    // The last add by a writer killed once LanceDB acknowledged it (no close: the meta table knows nothing of it) ...
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', LAST_ADD, dir], { encoding: 'utf8' });
    assert.equal(child.signal, 'SIGKILL', child.stderr);
    const lastIds = JSON.parse(child.stdout) as number[];
    assert.deepEqual([lastIds[0], lastIds.at(-1)], [101, 150]);
    // ... and then its files are gone (a partial copy, or lost before they reached the disk).
    const added = fs.readdirSync(data).filter((f) => !before.has(f));
    assert.ok(added.length > 0);
    for (const f of added) fs.rmSync(path.join(data, f));
    const versions = path.join(dir, 'items.lance', '_versions');
    const evidence = fs.readdirSync(versions).sort();
    assert.throws(
      () => LanceIndex.open(dir),
      /is missing; `matvit index recover --index .*` finds the latest version/,
      'the damaged index does not open',
    );

    const refused = await fails(['index', 'recover', '--index', dir]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /table items: version \d+ cannot be read .*version \d+ can, 50 rows fewer.*Pass --accept-loss/s);
    assert.deepEqual(fs.readdirSync(versions).sort(), evidence, 'nothing changed');

    const { stdout } = await matvit('index', 'recover', '--index', dir, '--accept-loss');
    assert.match(stdout, /items \d+, 50 rows lost/);
    assert.match(stdout, /with 99 live items/);
    const index = LanceIndex.open(dir);
    try {
      assert.equal(index.size, 99);
      assert.ok(index.item(lastIds[0]) === undefined, 'the lost items are gone');
      const fresh = index.add(makeItems(5, 16, 'after-recover')).ids as number[];
      assert.ok(Math.min(...fresh) > Math.max(...lastIds), `new ids ${fresh} after the lost ${lastIds.at(-1)}`);
      assert.equal((index.getMeta('losses') as unknown[]).length, 1);
    } finally {
      index.close();
    }
    assert.match((await matvit('index', 'recover', '--index', dir)).stdout, /nothing to recover/);
  });

  test('index recover: a LanceDB index commits atomically, nothing to recover, exit 0; not an index: refused', async () => {
    const { stdout } = await matvit('index', 'recover', '--index', uri);
    assert.match(stdout, /commits atomically .* nothing to recover/);
    const empty = path.join(root, 'empty');
    fs.mkdirSync(empty);
    assert.equal((await fails(['index', 'recover', '--index', empty])).code, 1);
  });

  test('--sub-vectors that do not divide the dimension: refused before the tables are created', () => {
    const bad = path.join(root, 'bad-sub-vectors');
    assert.throws(
      () => createLance(bad, { fingerprint: FP_A, modelName: 'test', ffnDims: [64], dim: 16, corpus: {} }, { subVectors: 7 }),
      /sub-vectors 7: must divide the embedding dimension 16/,
    );
    assert.ok(!fs.existsSync(path.join(bad, 'items.lance')), 'no items table');
  });

  test(
    'another user opening it: refused naming the permission and why (LanceDB writes its files for their owner only)',
    { skip: process.getuid?.() !== 0 && 'needs root to run a child as another user' },
    () => {
      fs.chmodSync(root, 0o755);
      const bin = path.resolve(import.meta.dirname, '../bin/matvit.js');
      const r = spawnSync(process.execPath, [bin, 'index', 'info', '--index', uri], { uid: 65534, gid: 65534, encoding: 'utf8' });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /permission denied reading the index: LanceDB writes its files readable by their owner only \(mode 0600\)/);
    },
  );
});
