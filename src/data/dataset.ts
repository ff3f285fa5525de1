// The one Dataset interface that training, evaluation, indexing and export read, the dataset specs
// users type, and the batch loader.
//
// Specs (each may end with a Python-style slice [a:b], e.g. fashion-mnist:train[55000:]):
//   PATH or folder:PATH      class folders, PATH/<class>/<image> (opts.split picks PATH/<split>)
//   files:PATH               every image under PATH, recursively, no classes (label -1)
//   idx:IMAGES,LABELS        an IDX pair (MNIST format, raw or .gz)
//   fashion-mnist:train|test the Fashion-MNIST IDX files, searched for in fashionMnistDirs()
// `Dataset.spec` is the canonical form (absolute paths, resolved split, explicit slice bounds):
// parsing it again gives the same dataset, so it is what checkpoints and index manifests record.
import fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import type { ModelConfig } from '../model/config.ts';
import type { AugmentOptions } from './augment.ts';
import { listImages, readClassFolder, resolveSplit } from './folder.ts';
import { type IdxPair, readIdxPair } from './idx.ts';
import {
  type Augment,
  DecodeError,
  type DecodeOptions,
  type DecodeReason,
  type PixelShape,
  preprocessImage,
  preprocessPixels,
} from './preprocess.ts';
import { forEachLimited } from './pool.ts';

export interface DatasetItem {
  /** Position in this dataset (0 .. size - 1). */
  index: number;
  /** Class index, -1 when unknown. */
  label: number;
  /** Relative to the dataset root ('/'-separated), for folder datasets. */
  path?: string;
  /** Human-readable: the path, or 'idx:#123' (the position in the IDX file, stable under slicing). */
  ref: string;
}

export interface Dataset {
  spec: string;
  size: number;
  classNames: string[];
  /** Set when bytes() returns raw pixels of this shape (IDX); unset when it returns an encoded file. */
  pixels?: PixelShape;
  item(i: number): DatasetItem;
  /** The content to hash: the file's bytes, or the raw IDX pixels (a view: do not modify). */
  bytes(i: number): Promise<Buffer>;
  /** The model input [C, H, W], normalized; throws DecodeError for a file that cannot be used. */
  load(i: number, cfg: ModelConfig, augment?: Augment): Promise<Float32Array>;
}

export interface DatasetOptions extends DecodeOptions {
  /** For a folder spec: the split subfolder (train; val / validation / ...), as timm finds it. */
  split?: string;
}

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

// The repository root, from this file's location (src/data/), so specs resolve the same from any cwd.
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Where Fashion-MNIST is looked for, in order: the repo, the Debian package, $MATVIT_DATASETS. */
export function fashionMnistDirs(): string[] {
  const env = process.env.MATVIT_DATASETS;
  return [
    path.join(REPO_ROOT, 'datasets', 'fashion-mnist'),
    '/usr/share/datasets/fashion-mnist',
    ...(env ? [path.join(env, 'fashion-mnist')] : []),
  ];
}

const FASHION_SPLITS: Record<string, string> = { train: 'train', test: 't10k' };

/** The [images, labels] files of a Fashion-MNIST split: the first of `dirs` holding both. */
export function findFashionMnist(split: string, dirs = fashionMnistDirs()): [string, string] {
  const prefix = FASHION_SPLITS[split];
  if (!prefix)
    throw new Error(
      `fashion-mnist:${split}: unknown split; accepted: ${Object.keys(FASHION_SPLITS)
        .map((s) => `fashion-mnist:${s}`)
        .join(', ')}`,
    );
  const names = [`${prefix}-images-idx3-ubyte`, `${prefix}-labels-idx1-ubyte`];
  for (const dir of dirs)
    for (const ext of ['.gz', '']) {
      const files = names.map((n) => path.join(dir, n + ext)) as [string, string];
      if (files.every((f) => existsSync(f))) return files;
    }
  throw new Error(
    `fashion-mnist:${split}: ${names.map((n) => n + '.gz').join(' and ')} not found in ${dirs.join(', ')}` +
      (process.env.MATVIT_DATASETS ? '' : ' (set MATVIT_DATASETS=DIR to also search DIR/fashion-mnist)') +
      `. Get them with \`sudo apt-get install dataset-fashion-mnist\` (Debian/Ubuntu) or \`scripts/download-fashion-mnist.sh\` (downloads into ${path.join(REPO_ROOT, 'datasets', 'fashion-mnist')}).`,
  );
}

function checkIndex(ds: { spec: string; size: number }, i: number): void {
  if (!(Number.isInteger(i) && i >= 0 && i < ds.size)) throw new RangeError(`${ds.spec}: item ${i} is outside 0..${ds.size - 1}`);
}

/** IDX images (grayscale) with their labels; bytes() are the raw pixels. */
class IdxDataset implements Dataset {
  readonly size: number;
  readonly pixels: PixelShape;
  constructor(
    readonly spec: string,
    private readonly idx: IdxPair,
    readonly classNames: string[],
  ) {
    this.size = idx.count;
    this.pixels = { width: idx.cols, height: idx.rows, channels: 1 };
  }
  item(i: number): DatasetItem {
    checkIndex(this, i);
    return { index: i, label: this.idx.labels[i], ref: `idx:#${i}` };
  }
  async bytes(i: number): Promise<Buffer> {
    checkIndex(this, i);
    const n = this.idx.rows * this.idx.cols;
    return Buffer.from(this.idx.pixels.buffer, this.idx.pixels.byteOffset + i * n, n);
  }
  async load(i: number, cfg: ModelConfig, augment?: Augment): Promise<Float32Array> {
    return preprocessPixels(await this.bytes(i), this.pixels, cfg, { augment });
  }
}

async function openIdx(spec: string, imagesFile: string, labelsFile: string, classNames?: string[]): Promise<IdxDataset> {
  const idx = await readIdxPair(imagesFile, labelsFile);
  const maxLabel = idx.labels.reduce((a, b) => Math.max(a, b), 0);
  // IDX files carry no class names: number them unless the dataset is a known one.
  const names = classNames ?? Array.from({ length: maxLabel + 1 }, (_, k) => String(k));
  if (maxLabel >= names.length) throw new Error(`${labelsFile}: label ${maxLabel} but ${spec} has ${names.length} classes`);
  return new IdxDataset(spec, idx, names);
}

/** Image files under a root (class folders, or a plain walk with label -1); bytes() are the files. */
class FilesDataset implements Dataset {
  readonly size: number;
  constructor(
    readonly spec: string,
    private readonly root: string,
    private readonly files: { path: string; label: number }[],
    readonly classNames: string[],
    private readonly decode: DecodeOptions,
  ) {
    this.size = files.length;
  }
  item(i: number): DatasetItem {
    checkIndex(this, i);
    const f = this.files[i];
    return { index: i, label: f.label, path: f.path, ref: f.path };
  }
  async bytes(i: number): Promise<Buffer> {
    checkIndex(this, i);
    try {
      return await fs.readFile(path.join(this.root, this.files[i].path));
    } catch (err) {
      throw new DecodeError('unreadable', (err as Error).message);
    }
  }
  async load(i: number, cfg: ModelConfig, augment?: Augment): Promise<Float32Array> {
    return preprocessImage(await this.bytes(i), cfg, { ...this.decode, augment });
  }
}

/** Items start .. end - 1 of a dataset, renumbered from 0 (refs and paths are kept). */
class SliceDataset implements Dataset {
  readonly spec: string;
  readonly size: number;
  readonly classNames: string[];
  readonly pixels?: PixelShape;
  constructor(
    private readonly base: Dataset,
    private readonly start: number,
    end: number,
  ) {
    this.spec = `${base.spec}[${start}:${end}]`;
    this.size = end - start;
    this.classNames = base.classNames;
    this.pixels = base.pixels;
  }
  item(i: number): DatasetItem {
    checkIndex(this, i);
    return { ...this.base.item(this.start + i), index: i };
  }
  bytes(i: number): Promise<Buffer> {
    checkIndex(this, i);
    return this.base.bytes(this.start + i);
  }
  load(i: number, cfg: ModelConfig, augment?: Augment): Promise<Float32Array> {
    checkIndex(this, i);
    return this.base.load(this.start + i, cfg, augment);
  }
}

/** Python slice bounds: empty = the end, negative counts from the end, clamped to 0..size. */
function sliceBounds(size: number, a: string, b: string): [number, number] {
  const bound = (s: string, dflt: number) => {
    if (s === '') return dflt;
    const v = Number(s);
    return Math.min(size, Math.max(0, v < 0 ? size + v : v));
  };
  const start = bound(a, 0);
  return [start, Math.max(start, bound(b, size))];
}

const SPEC_FORMS =
  'a folder path, folder:PATH, files:PATH, idx:IMAGES,LABELS, fashion-mnist:train, fashion-mnist:test; each optionally followed by a slice [a:b]';

/** A trailing Python-style slice [a:b]: the base spec, start and end (strings, empty = open). */
const SLICE = /^(.+)\[(-?\d*):(-?\d*)\]$/;

/** A spec without its trailing slice (IDX refs count from the start of the file, not of a slice). */
export const unslicedSpec = (spec: string): string => SLICE.exec(spec)?.[1] ?? spec;

/** How many items two datasets share: slices of one source overlapping (canonical specs), else 0. */
export function sharedItems(a: Dataset, b: Dataset): number {
  if (unslicedSpec(a.spec) !== unslicedSpec(b.spec)) return 0;
  const range = (d: Dataset): [number, number] => {
    const m = SLICE.exec(d.spec);
    return m ? [Number(m[2]), Number(m[3])] : [0, d.size];
  };
  const [[a0, a1], [b0, b1]] = [range(a), range(b)];
  return Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
}

/** The folder a spec reads image files from, which relative item paths are under; undefined for IDX specs. */
export function specRoot(spec: string): string | undefined {
  const base = unslicedSpec(spec);
  if (/^(idx|fashion-mnist):/.test(base)) return undefined;
  return path.resolve(base.replace(/^(files|folder):/, ''));
}

/** Opens a dataset spec (see the header). */
export async function parseDatasetSpec(spec: string, opts: DatasetOptions = {}): Promise<Dataset> {
  const slice = SLICE.exec(spec);
  if (slice) {
    const base = await parseDatasetSpec(slice[1], opts);
    return new SliceDataset(base, ...sliceBounds(base.size, slice[2], slice[3]));
  }
  const colon = spec.indexOf(':');
  const [kind, rest] = colon > 0 ? [spec.slice(0, colon), spec.slice(colon + 1)] : ['', spec];
  const decode: DecodeOptions = { limitInputPixels: opts.limitInputPixels };
  if (opts.split && ['fashion-mnist', 'idx', 'files'].includes(kind))
    throw new Error(
      `dataset spec "${spec}": a split ("${opts.split}") applies to class folders only; ${kind}: specs name their files or split themselves`,
    );
  if (kind === 'fashion-mnist') return openIdx(spec, ...findFashionMnist(rest), FASHION_MNIST_CLASSES);
  if (kind === 'idx') {
    const files = rest.split(',');
    if (files.length !== 2 || files.some((f) => !f))
      throw new Error(`dataset spec "${spec}": expected idx:IMAGES,LABELS (two files, comma-separated)`);
    const [images, labels] = files.map((f) => path.resolve(f));
    return openIdx(`idx:${images},${labels}`, images, labels);
  }
  if (kind === 'files') {
    const root = path.resolve(rest);
    const files = (await listImages(root)).map((p) => ({ path: p, label: -1 }));
    return new FilesDataset(`files:${root}`, root, files, [], decode);
  }
  // A folder path, with or without the folder: prefix (a path may itself contain ':').
  const dir = path.resolve(kind === 'folder' ? rest : spec);
  if (!existsSync(dir)) throw new Error(`dataset spec "${spec}": no such folder ${dir}; accepted: ${SPEC_FORMS}`);
  const root = opts.split ? await resolveSplit(dir, opts.split) : dir;
  const { classNames, files } = await readClassFolder(root);
  return new FilesDataset(root, root, files, classNames, decode);
}

// ---------------------------------------------------------------------------------------------
// Batches

export interface Skipped {
  index: number;
  ref: string;
  reason: DecodeReason;
  message: string;
}

export interface Batch {
  /** [B, C, H, W] of the items that decoded, in the order asked */
  images: Float32Array;
  labels: Int32Array;
  /** the dataset indices of those items */
  indices: number[];
  skipped: Skipped[];
}

export interface LoadOptions {
  /** Images decoding at once (default: 2 per core; sharp runs them on libuv's thread pool). */
  concurrency?: number;
  /** Training augmentation; needs rngFor or rng. */
  augment?: AugmentOptions;
  /** The random stream of one item's augmentation, by dataset index (reproducible on resume). */
  rngFor?: (index: number) => () => number;
  /** Alternatively one stream: a seed per item is drawn from it in the order of `indices`. */
  rng?: () => number;
}

export const DEFAULT_CONCURRENCY = 2 * os.availableParallelism();

/**
 * Loads items into one batch, decoding `concurrency` at a time. A file that cannot be decoded
 * (DecodeError) is skipped and reported; any other error is a bug and rejects.
 */
export async function loadBatch(ds: Dataset, indices: readonly number[], cfg: ModelConfig, opts: LoadOptions = {}): Promise<Batch> {
  const { augment } = opts;
  // Each item gets its own stream, fixed before any decoding starts: the outcome cannot depend on
  // which decode finishes first.
  const { rngFor, rng } = opts;
  if (augment && !rngFor && !rng) throw new Error('loadBatch: augment needs rngFor or rng (augmentation is always seeded)');
  const rngs = !augment ? [] : rngFor ? indices.map((i) => rngFor(i)) : indices.map(() => seedrandom.alea(String(rng!())));
  const results: (Float32Array | Skipped)[] = new Array(indices.length);
  await forEachLimited(indices.length, opts.concurrency ?? DEFAULT_CONCURRENCY, async (k) => {
    const i = indices[k];
    try {
      results[k] = await ds.load(i, cfg, augment && { ...augment, rng: rngs[k] });
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      results[k] = { index: i, ref: ds.item(i).ref, reason: err.reason, message: err.message };
    }
  });
  const per = cfg.channels * cfg.imageSize * cfg.imageSize;
  const kept = indices.flatMap((_, k) => (results[k] instanceof Float32Array ? [k] : []));
  const images = new Float32Array(kept.length * per);
  kept.forEach((k, b) => images.set(results[k] as Float32Array, b * per));
  return {
    images,
    labels: Int32Array.from(kept, (k) => ds.item(indices[k]).label),
    indices: kept.map((k) => indices[k]),
    skipped: results.filter((r): r is Skipped => !(r instanceof Float32Array)),
  };
}

/**
 * Batches of `order` (the last one may be smaller), each decoding while the caller works on the
 * previous one: `prefetch` batches (default 1) are loaded ahead.
 */
export async function* batches(
  ds: Dataset,
  order: readonly number[],
  batchSize: number,
  cfg: ModelConfig,
  opts: LoadOptions & { prefetch?: number } = {},
): AsyncGenerator<Batch> {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new Error(`batchSize ${batchSize}: expected an integer >= 1`);
  const prefetch = opts.prefetch ?? 1;
  const pending: Promise<Batch>[] = [];
  let next = 0;
  const launch = () => {
    pending.push(loadBatch(ds, order.slice(next, next + batchSize), cfg, opts));
    next += batchSize;
  };
  try {
    while (pending.length > 0 || next < order.length) {
      if (pending.length === 0) launch();
      const batch = await pending.shift()!;
      // Start the next ones only now, so they do not compete with the batch the caller waits for.
      while (pending.length < prefetch && next < order.length) launch();
      yield batch;
    }
  } finally {
    // The caller stopped early: nobody will await the batches still loading.
    for (const p of pending) p.catch(() => {});
  }
}
