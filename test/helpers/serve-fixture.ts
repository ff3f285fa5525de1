// A tiny served corpus for the service tests: a random-weight 28x28 grayscale model (patch 14,
// dim 16, depth 2) with one Mix'n'Match menu entry, and an index of the first Fashion-MNIST test
// images built with the project's build pipeline. Random weights embed images poorly but
// deterministically: enough to test the service's plumbing, not retrieval quality.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { FASHION_MNIST_CLASSES, parseDatasetSpec } from '../../src/data/dataset.ts';
import { buildIndex } from '../../src/index/build.ts';
import { type Checkpoint, loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { mflops } from '../../src/model/flops.ts';
import { initWeights } from '../../src/model/weights.ts';
import { tinyConfig } from './tiny.ts';

export const SERVE_CONFIG: ModelConfig = tinyConfig({
  name: 'tiny-serve',
  imageSize: 28,
  patchSize: 14,
  channels: 1,
  mean: [0.3],
  std: [0.35],
  numClasses: 10,
  classNames: FASHION_MNIST_CLASSES,
  interpolation: 'bilinear',
  cropPct: 1,
});

export interface ServeFixture {
  root: string;
  modelDir: string;
  indexDir: string;
  checkpoint: Checkpoint;
  /** The corpus: fashion-mnist:test[:n]. */
  n: number;
  cleanup(): void;
}

/** MATVIT_TEST_STORE=lance runs the service tests on the LanceDB store (src/index/lance-store.ts; test/serve-lance.test.ts). */
export const testStore = (): 'sqlite' | 'lance' => (process.env.MATVIT_TEST_STORE === 'lance' ? 'lance' : 'sqlite');

/** Builds the model and an index of `n` images in a new temp directory; `payloads` by source ('idx:#N'). */
export async function serveFixture(n = 120, payloads?: ReadonlyMap<string, Record<string, unknown>>): Promise<ServeFixture> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-serve-test-'));
  const modelDir = path.join(root, 'model');
  const indexDir = path.join(root, 'index');
  const c = SERVE_CONFIG;
  const mix = [4, 16]; // s in layer 1, l in layer 2: between m and l in cost
  saveCheckpoint(modelDir, c, initWeights(c, 7), { menu: [{ name: 'mix-sl', ffnDims: mix, mflops: mflops(c, mix) }] });
  const checkpoint = loadCheckpoint(modelDir);
  const store = testStore();
  await buildIndex({ checkpoint, modelDir, data: `fashion-mnist:test[:${n}]`, out: indexDir, snapshotEvery: 0, payloads, store });
  return { root, modelDir, indexDir, checkpoint, n, cleanup: () => fs.rmSync(root, { recursive: true, force: true }) };
}

/** Fashion-MNIST test image i as a PNG file's bytes (a query the way a client sends one). */
export async function fmnistPng(i: number): Promise<Buffer> {
  const ds = await parseDatasetSpec('fashion-mnist:test');
  return sharp(await ds.bytes(i), { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
}

/** A response with its body parsed as JSON when it is JSON (errors, results), else kept as text (images, the page, metrics). */
export interface Reply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Headers;
}

export async function call(url: string, init: RequestInit = {}): Promise<Reply> {
  const r = await fetch(url, init);
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, body, headers: r.headers };
}
