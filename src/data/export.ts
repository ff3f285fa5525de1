// A labelled dataset -> an ImageNet-style PNG folder (`matvit dataset export`):
//   outDir/<NN>_<class name>/<index>.png
// The class folder name starts with the class index, zero-padded to a common width (00_T-shirt_top,
// 01_Trouser, ...), so the folders sort in class-index order and reading the folder back gives the
// same labels (class names are then the folder names). Characters other than letters, digits,
// '.', '_' and '-' become '_' ('T-shirt/top' -> 'T-shirt_top'). File names are the item index,
// zero-padded so files also sort in index order within a class.
// Pixels are written losslessly: IDX pixels as they are (grayscale stays 1 channel), encoded files
// decoded with preprocess.ts's choices (EXIF orientation, alpha on white, sRGB, first frame).
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { type Dataset, type Skipped, DEFAULT_CONCURRENCY } from './dataset.ts';
import { forEachLimited } from './pool.ts';
import { DecodeError, type DecodeOptions, decoding, openImage } from './preprocess.ts';

/** The folder name of class k among `numClasses` (see the header). */
export function classFolderName(k: number, name: string, numClasses: number): string {
  const width = Math.max(2, String(numClasses - 1).length);
  return `${String(k).padStart(width, '0')}_${name.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

export interface ExportOptions extends DecodeOptions {
  /** Export the first `limit` items only. */
  limit?: number;
  concurrency?: number;
}

export async function exportDataset(
  ds: Dataset,
  outDir: string,
  opts: ExportOptions = {},
): Promise<{ written: number; skipped: Skipped[]; classFolders: string[] }> {
  const K = ds.classNames.length;
  if (K === 0)
    throw new Error(`${ds.spec} has no classes: export writes one folder per class (a folder dataset is already a folder of images)`);
  const n = Math.min(ds.size, opts.limit ?? ds.size);
  const classFolders = ds.classNames.map((name, k) => classFolderName(k, name, K));
  // Every class folder, even one the limit leaves empty: reading back must find all K classes.
  for (const f of classFolders) await fs.mkdir(path.join(outDir, f), { recursive: true });
  const digits = String(Math.max(0, ds.size - 1)).length;
  const skipped: Skipped[] = [];
  let written = 0;
  await forEachLimited(n, opts.concurrency ?? DEFAULT_CONCURRENCY, async (i) => {
    const item = ds.item(i);
    if (!(item.label >= 0 && item.label < K))
      throw new Error(`${ds.spec}: item ${i} (${item.ref}) has label ${item.label}, outside 0..${K - 1}`);
    const file = path.join(outDir, classFolders[item.label], `${String(item.index).padStart(digits, '0')}.png`);
    try {
      const bytes = await ds.bytes(i);
      const png = ds.pixels
        ? await sharp(bytes, { raw: ds.pixels }).png().toBuffer()
        : await decoding(bytes, opts, () => openImage(bytes, opts).png().toBuffer());
      await fs.writeFile(file, png);
      written++;
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      skipped.push({ index: i, ref: item.ref, reason: err.reason, message: err.message });
    }
  });
  return { written, skipped: skipped.sort((a, b) => a.index - b.index), classFolders };
}
