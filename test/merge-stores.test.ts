// `index merge` across stores (src/index/merge.ts): a SQLite shard and a LanceDB shard merged into a
// LanceDB index, and the reverse, hold exactly the items a plain loop over the shards' inputs says
// (each content once, the first shard's copy), as does the merge of the same shards in SQLite.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { createLance } from '../src/index/lance-create.ts';
import { mergeIndexes } from '../src/index/merge.ts';
import { openIndex, storeKindAt } from '../src/index/open-store.ts';
import type { IndexStore } from '../src/index/store-api.ts';
import type { NewItem } from '../src/index/store-schema.ts';
import { VectorIndex } from '../src/index/vector-index.ts';
import { FP_A, makeItems } from './fixtures/index-items.ts';
import { matvit } from './helpers/cli.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-merge-stores-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const DIM = 16;
const PARAMS = { fingerprint: FP_A, modelName: 'test', ffnDims: [64], dim: DIM, corpus: {} };

/** What an item is, store aside: everything merge copies. */
const key = (it: { source: string; label: number | null; labelName?: string | null; sha256: string; bytes: number; payload?: unknown }) =>
  JSON.stringify([it.sha256, it.source, it.label, it.labelName ?? null, it.bytes, it.payload ?? null]);

/** Every live item of an index by content: key -> vector; fails when a content is live twice. */
function contents(dir: string): Map<string, number[]> {
  const index = openIndex(dir, { mode: 'read' });
  try {
    const out = new Map<string, number[]>();
    const shas = new Set<string>();
    for (const page of index.liveItems(50))
      for (const it of page) {
        assert.ok(!shas.has(it.sha256), `${it.sha256} live twice in ${dir}`);
        shas.add(it.sha256);
        out.set(key(it), Array.from(it.vector));
      }
    assert.equal(out.size, index.size);
    return out;
  } finally {
    index.close();
  }
}

/** Stored vectors are the inputs normalized again (store-schema.ts), so equal to float32 rounding. */
function assertClose(got: number[], want: number[], what: string): void {
  assert.equal(got.length, want.length, what);
  for (let j = 0; j < want.length; j++) assert.ok(Math.abs(got[j] - want[j]) < 1e-6, `${what}: component ${j} ${got[j]} vs ${want[j]}`);
}

describe('index merge across stores', () => {
  const items: NewItem[] = makeItems(300, DIM, 'merge-stores').map((it, i) => (i % 3 ? it : { ...it, payload: { i, tag: `t${i % 7}` } }));
  // Shard a: the even items and item 1 (also in shard b); item 4 is removed from it. Shard b: the odd items.
  const inA = [...items.filter((_, i) => i % 2 === 0), items[1]];
  const inB = items.filter((_, i) => i % 2 === 1);
  const removed = items[4].sha256;

  /** The reference: a plain loop over the shards' live inputs, first copy of each content kept. */
  const expected = new Map<string, number[]>();
  const seen = new Set<string>();
  for (const it of [...inA.filter((x) => x.sha256 !== removed), ...inB])
    if (!seen.has(it.sha256)) {
      seen.add(it.sha256);
      expected.set(key({ ...it, label: it.label ?? null, bytes: it.bytes ?? 0 }), Array.from(it.vector as Float32Array));
    }

  function shard(kind: 'sqlite' | 'lance', name: string, its: NewItem[]): string {
    const dir = path.join(root, name);
    const index: IndexStore = kind === 'lance' ? createLance(dir, PARAMS) : VectorIndex.create(dir, PARAMS);
    try {
      for (let i = 0; i < its.length; i += 64) assert.equal(index.add(its.slice(i, i + 64)).duplicates.length, 0);
      const id = index.existing([removed]).get(removed);
      if (id !== undefined) assert.deepEqual(index.remove([id]).removed, [id]);
    } finally {
      index.close();
    }
    return dir;
  }

  test('sqlite + lance into lance, lance + sqlite into sqlite: the items of a sqlite merge, each once', () => {
    const sa = shard('sqlite', 'sa', inA),
      sb = shard('sqlite', 'sb', inB),
      la = shard('lance', 'la', inA),
      lb = shard('lance', 'lb', inB);
    const shardCounts = [
      [inA.length - 1, inA.length - 1, 0],
      [inB.length, inB.length - 1, 1], // item 1 came with shard a
    ];
    const runs = [
      { out: path.join(root, 'ref'), shards: [sa, sb], store: 'sqlite' as const },
      { out: path.join(root, 'to-lance'), shards: [sa, lb], store: 'lance' as const },
      { out: path.join(root, 'to-sqlite'), shards: [la, sb], store: 'sqlite' as const },
      { out: path.join(root, 'all-lance'), shards: [la, lb], store: 'lance' as const },
    ];
    for (const r of runs) {
      const report = mergeIndexes(r.out, r.shards, { store: r.store, chunk: 40 });
      assert.deepEqual(
        report.shards.map((s) => [s.live, s.added, s.duplicates]),
        shardCounts,
        r.out,
      );
      assert.equal(report.live, expected.size);
      assert.equal(storeKindAt(r.out), r.store);
      const got = contents(r.out);
      assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort(), `${r.out} holds each input content once, as given`);
      for (const [k, v] of expected) assertClose(got.get(k)!, v, k);
      // Again, as after an interruption: nothing is added twice.
      assert.deepEqual(
        mergeIndexes(r.out, r.shards).shards.map((s) => s.added),
        [0, 0],
      );
    }
    assert.throws(
      () => mergeIndexes(path.join(root, 'ref'), [sa], { store: 'lance' }),
      /holds a SQLite index/,
      'a LanceDB index is not created beside a SQLite one',
    );
    // Search works on the merged LanceDB index: each item's own vector finds it first.
    const merged = openIndex(path.join(root, 'to-lance'), { mode: 'read' });
    try {
      for (const it of items.slice(0, 20).filter((x) => x.sha256 !== removed))
        assert.equal(merged.item(merged.search(it.vector, 1)[0].id)!.sha256, it.sha256);
    } finally {
      merged.close();
    }
  });

  test('matvit index merge --store lance --uri: the CLI', async () => {
    const a = shard('sqlite', 'cli-a', inA.slice(0, 40)),
      b = shard('lance', 'cli-b', inB.slice(0, 40));
    const out = path.join(root, 'cli-out');
    const { stdout } = await matvit('index', 'merge', '--store', 'lance', '--uri', out, '--json', a, b);
    const r = JSON.parse(stdout) as { live: number; shards: { added: number }[] };
    assert.equal(r.live, 79); // item 4 is removed from shard a
    assert.equal(storeKindAt(out), 'lance');
    await assert.rejects(matvit('index', 'merge', '--uri', out, a), /--uri is for --store lance/);
    await assert.rejects(matvit('index', 'merge', '--store', 'lance', a), /give one of --out DIR or --store lance --uri/);
  });
});
