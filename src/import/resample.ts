// Position embeddings resampled to another grid, as timm's resample_abs_pos_embed
// (timm/layers/pos_embed.py): the prefix tokens (class, registers) are kept, the patch grid is
// resized by torch.nn.functional.interpolate(mode='bicubic', align_corners=False, antialias=True).
//
// With antialias=True PyTorch runs its separable antialiased kernel in both directions, up and
// down (aten/src/ATen/native/cpu/UpSampleKernel.cpp, HelperInterpCubic::aa_filter, taken from
// Pillow's Resample.c): the cubic convolution with a = -0.5 (not the -0.75 of its non-antialiased
// bicubic), widened by the scale when downsampling, truncated at the borders and renormalized.
// Width is resampled first, then height.
import type { HostTensor } from '../model/weights.ts';

/** Keys' cubic convolution kernel with a = -0.5. */
function cubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** For each output index: the first input index and the normalized weights of the inputs from there. */
export function antialiasWeights(inSize: number, outSize: number): { start: number; weights: number[] }[] {
  const scale = inSize / outSize;
  const support = 2 * Math.max(scale, 1); // interp_size / 2, widened when downsampling
  const invScale = scale >= 1 ? 1 / scale : 1;
  return Array.from({ length: outSize }, (_, i) => {
    const center = scale * (i + 0.5);
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights: number[] = [];
    for (let j = start; j < end; j++) weights.push(cubic((j - center + 0.5) * invScale));
    const total = weights.reduce((s, w) => s + w, 0);
    return { start, weights: total === 0 ? weights : weights.map((w) => w / total) };
  });
}

/** grid [H, W, D] (row-major) -> [newH, newW, D] */
export function resampleGrid(
  grid: Float32Array,
  [H, W]: readonly [number, number],
  [newH, newW]: readonly [number, number],
  D: number,
): Float32Array {
  if (grid.length !== H * W * D) throw new Error(`grid of ${grid.length} values is not [${H}, ${W}, ${D}]`);
  const across = new Float64Array(H * newW * D); // width first
  antialiasWeights(W, newW).forEach(({ start, weights }, x) => {
    for (let y = 0; y < H; y++)
      weights.forEach((w, k) => {
        for (let d = 0; d < D; d++) across[(y * newW + x) * D + d] += w * grid[(y * W + start + k) * D + d];
      });
  });
  const out = new Float64Array(newH * newW * D);
  antialiasWeights(H, newH).forEach(({ start, weights }, y) => {
    weights.forEach((w, k) => {
      for (let i = 0; i < newW * D; i++) out[y * newW * D + i] += w * across[(start + k) * newW * D + i];
    });
  });
  return Float32Array.from(out);
}

/**
 * pos_embed [1, prefix + H*W, D] -> [1, prefix + newH*newW, D]: the first `prefix` rows (class and
 * register tokens, when the checkpoint gives them position embeddings) are kept as they are.
 */
export function resamplePosEmbed(
  pos: HostTensor,
  prefix: number,
  oldGrid: readonly [number, number],
  newGrid: readonly [number, number],
): HostTensor {
  const [one, T, D] = pos.shape;
  if (pos.shape.length !== 3 || one !== 1 || T !== prefix + oldGrid[0] * oldGrid[1])
    throw new Error(`pos_embed [${pos.shape}] is not [1, ${prefix} + ${oldGrid[0]}x${oldGrid[1]}, D]`);
  const grid = resampleGrid(pos.data.subarray(prefix * D), oldGrid, newGrid, D);
  const data = new Float32Array((prefix + newGrid[0] * newGrid[1]) * D);
  data.set(pos.data.subarray(0, prefix * D));
  data.set(grid, prefix * D);
  return { shape: [1, prefix + newGrid[0] * newGrid[1], D], data };
}
