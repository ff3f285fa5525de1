// The ViT architecture variants of ModelConfig (timm's VisionTransformer options): each one's weights,
// validation and FLOPs; both engines (tfjs, and ONNX Runtime on the graph of onnx-graph.ts) against
// the float64 plain-loop reference of test/helpers/reference-vit.ts, at full width and sliced; and
// the gradients of the tfjs training path against finite differences.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import sharp from 'sharp';
import { ENGINES, type Encoder, createEncoder } from '../src/engine/encoder.ts';
import { readManifest } from '../src/index/manifest.ts';
import { initTfjs } from '../src/engine/tfjs-backend.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint.ts';
import { ModelConfig, type ModelConfigInput, embeddingDim, granularityDims } from '../src/model/config.ts';
import { macs, paramCount } from '../src/model/flops.ts';
import { forward, toTensors } from '../src/model/matvit.ts';
import { type WeightMap, numel, weightSpecs } from '../src/model/weights.ts';
import { matvit } from './helpers/cli.ts';
import { tinyConfig } from './helpers/tiny.ts';
import { assertFiniteDifference } from './helpers/finite-diff.ts';
import { assertClose, maxAbsDiff, randomImages, referenceOutputs, strongWeights } from './helpers/model-fixtures.ts';

const TOL = 1e-4;
const config = (o: Partial<ModelConfigInput>) => tinyConfig({ name: 'variant', ...o });

/**
 * The variants, each on a tiny config; `off` is the same weights with the variant switched off,
 * where that needs no other weights: the variant must move the outputs well past the tolerance.
 */
const VARIANTS: {
  name: string;
  on: Partial<ModelConfigInput>;
  off?: Partial<ModelConfigInput>;
  tweak?: (c: ModelConfig, w: WeightMap) => void;
}[] = [
  { name: 'layer scale', on: { layerScale: true } },
  { name: 'avg pool + fc_norm', on: { globalPool: 'avg', fcNorm: true }, off: { globalPool: 'token', fcNorm: true } },
  { name: 'avg pool after the per-token norm', on: { globalPool: 'avg' }, off: { globalPool: 'token' } },
  { name: 'no class token, avg pool', on: { classToken: false, globalPool: 'avg', fcNorm: true } },
  {
    name: 'norm_pre + QuickGELU + bias-free projection head as the embedding (CLIP)',
    on: { preNorm: true, act: 'quick_gelu', headBias: false, numClasses: 12, embedding: 'head' },
  },
  {
    name: 'register tokens with noEmbedClass, layer scale (DINOv2 with registers)',
    on: { regTokens: 3, noEmbedClass: true, layerScale: true },
  },
  { name: 'register tokens inside pos_embed', on: { regTokens: 2 } },
  // The tanh approximation is within 5e-4 of GELU everywhere; near x = -3 that is ~10% of the value
  // (-0.0036 vs -0.0040), so the FFN runs there, amplified, to make the difference count.
  {
    name: 'tanh GELU',
    on: { act: 'gelu_tanh' },
    off: { act: 'gelu' },
    tweak: (c, w) => {
      for (let i = 0; i < c.depth; i++) {
        const p = `blocks.${i}.mlp`;
        w[`${p}.fc1.weight`].data.forEach((v, j, a) => (a[j] = 0.05 * v));
        w[`${p}.fc1.bias`].data.forEach((v, j, a) => (a[j] = -3 + v));
        w[`${p}.fc2.weight`].data.forEach((v, j, a) => (a[j] = 100 * v));
      }
    },
  },
  { name: 'QuickGELU', on: { act: 'quick_gelu' }, off: { act: 'gelu' } },
  { name: 'no qkv bias', on: { qkvBias: false } },
  { name: 'patch 14 (28 / 14), wider heads', on: { imageSize: 28, patchSize: 14, dim: 24, heads: 3, mlpDim: 48, depth: 1 } },
  {
    name: 'patch 14 at 224 (16 x 16 patches) with 4 registers, noEmbedClass and layer scale (DINOv2-reg layout, narrow)',
    on: { imageSize: 224, patchSize: 14, dim: 32, heads: 2, mlpDim: 64, depth: 1, regTokens: 4, noEmbedClass: true, layerScale: true },
  },
];

describe('variant weights, validation and FLOPs', () => {
  const names = (o: Partial<ModelConfigInput>) => new Set(weightSpecs(config(o)).map((s) => s.name));

  test('the defaults are the plain ViT: the same specs as before the variants existed', () => {
    const c = config({});
    const expected = ['patch_embed.proj.weight', 'patch_embed.proj.bias', 'cls_token', 'pos_embed'];
    for (let i = 0; i < c.depth; i++)
      for (const n of [
        'norm1.weight',
        'norm1.bias',
        'attn.qkv.weight',
        'attn.qkv.bias',
        'attn.proj.weight',
        'attn.proj.bias',
        'norm2.weight',
        'norm2.bias',
        'mlp.fc1.weight',
        'mlp.fc1.bias',
        'mlp.fc2.weight',
        'mlp.fc2.bias',
      ])
        expected.push(`blocks.${i}.${n}`);
    expected.push('norm.weight', 'norm.bias', 'head.weight', 'head.bias');
    assert.deepEqual(
      weightSpecs(c).map((s) => s.name),
      expected,
    );
    assert.deepEqual(weightSpecs(c).find((s) => s.name === 'pos_embed')?.shape, [1, 5, 16]);
  });

  test('each variant adds or drops exactly its weights, with timm shapes', () => {
    const n = names({
      layerScale: true,
      regTokens: 4,
      noEmbedClass: true,
      preNorm: true,
      qkvBias: false,
      fcNorm: true,
      globalPool: 'avg',
      headBias: false,
    });
    for (const x of [
      'blocks.1.ls1.gamma',
      'blocks.1.ls2.gamma',
      'reg_token',
      'norm_pre.weight',
      'norm_pre.bias',
      'fc_norm.weight',
      'head.weight',
    ])
      assert.ok(n.has(x), x);
    for (const x of ['patch_embed.proj.bias', 'blocks.0.attn.qkv.bias', 'norm.weight', 'head.bias']) assert.ok(!n.has(x), x);
    const specs = weightSpecs(config({ regTokens: 4, noEmbedClass: true }));
    assert.deepEqual(specs.find((s) => s.name === 'reg_token')?.shape, [1, 4, 16]);
    assert.deepEqual(specs.find((s) => s.name === 'pos_embed')?.shape, [1, 4, 16]); // patches only
    assert.deepEqual(weightSpecs(config({ regTokens: 4 })).find((s) => s.name === 'pos_embed')?.shape, [1, 9, 16]); // 1 + 4 + 4
    assert.ok(!names({ classToken: false, globalPool: 'avg' }).has('cls_token'));
    assert.ok(
      weightSpecs(config({ layerScale: true }))
        .filter((s) => s.name.endsWith('.gamma'))
        .every((s) => !s.decay && s.shape.join() === '16'),
    );
  });

  test('bad combinations name the field', () => {
    const issues = (o: Partial<ModelConfigInput>) =>
      ModelConfig.safeParse({ ...config({}), ...o }).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    assert.match(issues({ classToken: false }).join('\n'), /^globalPool: .*classToken/m);
    assert.match(issues({ numClasses: 0, embedding: 'head' }).join('\n'), /^embedding: .*numClasses is 0/m);
    assert.match(issues({ numClasses: 0, headBias: false }).join('\n'), /^headBias: /m);
    assert.match(issues({ act: 'relu' as 'gelu' }).join('\n'), /^act: /m);
    assert.match(issues({ regTokens: -1 }).join('\n'), /^regTokens: /m);
    assert.equal(embeddingDim(config({ numClasses: 12, embedding: 'head' })), 12);
    assert.equal(embeddingDim(config({})), 16);
  });

  test('params are the weights in use; register tokens take part in every layer', () => {
    for (const { name, on } of VARIANTS) {
      const c = config(on);
      assert.equal(
        paramCount(c, granularityDims(c, 'xl')),
        weightSpecs(c).reduce((a, s) => a + numel(s.shape), 0),
        name,
      );
    }
    // Hand-computed for base + 3 registers: N 4, T 8, D 16, mlp 32, 2 layers, K 5.
    //   patch 4*48*16 = 3072; per layer qkv 8*16*48 = 6144, scores+mix 2*64*16 = 2048, proj 8*16*16 = 2048,
    //   ffn 2*8*16*f = 256f; head 16*5 = 80.
    const r = config({ regTokens: 3, noEmbedClass: true });
    assert.equal(macs(r, [32, 32]), 3072 + 2 * (6144 + 2048 + 2048 + 8192) + 80);
    assert.equal(macs(r, [4, 32]), 3072 + 2 * (6144 + 2048 + 2048) + 256 * 36 + 80);
    // A layer-scale + no-qkv-bias + bias-free-head model at s: 2 * 16 gammas per layer, no 48-long qkv bias, no head bias.
    const s = config({ layerScale: true, qkvBias: false, headBias: false });
    assert.equal(paramCount(s, [4, 4]), paramCount(config({}), [4, 4]) + 2 * (32 - 48) - 5);
  });

  test('a variant checkpoint round-trips with its fingerprint; `matvit info` prints the fields and the embedding; `index build` stores its width', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-variants-'));
    try {
      const c = config({
        layerScale: true,
        regTokens: 2,
        noEmbedClass: true,
        preNorm: true,
        qkvBias: false,
        globalPool: 'avg',
        fcNorm: true,
        act: 'gelu_tanh',
        headBias: false,
        embedding: 'head',
      });
      const w = strongWeights(c, 2);
      const meta = saveCheckpoint(dir, c, w);
      const back = loadCheckpoint(dir);
      assert.equal(back.meta.fingerprint, meta.fingerprint);
      assert.deepEqual(back.meta.model, c);
      for (const s of weightSpecs(c)) assert.deepEqual(back.weights[s.name].data, w[s.name].data, s.name);
      const { stdout } = await matvit('info', '--model', dir);
      for (const line of [
        'layerScale: true',
        'regTokens: 2',
        'noEmbedClass: true',
        'preNorm: true',
        'qkvBias: false',
        'globalPool: "avg"',
        'fcNorm: true',
        'act: "gelu_tanh"',
        'headBias: false',
        'embedding: "head"',
      ])
        assert.ok(stdout.includes(`  ${line}\n`), line);
      assert.match(
        stdout,
        /retrieval embedding: 5-d, L2-normalized: the head's output \(no bias\) on the mean of the patch tokens \(3 prefix tokens excluded\) after the final norm \(fc_norm, after pooling\)/,
      );
      // The index holds what the model embeds: 5-d head outputs, not D = 16.
      const imgs = path.join(dir, 'imgs');
      fs.mkdirSync(imgs);
      for (let i = 0; i < 3; i++)
        await sharp({ create: { width: 12, height: 12, channels: 3, background: { r: 80 * i, g: 10, b: 200 } } })
          .png()
          .toFile(path.join(imgs, `${i}.png`));
      await matvit('index', 'build', '--model', dir, '--data', `files:${imgs}`, '--out', path.join(dir, 'index'));
      assert.equal(readManifest(path.join(dir, 'index')).dim, 5);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

for (const { name, on, off, tweak } of VARIANTS)
  describe(`${name}: both engines match the float64 reference`, () => {
    const c = config(on);
    const w = strongWeights(c, 3);
    tweak?.(c, w);
    const images = randomImages(c, 3);
    const encoders: Encoder[] = [];
    before(async () => {
      for (const e of ENGINES) encoders.push(await createEncoder(e, c, w, { threads: 2 }));
    });
    after(async () => Promise.all(encoders.map((e) => e.dispose())));

    const mix = Array.from({ length: c.depth }, (_, i) => (i === 0 ? c.mlpDim / 8 : c.mlpDim / 2));
    for (const [sub, dims] of [
      ['xl', granularityDims(c, 'xl')],
      [`sliced ${mix.join(',')}`, mix],
    ] as const)
      test(`${sub}: within ${TOL}`, async () => {
        const want = referenceOutputs(c, w, images, dims);
        assert.equal(want.embeddings.length, 3 * embeddingDim(c));
        for (const enc of encoders) assertClose(await enc.encode(images, dims), want, TOL, `${enc.description}, ${sub}`);
      });

    if (off)
      test('the variant changes the outputs (the comparison can tell it apart)', () => {
        const a = referenceOutputs(c, w, images, granularityDims(c, 'xl'));
        const b = referenceOutputs(config(off), w, images, granularityDims(c, 'xl'));
        const moved = Math.max(maxAbsDiff(a.embeddings, b.embeddings), maxAbsDiff(a.logits, b.logits));
        assert.ok(moved > 100 * TOL, `switching the variant off moved the outputs by ${moved}`);
      });
  });

describe('gradients of the variants on the tfjs training path (wasm) match finite differences', () => {
  before(async () => {
    await initTfjs('wasm', { log: () => {} });
    await tf.setBackend('wasm');
  });

  const cases: { name: string; on: Partial<ModelConfigInput>; checks: [string, number][] }[] = [
    {
      name: 'layer scale, registers with noEmbedClass, no qkv bias, avg pool + fc_norm, tanh GELU',
      on: { layerScale: true, regTokens: 2, noEmbedClass: true, qkvBias: false, globalPool: 'avg', fcNorm: true, act: 'gelu_tanh' },
      checks: [
        ['blocks.0.ls1.gamma', 3],
        ['blocks.1.ls2.gamma', 7],
        ['reg_token', 5],
        ['reg_token', 20],
        ['pos_embed', 9],
        ['cls_token', 2],
        ['blocks.0.attn.qkv.weight', 40],
        ['blocks.1.mlp.fc1.weight', 5],
        ['blocks.0.mlp.fc2.bias', 1],
        ['fc_norm.weight', 4],
        ['fc_norm.bias', 6],
        ['head.bias', 2],
      ],
    },
    {
      name: 'norm_pre, QuickGELU, bias-free head, no class token with avg pool after the norm',
      on: { preNorm: true, act: 'quick_gelu', headBias: false, classToken: false, globalPool: 'avg' },
      checks: [
        ['norm_pre.weight', 3],
        ['norm_pre.bias', 8],
        ['patch_embed.proj.weight', 11],
        ['blocks.0.mlp.fc1.weight', 35],
        ['blocks.1.mlp.fc1.bias', 2],
        ['norm.weight', 5],
        ['norm.bias', 1],
        ['head.weight', 9],
        ['blocks.1.attn.qkv.bias', 40],
      ],
    },
  ];
  for (const { name, on, checks } of cases)
    test(name, () => {
      const c = config(on);
      const w0 = strongWeights(c, 5);
      for (const k of Object.keys(w0))
        if (k.endsWith('.weight') && w0[k].shape.length === 2) w0[k].data.forEach((v, i, a) => (a[i] = v * 0.5)); // keep activations moderate for float32 differences
      const vars = Object.fromEntries(Object.entries(toTensors(c, w0)).map(([k, v]) => [k, tf.variable(v, true, `${name}/${k}`)]));
      const x = tf.tensor4d(randomImages(c, 3, 4), [3, 3, 8, 8]);
      const weights = tf.reshape(tf.range(0, 3 * c.numClasses), [3, c.numClasses]);
      const dims = [8, 32]; // sliced in layer 0
      const loss = () => tf.tidy(() => tf.sum(tf.mul(forward(c, vars, x, dims).logits, weights)) as tf.Scalar);
      const { value, grads } = tf.variableGrads(loss);
      try {
        for (const [n, i] of checks) {
          const analytic = grads[vars[n].name].dataSync()[i];
          assertFiniteDifference(vars[n], i, loss, analytic, n);
          assert.ok(Math.abs(analytic) > 1e-3, `${n}[${i}]: gradient ${analytic} too small to tell anything`);
        }
      } finally {
        tf.dispose([value, x, weights, ...Object.values(grads), ...Object.values(vars)]);
      }
    });
});
