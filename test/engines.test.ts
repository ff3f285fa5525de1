// The two inference engines (tfjs, ONNX Runtime) against an independent float64 plain-loop reference
// (test/helpers/reference-vit.ts), against each other on real presets, and slicing against masking
// (the reference MatViT code masks FFN neurons; this project slices them away).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { ModelConfig, GRANULARITY_NAMES, granularityDims } from '../src/model/config.ts';
import { preset } from '../src/model/presets.ts';
import type { WeightMap } from '../src/model/weights.ts';
import { type Encoder, ENGINES, createEncoder } from '../src/engine/encoder.ts';
import { buildOnnxModel } from '../src/engine/onnx-graph.ts';
import { OnnxEncoder } from '../src/engine/onnx.ts';
import { tinyConfig } from './helpers/tiny.ts';
import { assertClose, maxAbsDiff, randomImages, referenceOutputs, strongWeights } from './helpers/model-fixtures.ts';

const TOL = 1e-4;

// ---------------------------------------------------------------------------------------------
// Fixtures

const TINY = tinyConfig();

/** s, m, l, xl and one Mix'n'Match submodel (widths non-decreasing with depth, as in the paper). */
function submodels(c: ModelConfig): [string, number[]][] {
  const named = GRANULARITY_NAMES.map((g): [string, number[]] => [g, granularityDims(c, g)]);
  const mix = Array.from(
    { length: c.depth },
    (_, i) => granularityDims(c, GRANULARITY_NAMES[Math.min(3, Math.floor(((i + 1) * 4) / (c.depth + 1)))])[0],
  );
  return [...named, [`mix ${mix.join(',')}`, mix]];
}

// ---------------------------------------------------------------------------------------------

describe('engines vs an independent float64 reference (tiny config)', () => {
  const w = strongWeights(TINY, 3);
  const images = randomImages(TINY, 3);
  const encoders: Encoder[] = [];
  before(async () => {
    for (const e of ENGINES) encoders.push(await createEncoder(e, TINY, w, { threads: 2 }));
  });
  after(async () => Promise.all(encoders.map((e) => e.dispose())));

  test('the test can tell submodels apart', () => {
    const s = referenceOutputs(TINY, w, images, granularityDims(TINY, 's'));
    const xl = referenceOutputs(TINY, w, images, granularityDims(TINY, 'xl'));
    assert.ok(maxAbsDiff(s.logits, xl.logits) > 100 * TOL, 'S and XL give near-identical logits: weights too weak for the test');
  });

  for (const [name, dims] of submodels(TINY))
    test(`${name}: both engines match the reference within ${TOL}`, async () => {
      const want = referenceOutputs(TINY, w, images, dims);
      for (const enc of encoders) assertClose(await enc.encode(images, dims), want, TOL, `${enc.description}, ${name}`);
    });

  test('a headless model (numClasses 0) gives logits [B, 0] and the same embeddings', async () => {
    const c = ModelConfig.parse({ ...TINY, name: 'tiny-headless', numClasses: 0 });
    const { 'head.weight': _w, 'head.bias': _b, ...headless } = w;
    const want = referenceOutputs(c, headless, images, granularityDims(c, 'm'));
    for (const e of ENGINES) {
      const enc = await createEncoder(e, c, headless, { threads: 2 });
      const got = await enc.encode(images, granularityDims(c, 'm'));
      await enc.dispose();
      assert.equal(got.logits.length, 0, e);
      assertClose(got, want, TOL, e);
    }
  });
});

for (const [presetName, B] of [
  ['fmnist-tiny', 4],
  ['vit-s16', 2],
] as const)
  describe(`tfjs and onnx agree on ${presetName} (batch ${B})`, () => {
    const c = preset(presetName);
    const w = strongWeights(c, 5);
    const images = randomImages(c, B);
    let tfjs: Encoder;
    let onnx: Encoder;
    before(async () => {
      tfjs = await createEncoder('tfjs', c, w);
      onnx = await createEncoder('onnx', c, w, { threads: 2 });
    });
    after(async () => Promise.all([tfjs.dispose(), onnx.dispose()]));

    for (const [name, dims] of submodels(c))
      test(`${name}: max |diff| <= ${TOL}`, async () => {
        const [a, b] = await Promise.all([tfjs.encode(images, dims), onnx.encode(images, dims)]);
        assert.equal(a.embeddings.length, B * c.dim);
        assert.equal(a.logits.length, B * c.numClasses);
        assertClose(b, a, TOL, `${presetName} ${name}`);
      });
  });

describe('slicing equals masking (fmnist-tiny)', () => {
  const c = preset('fmnist-tiny');
  const w = strongWeights(c, 7);
  const images = randomImages(c, 4);
  const [name, dims] = submodels(c)[4]; // Mix'n'Match: a different mask per layer

  /** The reference code's way: full-width weights with fc1 columns, fc1 bias and fc2 rows past m zeroed. */
  function masked(): WeightMap {
    const out: WeightMap = Object.fromEntries(Object.entries(w).map(([k, t]) => [k, { shape: [...t.shape], data: t.data.slice() }]));
    dims.forEach((m, i) => {
      const p = `blocks.${i}.mlp`;
      const fc1 = out[`${p}.fc1.weight`].data; // [D, mlpDim]
      for (let r = 0; r < c.dim; r++) fc1.fill(0, r * c.mlpDim + m, (r + 1) * c.mlpDim);
      out[`${p}.fc1.bias`].data.fill(0, m);
      out[`${p}.fc2.weight`].data.fill(0, m * c.dim); // [mlpDim, D]: rows m.. are the tail
    });
    return out;
  }

  for (const e of ENGINES)
    test(`${e}: XL on masked weights = ${name} sliced`, async () => {
      const sliced = await createEncoder(e, c, w, { threads: 2 });
      const mask = await createEncoder(e, c, masked(), { threads: 2 });
      try {
        const a = await sliced.encode(images, dims);
        const b = await mask.encode(images, granularityDims(c, 'xl'));
        assertClose(a, b, 1e-5, `${e} ${name}`);
        const full = await sliced.encode(images, granularityDims(c, 'xl'));
        assert.ok(maxAbsDiff(full.logits, a.logits) > 1e-3, 'the masked widths changed nothing: weights too weak for the test');
      } finally {
        await Promise.all([sliced.dispose(), mask.dispose()]);
      }
    });
});

test('tfjs: encode leaves no tensors behind', async () => {
  const before0 = tf.memory().numTensors;
  const enc = await createEncoder('tfjs', TINY, strongWeights(TINY), {});
  const n0 = tf.memory().numTensors;
  for (const [, dims] of submodels(TINY)) await enc.encode(randomImages(TINY, 2), dims);
  assert.equal(tf.memory().numTensors, n0, 'tensors leaked by encode');
  await enc.dispose();
  assert.equal(tf.memory().numTensors, before0, 'tensors left after dispose');
});

describe('onnx engine and graph', () => {
  const c = preset('fmnist-tiny');
  const w = strongWeights(c, 11);
  const images = randomImages(c, 3);
  const { onnx } = onnxProto;

  test('the graph of S is smaller than XL by exactly the sliced FFN weights', () => {
    const s = buildOnnxModel(c, w, granularityDims(c, 's'));
    const xl = buildOnnxModel(c, w, granularityDims(c, 'xl'));
    const slicedFloats = c.depth * (c.mlpDim - c.mlpDim / 8) * (2 * c.dim + 1); // fc1 columns + bias, fc2 rows
    assert.ok(
      Math.abs(xl.length - s.length - 4 * slicedFloats) < 200,
      `XL ${xl.length} B, S ${s.length} B, expected a difference of ~${4 * slicedFloats} B`,
    );

    const model = onnx.ModelProto.decode(s);
    assert.equal(model.producerName, 'matvit-retrieval');
    assert.equal(Number(model.irVersion), 8);
    assert.deepEqual(
      model.opsetImport.map((o) => [o.domain, Number(o.version)]),
      [['', 17]],
    );
    assert.match(model.graph?.name ?? '', /fmnist-tiny.*\bs\b/);
    const dimsOf = (name: string) => (model.graph?.initializer?.find((t) => t.name === name)?.dims ?? []).map(Number);
    assert.deepEqual(dimsOf('blocks.0.mlp.fc1.weight'), [c.dim, c.mlpDim / 8]);
    assert.deepEqual(dimsOf('blocks.0.mlp.fc1.bias'), [c.mlpDim / 8]);
    assert.deepEqual(dimsOf('blocks.0.mlp.fc2.weight'), [c.mlpDim / 8, c.dim]);
    assert.deepEqual(dimsOf('blocks.0.mlp.fc2.bias'), [c.dim]);
  });

  test('exported bytes load from a file into a fresh session and reproduce the engine', async () => {
    const dims = submodels(c)[4][1];
    const enc = await OnnxEncoder.create(c, w, { threads: 2 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-onnx-'));
    try {
      const file = path.join(dir, 'model.onnx');
      fs.writeFileSync(file, buildOnnxModel(c, w, dims));
      const session = await ort.InferenceSession.create(file);
      const out = await session.run({ pixels: new ort.Tensor('float32', images, [3, c.channels, c.imageSize, c.imageSize]) });
      await session.release();
      assertClose(
        await enc.encode(images, dims),
        { embeddings: out.embedding.data as Float32Array, logits: out.logits.data as Float32Array },
        1e-6,
        'file vs engine',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      await enc.dispose();
    }
  });

  test('sessions are built once per submodel, even when first calls race, and stay warm', async () => {
    const enc = await OnnxEncoder.create(c, w, { threads: 2 });
    try {
      const dims = granularityDims(c, 'l');
      const [s1, s2] = [enc.session(dims), enc.session([...dims])];
      assert.equal(s1, s2, 'two sessions for one submodel');
      const [a, b] = await Promise.all([enc.encode(images, dims), enc.encode(images, dims)]);
      assert.deepEqual(a, b);
      await enc.encode(images, granularityDims(c, 's'));
      assert.equal(enc.session(dims), s1, 'switching submodels dropped a session');
    } finally {
      await enc.dispose();
    }
  });

  for (const workers of [1, 2]) {
    test(`the off-thread engine (${workers} worker${workers > 1 ? 's' : ''}) gives the in-process embeddings for every submodel, concurrent calls included`, async () => {
      const inProcess = await OnnxEncoder.create(c, w, { threads: 2 });
      const offThread = await createEncoder('onnx', c, w, { threads: 2, offThread: true, workers });
      try {
        assert.match(offThread.description, workers === 1 ? /in a worker thread/ : /in 2 worker threads/);
        const subs = [granularityDims(c, 's'), granularityDims(c, 'xl'), [64, 64, 128, 128, 256, 512], granularityDims(c, 's')];
        // First calls of three submodels at once (spread over the workers): each graph must reach
        // every worker before a batch that uses it.
        const got = await Promise.all(subs.map((d) => offThread.encode(images.slice(), d)));
        for (const [i, d] of subs.entries()) {
          const want = await inProcess.encode(images, d);
          assert.ok(maxAbsDiff(got[i].embeddings, want.embeddings) < 1e-6, `embeddings of [${d}]`);
          assert.ok(maxAbsDiff(got[i].logits, want.logits) < 1e-5, `logits of [${d}]`);
        }
        await assert.rejects(offThread.encode(images.slice(), [1, 2, 3]), /ffnDims/);
      } finally {
        await Promise.all([inProcess.dispose(), offThread.dispose()]);
      }
    });
  }

  test('description, and errors name the bad value', async () => {
    const enc = await OnnxEncoder.create(c, w, { threads: 2 });
    assert.match(enc.description, /^onnxruntime-node \d+\.\d+\.\d+ \(cpu, 2 threads\)$/);
    await assert.rejects(enc.encode(images, [1, 2, 3]), /ffnDims has 3 entries, the model has 6 layers/);
    await assert.rejects(enc.encode(images.subarray(1), granularityDims(c, 's')), /not a whole number/);
    await enc.dispose();
    await assert.rejects(OnnxEncoder.create(c, w, { threads: 0 }), /threads 0: expected a positive integer/);
    await assert.rejects(
      createEncoder('onnx', c, w, { threads: 1, offThread: true, workers: 2 }),
      /workers 2: expected an integer from 1 to threads \(1\)/,
    );
  });
});
