// The server's preprocessing (data/preprocess.ts, sharp/libvips) redone in the browser on decoded
// RGBA pixels, so that an embedding made in the page matches the server's: the same geometry
// (evalPlan), the same normalization (normalize), and libvips' pixel operations written out:
// - greyscale: libvips' sRGB -> B_W, the Rec. 709 luminance in linear light, gamma-encoded again,
//   done before the resize, as sharp orders it (sharp/src/pipeline.cc);
// - resize as vips_resize does it (libvips resample/resize.c): a box shrink by the integer factor
//   floor(scale / 2), then the config's kernel, widened by the remaining factor when reducing
//   (antialiased, as Pillow's resample), each axis rounded to 8 bits;
// - shrink-on-load: sharp decodes a large JPEG or WebP at a reduced scale (shrinkOnLoad).
// docs/browser-encoding.md measures how close this comes.
import { evalPlan, normalize } from '../data/preprocess.ts';
import type { ModelConfig } from '../model/config.ts';

/** Pixels, interleaved 8-bit, `channels` per pixel. */
export interface Pixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

type Kernel = { support: number; f: (x: number) => number };
const KERNELS: Record<ModelConfig['interpolation'], Kernel> = {
  bilinear: { support: 1, f: (x) => Math.max(0, 1 - Math.abs(x)) },
  // Catmull-Rom (a = -0.5): libvips' cubic and Pillow's bicubic.
  bicubic: {
    support: 2,
    f: (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
      return 0;
    },
  },
  nearest: { support: 0.5, f: (x) => (x >= -0.5 && x < 0.5 ? 1 : 0) },
};

const SRGB_TO_LINEAR = Float64Array.from({ length: 256 }, (_, v) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});
// The linear values where the rounded sRGB level steps up (level v + 0.5 decoded): Math.round of the
// sRGB encoding of y is the number of these below y, found by binary search instead of a pow per pixel.
const LEVEL_STEPS = Float64Array.from({ length: 255 }, (_, v) => {
  const c = (v + 0.5) / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});
function toSrgb8(y: number): number {
  let lo = 0,
    hi = 255;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (LEVEL_STEPS[mid] <= y) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** RGBA (alpha already flattened) -> the model's channels: luminance for 1, RGB for 3. */
export function toChannels(rgba: Pixels, channels: number): Pixels {
  const n = rgba.width * rgba.height;
  const src = rgba.data;
  const data = new Uint8Array(n * channels);
  for (let i = 0; i < n; i++) {
    const r = src[4 * i],
      g = src[4 * i + 1],
      b = src[4 * i + 2];
    if (channels === 1)
      data[i] = r === g && g === b ? r : toSrgb8(0.2126 * SRGB_TO_LINEAR[r] + 0.7152 * SRGB_TO_LINEAR[g] + 0.0722 * SRGB_TO_LINEAR[b]);
    else data.set([r, g, b], 3 * i);
  }
  return { data, width: rgba.width, height: rgba.height, channels };
}

/** Box average over factor x factor blocks (a partial last block averages what it has): vips_shrink with ceil. */
export function boxShrink(p: Pixels, fx: number, fy: number): Pixels {
  const width = Math.ceil(p.width / fx);
  const height = Math.ceil(p.height / fy);
  const C = p.channels;
  const data = new Uint8Array(width * height * C);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const y1 = Math.min(p.height, (y + 1) * fy);
      const x1 = Math.min(p.width, (x + 1) * fx);
      const count = (y1 - y * fy) * (x1 - x * fx);
      for (let c = 0; c < C; c++) {
        let sum = 0;
        for (let sy = y * fy; sy < y1; sy++) for (let sx = x * fx; sx < x1; sx++) sum += p.data[(sy * p.width + sx) * C + c];
        data[(y * width + x) * C + c] = Math.round(sum / count);
      }
    }
  return { data, width, height, channels: C };
}

/**
 * For each output index along an axis: the input indices it reads (clamped at the edges, as libvips
 * extends an image by copying its edge) and their weights. Reducing: the kernel widened by the
 * factor around the output pixel's centre, normalized (vips_reduce). Enlarging: plain
 * interpolation at x * in / out - 0.5 (vips_affine as vips_resize calls it; measured against sharp).
 */
function axisWeights(inSize: number, outSize: number, k: Kernel): { at: Int32Array; w: Float64Array }[] {
  const scale = inSize / outSize;
  const reduce = scale > 1;
  const fscale = reduce ? scale : 1;
  const support = k.support * fscale;
  const out = [];
  for (let x = 0; x < outSize; x++) {
    const center = reduce ? (x + 0.5) * scale : x * scale; // where input pixel i sits at i + 0.5
    const first = Math.floor(center - support - 0.5);
    const last = Math.ceil(center + support - 0.5);
    const at = new Int32Array(last - first + 1);
    const w = new Float64Array(at.length);
    let sum = 0;
    for (let i = first; i <= last; i++) {
      at[i - first] = Math.min(inSize - 1, Math.max(0, i));
      sum += w[i - first] = k.f((i + 0.5 - center) / fscale);
    }
    for (let i = 0; i < w.length; i++) w[i] /= sum;
    out.push({ at, w });
  }
  return out;
}

/** Exact area averaging (each output pixel the mean of the input area it covers): libwebp's scaled decoding. */
function areaWeights(inSize: number, outSize: number): { at: Int32Array; w: Float64Array }[] {
  const scale = inSize / outSize;
  const out = [];
  for (let x = 0; x < outSize; x++) {
    const [x0, x1] = [x * scale, (x + 1) * scale];
    const first = Math.floor(x0);
    const last = Math.min(inSize - 1, Math.ceil(x1) - 1);
    const at = Int32Array.from({ length: last - first + 1 }, (_, i) => first + i);
    const w = Float64Array.from(at, (i) => (Math.min(x1, i + 1) - Math.max(x0, i)) / scale);
    out.push({ at, w });
  }
  return out;
}

const clamp8 = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** Resamples one axis (`horizontal` or not) to `outSize` with kernel `k` (or area averaging), rounding to 8 bits. */
function resampleAxis(p: Pixels, outSize: number, k: Kernel | 'area', horizontal: boolean): Pixels {
  const C = p.channels;
  const [width, height] = horizontal ? [outSize, p.height] : [p.width, outSize];
  const inSize = horizontal ? p.width : p.height;
  const coeffs = k === 'area' ? areaWeights(inSize, outSize) : axisWeights(inSize, outSize, k);
  const data = new Uint8Array(width * height * C);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const { at, w } = coeffs[horizontal ? x : y];
      for (let c = 0; c < C; c++) {
        let v = 0;
        for (let i = 0; i < w.length; i++) v += w[i] * p.data[(horizontal ? y * p.width + at[i] : at[i] * p.width + x) * C + c];
        data[(y * width + x) * C + c] = clamp8(v);
      }
    }
  return { data, width, height, channels: C };
}

/** vips_resize to exactly width x height (see the header). */
export function resize(p: Pixels, width: number, height: number, interpolation: ModelConfig['interpolation']): Pixels {
  const k = KERNELS[interpolation];
  const int = (from: number, to: number) => (interpolation === 'nearest' ? 1 : Math.max(1, Math.floor(from / to / 2)));
  const [fx, fy] = [int(p.width, width), int(p.height, height)];
  if (fx > 1 || fy > 1) p = boxShrink(p, fx, fy);
  if (p.height !== height) p = resampleAxis(p, height, k, false);
  if (p.width !== width) p = resampleAxis(p, width, k, true);
  return p;
}

/**
 * What sharp's shrink-on-load does to a JPEG or WebP of width x height that is to be resized to
 * `target` (sharp/src/pipeline.cc): a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
 * scaling, here a box average), a WebP at the scale of the shrink (libwebp's rescaler, area averaging).
 */
export function shrinkOnLoad(p: Pixels, format: 'jpeg' | 'webp', target: { width: number; height: number }): Pixels {
  const shrink = Math.min(p.width / target.width, p.height / target.height);
  if (format === 'webp') {
    if (shrink <= 1) return p;
    const [width, height] = [Math.max(1, Math.round(p.width / shrink)), Math.max(1, Math.round(p.height / shrink))];
    return resampleAxis(resampleAxis(p, height, 'area', false), width, 'area', true);
  }
  let factor = shrink >= 8 ? 8 : shrink >= 4 ? 4 : shrink >= 2 ? 2 : 1;
  if (factor > 1 && Math.floor(shrink) === factor) factor /= 2; // libjpeg's rounding errors
  return factor > 1 ? boxShrink(p, factor, factor) : p;
}

/**
 * Decoded RGBA (alpha flattened onto white, EXIF orientation applied) -> the model input [C, S, S],
 * as preprocessImage makes it from the same file of `format` (a JPEG or WebP is shrunk on load).
 */
export function modelInput(
  rgba: Uint8Array | Uint8ClampedArray,
  width: number,
  height: number,
  cfg: ModelConfig,
  format?: string,
): Float32Array {
  const plan = evalPlan(width, height, cfg);
  let p: Pixels = { data: new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.length), width, height, channels: 4 };
  // In sharp's order: shrunk while decoding (in colour), then greyscale, then resized.
  if (plan.resize && (format === 'jpeg' || format === 'webp')) p = shrinkOnLoad(p, format, plan.resize);
  p = toChannels(p, cfg.channels);
  if (plan.resize) p = resize(p, plan.resize.width, plan.resize.height, cfg.interpolation);
  if (plan.after) {
    const { left, top, width: w, height: h } = plan.after;
    const C = p.channels;
    const data = new Uint8Array(w * h * C);
    for (let y = 0; y < h; y++)
      data.set(p.data.subarray(((top + y) * p.width + left) * C, ((top + y) * p.width + left + w) * C), y * w * C);
    p = { data, width: w, height: h, channels: C };
  }
  return normalize(p.data, cfg, false);
}
