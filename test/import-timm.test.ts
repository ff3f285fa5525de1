// `--from timm`: hub folders written by test/fixtures/write_timm.py (a plain struct + json
// safetensors writer, timm's config.json) for four architecture variants, imported, then run by both
// engines against the float64 reference fed the source tensors (converted by the test's own code).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importCheckpoint, readSource } from '../src/import/import.ts';
import { type HubConfig, resolveTimmArgs } from '../src/import/timm.ts';
import type { ModelConfigInput } from '../src/model/config.ts';
import { type ExpectedModel, agreement, referenceResamplePos, timmToReference } from './fixtures/import-reference.ts';
import { readSourceJson, runFixture, tempDir } from './fixtures/python.ts';

const TOL = 1e-4;
const root = tempDir({ after });
const IMAGENET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

interface Case {
  variant: string;
  what: string;
  imageSize?: number;
  /** What timm.create_model(architecture, **model_args) builds (timm/models/vision_transformer.py, deit.py). */
  expect: ExpectedModel;
  flipped: Partial<ModelConfigInput>;
  /** The position embedding resampled by the test itself: prefix rows kept, grid n -> m. */
  resample?: { prefix: number; n: number; m: number };
}

const CASES: Case[] = [
  {
    variant: 'deit3',
    what: 'DeiT-III: layer scale, no position embedding for the class token, class names',
    expect: {
      name: 'deit3_small_patch16_224',
      imageSize: 32,
      patchSize: 16,
      dim: 32,
      depth: 2,
      heads: 2,
      mlpDim: 128,
      numClasses: 5,
      classNames: ['apple', 'bear', 'cat', 'dog', 'eel'],
      layerScale: true,
      noEmbedClass: true,
      classToken: true,
      regTokens: 0,
      qkvBias: true,
      preNorm: false,
      globalPool: 'token',
      fcNorm: false,
      act: 'gelu',
      headBias: true,
      embedding: 'pre_logits',
      layerNormEps: 1e-6,
      ...IMAGENET,
      cropPct: 1,
      interpolation: 'bicubic',
    },
    flipped: { layerScale: false },
  },
  {
    variant: 'avg',
    what: 'average pooling with fc_norm, qkv without bias',
    expect: {
      imageSize: 48,
      patchSize: 16,
      dim: 32,
      depth: 2,
      heads: 4,
      mlpDim: 128,
      numClasses: 3,
      globalPool: 'avg',
      fcNorm: true,
      qkvBias: false,
      classToken: true,
      layerScale: false,
      embedding: 'pre_logits',
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      cropPct: 0.95,
      interpolation: 'bilinear',
    },
    flipped: { globalPool: 'token' },
  },
  {
    variant: 'clip',
    what: 'OpenAI CLIP tower: norm_pre, QuickGELU, LayerNorm eps 1e-5, bias-free projection as the embedding',
    expect: {
      imageSize: 32,
      patchSize: 16,
      dim: 32,
      depth: 2,
      heads: 2,
      mlpDim: 128,
      numClasses: 24,
      preNorm: true,
      act: 'quick_gelu',
      layerNormEps: 1e-5,
      headBias: false,
      embedding: 'head',
      classNames: [],
    },
    flipped: { act: 'gelu' },
  },
  {
    variant: 'dinov2',
    what: 'DINOv2 with registers: patch 14, 4 registers, layer scale, no head; position embedding resampled 2x2 -> 3x3',
    imageSize: 42,
    expect: {
      imageSize: 42,
      patchSize: 14,
      dim: 32,
      depth: 2,
      heads: 2,
      mlpDim: 128,
      numClasses: 0,
      regTokens: 4,
      noEmbedClass: true,
      layerScale: true,
      classToken: true,
      globalPool: 'token',
      embedding: 'pre_logits',
      ...IMAGENET,
      cropPct: 1,
    },
    flipped: { regTokens: 0 },
    resample: { prefix: 0, n: 2, m: 3 },
  },
];

for (const c of CASES)
  describe(`timm ${c.variant}: ${c.what}`, () => {
    const src = path.join(root, c.variant);
    const out = path.join(root, `${c.variant}-imported`);
    before(() => {
      runFixture('write_timm.py', src, c.variant);
      importCheckpoint({ from: 'timm', weights: src, out, imageSize: c.imageSize, command: 'test' });
    });

    test(`both engines agree with the reference on the source tensors within ${TOL} at s, m, l, xl`, async (t) => {
      const ref = timmToReference(readSourceJson(path.join(src, 'source.json')));
      if (c.resample) ref.pos_embed = referenceResamplePos(ref.pos_embed, c.resample.prefix, c.resample.n, c.resample.m);
      for (const line of await agreement(out, c.expect, ref, c.flipped, TOL)) t.diagnostic(line);
    });
  });

describe('timm config.json resolution (timm.create_model semantics)', () => {
  const hub = (o: object) => ({ architecture: 'vit_small_patch16_224', ...o });

  test('model_args > the pretrained config (num_classes, input_size) > the architecture > defaults', () => {
    const { args } = resolveTimmArgs(
      hub({ num_classes: 7, pretrained_cfg: { input_size: [3, 384, 384], num_classes: 1000 }, model_args: { depth: 3 } }),
      'c',
    );
    assert.deepEqual(
      [args.img_size, args.num_classes, args.depth, args.embed_dim, args.num_heads, args.patch_size],
      [384, 7, 3, 384, 6, 16],
    );
    const { args: a2 } = resolveTimmArgs(
      hub({ pretrained_cfg: { input_size: [3, 384, 384] }, model_args: { img_size: 96, num_classes: 2 } }),
      'c',
    );
    assert.deepEqual([a2.img_size, a2.num_classes], [96, 2]);
  });

  test("CLIP towers: QuickGELU for OpenAI's weights (tag or timm's note), GELU for fine-tunes or an explicit act_layer", () => {
    const clip = (cfg: HubConfig['pretrained_cfg'], model_args = {}) =>
      resolveTimmArgs({ architecture: 'vit_base_patch16_clip_224', pretrained_cfg: cfg, model_args }, 'c');
    assert.equal(clip({ tag: 'openai' }).args.act_layer, 'quick_gelu');
    assert.match(clip({ tag: 'openai' }).notes[0], /natively QuickGELU/);
    assert.equal(
      clip({ tag: 'metaclip_400m', notes: ['natively QuickGELU, use quickgelu model variant for original results'] }).args.act_layer,
      'quick_gelu',
    );
    assert.equal(clip({ tag: 'openai_ft_in1k' }).args.act_layer, 'gelu');
    assert.equal(clip({ tag: 'laion2b_s34b_b88k' }).args.act_layer, 'gelu');
    assert.equal(clip({ tag: 'openai' }, { act_layer: 'gelu' }).args.act_layer, 'gelu');
    assert.equal(resolveTimmArgs({ architecture: 'vit_base_patch16_clip_quickgelu_224' }, 'c').args.act_layer, 'quick_gelu');
  });

  test('what cannot be represented is an error naming it', () => {
    assert.throws(
      () => resolveTimmArgs({ architecture: 'vit_giant_patch14_dinov2' }, 'c.json'),
      /c\.json: architecture "vit_giant_patch14_dinov2" is not in the import table \(supported: vit_tiny_patch16_224, /,
    );
    assert.throws(() => resolveTimmArgs(hub({ model_args: { qk_norm: true } }), 'c.json'), /c\.json: model_args: qk_norm: /);
    assert.throws(
      () => resolveTimmArgs(hub({ model_args: { block_fn: 'ParallelScalingBlock' } }), 'c.json'),
      /c\.json: model_args: .*block_fn/,
    );
    assert.throws(() => resolveTimmArgs(hub({ model_args: { img_size: [224, 160] } }), 'c.json'), /img_size \[224,160\] is not square/);
  });
});

describe('timm: bad sources are refused with the reason', () => {
  const src = path.join(root, 'bad');
  before(() => runFixture('write_timm.py', src, 'deit3'));
  const withConfig = (name: string, edit: (cfg: Record<string, unknown>) => void) => {
    const dir = path.join(root, name);
    fs.cpSync(src, dir, { recursive: true });
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    edit(cfg);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    return dir;
  };

  test('a config that disagrees with the weights: every mismatched tensor named with both shapes', () => {
    const dir = withConfig('wrong-heads', (cfg) => Object.assign(cfg.model_args as object, { embed_dim: 48, no_embed_class: false }));
    assert.throws(
      () => importCheckpoint({ from: 'timm', weights: dir, out: path.join(root, 'never') }),
      (e: Error) => {
        assert.match(e.message, /does not match deit3_small_patch16_224:/);
        assert.match(e.message, /patch_embed\.proj\.weight: \[32,3,16,16\] in the source, \[48,3,16,16\] expected/);
        assert.match(e.message, /pos_embed: \[1,4,32\] in the source, \[1,5,48\] expected/);
        return true;
      },
    );
    assert.equal(fs.existsSync(path.join(root, 'never')), false, 'nothing written');
  });

  test('tensors the architecture does not have are named', () => {
    const dir = withConfig('headless', (cfg) => (cfg.num_classes = 0));
    assert.throws(
      () => importCheckpoint({ from: 'timm', weights: dir, out: path.join(root, 'never') }),
      /head\.weight \[5,32\]: not part of this architecture\n {2}head\.bias \[5\]: not part of this architecture/,
    );
  });

  test('an architecture variant this model cannot run', () => {
    const dir = withConfig('map-pool', (cfg) => (cfg.global_pool = 'map'));
    assert.throws(
      () => importCheckpoint({ from: 'timm', weights: dir, out: path.join(root, 'never') }),
      /global_pool "map" is not supported \(accepted: token, avg\)/,
    );
  });

  test('a folder without model.safetensors or config.json', () => {
    const dir = path.join(root, 'empty');
    fs.mkdirSync(dir);
    assert.throws(() => readSource({ from: 'timm', weights: dir }), /a timm hub folder needs config\.json/);
    fs.copyFileSync(path.join(src, 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'pickle');
    assert.throws(
      () => readSource({ from: 'timm', weights: dir }),
      /model\.safetensors is missing \(pytorch_model\.bin is a pickle; only model\.safetensors is read\)/,
    );
  });
});
