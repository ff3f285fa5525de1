// matformerize's core: a dense ViT made nested (MatFormer, arXiv 2310.07707) by reordering each
// layer's FFN hidden neurons by importance, most important first, so that the first m neurons of
// every layer (the s/m/l prefixes) form a good submodel before any training. A permutation of the
// hidden units leaves the full-width function unchanged: fc1's columns, fc1's bias and fc2's rows
// move together, and the activation is elementwise. Host math only (no tfjs).
import type { ModelConfig } from '../model/config.ts';
import type { WeightMap } from '../model/weights.ts';

/**
 * How a hidden neuron's importance is scored (per layer; higher is kept first):
 * - `activation`: mean |h_j| over tokens times ||fc2[j, :]||, the size of what neuron j adds to the
 *   residual stream (Wanda-style, arXiv 2306.11695, applied per neuron);
 * - `energy`: sqrt(mean h_j^2) times ||fc2[j, :]||, the root-mean-square of that contribution;
 * - `weight`: ||fc1[:, j]|| times ||fc2[j, :]||, data-free (magnitude pruning).
 * `activation` is the default: it gave the best sliced top-1 at every width (results/fmnist-matformerize/score-choice.md).
 */
export const SCORES = ['activation', 'energy', 'weight'] as const;
export type Score = (typeof SCORES)[number];

/** Per layer, per hidden neuron: sums of |h| and h^2 over `tokens` token positions. */
export interface HiddenStats {
  absSum: Float64Array[];
  sqSum: Float64Array[];
  tokens: number;
  images: number;
}

const rowNorms = (w: { shape: number[]; data: Float32Array }, rows: number, cols: number, byColumn: boolean): Float64Array => {
  const out = new Float64Array(byColumn ? cols : rows);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const v = w.data[r * cols + c];
      out[byColumn ? c : r] += v * v;
    }
  return out.map(Math.sqrt);
};

/** Importance of every hidden neuron of every layer; `stats` is needed by the data-driven scores. */
export function importance(c: ModelConfig, w: WeightMap, score: Score, stats?: HiddenStats): Float64Array[] {
  const [D, H] = [c.dim, c.mlpDim];
  return Array.from({ length: c.depth }, (_, i) => {
    const out = rowNorms(w[`blocks.${i}.mlp.fc2.weight`], H, D, false); // ||fc2[j, :]||, fc2 is [H, D] in memory
    if (score === 'weight') {
      const inNorms = rowNorms(w[`blocks.${i}.mlp.fc1.weight`], D, H, true); // ||fc1[:, j]||, fc1 is [D, H]
      return out.map((v, j) => v * inNorms[j]);
    }
    if (!stats) throw new Error(`importance score "${score}" needs activation statistics (a --data sample)`);
    const n = stats.tokens;
    return out.map((v, j) => v * (score === 'activation' ? stats.absSum[i][j] / n : Math.sqrt(stats.sqSum[i][j] / n)));
  });
}

/** Neuron indices by decreasing score; ties keep their original order (a constant score is the identity). */
export function importanceOrder(scores: Float64Array): Int32Array {
  return Int32Array.from(Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b));
}

/** A copy of `w` with each layer's hidden units reordered: new unit j is old unit perms[i][j]. */
export function permuteFfn(c: ModelConfig, w: WeightMap, perms: readonly Int32Array[]): WeightMap {
  const [D, H] = [c.dim, c.mlpDim];
  const out: WeightMap = { ...w };
  perms.forEach((perm, i) => {
    if (perm.length !== H || new Set(perm).size !== H || perm.some((p) => p < 0 || p >= H))
      throw new Error(`layer ${i}: not a permutation of 0..${H - 1}`);
    const p = `blocks.${i}.mlp`;
    const [w1, b1, w2] = [w[`${p}.fc1.weight`], w[`${p}.fc1.bias`], w[`${p}.fc2.weight`]];
    const nw1 = new Float32Array(D * H); // [D, H]: columns move
    for (let r = 0; r < D; r++) for (let j = 0; j < H; j++) nw1[r * H + j] = w1.data[r * H + perm[j]];
    const nw2 = new Float32Array(H * D); // [H, D]: rows move
    for (let j = 0; j < H; j++) nw2.set(w2.data.subarray(perm[j] * D, (perm[j] + 1) * D), j * D);
    out[`${p}.fc1.weight`] = { shape: [...w1.shape], data: nw1 };
    out[`${p}.fc1.bias`] = { shape: [...b1.shape], data: Float32Array.from(perm, (j) => b1.data[j]) };
    out[`${p}.fc2.weight`] = { shape: [...w2.shape], data: nw2 };
  });
  return out;
}
