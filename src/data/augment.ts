// Training augmentation: torchvision's RandomResizedCrop geometry (the crop box only; preprocess.ts
// renders it with sharp extract + resize, the one pipeline of every image) and timm-style mixup on
// a batch. Randomness comes only from the `rng` passed in, so a seeded stream reproduces a run.

export interface AugmentOptions {
  /** Range of the crop's area as a fraction of the image (torchvision default [0.08, 1]). */
  scale: [number, number];
  /** Range of the crop's aspect ratio w/h, sampled log-uniformly (torchvision default [3/4, 4/3]). */
  ratio: [number, number];
  /** Mirror left-right with probability 0.5. */
  flip: boolean;
}

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Python's round(): half to even (torchvision's crop arithmetic uses it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const uniform = (rng: () => number, a: number, b: number) => a + (b - a) * rng();
/** torch.randint(lo, hi + 1): an integer in [lo, hi]. */
const randint = (rng: () => number, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

function checkRange(name: string, r: readonly number[], min: number, max: number) {
  if (r.length !== 2 || !(r[0] > min && r[0] <= r[1] && r[1] <= max))
    throw new Error(`augment ${name} [${r.join(', ')}]: expected [lo, hi] with ${min} < lo <= hi <= ${max}`);
}

/**
 * The crop box of torchvision's RandomResizedCrop.get_params on a width x height image: up to 10
 * tries at a random area and log-uniform aspect ratio, else a central crop at the clamped ratio.
 */
export function randomResizedCrop(width: number, height: number, opts: Pick<AugmentOptions, 'scale' | 'ratio'>, rng: () => number): Box {
  checkRange('scale', opts.scale, 0, 1);
  checkRange('ratio', opts.ratio, 0, Infinity);
  const area = width * height;
  const [logLo, logHi] = [Math.log(opts.ratio[0]), Math.log(opts.ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * uniform(rng, opts.scale[0], opts.scale[1]);
    const aspect = Math.exp(uniform(rng, logLo, logHi));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = randint(rng, 0, height - h);
      const left = randint(rng, 0, width - w);
      return { left, top, width: w, height: h };
    }
  }
  const inRatio = width / height;
  let [w, h] = [width, height];
  if (inRatio < opts.ratio[0]) h = roundHalfEven(w / opts.ratio[0]);
  else if (inRatio > opts.ratio[1]) w = roundHalfEven(h * opts.ratio[1]);
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/** Gamma(k, 1): Marsaglia-Tsang, with the k < 1 boost Gamma(k) = Gamma(k + 1) * U^(1/k). */
function sampleGamma(k: number, rng: () => number): number {
  if (k < 1) return sampleGamma(k + 1, rng) * rng() ** (1 / k);
  const d = k - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng()); // Box-Muller normal
      v = 1 + c * x;
    } while (v <= 0);
    v = v ** 3;
    if (Math.log(1 - rng()) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

/** Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). */
export function sampleBeta(a: number, b: number, rng: () => number): number {
  if (!(a > 0 && b > 0)) throw new Error(`Beta(${a}, ${b}): both parameters must be > 0`);
  const x = sampleGamma(a, rng);
  return x / (x + sampleGamma(b, rng));
}

/**
 * Mixup on a batch, as timm's 'batch' mode: one lambda ~ Beta(alpha, alpha); image i is mixed with
 * image B-1-i (the batch reversed), and so are the one-hot targets (smoothed as timm's
 * mixup_target: off = smoothing / K, on = 1 - smoothing + off). Pure: returns new arrays.
 * images [B, C, H, W] -> images [B, C, H, W], targets [B, K].
 */
export function mixup(
  images: Float32Array,
  labels: Int32Array,
  numClasses: number,
  opts: { alpha: number; smoothing?: number; rng: () => number },
): { images: Float32Array; targets: Float32Array; lambda: number } {
  const B = labels.length;
  const K = numClasses;
  if (B === 0 || images.length % B !== 0) throw new Error(`mixup: ${images.length} floats is not a whole number of images for ${B} labels`);
  const off = (opts.smoothing ?? 0) / K;
  const onehot = new Float32Array(B * K).fill(off);
  labels.forEach((y, i) => {
    if (!(y >= 0 && y < K)) throw new Error(`mixup: label ${y} at ${i} is outside 0..${K - 1}`);
    onehot[i * K + y] += 1 - (opts.smoothing ?? 0);
  });
  const lambda = opts.alpha > 0 ? sampleBeta(opts.alpha, opts.alpha, opts.rng) : 1;
  const mix = (src: Float32Array, per: number) => {
    const out = new Float32Array(src.length);
    for (let i = 0; i < B; i++) {
      const [a, b] = [i * per, (B - 1 - i) * per];
      for (let p = 0; p < per; p++) out[a + p] = lambda * src[a + p] + (1 - lambda) * src[b + p];
    }
    return out;
  };
  return { images: mix(images, images.length / B), targets: mix(onehot, K), lambda };
}
