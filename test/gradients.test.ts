// The training gradients (custom gradients of dense, the attention products, layer norm and GELU; tfjs autodiff
// elsewhere) against central finite differences of the loss: an independent check.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { initTfjs } from '../src/engine/tfjs-backend.ts';
import { forward, toTensors } from '../src/model/matvit.ts';
import { initWeights } from '../src/model/weights.ts';
import { assertFiniteDifference } from './helpers/finite-diff.ts';
import { tinyConfig } from './helpers/tiny.ts';

it("gradients of a Mix'n'Match submodel match finite differences", async () => {
  await tf.setBackend('cpu');
  const c = tinyConfig();
  const w0 = initWeights(c, 3);
  // Weights well away from init, so every path carries signal.
  for (const k of Object.keys(w0)) w0[k].data.forEach((_, i, a) => (a[i] += 0.1 * Math.sin(i + k.length)));
  const vars = Object.fromEntries(Object.entries(toTensors(c, w0)).map(([k, v]) => [k, tf.variable(v, true, k)]));
  const x = tf.randomNormal([3, 3, 8, 8], 0, 1, 'float32', 1) as tf.Tensor4D;
  const weights = tf.reshape(tf.range(0, 15), [3, 5]);
  const loss = () => tf.sum(tf.mul(forward(c, vars, x, [8, 32]).logits, weights)) as tf.Scalar;
  const { grads } = tf.variableGrads(loss);
  const checks: [string, number][] = [
    ['patch_embed.proj.weight', 7],
    ['pos_embed', 20],
    ['blocks.0.attn.qkv.weight', 40],
    ['blocks.0.attn.proj.bias', 3],
    ['blocks.0.mlp.fc1.weight', 5],
    ['blocks.0.mlp.fc1.weight', 17],
    ['blocks.1.mlp.fc2.weight', 100],
    ['blocks.1.norm2.weight', 2],
    ['norm.bias', 4],
    ['head.weight', 9],
    ['blocks.0.norm1.bias', 6],
    ['blocks.1.norm1.weight', 11],
    ['blocks.0.norm2.weight', 0],
    ['cls_token', 5],
    ['blocks.1.attn.qkv.bias', 40],
  ];
  for (const [name, i] of checks) assertFiniteDifference(vars[name], i, loss, grads[name].dataSync()[i], name);
  // fc1 column 17 of layer 0 lies past its width 8: no gradient (sliced, not masked).
  assert.equal(grads['blocks.0.mlp.fc1.weight'].dataSync()[17], 0);
});

it("every gradient on tfjs-wasm (the training backend, with its kernel overrides) equals the cpu backend's", async () => {
  const c = tinyConfig();
  const w0 = initWeights(c, 4);
  for (const k of Object.keys(w0)) w0[k].data.forEach((_, i, a) => (a[i] += 0.1 * Math.cos(i + k.length)));
  const x = Float32Array.from({ length: 3 * 3 * 8 * 8 }, (_, i) => Math.sin(i * 0.7));
  const gradsOn = async (backend: string) => {
    if (backend === 'wasm') await initTfjs('wasm');
    await tf.setBackend(backend);
    const vars = Object.fromEntries(Object.entries(toTensors(c, w0)).map(([k, v]) => [k, tf.variable(v, true, `${backend}/${k}`)]));
    const images = tf.tensor4d(x, [3, 3, 8, 8]);
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(forward(c, vars, images, [8, 32]).logits)) as tf.Scalar);
    const out = Object.fromEntries(Object.entries(grads).map(([k, g]) => [k.slice(backend.length + 1), g.dataSync().slice()]));
    tf.dispose([value, images, ...Object.values(grads), ...Object.values(vars)]);
    return out;
  };
  const cpu = await gradsOn('cpu');
  const wasm = await gradsOn('wasm');
  await tf.setBackend('cpu');
  assert.deepEqual(Object.keys(wasm).sort(), Object.keys(cpu).sort());
  for (const [name, g] of Object.entries(cpu)) {
    const scale = Math.max(1e-3, ...g.map(Math.abs));
    g.forEach((v, i) => assert.ok(Math.abs(v - wasm[name][i]) <= 1e-4 * scale, `${name}[${i}]: cpu ${v}, wasm ${wasm[name][i]}`));
  }
});
