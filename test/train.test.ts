// Training: exact resume after SIGKILL, the objectives' submodel choice, and the trainer's outputs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadCheckpoint, readMeta } from '../src/model/checkpoint.ts';
import { initWeights } from '../src/model/weights.ts';
import { TrainConfig } from '../src/train/config.ts';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { AdamW } from '../src/train/adamw.ts';
import { stepSubmodels } from '../src/train/step.ts';
import { epochOrder } from '../src/train/trainer.ts';
import { tinyFmnistConfig } from './helpers/tiny.ts';

const root = path.resolve(import.meta.dirname, '..');
const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
const tmp = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-train-'));
  dirs.push(dir);
  return dir;
};
const model = tinyFmnistConfig({ depth: 1 });
const cfg = TrainConfig.parse({
  model,
  data: 'fashion-mnist:test[:256]',
  epochs: 25,
  batchSize: 32,
  warmupSteps: 20,
  checkpointEvery: 5,
  logEvery: 50,
  seed: 3,
});

function runTrain(configFile: string, out: string, extra: string[] = []) {
  return spawn(
    process.execPath,
    [path.join(root, 'bin/matvit.js'), 'train', '--config', configFile, '--out', out, '--backend', 'wasm', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}
const exited = (p: ReturnType<typeof spawn>) => new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
const latestStep = (out: string) => {
  try {
    return Number(fs.readFileSync(path.join(out, 'latest'), 'utf8').replace('step-', ''));
  } catch {
    return -1;
  }
};
const finalFingerprint = (out: string) =>
  readMeta(path.join(out, 'ckpt', fs.readFileSync(path.join(out, 'latest'), 'utf8').trim())).fingerprint;

describe('trainer', () => {
  it('resumes exactly after SIGKILL: the same weights as an unbroken run', { timeout: 180_000 }, async () => {
    const dir = tmp();
    const configFile = path.join(dir, 'train.json');
    fs.writeFileSync(configFile, JSON.stringify(cfg));
    const total = Math.floor(256 / 32) * 25;

    const unbroken = path.join(dir, 'unbroken');
    assert.equal(await exited(runTrain(configFile, unbroken)), 0);
    assert.equal(latestStep(unbroken), total);

    const broken = path.join(dir, 'broken');
    for (const killAt of [20, 90]) {
      const child = runTrain(configFile, broken, ['--resume']);
      let err = '';
      child.stderr!.on('data', (d) => (err += d));
      while (latestStep(broken) < killAt) {
        assert.equal(child.exitCode, null, `the child ended before it could be killed: ${err}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      child.kill('SIGKILL');
      await exited(child);
      const step = latestStep(broken);
      assert.ok(step >= killAt && step < total, `killed at step ${step}`);
    }
    const resumed = runTrain(configFile, broken, ['--resume']);
    let log = '';
    resumed.stderr!.on('data', (d) => (log += d));
    assert.equal(await exited(resumed), 0, log);
    assert.match(log, /resumed .* at step \d+\/200/);
    assert.equal(latestStep(broken), total);
    assert.equal(finalFingerprint(broken), finalFingerprint(unbroken));
    // metrics.jsonl holds each logged step once, though steps after the last checkpoint ran twice.
    const steps = fs
      .readFileSync(path.join(broken, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    assert.deepEqual(
      steps,
      [...new Set(steps)].sort((a, b) => a - b),
    );
  });

  it(
    '--init starts from the given weights (a second stage); another architecture is refused, naming the tensor',
    { timeout: 120_000 },
    async () => {
      const dir = tmp();
      const write = (name: string, c: object) => {
        const f = path.join(dir, name);
        fs.writeFileSync(f, JSON.stringify(c));
        return f;
      };
      const first = path.join(dir, 'first');
      assert.equal(await exited(runTrain(write('first.json', cfg), first, ['--max-steps', '5'])), 0);
      const source = path.join(first, 'ckpt', fs.readFileSync(path.join(first, 'latest'), 'utf8').trim());
      // One AdamW step moves each weight by about lr: at lr 1e-7 the run must still sit on its init.
      const second = path.join(dir, 'second');
      const secondCfg = { ...cfg, init: source, seed: 7, lr: 1e-7, minLr: 0, warmupSteps: 0, weightDecay: 0 };
      assert.equal(await exited(runTrain(write('second.json', secondCfg), second, ['--max-steps', '1'])), 0);
      const after = loadCheckpoint(path.join(second, 'ckpt', fs.readFileSync(path.join(second, 'latest'), 'utf8').trim())).weights;
      const from = loadCheckpoint(source).weights;
      const seeded = initWeights(model, 7); // what seed 7 alone would start from
      const maxDiff = (a: typeof from) =>
        Math.max(...Object.keys(after).map((k) => Math.max(...after[k].data.map((v, i) => Math.abs(v - a[k].data[i])))));
      assert.ok(maxDiff(from) < 1e-5, `moved ${maxDiff(from)} from --init`);
      assert.ok(maxDiff(seeded) > 1e-3, 'the seeded initialization, not --init');
      const other = runTrain(write('other.json', { ...cfg, model: { ...model, depth: 2 }, init: source }), path.join(dir, 'other'), [
        '--max-steps',
        '1',
      ]);
      let err = '';
      other.stderr!.on('data', (d) => (err += d));
      assert.notEqual(await exited(other), 0);
      assert.match(err, /--init .*: blocks\.1\.\S+ is missing, the model needs \[/);
    },
  );

  it('sum trains s, m, l, xl each step; sampled draws one by weight; baseline trains one width', () => {
    assert.deepEqual(
      stepSubmodels({ ...cfg, objective: 'sum' }, 0).map((s) => s.name),
      ['s', 'm', 'l', 'xl'],
    );
    const counts: Record<string, number> = {};
    for (let step = 0; step < 4000; step++)
      for (const s of stepSubmodels({ ...cfg, granularityWeights: [1, 0, 0, 3] }, step)) counts[s.name] = (counts[s.name] ?? 0) + 1;
    assert.deepEqual(Object.keys(counts).sort(), ['s', 'xl']);
    assert.ok(Math.abs(counts.xl / 4000 - 0.75) < 0.03, JSON.stringify(counts));
    assert.deepEqual(stepSubmodels({ ...cfg, baselineFfn: 8 }, 5), [{ name: 'ffn8', ffnDims: [8] }]);
  });

  it('epoch orders are seeded permutations', () => {
    const a = epochOrder(100, 1, 0);
    assert.deepEqual(
      [...a].sort((x, y) => x - y),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.deepEqual(epochOrder(100, 1, 0), a);
    assert.notDeepEqual(epochOrder(100, 1, 1), a);
  });
});

describe('AdamW', () => {
  // Independent reference: torch.optim.AdamW's documented algorithm, in float64, on plain arrays.
  function reference(
    p: number[][],
    grads: number[][][],
    o: { lr: number; beta1: number; beta2: number; eps: number; wd: number; clip: number },
    decay: boolean[],
  ) {
    const w = p.map((a) => [...a]);
    const m = p.map((a) => a.map(() => 0));
    const v = p.map((a) => a.map(() => 0));
    grads.forEach((gs, step) => {
      const norm = Math.sqrt(gs.flat().reduce((s, x) => s + x * x, 0));
      const k = norm > o.clip ? o.clip / norm : 1;
      const t = step + 1;
      w.forEach((wi, i) =>
        wi.forEach((_, j) => {
          const g = gs[i][j] * k;
          if (decay[i]) wi[j] -= o.lr * o.wd * wi[j];
          m[i][j] = o.beta1 * m[i][j] + (1 - o.beta1) * g;
          v[i][j] = o.beta2 * v[i][j] + (1 - o.beta2) * g * g;
          const mHat = m[i][j] / (1 - o.beta1 ** t);
          const vHat = v[i][j] / (1 - o.beta2 ** t);
          wi[j] -= (o.lr * mHat) / (Math.sqrt(vHat) + o.eps);
        }),
      );
    });
    return w;
  }

  it('matches torch AdamW step for step (clipping, decay on matrices only), and resumes from its state', async () => {
    await tf.setBackend('cpu');
    const o = { lr: 0.05, beta1: 0.9, beta2: 0.99, eps: 1e-8, wd: 0.1, clip: 1 };
    const init = [
      [0.5, -1, 2, 0.25, -0.75, 1.5],
      [0.1, -0.2],
    ];
    const shapes = [[2, 3], [2]];
    // Step 1 is clipped (norm ~ 9.5 > 1), steps 2 and 3 are not.
    const grads = [
      [
        [3, -4, 5, 1, 2, -6],
        [0.5, 1],
      ],
      [
        [0.1, 0.2, -0.3, 0.05, 0, 0.1],
        [-0.2, 0.3],
      ],
      [
        [-0.05, 0.1, 0.2, -0.1, 0.3, 0],
        [0.1, 0.1],
      ],
    ];
    const vars = Object.fromEntries(init.map((a, i) => [`w${i}`, tf.variable(tf.tensor(a, shapes[i]), true, `adamw-test-${i}`)]));
    const opts = { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.wd, clipNorm: o.clip };
    const opt = new AdamW(vars, new Set(['w0']), opts);
    const gradMap = (s: number) => Object.fromEntries(grads[s].map((g, i) => [`w${i}`, tf.tensor(g, shapes[i])]));
    const norm = await opt.step(gradMap(0), o.lr);
    assert.ok(Math.abs(norm - Math.sqrt(grads[0].flat().reduce((s, x) => s + x * x, 0))) < 1e-5);
    await opt.step(gradMap(1), o.lr);
    // A second optimizer restored from the first's state takes the third step identically.
    const copy = Object.fromEntries(Object.entries(vars).map(([k, t]) => [k, tf.variable(t.clone(), true, `${t.name}-copy`)]));
    const resumed = new AdamW(copy, new Set(['w0']), opts);
    resumed.load(await opt.state(), opt.t);
    await opt.step(gradMap(2), o.lr);
    await resumed.step(gradMap(2), o.lr);
    const want = reference(init, grads, o, [true, false]);
    for (const [i, name] of ['w0', 'w1'].entries()) {
      const got = vars[name].dataSync();
      want[i].forEach((x, j) => assert.ok(Math.abs(got[j] - x) < 1e-6, `${name}[${j}]: ${got[j]} vs reference ${x}`));
      assert.deepEqual([...copy[name].dataSync()], [...got]);
    }
    assert.throws(() => resumed.load({}, 1), /optimizer state has no m\.w0/);
  });
});
