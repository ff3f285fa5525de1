// `matvit dataset synth`: a reproducible ImageNet-style folder of synthetic RGB "photos" of mixed
// sizes and formats, for measuring what depends on image size and codec rather than content (an
// index build's memory and throughput on a 224 model, `bench serve`) from a clean clone, with no
// download. Image i of class i % K: the class's hue, stripes at a class-specific angle and
// frequency, and per-pixel noise (so JPEG and WebP sizes are photo-like, not flat-colour tiny).
// Everything is a function of (seed, i): the same arguments write byte-identical files.
import fs from 'node:fs/promises';
import path from 'node:path';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { classFolderName } from './export.ts';
import { forEachLimited } from './pool.ts';

export const SYNTH_FORMATS = ['jpg', 'png', 'webp'] as const;
/** Mostly JPEG, as photo folders are; PNG of noisy pixels is ~10x a JPEG's size. */
const FORMAT_SHARE = [0.7, 0.1, 0.2];

export interface SynthOptions {
  count: number;
  classes: number;
  /** Side lengths are drawn uniformly from [minSize, maxSize] (width and height independently). */
  minSize: number;
  maxSize: number;
  seed: number;
  concurrency?: number;
}

/** The pixels of image i: [h, w, 3] uint8, row-major. */
export function synthPixels(
  i: number,
  o: Pick<SynthOptions, 'classes' | 'minSize' | 'maxSize' | 'seed'>,
): { width: number; height: number; data: Buffer; format: (typeof SYNTH_FORMATS)[number]; label: number } {
  const rng = seedrandom.alea(`${o.seed}:synth:${i}`); // alea: ~4x ARC4's speed, for the per-pixel noise
  const label = i % o.classes;
  const size = () => o.minSize + Math.floor(rng() * (o.maxSize - o.minSize + 1));
  const [width, height] = [size(), size()];
  let u = rng();
  const format = SYNTH_FORMATS[FORMAT_SHARE.findIndex((w) => (u -= w) < 0)] ?? 'jpg';
  const hue = (label / o.classes) * 2 * Math.PI;
  const base = [0, 2, 4].map((p) => 127 + 80 * Math.cos(hue + (p * Math.PI) / 3)); // the class colour
  const angle = (label * 0.7) % Math.PI;
  const freq = ((2 + (label % 5)) * (2 * Math.PI)) / Math.min(width, height);
  const [cx, cy] = [Math.cos(angle) * freq, Math.sin(angle) * freq];
  const phase = rng() * 2 * Math.PI;
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const stripe = 40 * Math.sin(x * cx + y * cy + phase);
      for (let ch = 0; ch < 3; ch++)
        data[(y * width + x) * 3 + ch] = Math.max(0, Math.min(255, Math.round(base[ch] + stripe + (rng() - 0.5) * 8)));
    }
  return { width, height, data, format, label };
}

/** Writes outDir/<NN>_classNN/<index>.<jpg|png|webp>; returns how many files of each format. */
export async function writeSynthFolder(
  outDir: string,
  o: SynthOptions,
): Promise<{ written: number; byFormat: Record<string, number>; bytes: number }> {
  for (const [k, v] of Object.entries({ count: o.count, classes: o.classes, minSize: o.minSize, maxSize: o.maxSize }))
    if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${k} = ${v}: expected an integer >= 1`);
  if (o.minSize > o.maxSize) throw new Error(`minSize ${o.minSize} > maxSize ${o.maxSize}`);
  const folders = Array.from({ length: o.classes }, (_, k) => classFolderName(k, `class${String(k).padStart(2, '0')}`, o.classes));
  for (const f of folders) await fs.mkdir(path.join(outDir, f), { recursive: true });
  const digits = String(o.count - 1).length;
  const byFormat: Record<string, number> = {};
  let bytes = 0;
  await forEachLimited(o.count, o.concurrency ?? 4, async (i) => {
    const p = synthPixels(i, o);
    const img = sharp(p.data, { raw: { width: p.width, height: p.height, channels: 3 } });
    const encoded = await (
      p.format === 'jpg' ? img.jpeg({ quality: 85 }) : p.format === 'png' ? img.png() : img.webp({ quality: 80 })
    ).toBuffer();
    await fs.writeFile(path.join(outDir, folders[p.label], `${String(i).padStart(digits, '0')}.${p.format}`), encoded);
    byFormat[p.format] = (byFormat[p.format] ?? 0) + 1;
    bytes += encoded.length;
  });
  return { written: o.count, byFormat, bytes };
}
