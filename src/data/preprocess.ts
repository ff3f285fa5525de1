// Image bytes or raw pixels -> the model input: Float32Array [C, H, W], normalized with the
// config's mean/std. Every image in the project (training, evaluation, indexing, queries) goes
// through `preprocessImage` (encoded files) or `preprocessPixels` (IDX pixels); both build one
// geometric plan (`evalPlan` or the random-resized crop of augment.ts) and render it with one
// sharp pipeline (`render`), so the corpus and its queries see identical pixels.
//
// Eval geometry is timm's: resize the short side to floor(imageSize / cropPct) (torchvision
// Resize rounding), then center-crop imageSize (torchvision CenterCrop rounding).
//
// Decoding choices (applied to every encoded image by `openImage`):
// - EXIF orientation is applied, so a phone photo is seen upright.
// - Alpha is flattened onto WHITE: transparent regions of product photos and icons are meant as
//   "no background", which photographs of the same objects show as a light backdrop. (timm/PIL's
//   convert('RGB') instead drops alpha and shows whatever colour the transparent pixels hold,
//   usually black.)
// - Palette, 16-bit, CMYK (via its ICC profile or a default one) all come out as 8-bit sRGB.
// - Animated GIF/WebP/multi-page TIFF: the first frame.
// - Grayscale models get sharp's greyscale (libvips' luminance); RGB models get grey images
//   replicated to 3 channels.
// - JPEG/WebP may be downscaled while decoding (sharp's default shrink-on-load): several times
//   faster on large photos, pixels slightly different from a full decode (corpus and queries
//   share this path, so they stay comparable).
// - Decompression bombs: images over `limitInputPixels` (width x height, read from the header
//   before any pixel is decoded) are refused.
import assert from 'node:assert/strict';
import sharp, { type KernelEnum, type Sharp } from 'sharp';
import type { ModelConfig } from '../model/config.ts';
import { type AugmentOptions, type Box, randomResizedCrop, roundHalfEven } from './augment.ts';
import { DEFAULT_PIXEL_LIMIT } from './limits.ts';

export const DECODE_REASONS = ['empty', 'truncated', 'unsupported-format', 'too-many-pixels', 'corrupt', 'unreadable'] as const;
export type DecodeReason = (typeof DECODE_REASONS)[number];

/** A file that cannot become a model input; `reason` is short and machine-readable. */
export class DecodeError extends Error {
  constructor(
    readonly reason: DecodeReason,
    message: string,
  ) {
    super(message);
    this.name = 'DecodeError';
  }
}

export interface DecodeOptions {
  /** Refuse images with more than this many pixels (width x height). Default DEFAULT_PIXEL_LIMIT. */
  limitInputPixels?: number;
}

/** Training augmentation for one image: the options plus its own random stream. */
export type Augment = AugmentOptions & { rng: () => number };

export interface PixelShape {
  width: number;
  height: number;
  channels: 1 | 3;
}

/**
 * What to do to an (oriented) source image: crop `before` the resize (random-resized crop), resize
 * to `resize`, crop `after` it (center crop), mirror. Absent steps are identities.
 */
export interface Plan {
  before?: Box;
  resize?: { width: number; height: number };
  after?: Box;
  flip: boolean;
}

// The sharp kernel for each config interpolation. sharp's 'cubic' is Catmull-Rom (a = -0.5), the
// bicubic of PIL, which timm uses to load images; 'linear' is bilinear (triangle) and, like PIL,
// sharp widens the kernel when reducing, so downscaling is antialiased.
const KERNELS = { bicubic: 'cubic', bilinear: 'linear', nearest: 'nearest' } as const satisfies Record<
  ModelConfig['interpolation'],
  keyof KernelEnum
>;

const isFull = (b: Box, width: number, height: number) => b.left === 0 && b.top === 0 && b.width === width && b.height === height;

/** timm eval geometry for a width x height source (see the header). */
export function evalPlan(width: number, height: number, cfg: ModelConfig): Plan {
  const S = cfg.imageSize;
  const short = Math.floor(S / cfg.cropPct);
  // torchvision Resize(int): the short side becomes `short`, the long side int(short * long / short_in).
  const [rw, rh] = width <= height ? [short, Math.floor((short * height) / width)] : [Math.floor((short * width) / height), short];
  const after = { left: roundHalfEven((rw - S) / 2), top: roundHalfEven((rh - S) / 2), width: S, height: S };
  return {
    resize: rw === width && rh === height ? undefined : { width: rw, height: rh },
    after: isFull(after, rw, rh) ? undefined : after,
    flip: false,
  };
}

/** Training geometry: a random-resized crop resized to imageSize x imageSize, maybe mirrored. */
export function augmentPlan(width: number, height: number, cfg: ModelConfig, aug: Augment): Plan {
  const S = cfg.imageSize;
  const box = randomResizedCrop(width, height, aug, aug.rng);
  const flip = aug.flip && aug.rng() < 0.5;
  return {
    before: isFull(box, width, height) ? undefined : box,
    resize: box.width === S && box.height === S ? undefined : { width: S, height: S },
    flip,
  };
}

const planFor = (width: number, height: number, cfg: ModelConfig, augment?: Augment) =>
  augment ? augmentPlan(width, height, cfg, augment) : evalPlan(width, height, cfg);

/** Runs a plan through sharp: 8-bit pixels, interleaved, imageSize x imageSize x cfg.channels. */
async function render(img: Sharp, plan: Plan, cfg: ModelConfig): Promise<Buffer> {
  if (plan.before) img = img.extract(plan.before);
  // fit 'fill': the plan already chose both output dimensions (aspect handled by the plan).
  if (plan.resize) img = img.resize({ ...plan.resize, fit: 'fill', kernel: KERNELS[cfg.interpolation] });
  if (plan.after) img = img.extract(plan.after);
  img = cfg.channels === 1 ? img.greyscale() : img.toColourspace('srgb');
  const { data, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  // An AssertionError, not a decoding failure: `decoding` lets it through (a bug, not a bad file).
  assert.ok(
    info.width === cfg.imageSize && info.height === cfg.imageSize && info.channels === cfg.channels,
    `render produced ${info.width}x${info.height}x${info.channels}, expected ${cfg.imageSize}x${cfg.imageSize}x${cfg.channels}`,
  );
  return data;
}

// (v / 255 - mean) / std for every byte value and channel, computed once per mean/std: the same
// float32 for a pixel value whichever path produced it.
const luts = new Map<string, Float32Array>();
function normLut(cfg: ModelConfig): Float32Array {
  const key = `${cfg.mean.join()}|${cfg.std.join()}`;
  let lut = luts.get(key);
  if (!lut) {
    lut = new Float32Array(cfg.channels * 256);
    for (let c = 0; c < cfg.channels; c++) for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - cfg.mean[c]) / cfg.std[c];
    luts.set(key, lut);
  }
  return lut;
}

/** Interleaved 8-bit pixels [S, S, C] -> normalized planes [C, S, S], mirrored when `flip` (also the web page's, src/web). */
export function normalize(px: Uint8Array, cfg: ModelConfig, flip: boolean): Float32Array {
  const S = cfg.imageSize;
  const C = cfg.channels;
  const lut = normLut(cfg);
  const out = new Float32Array(C * S * S);
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      const src = (y * S + (flip ? S - 1 - x : x)) * C;
      for (let c = 0; c < C; c++) out[c * S * S + y * S + x] = lut[c * 256 + px[src + c]];
    }
  return out;
}

/** sharp on encoded bytes with the decoding choices of the header. */
export function openImage(bytes: Buffer, opts: DecodeOptions = {}): Sharp {
  return sharp(bytes, {
    // 'error': refuse truncated or corrupt pixel data, but accept files with mere warnings
    // (e.g. extraneous bytes in a JPEG), which are common in real corpora and decode fine.
    failOn: 'error',
    limitInputPixels: opts.limitInputPixels ?? DEFAULT_PIXEL_LIMIT,
    autoOrient: true,
    pages: 1,
    page: 0,
  }).flatten({ background: '#ffffff' });
}

// Magic numbers of the formats we accept, to tell "not an image" from "a broken image".
const MAGIC: [string, (b: Buffer) => boolean][] = [
  ['PNG', (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))],
  ['JPEG', (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
  ['GIF', (b) => b.toString('latin1', 0, 4) === 'GIF8'],
  ['WebP', (b) => b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP'],
  ['TIFF', (b) => ['II*\0', 'MM\0*'].includes(b.toString('latin1', 0, 4))],
  ['AVIF/HEIF', (b) => b.toString('latin1', 4, 8) === 'ftyp'],
];
const sniff = (b: Buffer) => MAGIC.find(([, test]) => test(b))?.[0];

/** Does the file stop before its format's end marker? (Only asked after decoding failed.) */
function endsEarly(format: string | undefined, b: Buffer): boolean {
  if (format === 'PNG') {
    const iend = b.lastIndexOf('IEND', undefined, 'latin1'); // the last chunk: 'IEND' + 4-byte CRC
    return iend < 0 || b.length < iend + 8;
  }
  // EOI near the end (an EXIF thumbnail has its own EOI early in the file, so not anywhere).
  if (format === 'JPEG') return !b.subarray(-64).includes(Buffer.from([0xff, 0xd9]));
  if (format === 'GIF') return b[b.length - 1] !== 0x3b;
  if (format === 'WebP') return b.length < 8 + b.readUInt32LE(4);
  return false;
}

/** A sharp failure as a DecodeError with the reason a caller can act on. */
function toDecodeError(bytes: Buffer, err: unknown, opts: DecodeOptions): DecodeError {
  if (err instanceof DecodeError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  const detail = msg.split('\n')[0];
  if (/exceeds pixel limit/i.test(msg))
    return new DecodeError(
      'too-many-pixels',
      `image has more than limitInputPixels = ${opts.limitInputPixels ?? DEFAULT_PIXEL_LIMIT} pixels (a guard against decompression bombs; raise the limit to accept it)`,
    );
  const format = sniff(bytes);
  if (!format && /unsupported image format/i.test(msg))
    return new DecodeError(
      'unsupported-format',
      `not an image in a supported format (${MAGIC.map(([f]) => f).join(', ')}); first bytes ${bytes.subarray(0, 8).toString('hex')}`,
    );
  if (endsEarly(format, bytes) || /premature end|unexpected end|truncat/i.test(msg))
    return new DecodeError('truncated', `truncated ${format ?? 'image'} (${bytes.length} bytes): ${detail}`);
  return new DecodeError('corrupt', `corrupt ${format ?? 'image'} (${bytes.length} bytes): ${detail}`);
}

/**
 * Runs `fn` on encoded bytes, turning every decoding failure into a DecodeError. sharp reports
 * failures as plain Errors; any other kind (TypeError, AssertionError, ...) is a bug and passes.
 */
export async function decoding<T>(bytes: Buffer, opts: DecodeOptions, fn: () => Promise<T>): Promise<T> {
  if (bytes.length === 0) throw new DecodeError('empty', 'file is empty (0 bytes)');
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Error && err.constructor !== Error && !(err instanceof DecodeError)) throw err;
    throw toDecodeError(bytes, err, opts);
  }
}

/** Encoded image bytes (any supported format) -> [C, H, W] normalized model input. */
export async function preprocessImage(
  bytes: Buffer,
  cfg: ModelConfig,
  opts: DecodeOptions & { augment?: Augment } = {},
): Promise<Float32Array> {
  return decoding(bytes, opts, async () => {
    const img = openImage(bytes, opts);
    const { width, height } = (await img.metadata()).autoOrient; // after EXIF orientation
    const plan = planFor(width, height, cfg, opts.augment);
    return normalize(await render(img, plan, cfg), cfg, plan.flip);
  });
}

/**
 * Raw 8-bit pixels (interleaved, e.g. an IDX image) -> the same output as `preprocessImage` on a
 * PNG of those pixels. When the plan is the identity (an imageSize x imageSize source with the
 * model's channels, cropPct 1, no augmentation crop) sharp is skipped: the training hot path.
 */
export async function preprocessPixels(
  pixels: Uint8Array,
  shape: PixelShape,
  cfg: ModelConfig,
  opts: { augment?: Augment } = {},
): Promise<Float32Array> {
  const { width, height, channels } = shape;
  if (pixels.length !== width * height * channels)
    throw new Error(
      `raw image of ${pixels.length} bytes does not match its shape ${width}x${height}x${channels} (${width * height * channels} bytes)`,
    );
  const plan = planFor(width, height, cfg, opts.augment);
  if (!plan.before && !plan.resize && !plan.after && channels === cfg.channels) return normalize(pixels, cfg, plan.flip);
  return normalize(await render(sharp(pixels, { raw: { width, height, channels } }), plan, cfg), cfg, plan.flip);
}
