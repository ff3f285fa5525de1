// IDX files (the MNIST / Fashion-MNIST format), raw or gzipped (detected by the gzip magic, not
// the file name). Layout: 2 zero bytes, a type byte (0x08 = unsigned byte), the number of
// dimensions, each dimension as a big-endian u32, then the data. Only the two kinds MNIST uses
// are accepted: labels 0x00000801 [N] and images 0x00000803 [N, rows, cols].
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';

const KINDS = {
  labels: { magic: 0x00000801, dims: 1 },
  images: { magic: 0x00000803, dims: 3 },
} as const;
type Kind = keyof typeof KINDS;

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/** The file's bytes, gunzipped when they start with the gzip magic 1f 8b. */
async function readMaybeGzip(file: string): Promise<Buffer> {
  const raw = await fs.readFile(file);
  if (raw[0] !== 0x1f || raw[1] !== 0x8b) return raw;
  try {
    return await promisify(gunzip)(raw);
  } catch (err) {
    throw new Error(`${file}: gzip data is truncated or corrupt (${(err as Error).message})`);
  }
}

/** Parses and checks one IDX file; returns its dimensions and a view of its data (no copy). */
function parse(file: string, buf: Buffer, kind: Kind): { dims: number[]; data: Uint8Array } {
  const want = KINDS[kind];
  const headerBytes = 4 + 4 * want.dims;
  if (buf.length < 4) throw new Error(`${file}: ${buf.length} bytes, too short for an IDX header`);
  const magic = buf.readUInt32BE(0);
  if (magic !== want.magic) {
    const other = (Object.keys(KINDS) as Kind[]).find((k) => KINDS[k].magic === magic);
    throw new Error(
      `${file}: magic number ${hex(magic)}, expected ${hex(want.magic)} (IDX ${kind}: unsigned bytes, ${want.dims} dimension${want.dims > 1 ? 's' : ''})` +
        (other ? `; this is an IDX ${other} file` : ''),
    );
  }
  if (buf.length < headerBytes) throw new Error(`${file}: truncated header, ${buf.length} bytes of ${headerBytes}`);
  const dims = Array.from({ length: want.dims }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  const dataBytes = dims.reduce((a, b) => a * b, 1);
  const got = buf.length - headerBytes;
  if (got !== dataBytes)
    throw new Error(
      `${file}: header says [${dims.join(', ')}] = ${dataBytes} data bytes, the file has ${got} (${got < dataBytes ? 'truncated' : 'trailing bytes'})`,
    );
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + headerBytes, dataBytes) };
}

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** [count, rows, cols] unsigned bytes */
  pixels: Uint8Array;
}

export async function readIdxImages(file: string): Promise<IdxImages> {
  const { dims, data } = parse(file, await readMaybeGzip(file), 'images');
  const [count, rows, cols] = dims;
  if (rows === 0 || cols === 0) throw new Error(`${file}: images of ${rows}x${cols} pixels`);
  return { count, rows, cols, pixels: data };
}

export async function readIdxLabels(file: string): Promise<Uint8Array> {
  return parse(file, await readMaybeGzip(file), 'labels').data;
}

export interface IdxPair extends IdxImages {
  labels: Uint8Array;
}

/** An images file and its labels file, checked to hold the same number of items. */
export async function readIdxPair(imagesFile: string, labelsFile: string): Promise<IdxPair> {
  const [images, labels] = await Promise.all([readIdxImages(imagesFile), readIdxLabels(labelsFile)]);
  if (images.count !== labels.length)
    throw new Error(`${imagesFile} has ${images.count} images but ${labelsFile} has ${labels.length} labels: they must be a matching pair`);
  return { ...images, labels };
}
