// `--from big_vision` (.npz written by numpy.savez) and `--from scenic` (flax's msgpack layout written
// by Python's msgpack, with chunked arrays): imported, then run by both engines against the float64
// reference fed the source tensors (converted from flax's layout by the test's own code).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importCheckpoint } from '../src/import/import.ts';
import type { ModelConfigInput } from '../src/model/config.ts';
import { type ExpectedModel, type FlaxNames, agreement, flaxToReference, referenceResamplePos } from './fixtures/import-reference.ts';
import { readSourceJson, runFixture, tempDir } from './fixtures/python.ts';

const TOL = 1e-4;
const root = tempDir({ after });
const HALF = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }; // value_range(-1, 1)
const AUGREG: Omit<FlaxNames, 'prefix' | 'pos' | 'head'> = { mha: 'MultiHeadDotProductAttention_1', ln2: 'LayerNorm_2', mlp: 'MlpBlock_3' };
const CURRENT: Omit<FlaxNames, 'prefix' | 'pos' | 'head'> = {
  mha: 'MultiHeadDotProductAttention_0',
  ln2: 'LayerNorm_1',
  mlp: 'MlpBlock_0',
};

interface Case {
  name: string;
  from: 'big_vision' | 'scenic';
  /** Writes the source file; returns its path. */
  write: (dir: string) => string;
  names: FlaxNames;
  imageSize?: number;
  /** What the flax model computes (big_vision/models/vit.py, scenic/projects/matvit/matvit.py): flax's LayerNorm eps 1e-6 and tanh GELU. */
  expect: ExpectedModel;
  flipped: Partial<ModelConfigInput>;
  resample?: { prefix: number; n: number; m: number };
  /** The flipped reference reads fc_norm: give it the final norm's weights. */
  fcNormFromNorm?: boolean;
}

const chunked: Record<string, number> = {};
const CASES: Case[] = [
  {
    name: 'AugReg .npz (class token inside the position embedding, modules 0-3), position embedding resampled 4x4 -> 3x3',
    from: 'big_vision',
    write: (dir) => (runFixture('write_big_vision.py', path.join(dir, 'augreg.npz'), 'augreg'), path.join(dir, 'augreg.npz')),
    names: { prefix: '', pos: 'Transformer/posembed_input/pos_embedding', head: 'head', ...AUGREG },
    imageSize: 24,
    expect: {
      imageSize: 24,
      patchSize: 8,
      dim: 24,
      depth: 2,
      heads: 3,
      mlpDim: 64,
      numClasses: 5,
      act: 'gelu_tanh',
      layerNormEps: 1e-6,
      classToken: true,
      noEmbedClass: false,
      globalPool: 'token',
      fcNorm: false,
      headBias: true,
      ...HALF,
      cropPct: 0.9,
      interpolation: 'bicubic',
    },
    flipped: { act: 'gelu' },
    resample: { prefix: 1, n: 4, m: 3 },
  },
  {
    name: 'big_vision .npz under params/ (global average pooling, no class token, patch 14)',
    from: 'big_vision',
    write: (dir) => (runFixture('write_big_vision.py', path.join(dir, 'gap.npz'), 'gap'), path.join(dir, 'gap.npz')),
    names: { prefix: 'params/', pos: 'pos_embedding', head: 'head', ...CURRENT },
    expect: {
      imageSize: 42,
      patchSize: 14,
      dim: 16,
      depth: 2,
      heads: 2,
      mlpDim: 48,
      numClasses: 4,
      act: 'gelu_tanh',
      classToken: false,
      globalPool: 'avg',
      fcNorm: false,
      ...HALF,
    },
    // big_vision normalizes every token, then averages; fc_norm (the same affine after averaging) differs.
    flipped: { fcNorm: true },
    fcNormFromNorm: true,
  },
  {
    name: 'scenic MatViT msgpack, a train state with chunked arrays (threshold 2048 bytes)',
    from: 'scenic',
    write: (dir) => {
      const file = path.join(dir, 'checkpoint_1234');
      chunked.train_state = Number(runFixture('write_scenic.py', file, '2048', 'train_state'));
      return file;
    },
    names: { prefix: '', pos: 'Transformer/posembed_input/pos_embedding', head: 'output_projection', ...CURRENT },
    expect: {
      imageSize: 24,
      patchSize: 8,
      dim: 24,
      depth: 2,
      heads: 3,
      mlpDim: 64,
      numClasses: 6,
      act: 'gelu_tanh',
      classToken: true,
      noEmbedClass: false,
      globalPool: 'token',
      ...HALF,
      cropPct: 0.875,
      interpolation: 'bilinear',
    },
    flipped: { act: 'gelu' },
  },
  {
    name: "scenic MatViT msgpack, an older optimizer's target (nothing chunked)",
    from: 'scenic',
    write: (dir) => {
      const file = path.join(dir, 'checkpoint_old');
      chunked.optimizer = Number(runFixture('write_scenic.py', file, String(2 ** 30), 'optimizer'));
      return file;
    },
    names: { prefix: '', pos: 'Transformer/posembed_input/pos_embedding', head: 'output_projection', ...CURRENT },
    expect: { imageSize: 24, patchSize: 8, dim: 24, depth: 2, heads: 3, mlpDim: 64, numClasses: 6, act: 'gelu_tanh', classToken: true },
    flipped: { act: 'gelu' },
  },
];

for (const [i, c] of CASES.entries())
  describe(`${c.from}: ${c.name}`, () => {
    const dir = path.join(root, String(i));
    const out = path.join(dir, 'imported');
    let file = '';
    before(() => {
      fs.mkdirSync(dir);
      file = c.write(dir);
      importCheckpoint({ from: c.from, weights: file, out, imageSize: c.imageSize, command: 'test' });
    });

    test(`both engines agree with the reference on the source tensors within ${TOL} at s, m, l, xl`, async (t) => {
      const ref = flaxToReference(readSourceJson(`${file}.source.json`), c.names, c.expect.depth);
      if (c.resample) ref.pos_embed = referenceResamplePos(ref.pos_embed, c.resample.prefix, c.resample.n, c.resample.m);
      if (c.fcNormFromNorm) Object.assign(ref, { 'fc_norm.weight': ref['norm.weight'], 'fc_norm.bias': ref['norm.bias'] });
      for (const line of await agreement(out, c.expect, ref, c.flipped, TOL)) t.diagnostic(line);
    });
  });

test('the scenic train state was written with chunked arrays, the old optimizer state without', () => {
  assert.ok(chunked.train_state > 10, `${chunked.train_state} chunked arrays`);
  assert.equal(chunked.optimizer, 0);
});

test('an attention-pooling head (MAPHead_0) is refused, naming it', () => {
  const file = path.join(root, 'map.npz');
  runFixture('write_big_vision.py', file, 'map');
  assert.throws(
    () => importCheckpoint({ from: 'big_vision', weights: file, out: path.join(root, 'never') }),
    /map\.npz: attention pooling \(MAPHead_0\) is not supported/,
  );
});
