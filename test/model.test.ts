import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { checkFfnDims, granularityDims, parseSubmodel, submodelName } from '../src/model/config.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint.ts';
import { macs, mflops, paramCount } from '../src/model/flops.ts';
import { PRESETS, preset } from '../src/model/presets.ts';
import { decodeSafetensors, encodeSafetensors } from '../src/model/safetensors.ts';
import { initWeights, numel, weightSpecs } from '../src/model/weights.ts';
import { learningRate } from '../src/train/schedule.ts';
import { tinyConfig } from './helpers/tiny.ts';

const made: string[] = [];
const tmp = () => {
  made.push(fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-model-')));
  return made.at(-1)!;
};
after(() => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

describe('compute accounting', () => {
  // Hand-computed for tinyConfig: image 8, patch 4, C 3 -> N 4, T 5; D 16, 2 layers, mlp 32, K 5.
  //   patch 4*48*16 = 3072; per layer qkv 5*16*48 = 3840, scores+mix 2*25*16 = 800,
  //   proj 5*16*16 = 1280, ffn 2*5*16*f = 160f; head 16*5 = 80.
  const c = tinyConfig();
  it('MACs and MFLOPs for xl, s and a mix', () => {
    assert.equal(macs(c, [32, 32]), 3072 + 2 * (3840 + 800 + 1280 + 5120) + 80); // 25232
    assert.equal(macs(c, [4, 4]), 3072 + 2 * (3840 + 800 + 1280 + 640) + 80); // 16272
    assert.equal(macs(c, [4, 32]), 16272 - 6560 + 11040);
    assert.equal(mflops(c, [32, 32]), (2 * 25232) / 1e6);
  });
  it('params for xl and s', () => {
    // patch 48*16+16, cls 16, pos 5*16; layer: LN 64, qkv 16*48+48, proj 16*16+16, fc1 16f+f, fc2 16f+16; final LN 32; head 85
    assert.equal(paramCount(c, [32, 32]), 784 + 16 + 80 + 2 * (64 + 816 + 272 + 544 + 528) + 32 + 85); // 5445
    assert.equal(paramCount(c, [4, 4]), 784 + 16 + 80 + 2 * (64 + 816 + 272 + 68 + 80) + 32 + 85); // 3597
  });
  it('xl params equal the size of the weight map', () => {
    for (const name of Object.keys(PRESETS)) {
      const p = preset(name);
      assert.equal(
        paramCount(p, granularityDims(p, 'xl')),
        weightSpecs(p).reduce((a, s) => a + numel(s.shape), 0),
        name,
      );
    }
  });
  it('ViT-B/16 matches the paper: ~86M params, 17.6 GMACs at xl', () => {
    const b = preset('vit-b16');
    assert.ok(Math.abs(paramCount(b, granularityDims(b, 'xl')) / 1e6 - 86.6) < 0.1);
    assert.ok(Math.abs(macs(b, granularityDims(b, 'xl')) / 1e9 - 17.56) < 0.02);
  });
});

describe('submodels', () => {
  const c = tinyConfig();
  it('granularities are 1/8, 1/4, 1/2, 1 of mlpDim', () => {
    assert.deepEqual(
      ['s', 'm', 'l', 'xl'].map((g) => granularityDims(c, g as 's')[0]),
      [4, 8, 16, 32],
    );
    assert.equal(submodelName(c, [8, 8]), 'm');
    assert.equal(submodelName(c, [4, 32]), '4,32');
    assert.deepEqual(parseSubmodel(c, 'L'), [16, 16]);
  });
  it('bad ffnDims name the value and the accepted range', () => {
    assert.throws(() => checkFfnDims(c, [4]), /1 entries, the model has 2 layers/);
    assert.throws(() => checkFfnDims(c, [4, 33]), /ffnDims\[1\] = 33: .* 1\.\.32/);
    assert.throws(() => parseSubmodel(c, 'huge'), /expected one of s, m, l, xl/);
  });
});

describe('checkpoints', () => {
  const c = tinyConfig({ classNames: ['a', 'b', 'c', 'd', 'e'] });
  const w = initWeights(c, 7);
  it('round-trips weights and config; the fingerprint is stable', () => {
    const dir = path.join(tmp(), 'ckpt');
    const meta = saveCheckpoint(dir, c, w);
    const back = loadCheckpoint(dir);
    assert.equal(back.meta.fingerprint, meta.fingerprint);
    assert.deepEqual(back.meta.model, c);
    for (const s of weightSpecs(c)) assert.deepEqual(back.weights[s.name].data, w[s.name].data, s.name);
    assert.equal(saveCheckpoint(path.join(tmp(), 'again'), c, w).fingerprint, meta.fingerprint);
    assert.notEqual(saveCheckpoint(path.join(tmp(), 'other'), c, initWeights(c, 8)).fingerprint, meta.fingerprint);
  });
  it('stores timm layouts: linear [out, in], patch conv [D, C, P, P]', () => {
    const dir = path.join(tmp(), 'ckpt');
    saveCheckpoint(dir, c, w);
    const { tensors } = decodeSafetensors(fs.readFileSync(path.join(dir, 'model.safetensors')));
    const fc1 = tensors['blocks.0.mlp.fc1.weight'];
    assert.deepEqual(fc1.shape, [32, 16]);
    const mem = w['blocks.0.mlp.fc1.weight']; // [16, 32]
    for (const [i, o] of [
      [0, 0],
      [3, 17],
      [15, 31],
    ])
      assert.equal(fc1.data[o * 16 + i], mem.data[i * 32 + o]);
    const conv = tensors['patch_embed.proj.weight'];
    assert.deepEqual(conv.shape, [16, 3, 4, 4]);
    // memory row (py*P + px)*C + ch, column d  <->  conv [d, ch, py, px]
    const [d, ch, py, px] = [5, 2, 1, 3];
    assert.equal(conv.data[((d * 3 + ch) * 4 + py) * 4 + px], w['patch_embed.proj.weight'].data[((py * 4 + px) * 3 + ch) * 16 + d]);
  });
  it('names every mismatch on load, and detects tampered weights', () => {
    const dir = path.join(tmp(), 'ckpt');
    saveCheckpoint(dir, c, w);
    const file = path.join(dir, 'model.safetensors');
    const { tensors, metadata } = decodeSafetensors(fs.readFileSync(file));
    delete tensors['head.bias'];
    tensors['blocks.1.attn.proj.weight'] = { shape: [16, 8], data: new Float32Array(128) };
    tensors['extra.weight'] = { shape: [2], data: new Float32Array(2) };
    fs.writeFileSync(file, encodeSafetensors(tensors, metadata));
    assert.throws(
      () => loadCheckpoint(dir),
      (e: Error) =>
        /missing head\.bias/.test(e.message) &&
        /blocks\.1\.attn\.proj\.weight: shape \[8,16\], expected \[16,16\]/.test(e.message) &&
        /unexpected extra\.weight/.test(e.message),
    );
    saveCheckpoint(dir, c, w);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 1] ^= 0xff;
    fs.writeFileSync(file, bytes);
    assert.throws(() => loadCheckpoint(dir), /fingerprint .* does not match/);
  });
  it('rejects a truncated safetensors file with a clear error', () => {
    const buf = encodeSafetensors({ x: { shape: [4], data: new Float32Array(4) } });
    assert.throws(() => decodeSafetensors(buf.subarray(0, buf.length - 3), 'f'), /f: not a valid safetensors file: x: offsets/);
    assert.throws(() => decodeSafetensors(buf.subarray(0, 5), 'f'), /shorter than the 8-byte header length/);
  });
});

describe('learning-rate schedule', () => {
  const o = { lr: 1e-3, minLr: 1e-5, warmupSteps: 10, totalSteps: 110 };
  it('warms up linearly, then follows the cosine to minLr', () => {
    assert.equal(learningRate(0, o), 1e-4);
    assert.equal(learningRate(9, o), 1e-3);
    assert.equal(learningRate(10, o), 1e-3);
    assert.ok(Math.abs(learningRate(60, o) - (1e-5 + 0.5 * (1e-3 - 1e-5))) < 1e-12); // half-way: cos = 0
    assert.ok(Math.abs(learningRate(110, o) - 1e-5) < 1e-12);
    assert.ok(Math.abs(learningRate(500, o) - 1e-5) < 1e-12);
  });
});
