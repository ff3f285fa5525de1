// The ops of the forward pass (matvit.ts) with hand-written gradients or folded into their
// neighbours: plain math (a linear layer, LayerNorm, LayerScale, batched products, GELU) in the
// kernels that tfjs-wasm runs fast, forward and backward. What each avoids, and by how much, is
// measured in docs/tfjs-wasm-training.md. On other backends they are simply correct
// (test/gradients.test.ts checks them against finite differences on cpu and against cpu on wasm).
import * as tf from '@tensorflow/tfjs-core';

type GradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[];

/**
 * An op with a hand-written gradient: tf.customGrad over tensor inputs, its gradient run in a tidy
 * scope (without one, tfjs keeps every gradient's intermediates until the whole backward pass ends).
 */
function customOp(
  f: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => { value: tf.Tensor; gradFunc: GradFunc },
): (...inputs: tf.Tensor[]) => tf.Tensor {
  const op = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const { value, gradFunc } = f(args as tf.Tensor[], save);
    return { value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.tidy(() => gradFunc(dy, saved)) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op as unknown as (...inputs: tf.Tensor[]) => tf.Tensor;
}

/**
 * x [M, in] @ w [in, out] (+ b [out]) -> [M, out], one fused kernel. Its gradient uses unflagged 2-D
 * products only (tfjs-wasm runs transpose-flagged ones several times slower), computes dW from
 * whichever of X and dY is the cheaper operand to pack, and db as a product with ones.
 * `inputGrad: false` skips dX (tfjs asks a custom gradient for every input; the patch embedding's
 * input is the images).
 */
const linear = ({ inputGrad }: { inputGrad: boolean }) =>
  customOp(([x, w, b], save) => {
    save([x, w]);
    return {
      value: tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b }),
      gradFunc: (dy, [sx, sw]) => {
        const [M, out] = dy.shape as [number, number];
        const dx = inputGrad ? tf.matMul(dy as tf.Tensor2D, tf.transpose(sw) as tf.Tensor2D) : tf.zerosLike(sx); // dY @ W^T  [M, in]
        if (out < sx.shape[1]!) {
          const dw = tf.matMul(tf.transpose(sx) as tf.Tensor2D, dy as tf.Tensor2D); // X^T @ dY  [in, out]
          return b ? [dx, dw, tf.reshape(tf.matMul(tf.ones([1, M]), dy as tf.Tensor2D), [out])] : [dx, dw];
        }
        const dyt = tf.transpose(dy) as tf.Tensor2D; // [out, M]
        const dw = tf.transpose(tf.matMul(dyt, sx as tf.Tensor2D)); // (dY^T @ X)^T  [in, out]
        return b ? [dx, dw, tf.reshape(tf.matMul(dyt, tf.ones([M, 1])), [out])] : [dx, dw];
      },
    };
  });
const [denseOp, embedOp] = [linear({ inputGrad: true }), linear({ inputGrad: false })];

/** A linear layer: x [M, in] @ w [in, out] + b [out] -> [M, out] (no bias when b is undefined). */
export const dense = (x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor) => (b ? denseOp(x, w, b) : denseOp(x, w)) as tf.Tensor2D;
/** A linear layer whose input needs no gradient (the patch embedding over images). */
export const embed = (x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor) => (b ? embedOp(x, w, b) : embedOp(x, w)) as tf.Tensor2D;

/**
 * LayerNorm's normalization over rows, without the affine part: x [M, D] -> xh = (x - mean) * r,
 * r = 1/sqrt(var + eps), with its analytic gradient dX = r * (dXh - mean(dXh) - xh * mean(dXh * xh)).
 */
export const normalize = (eps: number) => {
  const op = customOp(([x], save) => {
    // Not tf.moments: it copies x and subtracts the mean a second time.
    const centered = tf.sub(x, tf.mean(x, -1, true)); // [M, D]
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), eps)); // [M, 1]
    const xh = tf.mul(centered, r); // [M, D]
    save([xh, r]);
    return {
      value: xh,
      gradFunc: (dy, [sxh, sr]) => [tf.mul(tf.sub(tf.sub(dy, tf.mean(dy, -1, true)), tf.mul(sxh, tf.mean(tf.mul(dy, sxh), -1, true))), sr)],
    };
  });
  return (x: tf.Tensor2D) => op(x) as tf.Tensor2D;
};

/**
 * A LayerNorm's affine part folded into the linear layer that reads it, exactly:
 * (xh * gamma + beta) @ w + b = xh @ (gamma[:, None] * w) + (beta @ w + b), for w [D, out], b [out].
 * The per-token work moves onto the weights (see docs/tfjs-wasm-training.md, "Folding").
 */
export function foldNorm(gamma: tf.Tensor, beta: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): [tf.Tensor2D, tf.Tensor1D] {
  const D = gamma.shape[0]!;
  const gw = tf.mul(tf.reshape(gamma, [D, 1]), w) as tf.Tensor2D; // [D, out]
  // beta @ w as a column sum of beta[:, None] * w: a matMul's autodiff gradient sets transpose flags.
  const bw = tf.sum(tf.mul(tf.reshape(beta, [D, 1]), w), 0); // [out]
  return [gw, (b ? tf.add(bw, b) : bw) as tf.Tensor1D];
}

/**
 * LayerScale (timm's ls1, ls2) folded into the linear layer before it, exactly:
 * (x @ w + b) * gamma = x @ (w * gamma) + b * gamma, for w [in, D], b and gamma [D]. The backward
 * pass then gets dgamma from ops on [in, D] instead of a column sum over [B*T, D] (as foldNorm).
 */
export function foldScale(w: tf.Tensor, b: tf.Tensor, gamma?: tf.Tensor): [tf.Tensor2D, tf.Tensor1D] {
  return (gamma ? [tf.mul(w, gamma), tf.mul(b, gamma)] : [w, b]) as [tf.Tensor2D, tf.Tensor1D];
}

/**
 * One product per batch item: a [C, M, K] @ b [C, K, N] -> [C, M, N] (a given as [C, K, M] with
 * transposeA, b as [C, N, K] with transposeB), as a depthwise convolution with one group per item:
 * tfjs-wasm runs batched matMul in a scalar loop, XNNPACK's depthwise kernel vectorizes across items.
 * input [1, M, K, C] (rows as height, K as width, items as channels) and filter [1, K, C, N] give
 * out[0, i, 0, c*N + n] = sum_k a[c,i,k] b[c,k,n].
 */
function batchProduct(a: tf.Tensor, b: tf.Tensor, { transposeA = false, transposeB = false } = {}): tf.Tensor3D {
  const [C, M, K] = (transposeA ? [a.shape[0], a.shape[2], a.shape[1]] : a.shape) as [number, number, number];
  const N = (transposeB ? b.shape[1] : b.shape[2]) as number;
  const input = tf.reshape(tf.transpose(a, transposeA ? [2, 1, 0] : [1, 2, 0]), [1, M, K, C]) as tf.Tensor4D;
  const filter = tf.reshape(tf.transpose(b, transposeB ? [2, 0, 1] : [1, 0, 2]), [1, K, C, N]) as tf.Tensor4D;
  const out = tf.depthwiseConv2d(input, filter, 1, 'valid'); // [1, M, 1, C*N]
  return tf.transpose(tf.reshape(out, [M, C, N]), [1, 0, 2]);
}

/** a [C, M, K] @ b [C, K, N] (b as [C, N, K] with transposeB), differentiable: dA and dB are batch products too. */
const bmm = ({ transposeB }: { transposeB: boolean }) => {
  const op = customOp(([a, b], save) => {
    save([a, b]);
    return {
      value: batchProduct(a, b, { transposeB }),
      gradFunc: (dc, [sa, sb]) =>
        transposeB
          ? [batchProduct(dc, sb), batchProduct(dc, sa, { transposeA: true })] // C = A B^T: dA = dC B, dB = dC^T A
          : [batchProduct(dc, sb, { transposeB: true }), batchProduct(sa, dc, { transposeA: true })], // C = A B: dA = dC B^T, dB = A^T dC
    };
  });
  return (a: tf.Tensor, b: tf.Tensor) => op(a, b) as tf.Tensor3D;
};
/** a [C, M, K] @ b [C, K, N] -> [C, M, N] */
export const bmmNN = bmm({ transposeB: false });
/** a [C, M, K] @ b[C, N, K]^T -> [C, M, N] */
export const bmmNT = bmm({ transposeB: true });

/**
 * Exact (erf) GELU, x * Phi(x), as torch.nn.GELU. Its gradient Phi(x) + x * phi(x) reuses Phi from
 * the forward pass and takes exp(-x^2 / 2) as elu(-x^2 / 2) + 1 (exact for arguments <= 0), which
 * tfjs-wasm runs vectorized where Exp is a libm call per element.
 */
export const gelu = customOp(([x], save) => {
  const cdf = tf.mul(tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))), 0.5); // Phi(x)
  save([x, cdf]);
  return {
    value: tf.mul(x, cdf),
    gradFunc: (dy, [sx, scdf]) => {
      const gauss = tf.add(tf.elu(tf.mul(tf.square(sx), -0.5)), 1); // exp(-x^2 / 2)
      const xPdf = tf.mul(tf.mul(sx, 1 / Math.sqrt(2 * Math.PI)), gauss); // x * phi(x)
      return [tf.mul(dy, tf.add(scdf, xPdf))];
    },
  };
}) as (x: tf.Tensor2D) => tf.Tensor2D;

/**
 * The FFN activations of ModelConfig.act. The tanh approximation (flax's nn.gelu) and QuickGELU
 * (x * sigmoid(1.702 x), OpenAI CLIP) use tfjs's autodiff: they have no erf to reuse.
 */
export const ACTIVATIONS: Record<'gelu' | 'gelu_tanh' | 'quick_gelu', (x: tf.Tensor2D) => tf.Tensor2D> = {
  gelu,
  gelu_tanh: (x) => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.square(x), x), 0.044715)), Math.sqrt(2 / Math.PI)); // sqrt(2/pi) (x + 0.044715 x^3)
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  },
  quick_gelu: (x) => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))),
};
