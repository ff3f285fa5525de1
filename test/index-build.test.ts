// The indexing pipeline and `matvit index ...` commands: builds killed with SIGKILL and resumed,
// idempotent re-runs, add/remove/compact, a damaged snapshot, a wrong model, bad and odd image
// files, shards and merge. A tiny random model (28x28 gray, 5 tokens) keeps encoding cheap; the
// CLI runs as a user runs it, in child processes of bin/matvit.js.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import seedrandom from 'seedrandom';
import sharp, { type CreateRaw } from 'sharp';
import type { Dataset } from '../src/data/dataset.ts';
import { type BuildSummary, buildIndex } from '../src/index/build.ts';
import { runPipeline } from '../src/index/pipeline.ts';
import { parseShard, shardOf } from '../src/index/shard.ts';
import { createEncoder } from '../src/engine/encoder.ts';
import { VectorIndex, STORE_FILE } from '../src/index/vector-index.ts';
import { verifyIndex } from '../src/index/verify.ts';
import { Store } from '../src/index/store.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint.ts';
import { granularityDims } from '../src/model/config.ts';
import { initWeights } from '../src/model/weights.ts';
import { UsageError } from '../src/cli/common.ts';
import { indexCommand } from '../src/cli/index-cmd.ts';
import { benchIndexCommand } from '../src/cli/index-maintain.ts';
import { tinyFmnistConfig } from './helpers/tiny.ts';

const BIN = path.resolve(import.meta.dirname, '../bin/matvit.js');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-build-test-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
const dir = (name: string) => path.join(root, name);

const TINY = tinyFmnistConfig({ name: 'tiny-index', interpolation: 'bilinear', cropPct: 1 });

/**
 * A checkpoint with weights scaled up from timm's init (std 0.02 makes every image's embedding
 * nearly the CLS token's), so that embeddings depend on the image and neighbours are distinct.
 */
function makeModel(out: string, seed: number): string {
  const w = initWeights(TINY, seed);
  for (const t of Object.values(w))
    if (t.shape.length === 2) for (let i = 0; i < t.data.length; i++) t.data[i] *= 1 / (0.02 * Math.sqrt(t.shape[0]));
  return saveCheckpoint(out, TINY, w).fingerprint;
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}
const finished = (child: ChildProcess): Promise<Run> =>
  new Promise((resolve, reject) => {
    let stdout = '',
      stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
const start = (args: string[]) => spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
const matvit = (...args: string[]) => finished(start(args));
/** Runs a command that must succeed; returns its parsed --json output. */
async function json<T = unknown>(...args: string[]): Promise<T> {
  const r = await matvit(...args, '--json');
  assert.equal(r.code, 0, `matvit ${args.join(' ')} exited with ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Live items of an index straight from its store: sha256 -> { id, source }. */
function liveItems(indexDir: string): Map<string, { id: number; source: string }> {
  const store = Store.open(path.join(indexDir, STORE_FILE), { readOnly: true });
  try {
    const out = new Map<string, { id: number; source: string }>();
    for (const chunk of store.liveItems())
      for (const it of chunk) {
        assert.ok(!out.has(it.sha256), `sha256 ${it.sha256} is live twice`);
        out.set(it.sha256, { id: it.id, source: it.source });
      }
    return out;
  } finally {
    store.close();
  }
}
const bySource = (m: Map<string, { source: string }>) => new Map([...m].map(([sha, v]) => [sha, v.source]));

/** A few stored vectors of an index, as queries. */
function queriesFrom(indexDir: string, n: number): Float32Array[] {
  const ids = [...liveItems(indexDir).values()]
    .map((v) => v.id)
    .filter((_, i) => i % 97 === 3)
    .slice(0, n);
  const store = Store.open(path.join(indexDir, STORE_FILE), { readOnly: true });
  try {
    const flat = store.vectorsOf(ids);
    return ids.map((_, i) => flat.slice(i * store.dim, (i + 1) * store.dim));
  } finally {
    store.close();
  }
}

/**
 * Exact top-10 of both indexes agree: same scores (to float noise: a batch of other images can
 * change the last bits of an embedding) and the same sources, except among hits tied with the
 * 10th within that noise, where either may make the cut.
 */
function assertSameExact(a: string, b: string, queries: Float32Array[]): void {
  const [ia, ib] = [VectorIndex.open(a, { mode: 'read' }), VectorIndex.open(b, { mode: 'read' })];
  try {
    for (const q of queries) {
      const [ha, hb] = [ia.searchExact(q, 10), ib.searchExact(q, 10)];
      assert.equal(ha.length, hb.length);
      ha.forEach((h, i) => assert.ok(Math.abs(h.score - hb[i].score) < 1e-5, `rank ${i}: score ${h.score} vs ${hb[i].score}`));
      const edge = ha[ha.length - 1].score;
      const clear = (hs: typeof ha) =>
        hs
          .filter((h) => h.score > edge + 1e-5)
          .map((h) => h.source)
          .sort();
      assert.deepEqual(clear(ha), clear(hb));
    }
  } finally {
    ia.close();
    ib.close();
  }
}

const N = 1500; // Fashion-MNIST test images in the crash and shard tests
const DATA = `fashion-mnist:test[:${N}]`;
let model: string, fingerprint: string, modelB: string, fingerprintB: string, ref: string;
let refSummary: BuildSummary;

before(async () => {
  model = dir('model');
  fingerprint = makeModel(model, 0);
  modelB = dir('model-b');
  fingerprintB = makeModel(modelB, 1);
  // The uninterrupted build every other build of DATA is compared with (in-process: faster).
  ref = dir('ref');
  refSummary = await buildIndex({ checkpoint: loadCheckpoint(model), modelDir: model, data: DATA, out: ref, batch: 16 });
});

describe('index build', () => {
  test('the reference build: every item added once, metadata and manifest recorded', () => {
    const s = refSummary;
    assert.equal(s.items, N);
    // A small model: one encoder worker per core (two on CI and here), one intra-op thread each.
    assert.match(s.engine, os.availableParallelism() > 1 ? /in \d+ worker threads\)$/ : /in a worker thread\)$/);
    assert.equal(s.added + s.duplicates.count, N);
    assert.equal(s.skipped.count + s.alreadyIndexed, 0);
    const live = liveItems(ref);
    assert.equal(live.size, s.added);
    const index = VectorIndex.open(ref, { mode: 'read' });
    const { manifest } = index.info();
    const first = index.item(1)!;
    index.close();
    assert.deepEqual([first.source, first.bytes], ['idx:#0', 28 * 28]);
    assert.equal(
      first.labelName,
      ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'][first.label],
    );
    assert.equal(manifest.fingerprint, fingerprint);
    assert.deepEqual(manifest.ffnDims, [32, 32], 'XL by default');
    assert.equal(path.resolve(ref, manifest.modelPath!), model);
    assert.equal(manifest.corpus.spec, `fashion-mnist:test[0:${N}]`);
  });

  test('SIGKILL after the first batch, mid-run and during a snapshot; each resume keeps what was committed and ends equal to an uninterrupted build', async (t) => {
    const out = dir('crash');
    fs.mkdirSync(out); // an empty directory is a valid place for a new index, and can be watched from the start
    const args = [
      'index',
      'build',
      '--model',
      model,
      '--data',
      DATA,
      '--out',
      out,
      '--batch',
      '8',
      '--snapshot-every',
      '4',
      '--no-progress',
    ];
    let committed = new Map<string, { id: number; source: string }>();
    const kills: [string, (child: ChildProcess) => () => void][] = [
      ['after the first committed batch', (child) => killAtSeq(child, out, 1)],
      ['mid-run', (child) => killAtSeq(child, out, N / 2)],
      ['during a snapshot', (child) => killOnSnapshot(child, out, 3)],
    ];
    for (const [when, arm] of kills) {
      const child = start(args);
      const disarm = arm(child);
      const r = await finished(child);
      disarm();
      assert.equal(r.signal, 'SIGKILL', `killed ${when} (the build ended first: ${r.stdout}${r.stderr})`);
      const now = liveItems(out);
      const temps = fs.readdirSync(out).filter((f) => f.includes('.tmp-'));
      t.diagnostic(`killed ${when}: ${now.size} items committed${temps.length ? `, left ${temps.join(', ')}` : ''}`);
      for (const [sha, v] of committed)
        assert.deepEqual(now.get(sha), v, `item ${v.source} committed before an earlier kill is still there with its id`);
      assert.ok(now.size >= committed.size);
      committed = now;
      VectorIndex.open(out, { expectedFingerprint: fingerprint }).close(); // opens (replaying or rebuilding the graph)
    }
    const final = JSON.parse((await matvit(...args, '--json')).stdout) as BuildSummary;
    assert.equal(final.alreadyIndexed, committed.size, 'the resumed run skips exactly what was committed');
    const done = liveItems(out);
    for (const [sha, v] of committed) assert.deepEqual(done.get(sha), v);
    assert.deepEqual(bySource(done), bySource(liveItems(ref)), 'same content, same sources as the uninterrupted build');
    assertSameExact(out, ref, queriesFrom(ref, 5));
    const v = await json<{ ok: boolean; problems: string[] }>('index', 'verify', '--index', out);
    assert.ok(v.ok, v.problems.join('; '));
  });

  test('re-running a finished build adds nothing', async () => {
    const s = await json<BuildSummary>('index', 'build', '--model', model, '--data', DATA, '--out', ref, '--batch', '64', '--workers', '1');
    assert.deepEqual([s.added, s.duplicates.count, s.alreadyIndexed, s.live], [0, 0, refSummary.added, refSummary.added]);
    assert.match(s.engine, /in a worker thread\)$/);
    assert.equal(s.snapshots, 0, 'nothing new, no snapshot rewritten');
  });

  test('2 shards + merge equal one build', async () => {
    assert.throws(() => parseShard('0/2'), /shard "0\/2": expected i\/n with 1 <= i <= n/);
    const shards = [1, 2].map((i) => dir(`shard${i}`));
    const summaries: BuildSummary[] = [];
    for (const [k, out] of shards.entries())
      summaries.push(
        await buildIndex({
          checkpoint: loadCheckpoint(model),
          modelDir: model,
          data: DATA,
          out,
          batch: 32,
          shard: { index: k + 1, count: 2 },
        }),
      );
    assert.equal(summaries[0].items + summaries[1].items, N, 'the shards split the corpus');
    assert.ok(Math.min(summaries[0].items, summaries[1].items) > N / 3, `a hash split is roughly even: ${summaries.map((s) => s.items)}`);
    const [a, b] = shards.map(liveItems);
    for (const v of a.values()) assert.equal(shardOf(v.source, 2), 0);
    for (const v of b.values()) assert.equal(shardOf(v.source, 2), 1);
    const merged = dir('merged');
    const r = await json<{ live: number }>('index', 'merge', '--out', merged, ...shards);
    assert.equal(r.live, refSummary.added);
    assert.deepEqual(bySource(liveItems(merged)), bySource(liveItems(ref)));
    assertSameExact(merged, ref, queriesFrom(ref, 5));
    const m = VectorIndex.open(merged, { mode: 'read' });
    assert.equal(path.resolve(merged, m.info().manifest.modelPath!), model, 'the merged index records where the model is');
    m.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Image folders

/** A PNG of seeded noise: distinct content per seed. */
async function noisePng(file: string, seed: string, width = 40, height = 30, channels: 1 | 3 = 3): Promise<void> {
  const rng = seedrandom(seed);
  const px = Buffer.from(Array.from({ length: width * height * channels }, () => Math.floor(rng() * 256)));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(px, { raw: { width, height, channels } }).png().toFile(file);
}

describe('index add, remove, compact', () => {
  test('add files and folders, remove by path and id (never returned again), compact, re-add', async () => {
    const corpus = dir('photos');
    for (const cls of ['cat', 'dog']) for (let i = 0; i < 6; i++) await noisePng(path.join(corpus, cls, `${i}.png`), `${cls}${i}`);
    const out = dir('photos-index');
    const built = await json<BuildSummary>('index', 'build', '--model', model, '--data', corpus, '--out', out, '--no-progress');
    assert.equal(built.added, 12);
    // New files: two in a class folder of the corpus, one outside it.
    const [n1, n2, outside] = [path.join(corpus, 'dog', 'new1.png'), path.join(corpus, 'dog', 'new2.png'), dir('elsewhere/x.png')];
    for (const f of [n1, n2, outside]) await noisePng(f, f);
    const added = await json<BuildSummary>('index', 'add', '--index', out, n1, n2, outside, '--no-progress');
    assert.equal(added.added, 3);
    const again = await json<BuildSummary>('index', 'add', '--index', out, corpus, '--no-progress');
    assert.deepEqual([again.added, again.alreadyIndexed], [0, 14], 'adding the whole folder again adds nothing');
    let index = VectorIndex.open(out, { mode: 'read' });
    const items = [...liveItems(out).values()];
    const info = (source: string) => index.item(items.find((v) => v.source === source)!.id)!;
    assert.deepEqual(
      [info('dog/new1.png').label, info('dog/new1.png').labelName],
      [1, 'dog'],
      'a file added into a class folder gets its label',
    );
    assert.equal(info(path.resolve(outside)).label, -1, 'a file outside the corpus root: absolute path, no label');
    index.close();

    const gone = [items.find((v) => v.source === 'dog/new1.png')!, items.find((v) => v.source === 'cat/0.png')!];
    const byPath = await json<{ removed: number[] }>('index', 'remove', '--index', out, '--path', n1);
    const byId = await json<{ removed: number[]; missing: number[] }>(
      'index',
      'remove',
      '--index',
      out,
      '--id',
      String(gone[1].id),
      '9999',
    );
    assert.deepEqual([byPath.removed, byId.removed, byId.missing], [[gone[0].id], [gone[1].id], [9999]]);
    const queries = queriesFrom(out, 20);
    const store = Store.open(path.join(out, STORE_FILE), { readOnly: true });
    const goneVectors = gone.map((g) => store.vectorsOf([g.id]));
    store.close();
    const neverReturned = () => {
      const ix = VectorIndex.open(out, { mode: 'read' });
      for (const q of [...queries, ...goneVectors])
        for (const hits of [ix.search(q, 13), ix.searchExact(q, 13)])
          for (const g of gone) assert.ok(!hits.some((h) => h.id === g.id), `removed item ${g.source} returned`);
      ix.close();
    };
    neverReturned();
    const c = await json<{ before: number; after: number; live: number }>('index', 'compact', '--index', out);
    assert.deepEqual([c.before, c.after, c.live], [15, 13, 13]);
    neverReturned();
    const verified = VectorIndex.open(out, { mode: 'read' });
    assert.ok(verifyIndex(verified).ok);
    verified.close();
    // Removed content can be added again: it is new then, with a new id.
    const readd = await json<BuildSummary>('index', 'add', '--index', out, n1, '--no-progress');
    assert.equal(readd.added, 1);
    index = VectorIndex.open(out, { mode: 'read' });
    const back = index.searchExact(goneVectors[0], 1)[0];
    assert.ok(back.source === 'dog/new1.png' && back.id > 15, `re-added with a new id: ${JSON.stringify(back)}`);
    index.close();
  });

  test('a truncated snapshot: reported by info and verify, rebuilt by a writable open; a wrong model is refused, naming both fingerprints', async () => {
    const out = dir('damaged');
    fs.cpSync(ref, out, { recursive: true });
    const graph = path.join(out, 'graph.bin');
    fs.truncateSync(graph, Math.floor(fs.statSync(graph).size / 2));
    const info = await json<{ opened: { snapshot: string; rebuilt: boolean; reason: string; damage: string[] } }>(
      'index',
      'info',
      '--index',
      out,
    );
    assert.deepEqual([info.opened.snapshot, info.opened.rebuilt], ['corrupt', true]);
    assert.match(info.opened.reason, /graph\.bin has \d+ bytes, the sidecar says \d+/);
    assert.match(info.opened.damage.join('\n'), /^graph snapshot corrupt \(graph\.bin has \d+ bytes/);
    const damaged = await matvit('index', 'verify', '--index', out, '--json');
    assert.equal(damaged.code, 1, 'the snapshot on disk is still damaged: verify opens read-only');
    assert.match(
      JSON.parse(damaged.stdout).problems.join('\n'),
      /^graph snapshot corrupt \(graph\.bin has \d+ bytes, the sidecar says \d+ \(truncated or replaced\)\): rebuilt the graph from the \d+ live stored vectors in \d+ ms in memory \(read-only: the files are left as they are\)$/,
    );
    const repaired = VectorIndex.open(out); // a writable open writes the rebuilt graph back, and says so
    assert.deepEqual(repaired.opened.damage, []);
    assert.match(
      repaired.opened.warnings.join('\n'),
      /^graph snapshot corrupt \(.*\): rebuilt the graph from the \d+ live stored vectors in \d+ ms and wrote a new snapshot$/m,
    );
    repaired.close();
    const reopened = VectorIndex.open(out, { mode: 'read' });
    assert.equal(reopened.info().opened.snapshot, 'loaded');
    reopened.close();
    assert.ok((await json<{ ok: boolean }>('index', 'verify', '--index', out)).ok);

    // verify fails (exit code 1) when the parts disagree: here a manifest whose counts were edited.
    const manifestFile = path.join(out, 'manifest.json');
    const manifest = fs.readFileSync(manifestFile, 'utf8');
    fs.writeFileSync(manifestFile, manifest.replace(/"live": \d+/, '"live": 99'));
    const bad = await matvit('index', 'verify', '--index', out);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /NOT OK[\s\S]*problem: manifest counts at seq \d+ are live 99/);
    fs.writeFileSync(manifestFile, manifest);

    const image = dir('one/image.png');
    await noisePng(image, 'one');
    for (const args of [
      ['build', '--data', DATA, '--out', out],
      ['add', '--index', out, image],
    ]) {
      const r = await matvit('index', ...args, '--model', modelB, '--no-progress');
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(fingerprint) && r.stderr.includes(fingerprintB), `both fingerprints named: ${r.stderr}`);
    }
  });

  test('bad options name the flag, the value and what is accepted; every command has --help', async () => {
    // In-process (commander resets its state on every parse), then once as a user sees it.
    const cases: [string[], RegExp][] = [
      [
        ['build', '--model', model, '--data', DATA, '--out', dir('x'), '--shard', '3/2'],
        /^--shard: shard "3\/2": expected i\/n with 1 <= i <= n.*\(received "3\/2"\)$/,
      ],
      [
        ['build', '--model', model, '--data', DATA, '--out', dir('x'), '--batch', '0'],
        /^--batch: expected an integer >= 1 \(received "0"\)$/,
      ],
      [
        ['build', '--model', model, '--data', DATA, '--out', dir('x'), '--granularity', 'xxl'],
        /^--granularity: submodel "xxl": expected one of s, m, l, xl/,
      ],
      [['remove', '--index', ref], /^give one of --id ID\.\.\. or --path PATH\.\.\.$/],
      [['remove', '--index', ref, '--id', 'seven'], /^--id: expected an integer >= 1 \(received \["seven"\]\)$/],
      [['verify', '--index', ref, '--min-recall', '2'], /^--min-recall: expected a number in 0\.\.1 \(received "2"\)$/],
    ];
    for (const [args, message] of cases)
      await assert.rejects(
        indexCommand.parseAsync(args, { from: 'user' }),
        (e: Error) => e instanceof UsageError && message.test(e.message),
        args.join(' '),
      );
    await assert.rejects(
      benchIndexCommand.parseAsync(['--index', ref, '--ef-construction', '64,x'], { from: 'user' }),
      (e: Error) =>
        e instanceof UsageError &&
        /^--ef-construction: expected a comma-separated list of positive integers \(received "64,x"\)$/.test(e.message),
    );
    for (const sub of indexCommand.commands) assert.match(sub.helpInformation(), new RegExp(`^Usage: index ${sub.name()} `), sub.name());
    assert.deepEqual(
      indexCommand.commands.map((c) => c.name()),
      ['build', 'add', 'remove', 'compact', 'info', 'verify', 'recover', 'merge', 'enqueue', 'worker', 'collect', 'status'],
    );
    const r = await matvit('index', 'build', '--model', model, '--data', DATA, '--out', dir('x'), '--shard', '1/0');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: --shard: shard "1\/0": expected i\/n/);
  });
});

describe('bad and unusual image files', () => {
  test('each bad kind is skipped with its reason (summary and --json); alpha, palette, CMYK, 16-bit, EXIF-rotated and animated images are indexed', async () => {
    const d = dir('odd');
    fs.mkdirSync(d, { recursive: true });
    const rng = seedrandom('odd');
    const noise = (w: number, h: number, c: 3 | 4) =>
      sharp(Buffer.from(Array.from({ length: w * h * c }, () => Math.floor(rng() * 256))), { raw: { width: w, height: h, channels: c } });
    const jpeg = await noise(64, 48, 3).jpeg().toBuffer();
    const png = await noise(60, 60, 3).png().toBuffer();
    const frames = Buffer.concat([await noise(8, 8, 3).raw().toBuffer(), await noise(8, 8, 3).raw().toBuffer()]);
    const anim = () => sharp(frames, { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } as CreateRaw });
    const files: [string, Buffer | string][] = [
      ['alpha.png', await noise(30, 30, 4).png().toBuffer()],
      ['palette.png', await noise(30, 30, 3).png({ palette: true }).toBuffer()],
      ['cmyk.jpg', await noise(30, 30, 3).toColourspace('cmyk').jpeg().toBuffer()],
      ['deep.png', await noise(30, 30, 3).toColourspace('rgb16').png().toBuffer()],
      ['rotated.jpg', await noise(32, 16, 3).jpeg().withMetadata({ orientation: 6 }).toBuffer()],
      ['anim.gif', await anim().gif().toBuffer()],
      ['anim.webp', await anim().webp({ lossless: true }).toBuffer()],
      ['ok.jpg', jpeg],
      ['corrupt.png', Buffer.from(png.map((v, i) => (i > png.length / 2 && i < png.length / 2 + 64 ? v ^ 0x55 : v)))],
      ['truncated.jpg', jpeg.subarray(0, Math.floor(jpeg.length * 0.6))],
      ['zero.png', Buffer.alloc(0)],
      ['text.jpg', 'this is not an image\n'],
      [
        'bomb.png',
        await sharp({ create: { width: 3000, height: 2000, channels: 3, background: '#336699' } })
          .png()
          .toBuffer(),
      ],
    ];
    for (const [name, data] of files) fs.writeFileSync(path.join(d, name), data);
    const cmyk = await sharp(path.join(d, 'cmyk.jpg')).metadata();
    assert.equal(cmyk.space, 'cmyk');
    assert.equal((await sharp(path.join(d, 'anim.gif')).metadata()).pages, 2);
    const out = dir('odd-index');
    const args = ['index', 'build', '--model', model, '--data', `files:${d}`, '--out', out, '--max-pixels', '1000000', '--no-progress'];
    const s = await json<BuildSummary>(...args);
    const reasons = Object.fromEntries(s.skipped.items.map((k) => [k.ref, k.reason]));
    assert.deepEqual(reasons, {
      'bomb.png': 'too-many-pixels',
      'corrupt.png': 'corrupt',
      'text.jpg': 'unsupported-format',
      'truncated.jpg': 'truncated',
      'zero.png': 'empty',
    });
    assert.deepEqual(s.skipped.byReason, { 'too-many-pixels': 1, corrupt: 1, 'unsupported-format': 1, truncated: 1, empty: 1 });
    assert.ok(s.skipped.items.every((k) => k.message.length > 0));
    assert.equal(s.added, 8);
    assert.deepEqual([...liveItems(out).values()].map((v) => v.source).sort(), [
      'alpha.png',
      'anim.gif',
      'anim.webp',
      'cmyk.jpg',
      'deep.png',
      'ok.jpg',
      'palette.png',
      'rotated.jpg',
    ]);
    // The human summary lists them too.
    fs.rmSync(out, { recursive: true });
    const text = (await matvit(...args)).stdout;
    for (const [ref, reason] of Object.entries(reasons)) assert.ok(text.includes(`skipped ${ref}: ${reason}: `), `${ref} in:\n${text}`);
  });
});

describe('duplicates', () => {
  for (const [batch, concurrency] of [
    [2, 1],
    [6, 6],
  ])
    test(`the first in dataset order is kept, the others are reported, within and across batches (batch ${batch}, concurrency ${concurrency})`, async () => {
      const d = dir(`dups-${batch}`);
      await noisePng(path.join(d, '0.png'), 'X');
      await noisePng(path.join(d, '1.png'), 'Y');
      await noisePng(path.join(d, '3.png'), 'Z');
      for (const [from, to] of [
        ['0', '2'],
        ['1', '4'],
        ['0', '5'],
      ])
        fs.copyFileSync(path.join(d, `${from}.png`), path.join(d, `${to}.png`));
      const out = dir(`dups-${batch}-index`);
      const build = () => buildIndex({ checkpoint: loadCheckpoint(model), modelDir: model, data: `files:${d}`, out, batch, concurrency });
      const s = await build();
      assert.equal(s.added, 3);
      assert.deepEqual([...liveItems(out).values()].map((v) => v.source).sort(), ['0.png', '1.png', '3.png']);
      assert.deepEqual(s.duplicates.items.map((x) => [x.ref, x.sameAs]).sort(), [
        ['2.png', '0.png'],
        ['4.png', '1.png'],
        ['5.png', '0.png'],
      ]);
      const again = await build();
      assert.deepEqual([again.added, again.duplicates.count, again.alreadyIndexed], [0, 0, 6], 'a re-run finds every item indexed');
    });

  test('reads finishing in reverse order still keep the first in dataset order', async () => {
    // A dataset whose later items are read first: the pipeline sees a copy before its original.
    const [x, y] = await Promise.all(
      ['X', 'Y'].map(async (seed) => {
        const f = dir(`rev-${seed}.png`);
        await noisePng(f, seed);
        return fs.readFileSync(f);
      }),
    );
    const files: [string, Buffer][] = [
      ['a.png', x],
      ['b.png', y],
      ['c.png', x],
      ['d.png', x],
    ];
    const ds: Dataset = {
      spec: 'reversed',
      size: files.length,
      classNames: [],
      item: (i) => ({ index: i, label: -1, path: files[i][0], ref: files[i][0] }),
      bytes: (i) => new Promise((resolve) => setTimeout(() => resolve(files[i][1]), 20 * (files.length - i))),
      load: () => {
        throw new Error('the pipeline decodes the bytes it hashed');
      },
    };
    const { meta, weights } = loadCheckpoint(model);
    const index = VectorIndex.create(dir('rev-index'), {
      fingerprint: meta.fingerprint,
      modelName: TINY.name,
      ffnDims: granularityDims(TINY, 'xl'),
      dim: TINY.dim,
    });
    const encoder = await createEncoder('onnx', TINY, weights);
    try {
      const r = await runPipeline(index, encoder, granularityDims(TINY, 'xl'), ds, { batch: 4, concurrency: 4 });
      assert.equal(r.added, 2);
      assert.deepEqual(r.duplicates.items.map((d) => [d.ref, d.sameAs]).sort(), [
        ['c.png', 'a.png'],
        ['d.png', 'a.png'],
      ]);
      assert.deepEqual([index.item(1)!.source, index.item(2)!.source], ['a.png', 'b.png'], 'ids in dataset order');
    } finally {
      await encoder.dispose();
      index.close();
    }
  });
});

/** SIGKILLs the child once the index's store has committed `seq` changes; returns a disarm function. */
function killAtSeq(child: ChildProcess, indexDir: string, seq: number): () => void {
  let store: Store | undefined;
  const timer = setInterval(() => {
    try {
      store ??= Store.open(path.join(indexDir, STORE_FILE), { readOnly: true });
      if (store.seq() >= seq) {
        child.kill('SIGKILL');
        clearInterval(timer);
      }
    } catch {
      // the store does not exist yet, or is being created
    }
  }, 2);
  return () => {
    clearInterval(timer);
    store?.close();
  };
}

/** SIGKILLs the child when it starts writing its n-th graph snapshot (a temp file appears). */
function killOnSnapshot(child: ChildProcess, indexDir: string, n: number): () => void {
  const seen = new Set<string>();
  const watcher = fs.watch(indexDir, (_event, name) => {
    if (!name?.startsWith('graph.bin.tmp-') || !fs.existsSync(path.join(indexDir, name))) return;
    seen.add(name);
    if (seen.size === n) child.kill('SIGKILL');
  });
  return () => watcher.close();
}
