// The `matvit` CLI as a user runs it: child processes of bin/matvit.js.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { saveCheckpoint } from '../src/model/checkpoint.ts';
import { PRESETS } from '../src/model/presets.ts';
import { TrainConfig } from '../src/train/config.ts';
import { initWeights } from '../src/model/weights.ts';
import { tinyConfig } from './helpers/tiny.ts';
import { BIN, fails, matvit } from './helpers/cli.ts';
import { serveFixture } from './helpers/serve-fixture.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-cli-'));

describe('matvit CLI', () => {
  const dir = tmp();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--help lists every command, and every command has --help', async () => {
    const { stdout } = await matvit('--help');
    for (const c of ['init', 'info', 'embed', 'export-onnx', 'train', 'eval', 'dataset', 'index', 'serve', 'calibrate', 'bench'])
      assert.match(stdout, new RegExp(`\\b${c}\\b`));
    for (const c of [
      ['init'],
      ['embed'],
      ['eval', 'classify'],
      ['bench', 'encode'],
      ['bench', 'train'],
      ['bench', 'serve'],
      ['dataset', 'export'],
      ['index', 'build'],
      ['serve'],
      ['calibrate'],
    ])
      assert.match((await matvit(...c, '--help')).stdout, /Usage: matvit/);
  });

  it('init + info: s/m/l/xl widths, params, MFLOPs; bad options name the flag', async () => {
    const model = path.join(dir, 'fm');
    await matvit('init', '--preset', 'fmnist-tiny', '--out', model, '--seed', '3', '--classes', 'a,b,c,d,e,f,g,h,i,j');
    const info = JSON.parse((await matvit('info', '--model', model, '--json')).stdout);
    assert.deepEqual(
      info.submodels.map((s: { ffnDims: number[] }) => s.ffnDims[0]),
      [64, 128, 256, 512],
    );
    assert.equal(info.model.classNames[9], 'j');
    assert.ok(info.submodels[0].mflops < info.submodels[3].mflops);
    const bad = await fails(['init', '--preset', 'vit-xxl', '--out', path.join(dir, 'x')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--preset: .*"fmnist-tiny".*\(received "vit-xxl"\)/);
  });

  it('embed: JSON with embeddings and top-5; export-onnx gives the same numbers in a fresh session', async () => {
    const model = path.join(dir, 'fm');
    const img = path.join(dir, 'shirt.png');
    await sharp({ create: { width: 40, height: 30, channels: 3, background: '#8040c0' } })
      .png()
      .toFile(img);
    const bogus = path.join(dir, 'bogus.jpg');
    fs.writeFileSync(bogus, 'not an image');
    const res = await fails(['embed', '--model', model, '--granularity', 's', '--json', img, bogus]);
    assert.equal(res.code, 1); // one bad file: reported, the other still embedded
    const { stdout } = await matvit('embed', '--model', model, '--granularity', 's', '--json', img);
    const out = JSON.parse(stdout);
    assert.deepEqual(out.ffnDims, Array(6).fill(64));
    const e = out.results[0].embedding as number[];
    assert.equal(e.length, 128);
    assert.ok(Math.abs(Math.hypot(...e) - 1) < 1e-5);
    assert.equal(out.results[0].top5.length, 5);

    const onnxFile = path.join(dir, 's.onnx');
    await matvit('export-onnx', '--model', model, '--granularity', 's', '--out', onnxFile);
    // The exported graph takes normalized pixels: 40x30 -> short side 28 (cropPct 1) -> center crop.
    const px = await sharp(img)
      .greyscale()
      .resize({ width: 37, height: 28, kernel: 'linear' })
      .extract({ left: 4, top: 0, width: 28, height: 28 })
      .raw()
      .toBuffer();
    const session = await ort.InferenceSession.create(onnxFile);
    const pixels = new ort.Tensor(
      'float32',
      Float32Array.from(px, (v) => (v / 255 - 0.286) / 0.353),
      [1, 1, 28, 28],
    );
    const { embedding } = await session.run({ pixels });
    const got = Array.from(embedding.data as Float32Array);
    assert.ok(
      got.every((v, i) => Math.abs(v - e[i]) < 1e-4),
      'exported model and embed agree',
    );
  });

  it('eval classify on a 20-class folder of mixed-size JPEGs: top-1 matches embed, CSV in timm columns, SVG plot', async () => {
    const names = Array.from({ length: 20 }, (_, k) => `n${String(k).padStart(8, '0')}`);
    const c = tinyConfig({ imageSize: 32, patchSize: 8, numClasses: 20, depth: 1, classNames: names });
    const model = path.join(dir, 'rgb20');
    saveCheckpoint(model, c, initWeights(c, 1));
    const data = path.join(dir, 'imagenet', 'val');
    const files: [string, number][] = [];
    for (let k = 0; k < 20; k++) {
      const cls = path.join(data, names[k]);
      fs.mkdirSync(cls, { recursive: true });
      for (let j = 0; j < 2; j++) {
        const f = path.join(cls, `img${j}.JPEG`);
        const [w, h] = [40 + 13 * k + 7 * j, 90 - 2 * k + 11 * j];
        await sharp({ create: { width: w, height: h, channels: 3, background: { r: 12 * k, g: 255 - 9 * k, b: 100 * j } } })
          .jpeg()
          .toFile(f);
        files.push([f, k]);
      }
    }
    fs.writeFileSync(path.join(data, 'n00000003', 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]));
    const json = path.join(dir, 'r.json');
    const csv = path.join(dir, 'r.csv');
    const { stdout } = await matvit(
      'eval',
      'classify',
      '--model',
      model,
      '--data',
      path.join(dir, 'imagenet', 'val'),
      '--json',
      json,
      '--csv',
      csv,
      '--batch',
      '16',
    );
    assert.match(stdout, /\| submodel \| ffnDims \| top-1 \| top-5 \|/);
    const r = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(r.count, 40);
    assert.deepEqual(
      r.skipped.map((s: { reason: string }) => s.reason),
      ['truncated'],
    );
    // Independent top-1: argmax of the logits `embed` prints for each file.
    const emb = JSON.parse((await matvit('embed', '--model', model, '--json', ...files.map(([f]) => f))).stdout);
    assert.equal(emb.results.length, 40);
    const correct = emb.results.filter((x: { top5: { index: number }[] }, i: number) => x.top5[0].index === files[i][1]).length;
    const xl = r.rows.find((row: { name: string }) => row.name === 'xl');
    assert.equal(xl.top1, correct / 40);
    const header = fs.readFileSync(csv, 'utf8').split('\n')[0].split(',');
    for (const col of [
      'model',
      'top1',
      'top1_err',
      'top5',
      'top5_err',
      'param_count',
      'img_size',
      'crop_pct',
      'interpolation',
      'granularity',
      'mflops',
    ])
      assert.ok(header.includes(col), col);
    assert.match(fs.readFileSync(path.join(dir, 'r.svg'), 'utf8'), /^<svg/);
  });

  it('an exported Fashion-MNIST folder gives the same top-1 as the IDX spec', async () => {
    const model = path.join(dir, 'fm');
    const folder = path.join(dir, 'fmnist-folder');
    await matvit('dataset', 'export', '--data', 'fashion-mnist:test[:300]', '--out', folder);
    const idx = path.join(dir, 'results', 'not-yet', 'idx.json'); // --json's folder is created
    const fold = path.join(dir, 'folder.json');
    await matvit('eval', 'classify', '--model', model, '--data', 'fashion-mnist:test[:300]', '--json', idx);
    await matvit('eval', 'classify', '--model', model, '--data', folder, '--json', fold);
    // A --json that cannot be written is refused before the evaluation, naming the flag.
    const under = path.join(fold, 'x.json'); // a "folder" that is a file
    const bad = await fails(['eval', 'classify', '--model', model, '--data', 'fashion-mnist:test[:300]', '--json', under]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error: --json: cannot create .*folder\.json/);
    const [a, b] = [idx, fold].map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
    assert.equal(a.count, 300);
    assert.deepEqual(
      b.rows.map((r: { top1: number; top5: number }) => [r.top1, r.top5]),
      a.rows.map((r: { top1: number; top5: number }) => [r.top1, r.top5]),
    );
  });

  it('bench train --profile: img/s, the ratio, and kernel times of a forward pass and a training step', async () => {
    const cfg = path.join(dir, 'tiny-train.json');
    fs.writeFileSync(cfg, JSON.stringify({ model: tinyConfig(), batchSize: 4 }));
    const r = JSON.parse(
      (await matvit('bench', 'train', '--config', cfg, '--rounds', '1', '--seconds', '0.2', '--profile', '--json')).stdout,
    );
    assert.equal(r.backend, 'wasm');
    assert.ok(r.forwardImgPerSec > 0 && r.trainImgPerSec.xl > 0 && r.trainImgPerSec.sum > 0);
    assert.equal(r.ratio, r.trainImgPerSec.xl / r.forwardImgPerSec);
    const k = Object.fromEntries(r.kernels.map((e: { kernel: string; forwardMs: number; stepMs: number }) => [e.kernel, e]));
    // The forward's products are fused with their bias; the backward's are plain products (dense's gradient).
    assert.ok(k._FusedMatMul.forwardMs > 0 && k.BatchMatMul.stepMs > 0 && k.BatchMatMul.forwardMs === 0);
    const total = (f: 'forwardMs' | 'stepMs') => r.kernels.reduce((s: number, e: Record<string, number>) => s + e[f], 0);
    assert.ok(total('stepMs') > total('forwardMs'));
    assert.ok(!('unnamed scope' in k)); // custom-gradient scopes are not kernels
  });
});

// Packages that take hundreds of ms to load: no help text may need them.
const HEAVY = [
  '@tensorflow/',
  'onnxruntime-node',
  'sharp',
  'vega',
  'hnswlib-node',
  'better-sqlite3',
  'express',
  'pino',
  'autocannon',
  'cli-progress',
  'onnx-proto',
  '@msgpack/',
];

describe('matvit CLI: start-up and errors that point the right way', () => {
  const dir = tmp();
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("help texts load no engine, codec or chart library, and show the schemas' defaults", async () => {
    // A module hook that logs every resolved import (node's module.register).
    const hook = path.join(dir, 'log-imports.mjs');
    const log = path.join(dir, 'imports.log');
    const logger = `import { appendFileSync } from 'node:fs'; export async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(${JSON.stringify(log)}, r.url + '\\n'); return r; }`;
    fs.writeFileSync(
      hook,
      `import { register } from 'node:module';\nregister('data:text/javascript,' + encodeURIComponent(${JSON.stringify(logger)}));\n`,
    );
    const help = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', hook, BIN, ...args, '--help']);
    for (const args of [
      [],
      ['train'],
      ['bench', 'train'],
      ['eval', 'retrieval'],
      ['index', 'build'],
      ['serve'],
      ['calibrate'],
      ['report'],
      ['import'],
    ]) {
      fs.rmSync(log, { force: true });
      const { stdout } = await help(...args);
      assert.match(stdout, /^Usage: matvit/, args.join(' '));
      const loaded = fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter((u) => u.includes('/node_modules/'));
      assert.ok(
        loaded.some((u) => u.includes('/node_modules/commander/')),
        'the hook saw the imports',
      );
      const heavy = loaded.filter((u) => HEAVY.some((h) => u.includes(`/node_modules/${h}`)));
      assert.deepEqual(heavy, [], `matvit ${args.join(' ')} --help`);
    }
    const train = (await matvit('train', '--help')).stdout.replace(/\s+/g, ' ');
    const d = TrainConfig.parse({ model: PRESETS['fmnist-tiny'], data: 'x' });
    assert.ok(train.includes(`--epochs <n> epochs (default ${d.epochs})`), train);
    assert.ok(train.includes(`(default ${d.cropScale.join(',')})`));
    assert.ok(train.includes('--out <dir> run directory (checkpoints, metrics.jsonl, best/) (required)'));
  });

  it('a misspelt required option is unknown, with a suggestion; a missing or non-checkpoint --model names the path', async () => {
    const typo = await fails(['info', '--modle', path.join(dir, 'm')]);
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /^error: unknown option '--modle'\n\(Did you mean --model\?\)\n\(run `matvit info --help` for usage\)/);
    const missing = await fails(['info']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^error: required option --model not given/);
    const nowhere = path.join(dir, 'no-such-model');
    const gone = await fails(['embed', '--model', nowhere, 'x.png']);
    assert.equal(gone.code, 2);
    assert.ok(
      gone.stderr.includes(`--model: ${nowhere}: no such directory; give a checkpoint directory written by matvit init, train or import`),
      gone.stderr,
    );
    const notCkpt = await fails(['info', '--model', dir]);
    assert.ok(notCkpt.stderr.includes(`--model: ${dir}: not a checkpoint (it holds no config.json)`), notCkpt.stderr);
  });

  it('an index moved together with its model still finds it; a moved model is named with the fix; a busy port names --port', async (t) => {
    const f = await serveFixture(20);
    const moved = path.join(dir, 'moved');
    fs.renameSync(f.root, moved); // index and model together: modelPath is relative to the index
    t.after(() => fs.rmSync(moved, { recursive: true, force: true }));
    const busy = net.createServer();
    await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
    t.after(() => busy.close());
    const port = String((busy.address() as net.AddressInfo).port);
    const index = path.join(moved, 'index');
    // The model loads (else the error would be about it), then the listen fails.
    const inUse = await fails(['serve', '--index', index, '--port', port, '--log-level', 'silent']);
    assert.equal(inUse.code, 2);
    assert.match(inUse.stderr, new RegExp(`^error: --port: 127\\.0\\.0\\.1:${port} is in use .*--port 0 for any free one`));
    // Only the model moves: the error names where the manifest points and both ways out.
    fs.renameSync(path.join(moved, 'model'), path.join(moved, 'model-elsewhere'));
    const lost = await fails(['serve', '--index', index, '--port', '0', '--log-level', 'silent']);
    assert.equal(lost.code, 1);
    assert.ok(
      lost.stderr.includes(`its model is not at ${path.join(moved, 'model')} (the manifest's modelPath "../model", relative to the index)`),
      lost.stderr,
    );
    assert.match(
      lost.stderr,
      /move the index and its model together .* or pass --model DIR \(the checkpoint with fingerprint [0-9a-f]{64}\)/,
    );
  });
});
