// The `matvit` CLI as a user runs it: child processes of bin/matvit.js.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { saveCheckpoint } from '../src/model/checkpoint.ts';
import { initWeights } from '../src/model/weights.ts';
import { tinyConfig } from './helpers/tiny.ts';
import { fails, matvit } from './helpers/cli.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-cli-'));

describe('matvit CLI', () => {
  const dir = tmp();

  it('--help lists every command, and every command has --help', async () => {
    const { stdout } = await matvit('--help');
    for (const c of ['init', 'info', 'embed', 'export-onnx', 'train', 'eval', 'dataset', 'index', 'serve', 'calibrate', 'bench']) assert.match(stdout, new RegExp(`\\b${c}\\b`));
    for (const c of [['init'], ['embed'], ['eval', 'classify'], ['bench', 'encode'], ['bench', 'train'], ['bench', 'serve'], ['dataset', 'export'], ['index', 'build'], ['serve'], ['calibrate']])
      assert.match((await matvit(...c, '--help')).stdout, /Usage: matvit/);
  });

  it('init + info: s/m/l/xl widths, params, MFLOPs; bad options name the flag', async () => {
    const model = path.join(dir, 'fm');
    await matvit('init', '--preset', 'fmnist-tiny', '--out', model, '--seed', '3', '--classes', 'a,b,c,d,e,f,g,h,i,j');
    const info = JSON.parse((await matvit('info', '--model', model, '--json')).stdout);
    assert.deepEqual(info.submodels.map((s: { ffnDims: number[] }) => s.ffnDims[0]), [64, 128, 256, 512]);
    assert.equal(info.model.classNames[9], 'j');
    assert.ok(info.submodels[0].mflops < info.submodels[3].mflops);
    const bad = await fails(['init', '--preset', 'vit-xxl', '--out', path.join(dir, 'x')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--preset: .*"fmnist-tiny".*\(received "vit-xxl"\)/);
  });

  it('embed: JSON with embeddings and top-5; export-onnx gives the same numbers in a fresh session', async () => {
    const model = path.join(dir, 'fm');
    const img = path.join(dir, 'shirt.png');
    await sharp({ create: { width: 40, height: 30, channels: 3, background: '#8040c0' } }).png().toFile(img);
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
    const px = await sharp(img).greyscale().resize({ width: 37, height: 28, kernel: 'linear' }).extract({ left: 4, top: 0, width: 28, height: 28 }).raw().toBuffer();
    const session = await ort.InferenceSession.create(onnxFile);
    const pixels = new ort.Tensor('float32', Float32Array.from(px, (v) => (v / 255 - 0.286) / 0.353), [1, 1, 28, 28]);
    const { embedding } = await session.run({ pixels });
    const got = Array.from(embedding.data as Float32Array);
    assert.ok(got.every((v, i) => Math.abs(v - e[i]) < 1e-4), 'exported model and embed agree');
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
        await sharp({ create: { width: w, height: h, channels: 3, background: { r: 12 * k, g: 255 - 9 * k, b: 100 * j } } }).jpeg().toFile(f);
        files.push([f, k]);
      }
    }
    fs.writeFileSync(path.join(data, 'n00000003', 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]));
    const json = path.join(dir, 'r.json');
    const csv = path.join(dir, 'r.csv');
    const { stdout } = await matvit('eval', 'classify', '--model', model, '--data', path.join(dir, 'imagenet', 'val'), '--json', json, '--csv', csv, '--batch', '16');
    assert.match(stdout, /\| submodel \| ffnDims \| top-1 \| top-5 \|/);
    const r = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(r.count, 40);
    assert.deepEqual(r.skipped.map((s: { reason: string }) => s.reason), ['truncated']);
    // Independent top-1: argmax of the logits `embed` prints for each file.
    const emb = JSON.parse((await matvit('embed', '--model', model, '--json', ...files.map(([f]) => f))).stdout);
    assert.equal(emb.results.length, 40);
    const correct = emb.results.filter((x: { top5: { index: number }[] }, i: number) => x.top5[0].index === files[i][1]).length;
    const xl = r.rows.find((row: { name: string }) => row.name === 'xl');
    assert.equal(xl.top1, correct / 40);
    const header = fs.readFileSync(csv, 'utf8').split('\n')[0].split(',');
    for (const col of ['model', 'top1', 'top1_err', 'top5', 'top5_err', 'param_count', 'img_size', 'crop_pct', 'interpolation', 'granularity', 'mflops']) assert.ok(header.includes(col), col);
    assert.match(fs.readFileSync(path.join(dir, 'r.svg'), 'utf8'), /^<svg/);
  });

  it('an exported Fashion-MNIST folder gives the same top-1 as the IDX spec', async () => {
    const model = path.join(dir, 'fm');
    const folder = path.join(dir, 'fmnist-folder');
    await matvit('dataset', 'export', '--data', 'fashion-mnist:test[:300]', '--out', folder);
    const idx = path.join(dir, 'idx.json');
    const fold = path.join(dir, 'folder.json');
    await matvit('eval', 'classify', '--model', model, '--data', 'fashion-mnist:test[:300]', '--json', idx);
    await matvit('eval', 'classify', '--model', model, '--data', folder, '--json', fold);
    const [a, b] = [idx, fold].map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
    assert.equal(a.count, 300);
    assert.deepEqual(b.rows.map((r: { top1: number; top5: number }) => [r.top1, r.top5]), a.rows.map((r: { top1: number; top5: number }) => [r.top1, r.top5]));
  });

  it('bench train --profile: img/s, the ratio, and kernel times of a forward pass and a training step', async () => {
    const cfg = path.join(dir, 'tiny-train.json');
    fs.writeFileSync(cfg, JSON.stringify({ model: tinyConfig(), batchSize: 4 }));
    const r = JSON.parse((await matvit('bench', 'train', '--config', cfg, '--rounds', '1', '--seconds', '0.2', '--profile', '--json')).stdout);
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
