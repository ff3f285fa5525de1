// In-browser query encoding (issue 18 item 6), in headless Chromium (Debian's chromium driven by
// playwright-core) against the real app on port 0, with the shipped Fashion-MNIST model: the page
// encodes each of a set of images of mixed formats and sizes with onnxruntime-web, and
// - its embedding agrees with the server's embedding of the same file (cosine >= 0.995 each),
// - its vector search returns the same top-10 as the server-encoded search of the file (>= 90%),
// and, for a random-weight RGB model with a center crop, colour images agree too;
// the ONNX route is immutable and revalidates with its ETag; the page falls back to the server
// when the graph cannot be downloaded or WebAssembly is missing. Encode times and bytes downloaded
// are printed (docs/browser-encoding.md).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from './helpers/chromium.ts';
import sharp, { type Sharp } from 'sharp';
import { parseDatasetSpec } from '../src/data/dataset.ts';
import { preprocessImage } from '../src/data/preprocess.ts';
import { buildIndex } from '../src/index/build.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint.ts';
import { initWeights } from '../src/model/weights.ts';
import { type RunningServer, startServer } from '../src/serve/server.ts';
import { call } from './helpers/serve-fixture.ts';
import { tinyConfig } from './helpers/tiny.ts';

const skip = skipWithoutChromium;
const MODEL = path.resolve(import.meta.dirname, '../models/matvit-fmnist');
const CORPUS = 500;

let root: string;
let s: RunningServer;
let browser: Browser;

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-browser-'));
  const checkpoint = loadCheckpoint(MODEL);
  await buildIndex({
    checkpoint,
    modelDir: MODEL,
    data: `fashion-mnist:test[:${CORPUS}]`,
    out: path.join(root, 'index'),
    snapshotEvery: 0,
  });
  s = await startServer({ index: path.join(root, 'index'), port: 0, config: { refreshMs: 0, latency: { runs: 1 } } });
  await s.warm;
  if (!skip) browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await s?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Fashion-MNIST test image i (outside the corpus) as a sharp image, grey or tinted to colour, at w x h. */
async function query(i: number, w: number, h: number, colour: boolean): Promise<Sharp> {
  const ds = await parseDatasetSpec('fashion-mnist:test');
  const grey = await sharp(await ds.bytes(i), { raw: { width: 28, height: 28, channels: 1 } })
    .resize(w, h, { kernel: 'cubic', fit: 'fill' })
    .raw()
    .toBuffer();
  if (!colour) return sharp(grey, { raw: { width: w, height: h, channels: 1 } });
  const rgb = Buffer.alloc(w * h * 3);
  for (let p = 0; p < w * h; p++) rgb.set([grey[p], Math.min(255, grey[p] * 0.8 + 30), Math.max(0, grey[p] - 40)], 3 * p);
  return sharp(rgb, { raw: { width: w, height: h, channels: 3 } });
}

/** The query set: PNG, JPEG, WebP; grey and colour; from smaller than the model's 28x28 to 1600x1200. */
async function queries(): Promise<{ name: string; mime: string; bytes: Buffer }[]> {
  const q = (i: number, w: number, h: number, colour: boolean) => query(5000 + i, w, h, colour);
  const list: [string, string, Promise<Buffer>][] = [
    ['grey 28x28.png', 'image/png', q(0, 28, 28, false).then((x) => x.png().toBuffer())],
    ['grey 20x20.png', 'image/png', q(1, 20, 20, false).then((x) => x.png().toBuffer())],
    ['grey 300x300.png', 'image/png', q(2, 300, 300, false).then((x) => x.png().toBuffer())],
    ['colour 200x150 alpha.png', 'image/png', q(3, 200, 150, true).then((x) => x.ensureAlpha(0.6).png().toBuffer())],
    ['colour 16x20.png', 'image/png', q(4, 16, 20, true).then((x) => x.png().toBuffer())],
    ['grey 64x64.jpg', 'image/jpeg', q(5, 64, 64, false).then((x) => x.jpeg({ quality: 90 }).toBuffer())],
    ['colour 120x90.jpg', 'image/jpeg', q(6, 120, 90, true).then((x) => x.jpeg({ quality: 90 }).toBuffer())],
    ['colour 1600x1200.jpg', 'image/jpeg', q(7, 1600, 1200, true).then((x) => x.jpeg({ quality: 85 }).toBuffer())],
    ['grey 500x700.jpg', 'image/jpeg', q(8, 500, 700, false).then((x) => x.jpeg({ quality: 80 }).toBuffer())],
    ['colour 112x84.webp', 'image/webp', q(9, 112, 84, true).then((x) => x.webp({ quality: 90 }).toBuffer())],
    ['colour 1000x700.webp', 'image/webp', q(10, 1000, 700, true).then((x) => x.webp({ quality: 85 }).toBuffer())],
    ['grey 56x56.webp', 'image/webp', q(11, 56, 56, false).then((x) => x.webp({ lossless: true }).toBuffer())],
  ];
  return Promise.all(list.map(async ([name, mime, bytes]) => ({ name, mime, bytes: await bytes })));
}

/** A page on the app, failing the test on any page error or Content-Security-Policy refusal. */
async function openPage(errors: string[], context?: BrowserContext): Promise<Page> {
  const page = await (context ?? browser).newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && /Content Security Policy|Refused/i.test(m.text()) && errors.push(m.text()));
  return page;
}

const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let dot = 0,
    na = 0,
    nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
};

/** Uploads `q` as the page's `n`-th search; the vector the page sent (decoded from base64) and the search's answer. */
async function encodeOnPage(page: Page, q: { name: string; mime: string; bytes: Buffer }, n: number) {
  const sent = page.waitForRequest((r) => r.url().endsWith('/v1/search') && r.method() === 'POST');
  const answered = page.waitForResponse((r) => r.url().endsWith('/v1/search'));
  await page.setInputFiles('#file', { name: q.name, mimeType: q.mime, buffer: q.bytes });
  const body = (await sent).postDataJSON();
  const reply = await (await answered).json();
  await page.waitForFunction((i) => document.body.dataset.searches === String(i), n);
  const v = Buffer.from(body.vector, 'base64'); // the client sends little-endian float32 as base64
  return { body, reply, vector: new Float32Array(v.buffer, v.byteOffset, v.length / 4) };
}

test(
  'the page encodes queries in the browser: same embedding as the server (cosine >= 0.995), same top-10 for >= 90%',
  { skip },
  async () => {
    const service = s.service;
    const entry = service.menu.entries[0];
    const errors: string[] = [];
    const context = await browser.newContext();
    const page = await openPage(errors, context);
    let downloaded = 0;
    page.on('response', async (r) => {
      // Bytes on the wire (the runtime comes gzipped).
      if (/\/v1\/models\/.+\.onnx$|\/vendor\/onnxruntime-web/.test(r.url())) downloaded += (await r.request().sizes()).responseBodySize;
    });
    await page.goto(s.url);
    await page.waitForFunction(() => document.body.dataset.browserEncoder === 'ready', undefined, { timeout: 60_000 });
    await page.fill('#k', '10');

    const rows: string[] = [];
    let sameTop10 = 0;
    const encodeMs: number[] = [];
    const qs = await queries();
    for (const [i, q] of qs.entries()) {
      const { body, reply, vector } = await encodeOnPage(page, q, i + 1);
      assert.equal(body.model, service.index.info().manifest.fingerprint, q.name);
      assert.equal(body.encoder, entry.name);
      assert.match((await page.textContent('#encoded-where')) ?? '', /^encoded in this browser \(s\)/);
      encodeMs.push(Number(await page.evaluate(() => document.body.dataset.browserEncodeMs)));
      const timings = ((await page.textContent('#browser-timings')) ?? '').replace(/^browser: /, '');

      const server = await service.batcher.encode(await preprocessImage(q.bytes, service.model), entry);
      const cos = cosine(vector, server);
      const fd = new FormData();
      fd.append('image', new Blob([new Uint8Array(q.bytes)], { type: q.mime }), q.name);
      const byServer = await call(`${s.url}/v1/search?k=10&encoder=${entry.name}`, { method: 'POST', body: fd });
      assert.equal(byServer.status, 200, JSON.stringify(byServer.body));
      const ids = (r: { results: { id: number }[] }) =>
        r.results
          .map((x) => x.id)
          .sort((a, b) => a - b)
          .join();
      const same = ids(reply) === ids(byServer.body);
      if (same) sameTop10++;
      rows.push(
        `${q.name.padEnd(26)} ${String(q.bytes.length).padStart(7)} B  cosine ${cos.toFixed(6)}  top-10 ${same ? 'same' : 'differs'}  ${timings}`,
      );
      assert.ok(cos >= 0.995, `${q.name}: cosine ${cos} between the browser's and the server's embedding`);
    }
    const sorted = [...encodeMs].sort((a, b) => a - b);
    console.log(
      [
        `browser encoding with ${entry.name} (${entry.mflops.toFixed(2)} MFLOPs) of ${qs.length} images:`,
        ...rows,
        `same top-10: ${sameTop10}/${qs.length}; browser encode ms (decode + preprocess + run) median ${sorted[sorted.length >> 1].toFixed(1)}, max ${sorted[sorted.length - 1].toFixed(1)}`,
        `downloaded for the encoder: ${downloaded} bytes (${(await page.textContent('#browser-status')) ?? ''})`,
      ].join('\n'),
    );
    assert.ok(sameTop10 >= 0.9 * qs.length, `same top-10 for ${sameTop10} of ${qs.length}`);
    assert.match((await page.textContent('#compute')) ?? '', /server compute saved: [\d.]+ MFLOPs/);

    // A second visit in the same browser: the graph and the runtime come from its cache (immutable URLs).
    const again = await openPage(errors, context);
    let second = 0;
    again.on('response', async (r) => {
      if (/\/v1\/models\/.+\.onnx$|\/vendor\/onnxruntime-web/.test(r.url()))
        second += Math.max(0, (await r.request().sizes()).responseBodySize); // -1: from the cache
    });
    await again.goto(s.url);
    await again.waitForFunction(() => document.body.dataset.browserEncoder === 'ready', undefined, { timeout: 60_000 });
    console.log(`second visit: ${second} bytes downloaded (${(await again.textContent('#browser-status')) ?? ''})`);
    assert.ok(second < downloaded / 100, `second visit downloaded ${second} bytes, the first ${downloaded}`);
    assert.deepEqual(errors, []);
    await context.close();
  },
);

test(
  'an RGB model (bicubic, cropPct 0.875, per-channel mean/std): the browser embedding agrees with the server (cosine >= 0.995)',
  { skip },
  async (t) => {
    // A random-weight 32x32 RGB model over a folder corpus of colour images: crop and per-channel
    // normalization are exercised here (the shipped model is 28x28 grey, cropPct 1).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-browser-rgb-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const c = tinyConfig({
      name: 'tiny-rgb',
      imageSize: 32,
      patchSize: 8,
      dim: 32,
      mlpDim: 64,
      numClasses: 4,
      interpolation: 'bicubic',
      cropPct: 0.875,
      mean: [0.48, 0.46, 0.41],
      std: [0.27, 0.26, 0.28],
    });
    saveCheckpoint(path.join(dir, 'model'), c, initWeights(c, 11));
    for (let i = 0; i < 40; i++) {
      fs.mkdirSync(path.join(dir, 'corpus', `c${i % 4}`), { recursive: true });
      await (await query(6000 + i, 40 + 7 * i, 30 + 5 * i, true)).png().toFile(path.join(dir, 'corpus', `c${i % 4}`, `${i}.png`));
    }
    const checkpoint = loadCheckpoint(path.join(dir, 'model'));
    await buildIndex({
      checkpoint,
      modelDir: path.join(dir, 'model'),
      data: path.join(dir, 'corpus'),
      out: path.join(dir, 'index'),
      snapshotEvery: 0,
    });
    const rgb = await startServer({ index: path.join(dir, 'index'), port: 0, config: { refreshMs: 0, latency: { runs: 1 } } });
    t.after(() => rgb.close());
    await rgb.warm;
    const errors: string[] = [];
    const page = await openPage(errors);
    t.after(() => page.close());
    await page.goto(rgb.url);
    await page.waitForFunction(() => document.body.dataset.browserEncoder === 'ready', undefined, { timeout: 60_000 });
    const entry = rgb.service.menu.entries[0];
    const rows: string[] = [];
    for (const [i, q] of (await queries()).filter((x) => x.name.startsWith('colour')).entries()) {
      const { vector } = await encodeOnPage(page, q, i + 1);
      const cos = cosine(vector, await rgb.service.batcher.encode(await preprocessImage(q.bytes, checkpoint.meta.model), entry));
      rows.push(`${q.name.padEnd(26)} cosine ${cos.toFixed(6)}`);
      assert.ok(cos >= 0.995, `${q.name}: cosine ${cos} between the browser's and the server's embedding`);
    }
    console.log([`RGB model ${entry.name} (32x32, bicubic, cropPct 0.875):`, ...rows].join('\n'));
    assert.deepEqual(errors, []);
  },
);

test('GET /v1/models/FP/ENTRY.onnx: immutable, ETag, 304 on If-None-Match; 404 naming an unknown fingerprint or entry', async () => {
  const fp = s.service.index.info().manifest.fingerprint;
  const manifest = await call(`${s.url}/v1/models/${fp}`);
  assert.equal(manifest.status, 200);
  const entry = manifest.body.entries[0];
  const first = await fetch(`${s.url}${entry.onnx}`);
  assert.equal(first.status, 200);
  const bytes = Buffer.from(await first.arrayBuffer());
  assert.ok(bytes.length > 1000);
  assert.match(first.headers.get('cache-control') ?? '', /immutable/);
  const etag = first.headers.get('etag');
  assert.ok(etag);
  const again = await fetch(`${s.url}${entry.onnx}`, { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304);
  const other = manifest.body.entries[manifest.body.entries.length - 1];
  const big = await fetch(`${s.url}${other.onnx}`);
  assert.equal(big.status, 200);
  assert.notEqual(big.headers.get('etag'), etag); // another width, another graph
  assert.ok((await big.arrayBuffer()).byteLength > bytes.length);
  const wrongFp = await call(`${s.url}/v1/models/${'0'.repeat(64)}/${entry.name}.onnx`);
  assert.equal(wrongFp.status, 404);
  assert.match(wrongFp.body.error.message, new RegExp(`no model with fingerprint "0{64}"; this server has ${fp}`));
  const wrongEntry = await call(`${s.url}/v1/models/${fp}/nope.onnx`);
  assert.equal(wrongEntry.status, 404);
  assert.match(wrongEntry.body.error.message, /no menu entry "nope"; entries: s, /);
  const runtime = await fetch(`${s.url}${manifest.body.runtime.wasmPaths}ort-wasm-simd-threaded.wasm`);
  assert.equal(runtime.status, 200);
  assert.match(runtime.headers.get('cache-control') ?? '', /immutable/);
  assert.equal(runtime.headers.get('content-encoding'), 'gzip');
  assert.equal(runtime.headers.get('content-type'), 'application/wasm');
  const wasm = Buffer.from(await runtime.arrayBuffer()); // fetch decodes the gzip
  assert.equal(wasm.subarray(0, 4).toString('latin1'), '\0asm');
  assert.equal((await call(`${s.url}${manifest.body.runtime.wasmPaths}..%2Fpackage.json`)).status, 404);
});

for (const [why, block] of [
  ['the ONNX graph cannot be downloaded', (page: Page) => page.route('**/*.onnx', (r) => r.abort())],
  [
    'the browser has no WebAssembly',
    (page: Page) => page.addInitScript(() => delete (globalThis as { WebAssembly?: unknown }).WebAssembly),
  ],
] as const)
  test(`falls back to server-side encoding when ${why}`, { skip }, async () => {
    const errors: string[] = [];
    const page = await openPage(errors);
    await block(page);
    await page.goto(s.url);
    await page.waitForFunction(() => document.body.dataset.browserEncoder === 'unavailable');
    const sent = page.waitForRequest((r) => r.url().includes('/v1/search'));
    const q = (await queries())[0];
    await page.setInputFiles('#file', { name: q.name, mimeType: q.mime, buffer: q.bytes });
    const body = (await sent).postDataJSON();
    assert.equal(body.vector, undefined);
    assert.equal(Buffer.from(body.image, 'base64').compare(q.bytes), 0); // the image itself went to the server
    await page.waitForSelector('#results .result');
    assert.match((await page.textContent('#encoded-where')) ?? '', /^encoded on the server \(browser encoding /);
    assert.match((await page.textContent('#browser-status')) ?? '', /unavailable/);
    assert.deepEqual(errors, []);
    await page.close();
  });
