// Nested fine-tuning with distillation toward XL (TrainConfig.distill): the step's loss is
// cross-entropy plus T^2 * KL(teacher || student) plus 1 - cos(embeddings), checked against plain
// float64 loops over the reference forward (helpers/reference-vit.ts); and the cosine term pulls a
// narrow submodel's embeddings toward XL's.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { readMeta, saveCheckpoint } from '../src/model/checkpoint.ts';
import { granularityDims } from '../src/model/config.ts';
import { initWeights } from '../src/model/weights.ts';
import { forward, toTensors } from '../src/model/matvit.ts';
import { initTfjs } from '../src/engine/tfjs-backend.ts';
import { Distill, TrainConfig } from '../src/train/config.ts';
import { makeOptimizer, stepSubmodels, teacherOutputs, toVariables, trainStep } from '../src/train/step.ts';
import { randomImages, referenceOutputs, strongWeights } from './helpers/model-fixtures.ts';
import { fails, matvit } from './helpers/cli.ts';
import { tinyConfig, tinyFmnistConfig } from './helpers/tiny.ts';

const c = tinyConfig({ depth: 2, mlpDim: 32, numClasses: 5 });
const B = 4;

/** log-softmax of one row, float64. */
const logSoftmax = (z: ArrayLike<number>): number[] => {
  const m = Math.max(...Array.from(z));
  const lse = m + Math.log(Array.from(z).reduce((a, v) => a + Math.exp(v - m), 0));
  return Array.from(z, (v) => v - lse);
};

describe('distillation', () => {
  test("the step's loss is CE + kl * T^2 * KL(teacher || student) + cosine * (1 - cos), per the plain-loop reference", async () => {
    await initTfjs('cpu');
    const w = strongWeights(c, 2);
    const images = randomImages(c, B, 3);
    const labels = [0, 3, 1, 4];
    const targets = new Float32Array(B * c.numClasses);
    labels.forEach((l, i) => (targets[i * c.numClasses + l] = 1));
    const sub = { name: 's', ffnDims: granularityDims(c, 's') };
    const cfg = Distill.parse({ kl: 0.7, cosine: 1.3, temperature: 2 });
    const T = cfg.temperature;

    const student = referenceOutputs(c, w, images, sub.ffnDims);
    const teacher = referenceOutputs(c, w, images, granularityDims(c, 'xl'));
    const K = c.numClasses;
    const D = c.dim;
    let [ce, kl, cos] = [0, 0, 0];
    for (let i = 0; i < B; i++) {
      const s = student.logits.subarray(i * K, (i + 1) * K);
      const t = teacher.logits.subarray(i * K, (i + 1) * K);
      ce -= logSoftmax(s)[labels[i]];
      const [ls, lt] = [logSoftmax(Array.from(s, (v) => v / T)), logSoftmax(Array.from(t, (v) => v / T))];
      for (let k = 0; k < K; k++) kl += Math.exp(lt[k]) * (lt[k] - ls[k]);
      for (let d = 0; d < D; d++) cos += student.embeddings[i * D + d] * teacher.embeddings[i * D + d];
    }
    const want = ce / B + cfg.kl * T * T * (kl / B) + cfg.cosine * (1 - cos / B);

    const train = TrainConfig.parse({ model: c, data: 'unused', labelSmoothing: 0 });
    const params = toVariables(c, w);
    const t = teacherOutputs(c, toTensors(c, w), images, cfg);
    const { losses } = await trainStep(c, params, makeOptimizer(train, params), images, targets, [sub], 0, t);
    assert.ok(Math.abs(losses[0] - want) < 1e-4 * (1 + want), `loss ${losses[0]}, reference ${want}`);
    // The distillation terms are not vanishing here (the test would not see them otherwise).
    assert.ok(want - ce / B > 0.05, `distillation terms ${want - ce / B}`);
    // Without labels (labelLoss 0) the loss is the distillation terms alone; targets are not read.
    const unlabelled = await trainStep(c, params, makeOptimizer(train, params), images, new Float32Array(0), [sub], 0, t, 0);
    const kd = want - ce / B;
    assert.ok(Math.abs(unlabelled.losses[0] - kd) < 1e-4 * (1 + kd), `loss without labels ${unlabelled.losses[0]}, reference ${kd}`);
    tf.dispose([t.logits, t.embedding, ...Object.values(params)]);
  });

  test('the cosine term pulls s toward XL: mean cos(s, xl) rises over a few steps at teacher self', async () => {
    await initTfjs('cpu');
    const w = strongWeights(c, 4);
    const images = randomImages(c, 16, 5);
    const targets = new Float32Array(16 * c.numClasses).fill(1 / c.numClasses); // uniform: CE does not care where s points
    const cfg = Distill.parse({ kl: 0, cosine: 1 });
    const train = TrainConfig.parse({ model: c, data: 'unused', weightDecay: 0, labelSmoothing: 0 });
    const params = toVariables(c, w);
    const opt = makeOptimizer(train, params);
    const meanCos = () =>
      tf.tidy(() => {
        const x = tf.tensor4d(images, [16, c.channels, c.imageSize, c.imageSize]);
        const s = forward(c, params, x, granularityDims(c, 's')).embedding;
        const xl = forward(c, params, x).embedding;
        return tf.mean(tf.sum(tf.mul(s, xl), 1)).dataSync()[0];
      });
    const before = meanCos();
    for (let step = 0; step < 15; step++) {
      const t = teacherOutputs(c, params, images, cfg);
      await trainStep(c, params, opt, images, targets, [{ name: 's', ffnDims: granularityDims(c, 's') }], 3e-3, t);
      tf.dispose([t.logits, t.embedding]);
    }
    const after = meanCos();
    assert.ok(after > before + 0.02, `mean cos(s, xl) ${before.toFixed(4)} -> ${after.toFixed(4)}`);
    tf.dispose(Object.values(params));
  });

  test('cosine distillation alone does not reach the head: it is left unchanged, the rest is trained', async () => {
    await initTfjs('cpu');
    const w = strongWeights(c, 6);
    const images = randomImages(c, B, 7);
    const train = TrainConfig.parse({ model: c, data: 'x', labelLoss: 0, distill: { kl: 0 } });
    const params = toVariables(c, w);
    const t = teacherOutputs(c, toTensors(c, w), images, train.distill!);
    const sub = { name: 's', ffnDims: granularityDims(c, 's') };
    await trainStep(c, params, makeOptimizer(train, params), images, new Float32Array(0), [sub], 1e-2, t, 0);
    const changed = (n: string) => params[n].dataSync().some((v, i) => v !== w[n].data[i]);
    assert.equal(changed('head.weight'), false);
    assert.equal(changed('head.bias'), false);
    assert.equal(changed('blocks.0.mlp.fc1.weight'), true);
    tf.dispose([t.logits, t.embedding, ...Object.values(params)]);
  });

  test('without labels and teacher self, XL is never trained (it would only match itself); s, m and l all are', () => {
    const train = TrainConfig.parse({ model: c, data: 'x', labelLoss: 0, distill: { teacher: 'self' } });
    const drawn = new Set(Array.from({ length: 400 }, (_, step) => stepSubmodels(train, step)[0].name));
    assert.deepEqual([...drawn].sort(), ['l', 'm', 's']);
    assert.deepEqual(
      stepSubmodels({ ...train, objective: 'sum' }, 0).map((s) => s.name),
      ['s', 'm', 'l'],
    );
    // With labels XL is drawn as before.
    const labelled = TrainConfig.parse({ model: c, data: 'x', distill: { teacher: 'self' } });
    assert.ok(Array.from({ length: 400 }, (_, step) => stepSubmodels(labelled, step)[0].name).includes('xl'));
  });

  test('a model without a classifier (no head, or a head that is the embedding) trains by distillation only', () => {
    const issues = (o: object) => JSON.stringify(TrainConfig.safeParse({ data: 'x', ...o }).error?.issues ?? []);
    const headless = { ...c, numClasses: 0 };
    assert.match(issues({ model: headless }), /no classifier head.*--label-loss 0/);
    assert.match(issues({ model: headless, labelLoss: 0, distill: {} }), /no classifier logits to distill: --distill-kl 0/);
    assert.equal(issues({ model: headless, labelLoss: 0, distill: { kl: 0 } }), '[]');
    assert.match(issues({ model: { ...c, embedding: 'head' } }), /no classifier head/);
    assert.match(issues({ model: c, labelLoss: 0 }), /--label-loss 0 needs distillation/);
    assert.match(issues({ model: c, labelLoss: 0, distill: {}, mixup: 0.2 }), /mixup mixes labels/);
  });

  test("teacher 'init' needs --init", () => {
    const r = TrainConfig.safeParse({ model: c, data: 'x', distill: { teacher: 'init' } });
    assert.equal(r.success, false);
    assert.match(JSON.stringify(r.error!.issues), /teacher 'init' needs --init/);
  });

  test(
    'matvit train --init DIR --distill: the model comes from DIR, the distillation settings are saved with the run',
    { timeout: 120_000 },
    async (t) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-distill-'));
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
      const g = tinyFmnistConfig({ depth: 1 });
      saveCheckpoint(path.join(dir, 'dense'), g, initWeights(g, 1));
      const out = path.join(dir, 'run');
      await matvit(
        'train',
        '--init',
        path.join(dir, 'dense'),
        '--data',
        'fashion-mnist:test[:64]',
        '--out',
        out,
        '--batch-size',
        '16',
        '--epochs',
        '1',
        '--max-steps',
        '2',
        '--distill',
        'init',
        '--distill-cosine',
        '2',
        '--backend',
        'cpu',
      );
      const state = JSON.parse(fs.readFileSync(path.join(out, 'ckpt', 'step-0000002', 'state.json'), 'utf8'));
      assert.deepEqual(state.config.distill, { teacher: 'init', kl: 1, temperature: 1, cosine: 2 });
      assert.equal(readMeta(path.join(out, 'ckpt', 'step-0000002')).model.dim, g.dim);
      const bad = await fails([
        'train',
        '--data',
        'fashion-mnist:test[:64]',
        '--out',
        path.join(dir, 'x'),
        '--distill',
        'init',
        '--preset',
        'fmnist-tiny',
      ]);
      assert.match(bad.stderr, /teacher 'init' needs --init/);
      // A model whose head has another class count than the data is refused up front, with the way out.
      const five = { ...g, numClasses: 5 };
      saveCheckpoint(path.join(dir, 'five'), five, initWeights(five, 1));
      // prettier-ignore
      const mismatch = await fails(['train', '--init', path.join(dir, 'five'), '--data', 'fashion-mnist:test[:64]', '--out', path.join(dir, 'y'), '--backend', 'cpu']);
      assert.match(mismatch.stderr, /has 10 classes and the model 5 outputs: fine-tune without labels by distillation \(--label-loss 0/);
    },
  );

  test(
    'matvit train --label-loss 0: a headless model is fine-tuned by cosine distillation alone, validated by cosine to XL',
    { timeout: 120_000 },
    async (t) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-distill-'));
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
      const g = tinyFmnistConfig({ depth: 1, numClasses: 0 });
      saveCheckpoint(path.join(dir, 'headless'), g, initWeights(g, 2));
      const out = path.join(dir, 'run');
      // prettier-ignore
      await matvit('train', '--init', path.join(dir, 'headless'), '--data', 'fashion-mnist:test[:64]', '--val', 'fashion-mnist:test[64:96]',
        '--out', out, '--batch-size', '16', '--epochs', '1', '--label-loss', '0', '--distill-kl', '0', '--backend', 'cpu');
      const rows = fs
        .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      const val = rows.find((r) => r.valCosineToXl);
      assert.ok(val, 'a validation row with valCosineToXl');
      assert.deepEqual(Object.keys(val.valCosineToXl).sort(), ['l', 'm', 's', 'xl']);
      for (const [name, v] of Object.entries(val.valCosineToXl as Record<string, number>))
        assert.ok(name === 'xl' ? Math.abs(v - 1) < 1e-5 : v > -1 && v < 1, `${name} ${v}`);
      assert.ok(fs.existsSync(path.join(out, 'best', 'model.safetensors')));
      // Every logged training loss is a submodel narrower than XL.
      for (const r of rows.filter((r) => r.loss)) assert.ok(!('xl' in r.loss), JSON.stringify(r.loss));
    },
  );
});
