// MatFormer training: config -> data -> model -> optimizer -> loop with evaluation and checkpoints.
//
// Every random choice is a pure function of (seed, epoch, step, index): the data order of an epoch,
// each image's augmentation, the granularity sampled at a step. So `--resume` from the checkpoint at
// step k continues exactly as an unbroken run would, with no RNG state to save.
//
// Run directory:
//   ckpt/step-NNNNNNN/  model.safetensors + config.json (a model checkpoint), optimizer.safetensors, state.json
//   latest              name of the newest complete step directory (replaced atomically)
//   best/               the model checkpoint with the best validation score
//   metrics.jsonl       one JSON object per log line and per evaluation
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { z } from 'zod';
import { type Dataset, batches, parseDatasetSpec } from '../data/dataset.ts';
import { GRANULARITY_NAMES, type ModelConfig, granularityDims } from '../model/config.ts';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.ts';
import { toTensors } from '../model/matvit.ts';
import { writeFileAtomic } from '../util/durable.ts';
import { decodeSafetensors, encodeSafetensors } from '../model/safetensors.ts';
import { type WeightMap, initWeights, weightSpecs } from '../model/weights.ts';
import { createEncoder } from '../engine/encoder.ts';
import { initTfjs } from '../engine/tfjs-backend.ts';
import { classify } from '../eval/classify.ts';
import { cosineToXl } from '../eval/embed.ts';
import type { AdamW } from './adamw.ts';
import { TrainConfig } from './config.ts';
import { learningRate } from './schedule.ts';
import { makeOptimizer, mixBatch, stepSubmodels, teacherOutputs, toVariables, trainStep } from './step.ts';

// bestScore is null until the first validation (JSON has no -Infinity).
const TrainState = z
  .object({
    step: z.number().int().nonnegative(),
    adamT: z.number().int().nonnegative(),
    bestScore: z.number().nullable(),
    config: TrainConfig,
  })
  .strict();
type TrainState = z.infer<typeof TrainState>;

export interface TrainOptions {
  resume?: boolean;
  backend?: string;
  /** tfjs-wasm threads (default: every core). */
  threads?: number;
  /** Stop after this many steps in this process (tests, benchmarks); the schedule still spans the full run. */
  maxSteps?: number;
  /** On resume, a new length of the run: the cosine is recomputed over it from the current step (compute
   *  budgets change; the new value is saved with the next checkpoint). */
  epochs?: number;
  log?: (line: string) => void;
}

/** The data order of an epoch: a seeded permutation. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const rng = seedrandom(`${seed}:order:${epoch}`);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function latestCheckpoint(outDir: string): string | undefined {
  const pointer = path.join(outDir, 'latest');
  if (!fs.existsSync(pointer)) return undefined;
  return path.join(outDir, 'ckpt', fs.readFileSync(pointer, 'utf8').trim());
}

/** Host copy of the trainable variables. */
async function hostWeights(params: Record<string, tf.Variable>): Promise<WeightMap> {
  const out: WeightMap = {};
  for (const [name, v] of Object.entries(params)) out[name] = { shape: [...v.shape], data: (await v.data()) as Float32Array };
  return out;
}

/** Writes a complete step directory, then points `latest` at it; older step directories are removed. */
async function saveTrainCheckpoint(
  outDir: string,
  cfg: TrainConfig,
  params: Record<string, tf.Variable>,
  opt: AdamW,
  state: TrainState,
): Promise<void> {
  const name = `step-${String(state.step).padStart(7, '0')}`;
  const dir = path.join(outDir, 'ckpt', name);
  saveCheckpoint(dir, cfg.model, await hostWeights(params), { provenance: { trainConfig: cfg, step: state.step } });
  writeFileAtomic(path.join(dir, 'optimizer.safetensors'), encodeSafetensors(await opt.state()));
  writeFileAtomic(path.join(dir, 'state.json'), JSON.stringify(state, null, 2));
  writeFileAtomic(path.join(outDir, 'latest'), name);
  for (const old of fs.readdirSync(path.join(outDir, 'ckpt')))
    if (old !== name) fs.rmSync(path.join(outDir, 'ckpt', old), { recursive: true, force: true });
}

/** Attaches dataset class names to the model config when the model has none. */
function withClassNames(model: ModelConfig, ds: Dataset): ModelConfig {
  if (model.classNames.length === 0 && ds.classNames.length === model.numClasses) return { ...model, classNames: ds.classNames };
  return model;
}

export async function train(
  cfgIn: TrainConfig | undefined,
  outDir: string,
  opts: TrainOptions = {},
): Promise<{ step: number; bestScore: number }> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  // --- config (a resumed run keeps the config saved in its checkpoint) ---
  const resumeDir = opts.resume ? latestCheckpoint(outDir) : undefined;
  if (opts.resume && !resumeDir) log(`no checkpoint in ${outDir}: starting from step 0`);
  const saved = resumeDir ? TrainState.parse(JSON.parse(fs.readFileSync(path.join(resumeDir, 'state.json'), 'utf8'))) : undefined;
  if (!saved && !cfgIn) throw new Error(`nothing to resume in ${outDir} and no training config given (--preset or --config)`);
  const cfg0 = saved ? { ...saved.config, epochs: opts.epochs ?? saved.config.epochs } : TrainConfig.parse(cfgIn);
  if (saved && opts.epochs !== undefined && opts.epochs !== saved.config.epochs)
    log(`schedule changed on resume: ${saved.config.epochs} -> ${opts.epochs} epochs`);

  // --- data ---
  const trainDs = await parseDatasetSpec(cfg0.data);
  const valDs = cfg0.val ? await parseDatasetSpec(cfg0.val) : undefined;
  const cfg: TrainConfig = { ...cfg0, model: withClassNames(cfg0.model, trainDs) };
  const c = cfg.model;
  // Labels index the head's outputs: a mismatch would fail mid-run (or silently train unused classes).
  for (const ds of cfg.labelLoss > 0 ? [trainDs, valDs] : [])
    if (ds && ds.classNames.length !== c.numClasses)
      throw new Error(
        `${ds.spec} has ${ds.classNames.length ? `${ds.classNames.length} classes` : 'no class labels'} and the model ${c.numClasses} outputs: ` +
          "fine-tune without labels by distillation (--label-loss 0 --distill self), or give data with the model's classes",
      );
  const stepsPerEpoch = Math.floor(trainDs.size / cfg.batchSize);
  if (stepsPerEpoch === 0) throw new Error(`${cfg.data} has ${trainDs.size} images, fewer than one batch of ${cfg.batchSize}`);
  const totalSteps = Math.ceil(cfg.epochs * stepsPerEpoch);

  // --- model and optimizer ---
  await initTfjs(opts.backend ?? 'auto', { log, threads: opts.threads });
  const start = resumeDir ? loadCheckpoint(resumeDir).weights : cfg.init ? initialWeights(cfg.init, c) : initWeights(c, cfg.seed);
  const params = toVariables(c, start);
  const opt = makeOptimizer(cfg, params);
  // Distillation's teacher weights: the trained ones (XL before each update) or the frozen --init model.
  const teacherWeights = cfg.distill?.teacher === 'init' ? toTensors(c, initialWeights(cfg.init!, c)) : params;
  let step = 0;
  let bestScore = -Infinity;
  if (resumeDir && saved) {
    opt.load(decodeSafetensors(fs.readFileSync(path.join(resumeDir, 'optimizer.safetensors'))).tensors, saved.adamT);
    step = saved.step;
    bestScore = saved.bestScore ?? -Infinity;
    log(`resumed ${outDir} at step ${step}/${totalSteps}`);
  }
  fs.mkdirSync(path.join(outDir, 'ckpt'), { recursive: true });
  const metricsFile = path.join(outDir, 'metrics.jsonl');
  dropMetricsAfter(metricsFile, step);
  const metric = (o: object) => fs.appendFileSync(metricsFile, JSON.stringify(o) + '\n');
  const state = (): TrainState => ({ step, adamT: opt.t, bestScore: Number.isFinite(bestScore) ? bestScore : null, config: cfg });

  const evaluate = async () => {
    if (!valDs) return;
    const encoder = await createEncoder('onnx', c, await hostWeights(params));
    try {
      const subs =
        cfg.baselineFfn !== undefined ? stepSubmodels(cfg, 0) : GRANULARITY_NAMES.map((g) => ({ name: g, ffnDims: granularityDims(c, g) }));
      // Model selection: the mean over the submodels of val top-1, or without labels of the cosine to
      // XL's embedding of the same image (the metric space the distillation keeps), so no width is sacrificed.
      const byName =
        cfg.labelLoss > 0
          ? Object.fromEntries(
              (await classify(encoder, valDs, subs, { batchSize: 256, concurrency: cfg.concurrency })).rows.map((r) => [r.name, r.top1]),
            )
          : await cosineToXl(encoder, valDs, subs, cfg.concurrency);
      const score = Object.values(byName).reduce((a, b) => a + b, 0) / subs.length;
      const key = cfg.labelLoss > 0 ? 'valTop1' : 'valCosineToXl';
      metric({ step, epoch: step / stepsPerEpoch, [key]: byName, score });
      log(
        `step ${step} val ${cfg.labelLoss > 0 ? 'top-1' : 'cosine to XL'} ${subs.map((r) => `${r.name} ${cfg.labelLoss > 0 ? (100 * byName[r.name]).toFixed(2) : byName[r.name].toFixed(4)}`).join(' ')}`,
      );
      if (score > bestScore) {
        bestScore = score;
        saveCheckpoint(path.join(outDir, 'best'), c, await hostWeights(params), { provenance: { trainConfig: cfg, step, [key]: byName } });
      }
    } finally {
      await encoder.dispose();
    }
  };

  // --- loop ---
  const stopAt = Math.min(totalSteps, opts.maxSteps !== undefined ? step + opts.maxSteps : totalSteps);
  const evalSteps = Math.max(1, Math.round(cfg.evalEvery * stepsPerEpoch));
  let seen = 0;
  let t0 = performance.now();
  while (step < stopAt) {
    const epoch = Math.floor(step / stepsPerEpoch);
    const order = epochOrder(trainDs.size, cfg.seed, epoch).slice(0, stepsPerEpoch * cfg.batchSize);
    const augment = { scale: cfg.cropScale, ratio: [3 / 4, 4 / 3] as [number, number], flip: cfg.flip };
    const from = (step % stepsPerEpoch) * cfg.batchSize;
    const stream = batches(trainDs, order.slice(from), cfg.batchSize, c, {
      concurrency: cfg.concurrency,
      augment,
      rngFor: (index: number) => seedrandom(`${cfg.seed}:augment:${epoch}:${index}`),
    });
    for await (const batch of stream) {
      if (step >= stopAt || Math.floor(step / stepsPerEpoch) !== epoch) break;
      const B = batch.labels.length;
      if (B === 0) continue;
      const lr = learningRate(step, { lr: cfg.lr, minLr: cfg.minLr, warmupSteps: cfg.warmupSteps, totalSteps });
      const { images, targets } = mixBatch(cfg, batch.images, batch.labels, step);
      const subs = stepSubmodels(cfg, step);
      const distill = cfg.distill;
      const needsTeacher = distill && subs.some((s) => distill.teacher === 'init' || s.ffnDims.some((d) => d !== c.mlpDim));
      const teacher = needsTeacher ? teacherOutputs(c, teacherWeights, images, distill) : undefined;
      const { losses: lossValues, gradNorm } = await trainStep(c, params, opt, images, targets, subs, lr, teacher, cfg.labelLoss).finally(
        () => teacher && tf.dispose([teacher.logits, teacher.embedding]),
      );
      step += 1;
      seen += B;
      if (step % cfg.logEvery === 0 || step === stopAt) {
        const secs = (performance.now() - t0) / 1000;
        const imgPerSec = seen / secs;
        const loss = Object.fromEntries(subs.map((s, i) => [s.name, lossValues[i]]));
        metric({ step, epoch: step / stepsPerEpoch, lr, loss, gradNorm, imgPerSec });
        const eta = ((totalSteps - step) * cfg.batchSize) / imgPerSec;
        log(
          `step ${step}/${totalSteps} epoch ${(step / stepsPerEpoch).toFixed(2)} lr ${lr.toExponential(2)} loss ${subs.map((s, i) => `${s.name} ${lossValues[i].toFixed(3)}`).join(' ')} ${imgPerSec.toFixed(1)} img/s eta ${formatSeconds(eta)}`,
        );
        seen = 0;
        t0 = performance.now();
      }
      if (step % cfg.checkpointEvery === 0 && step < totalSteps) await saveTrainCheckpoint(outDir, cfg, params, opt, state());
      if (step % evalSteps === 0 || step === totalSteps) {
        await evaluate();
        await saveTrainCheckpoint(outDir, cfg, params, opt, state());
        t0 = performance.now();
        seen = 0;
      }
    }
  }
  if (step === stopAt) await saveTrainCheckpoint(outDir, cfg, params, opt, state());
  tf.dispose(Object.values(params));
  if (teacherWeights !== params) tf.dispose(Object.values(teacherWeights));
  return { step, bestScore };
}

/** The weights of `--init DIR`, refused unless every tensor has the shape the run's model expects. */
function initialWeights(dir: string, c: ModelConfig): WeightMap {
  const { weights } = loadCheckpoint(dir);
  for (const s of weightSpecs(c)) {
    const w = weights[s.name];
    if (!w || w.shape.join('x') !== s.shape.join('x'))
      throw new Error(`--init ${dir}: ${s.name} is ${w ? `[${w.shape}]` : 'missing'}, the model needs [${s.shape}]`);
  }
  return weights;
}

/** Metrics logged after the checkpoint being resumed would be repeated: drop them. */
function dropMetricsAfter(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const keep = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l && JSON.parse(l).step <= step);
  writeFileAtomic(file, keep.map((l) => l + '\n').join(''));
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
}
