// The maintenance commands on a LanceDB index: `bench index --index` measures the store's own search
// (nprobes) against exact search, `bench filter` its filtered search, and `index recover` says there is nothing of SQLite's kind to
// recover. Small synthetic tables (no model needed).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { createLance } from '../src/index/lance-create.ts';
import { FP_A, makeItems } from './fixtures/index-items.ts';
import { fails, matvit } from './helpers/cli.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-lance-tools-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

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

  test('index recover: a LanceDB index commits atomically, nothing to recover, exit 0; not an index: refused', async () => {
    const { stdout } = await matvit('index', 'recover', '--index', uri);
    assert.match(stdout, /commits atomically .* nothing to recover/);
    const empty = path.join(root, 'empty');
    fs.mkdirSync(empty);
    assert.equal((await fails(['index', 'recover', '--index', empty])).code, 1);
  });
});
