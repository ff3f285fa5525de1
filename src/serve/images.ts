// The stored image of a corpus item, found from the item's `source` in the store and the corpus
// recorded in the index manifest, never from anything in the request but the id:
// - 'idx:#N': record N of the IDX file the manifest's corpus spec names; rendered to PNG;
// - 'upload:NAME': an image added through POST /v1/items, kept in DIR/uploads/;
// - an absolute path: a file `matvit index add` took from outside the corpus root (the operator
//   chose it; clients can only add 'upload:' items);
// - anything else: a path relative to the corpus root (manifest corpus.root, or the folder its
//   spec names). A relative path that resolves outside that root is refused, whatever the store says.
//
// Only raster types every browser renders as inert pixels are sent as they are stored; anything
// else (an SVG in a folder corpus, TIFF, HEIF) is sent as a PNG rendered by sharp, because an SVG
// served from this origin runs its scripts with the API's privileges. Uploads refuse SVG outright.
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { type Dataset, parseDatasetSpec, specRoot, unslicedSpec } from '../data/dataset.ts';
import type { Manifest } from '../index/manifest.ts';
import { removeStaleTemps } from '../util/durable.ts';
import { ApiError } from './errors.ts';

export const UPLOADS_DIR = 'uploads';
const UPLOAD_PREFIX = 'upload:';

export interface ImageFile {
  bytes: Buffer;
  contentType: string;
}

/** sharp's format names of the types served as stored, with their Content-Type. */
const SAFE_RASTER: Record<string, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
};

/** The format sharp reads in `bytes`, or undefined when it reads none. */
async function formatOf(bytes: Buffer): Promise<string | undefined> {
  try {
    return (await sharp(bytes).metadata()).format;
  } catch {
    return undefined;
  }
}

/**
 * The file extension an upload is kept under, from its decoded format. SVG is refused (415): it is
 * a document, not pixels (scripts, no intrinsic size), and the store keeps the bytes a client sent
 * so that its sha256 names them; rasterize it before adding it.
 */
export async function uploadExtension(bytes: Buffer): Promise<string> {
  const format = await formatOf(bytes);
  if (format === 'svg')
    throw new ApiError(
      415,
      'unsupported-image-type',
      'image: SVG images cannot be added to the index (they are documents that may run scripts); convert it to PNG first',
      {
        field: 'image',
        received: 'image/svg+xml',
        accepted: 'raster images: PNG, JPEG, GIF, WebP, AVIF, TIFF, HEIF',
      },
    );
  return format === 'jpeg' ? 'jpg' : (format ?? 'bin');
}

/** The store source of an upload kept as DIR/uploads/<name>. */
export const uploadSource = (name: string) => `${UPLOAD_PREFIX}${name}`;
export const uploadPath = (indexDir: string, name: string) => path.join(indexDir, UPLOADS_DIR, name);

/** Removes temp files of uploads whose writer was killed mid-write (the index cleans its own on open); returns their names. */
export function removeStaleUploads(indexDir: string): string[] {
  const dir = path.join(indexDir, UPLOADS_DIR);
  return fsSync.existsSync(dir) ? removeStaleTemps(dir) : [];
}

const unavailable = (id: number, why: string) => new ApiError(404, 'image-unavailable', `item ${id}: its image is not available (${why})`);

export class CorpusImages {
  private idx: Promise<Dataset> | null = null;

  constructor(
    private readonly indexDir: string,
    private readonly corpus: Manifest['corpus'],
  ) {}

  private get spec(): string | undefined {
    const s = this.corpus.spec ?? this.corpus.data;
    return typeof s === 'string' ? s : undefined;
  }

  /** The folder relative sources are resolved in: corpus.root, else the folder of a folder/files spec. */
  private root(): string | undefined {
    if (typeof this.corpus.root === 'string') return path.resolve(this.indexDir, this.corpus.root);
    return this.spec === undefined ? undefined : specRoot(this.spec);
  }

  async image(id: number, source: string): Promise<ImageFile> {
    if (source.startsWith('idx:#')) return this.idxImage(id, Number(source.slice(5)));
    if (source.startsWith(UPLOAD_PREFIX)) return this.file(id, path.join(this.indexDir, UPLOADS_DIR), source.slice(UPLOAD_PREFIX.length));
    if (path.isAbsolute(source)) return this.file(id, path.dirname(source), path.basename(source));
    const root = this.root();
    if (!root) throw unavailable(id, 'the index manifest records no corpus root');
    return this.file(id, root, source);
  }

  private async file(id: number, root: string, rel: string): Promise<ImageFile> {
    const file = path.resolve(root, rel);
    const inside = path.relative(root, file);
    if (inside === '' || inside.startsWith('..') || path.isAbsolute(inside))
      throw unavailable(id, 'its source lies outside the corpus root');
    let bytes: Buffer;
    try {
      // realpath: a symlink inside the root may not lead out of it either.
      const real = await fs.realpath(file);
      const realRoot = await fs.realpath(root);
      if (path.relative(realRoot, real).startsWith('..')) throw unavailable(id, 'its source lies outside the corpus root');
      bytes = await fs.readFile(real);
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw unavailable(id, `the file is gone from the corpus: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const format = await formatOf(bytes);
    if (format && SAFE_RASTER[format]) return { bytes, contentType: SAFE_RASTER[format] };
    if (!format) throw unavailable(id, 'the stored file is not an image sharp can read');
    try {
      return { bytes: await sharp(bytes).png().toBuffer(), contentType: 'image/png' };
    } catch (e) {
      throw unavailable(id, `the stored ${format} image cannot be rendered: ${(e as Error).message}`);
    }
  }

  private async idxImage(id: number, record: number): Promise<ImageFile> {
    const spec = this.spec;
    if (!spec || !/^(fashion-mnist|idx):/.test(spec)) throw unavailable(id, 'the index manifest records no IDX corpus spec');
    if (!this.idx) {
      this.idx = parseDatasetSpec(unslicedSpec(spec));
      this.idx.catch(() => (this.idx = null)); // retried on the next request
    }
    let ds: Dataset;
    try {
      ds = await this.idx;
    } catch (e) {
      throw unavailable(id, `the corpus ${spec} cannot be opened: ${(e as Error).message}`);
    }
    if (!ds.pixels || !Number.isInteger(record) || record < 0 || record >= ds.size)
      throw unavailable(id, `record ${record} is not in ${ds.spec}`);
    const { width, height, channels } = ds.pixels;
    const png = await sharp(await ds.bytes(record), { raw: { width, height, channels } })
      .png()
      .toBuffer();
    return { bytes: png, contentType: 'image/png' };
  }
}
