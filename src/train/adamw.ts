// AdamW (Loshchilov & Hutter): Adam moments plus weight decay applied to the weights directly,
// decoupled from the gradient, only on the names whose spec says `decay` (matrices; not norms,
// biases, cls token or position embeddings). Gradients are clipped to a global norm first.
// The state (step, m, v) is plain host data so checkpoints restore it exactly.
import * as tf from '@tensorflow/tfjs-core';
import type { WeightMap } from '../model/weights.ts';

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clipNorm: number;
}

export class AdamW {
  private m: Record<string, tf.Variable> = {};
  private v: Record<string, tf.Variable> = {};
  /** Number of updates applied (bias correction uses it). */
  t = 0;

  constructor(
    private params: Record<string, tf.Variable>,
    private decay: Set<string>,
    private o: AdamWOptions,
  ) {
    for (const [name, p] of Object.entries(params)) {
      this.m[name] = tf.variable(tf.zerosLike(p), false);
      this.v[name] = tf.variable(tf.zerosLike(p), false);
    }
  }

  /** Clips `grads` to the global norm and applies one update at learning rate `lr`; returns the pre-clip norm. */
  async step(grads: Record<string, tf.Tensor>, lr: number): Promise<number> {
    const { beta1, beta2, eps, weightDecay, clipNorm } = this.o;
    const normT = tf.tidy(() => tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g))))));
    const norm = (await normT.data())[0];
    normT.dispose();
    const scale = norm > clipNorm ? clipNorm / norm : 1;
    this.t += 1;
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    tf.tidy(() => {
      for (const [name, p] of Object.entries(this.params)) {
        const g = tf.mul(grads[name], scale);
        const m = tf.add(tf.mul(this.m[name], beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(this.v[name], beta2), tf.mul(tf.square(g), 1 - beta2));
        this.m[name].assign(m);
        this.v[name].assign(v);
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        const decayed = this.decay.has(name) ? tf.mul(p, 1 - lr * weightDecay) : p;
        p.assign(tf.sub(decayed, tf.mul(update, lr)));
      }
    });
    return norm;
  }

  /** Host copy of the moments, named `m.<param>` and `v.<param>`. */
  async state(): Promise<WeightMap> {
    const out: WeightMap = {};
    for (const [kind, vars] of [['m', this.m], ['v', this.v]] as const)
      for (const [name, t] of Object.entries(vars)) out[`${kind}.${name}`] = { shape: [...t.shape], data: (await t.data()) as Float32Array };
    return out;
  }

  load(state: WeightMap, t: number): void {
    for (const [kind, vars] of [['m', this.m], ['v', this.v]] as const)
      for (const [name, variable] of Object.entries(vars)) {
        const s = state[`${kind}.${name}`];
        if (!s) throw new Error(`optimizer state has no ${kind}.${name}`);
        tf.tidy(() => variable.assign(tf.tensor(s.data, variable.shape)));
      }
    this.t = t;
  }

  dispose(): void {
    tf.dispose([...Object.values(this.m), ...Object.values(this.v)]);
  }
}
