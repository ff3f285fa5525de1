// One training step of MatFormer and the pieces it needs: which submodels a step trains, the
// targets (label smoothing, mixup), the loss, and the optimizer. The trainer and `bench train`
// both run exactly this.
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core alone registers no gradients, and its ESM build of the registration does not load in
// Node; the @tensorflow/tfjs bundle (same tfjs-core instance) registers them all on import.
import '@tensorflow/tfjs';
import seedrandom from 'seedrandom';
import { GRANULARITY_NAMES, type ModelConfig, type Submodel, granularityDims } from '../model/config.ts';
import { type ForwardOutput, forward } from '../model/matvit.ts';
import { mixup } from '../data/augment.ts';
import { type WeightMap, weightSpecs } from '../model/weights.ts';
import { AdamW } from './adamw.ts';
import type { Distill, TrainConfig } from './config.ts';

/**
 * The submodels trained at a step: all four (sum), one drawn by weight (sampled), or the baseline
 * width. Without labels XL learns nothing from its own outputs (teacher 'self'), so it is left out.
 */
export function stepSubmodels(cfg: TrainConfig, step: number): Submodel[] {
  const c = cfg.model;
  if (cfg.baselineFfn !== undefined) return [{ name: `ffn${cfg.baselineFfn}`, ffnDims: Array(c.depth).fill(cfg.baselineFfn) }];
  const xlIdle = cfg.labelLoss === 0 && cfg.distill?.teacher === 'self';
  const w = cfg.granularityWeights.map((x, i) => (xlIdle && i === 3 ? 0 : x));
  const all = GRANULARITY_NAMES.map((g) => ({ name: g, ffnDims: granularityDims(c, g) }));
  if (cfg.objective === 'sum') return xlIdle ? all.slice(0, 3) : all;
  let u = seedrandom(`${cfg.seed}:granularity:${step}`)() * w.reduce((a, b) => a + b, 0);
  for (const [i, s] of all.entries()) if ((u -= w[i]) < 0) return [s];
  return [all.filter((_, i) => w[i] > 0).at(-1) ?? all[3]];
}

/** Mean cross-entropy against soft targets. logits [B, K], targets [B, K] -> scalar */
const crossEntropy = (logits: tf.Tensor, targets: tf.Tensor) => tf.neg(tf.mean(tf.sum(tf.mul(targets, tf.logSoftmax(logits)), 1)));

/** The full-width teacher's outputs on the step's batch, and how much the students follow them (TrainConfig's Distill). */
export interface Teacher {
  logits: tf.Tensor2D; // [B, K]
  embedding: tf.Tensor2D; // [B, E], unit rows
  cfg: Distill;
}

/**
 * Distillation terms toward the teacher: T^2 * KL(softmax(t/T) || softmax(s/T)), mean over the
 * batch (the T^2 keeps its gradient's scale independent of T), and 1 - cos(student, teacher) of
 * the unit embeddings. -> scalar
 */
function distillLoss(out: ForwardOutput, t: Teacher): tf.Scalar {
  const cos = tf.mean(tf.sum(tf.mul(out.embedding, t.embedding), 1));
  const cosTerm = tf.mul(tf.sub(1, cos), t.cfg.cosine) as tf.Scalar;
  // Weight 0 computes nothing: without classifier logits (K = 0) the KL would be a mean of nothing, NaN.
  if (t.cfg.kl === 0) return cosTerm;
  const T = t.cfg.temperature;
  const p = tf.softmax(tf.div(t.logits, T));
  const kl = tf.mean(tf.sum(tf.mul(p, tf.sub(tf.logSoftmax(tf.div(t.logits, T)), tf.logSoftmax(tf.div(out.logits, T)))), 1));
  return tf.add(tf.mul(kl, t.cfg.kl * T * T), cosTerm) as tf.Scalar;
}

/** XL's outputs on images [B, C, H, W] with `weights` (the trained ones or a frozen model), outside any gradient. */
export function teacherOutputs(c: ModelConfig, weights: Record<string, tf.Tensor>, images: Float32Array, cfg: Distill): Teacher {
  const B = images.length / (c.channels * c.imageSize * c.imageSize);
  const { logits, embedding } = tf.tidy(() => forward(c, weights, tf.tensor4d(images, [B, c.channels, c.imageSize, c.imageSize])));
  return { logits, embedding, cfg };
}

/**
 * The step's inputs: smoothed one-hot targets, and mixup when enabled (its lambda seeded by step,
 * so a resumed run mixes the same way). images [B, C, H, W] -> images, targets [B, K]; no targets
 * when training without labels (the labels may then be -1).
 */
export function mixBatch(
  cfg: TrainConfig,
  images: Float32Array,
  labels: Int32Array,
  step: number,
): { images: Float32Array; targets: Float32Array } {
  if (cfg.labelLoss === 0) return { images, targets: new Float32Array(0) };
  return mixup(images, labels, cfg.model.numClasses, {
    alpha: cfg.mixup,
    smoothing: cfg.labelSmoothing,
    rng: seedrandom(`${cfg.seed}:mixup:${step}`),
  });
}

/**
 * One optimizer step on one batch: the summed loss of `subs` (one forward per submodel on the same
 * images), its gradient, clipping and the AdamW update. images [B, C, H, W], targets [B, K].
 * Each submodel's loss is differentiated on its own and the gradients added: the gradient of the
 * sum, with one submodel's activations alive at a time instead of all of them (the sum objective
 * at batch 256 needed 4.5 GB of wasm heap when differentiated as one sum; the limit is 4 GB).
 */
export async function trainStep(
  c: ModelConfig,
  params: Record<string, tf.Variable>,
  opt: AdamW,
  images: Float32Array,
  targets: Float32Array,
  subs: Submodel[],
  lr: number,
  teacher?: Teacher,
  labelLoss = 1,
): Promise<{ losses: number[]; gradNorm: number }> {
  const B = images.length / (c.channels * c.imageSize * c.imageSize);
  const x = tf.tensor4d(images, [B, c.channels, c.imageSize, c.imageSize]);
  const y = labelLoss > 0 ? tf.tensor2d(targets, [B, c.numClasses]) : undefined;
  const losses: number[] = [];
  let total: Record<string, tf.Tensor> | undefined;
  for (const s of subs) {
    // The teacher is XL: XL itself is not distilled toward its own outputs (teacher 'self').
    const distilled = teacher && !(teacher.cfg.teacher === 'self' && s.ffnDims.every((d) => d === c.mlpDim)) ? teacher : undefined;
    const { value, grads } = tf.variableGrads(() => {
      const out = forward(c, params, x, s.ffnDims);
      const ce = y ? (tf.mul(crossEntropy(out.logits, y), labelLoss) as tf.Scalar) : undefined;
      const kd = distilled ? distillLoss(out, distilled) : undefined;
      if (ce && kd) return tf.add(ce, kd) as tf.Scalar;
      const loss = ce ?? kd;
      if (!loss) throw new Error(`trainStep: ${s.name} has no loss (no labels and no teacher)`);
      return loss;
    });
    losses.push((await value.data())[0]);
    value.dispose();
    if (!total) total = grads;
    else
      for (const [name, g] of Object.entries(grads)) {
        const sum = tf.add(total[name], g);
        tf.dispose([total[name], g]);
        total[name] = sum;
      }
  }
  tf.dispose(y ? [x, y] : [x]);
  if (!total) throw new Error('trainStep: no submodel to train');
  const gradNorm = await opt.step(total, lr);
  tf.dispose(Object.values(total));
  return { losses, gradNorm };
}

/** Trainable variables initialized from host weights (compute layout). */
export function toVariables(c: ModelConfig, w: WeightMap): Record<string, tf.Variable> {
  const params: Record<string, tf.Variable> = {};
  for (const s of weightSpecs(c)) params[s.name] = tf.variable(tf.tensor(w[s.name].data, w[s.name].shape), true, s.name);
  return params;
}

/** AdamW over `params` with the config's hyper-parameters; decay on the names whose spec asks for it. */
export function makeOptimizer(cfg: TrainConfig, params: Record<string, tf.Variable>): AdamW {
  const decay = new Set(
    weightSpecs(cfg.model)
      .filter((s) => s.decay)
      .map((s) => s.name),
  );
  return new AdamW(params, decay, {
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    eps: cfg.adamEps,
    weightDecay: cfg.weightDecay,
    clipNorm: cfg.clipNorm,
  });
}
