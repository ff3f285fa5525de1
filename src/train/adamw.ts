// AdamW (Loshchilov & Hutter): Adam moments plus weight decay applied to the weights directly,
// decoupled from the gradient, only on the names whose spec says `decay` (matrices; not norms,
// biases, cls token or position embeddings). Gradients are clipped to a global norm first.
//
// The update runs on the host, one loop per tensor: it is elementwise, and as tfjs ops it took ~16
// kernels per tensor (~1300 launches a step for fmnist-tiny, each a full pass over memory) where
// one pass reading g, p, m, v suffices. The moments (m, v) live on the host as plain arrays, which
// is also what checkpoints store. The parameters stay tfjs Variables, read and reassigned each step.
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
  private m: Record<string, Float32Array> = {};
  private v: Record<string, Float32Array> = {};
  /** Number of updates applied (bias correction uses it). */
  t = 0;

  constructor(
    private params: Record<string, tf.Variable>,
    private decay: Set<string>,
    private o: AdamWOptions,
  ) {
    for (const [name, p] of Object.entries(params)) {
      this.m[name] = new Float32Array(p.size);
      this.v[name] = new Float32Array(p.size);
    }
  }

  /**
   * Clips `grads` to the global norm and applies one update at learning rate `lr`; returns the
   * pre-clip norm. A parameter the loss does not reach (no gradient: the head when training by
   * embedding distillation alone) is left as it is, moments and decay included, as torch.optim.AdamW
   * skips parameters whose grad is None.
   */
  async step(grads: Record<string, tf.Tensor>, lr: number): Promise<number> {
    const { beta1, beta2, eps, weightDecay, clipNorm } = this.o;
    const names = Object.keys(this.params).filter((n) => grads[n] !== undefined);
    const g = await Promise.all(names.map(async (n) => (await grads[n].data()) as Float32Array));
    const norm = Math.sqrt(g.reduce((s, gi) => s + sumSquares(gi), 0));
    this.t += 1;
    const h = { scale: norm > clipNorm ? clipNorm / norm : 1, beta1, beta2, c1: 1 - beta1 ** this.t, c2: 1 - beta2 ** this.t, lr, eps };
    for (const [i, name] of names.entries()) {
      const p = this.params[name];
      // Copied: the cpu backend's data() is the tensor's own storage, which other tensors may share.
      const w = ((await p.data()) as Float32Array).slice();
      update(w, g[i], this.m[name], this.v[name], h, this.decay.has(name) ? 1 - lr * weightDecay : 1);
      const next = tf.tensor(w, p.shape, 'float32');
      p.assign(next);
      next.dispose();
    }
    return norm;
  }

  /** Host copy of the moments, named `m.<param>` and `v.<param>`. */
  async state(): Promise<WeightMap> {
    const out: WeightMap = {};
    for (const [kind, arrays] of [
      ['m', this.m],
      ['v', this.v],
    ] as const)
      for (const [name, a] of Object.entries(arrays)) out[`${kind}.${name}`] = { shape: [...this.params[name].shape], data: a.slice() };
    return out;
  }

  load(state: WeightMap, t: number): void {
    for (const [kind, arrays] of [
      ['m', this.m],
      ['v', this.v],
    ] as const)
      for (const [name, a] of Object.entries(arrays)) {
        const s = state[`${kind}.${name}`];
        if (!s) throw new Error(`optimizer state has no ${kind}.${name}`);
        if (s.data.length !== a.length)
          throw new Error(`optimizer state ${kind}.${name} has ${s.data.length} values, the parameter ${a.length}`);
        a.set(s.data);
      }
    this.t = t;
  }
}

function sumSquares(g: Float32Array): number {
  let s = 0;
  for (let j = 0; j < g.length; j++) s += g[j] * g[j];
  return s;
}

/**
 * One AdamW step of one tensor, in place on w, m, v: g is scaled by the clipping factor, the moments
 * are bias-corrected by c1 = 1 - beta1^t and c2 = 1 - beta2^t, and `keep` = 1 - lr * weight decay
 * (or 1) shrinks the weight before the step.
 */
function update(
  w: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  h: { scale: number; beta1: number; beta2: number; c1: number; c2: number; lr: number; eps: number },
  keep: number,
): void {
  const { scale, beta1, beta2, c1, c2, lr, eps } = h;
  const [a1, a2, step, inv2] = [(1 - beta1) * scale, (1 - beta2) * scale * scale, lr / c1, 1 / c2];
  for (let j = 0; j < w.length; j++) {
    const gj = g[j];
    const mj = (m[j] = beta1 * m[j] + a1 * gj);
    const vj = (v[j] = beta2 * v[j] + a2 * gj * gj);
    w[j] = w[j] * keep - (step * mj) / (Math.sqrt(vj * inv2) + eps);
  }
}
