// Does a corpus look like what the model was trained on? A model only embeds meaningfully images of
// its own kind: the shipped Fashion-MNIST model turns any photo or icon into 28x28 grayscale clothing
// features, and every pair then scores near 0.99. Sizes and colour of a seeded sample of the corpus
// are compared with the model's input (channels, image size), the two things a config knows.
import type { ModelConfig } from '../model/config.ts';
import { seededSample } from '../util/sample.ts';
import type { Dataset } from './dataset.ts';
import { openImage } from './preprocess.ts';

export interface CorpusFit {
  /** Images of the sample that decoded. */
  sampled: number;
  /** Median short side in pixels. */
  medianShortSide: number;
  /** Share of the sample with colour (channels that differ beyond a grey image's rounding). */
  colourShare: number;
  /** What looks far off, one sentence each; empty when the corpus fits. */
  warnings: string[];
}

/** Mean |R-G| + |G-B| over the pixels of a small thumbnail: 0 for grey images saved as RGB. */
async function colourfulness(bytes: Buffer): Promise<number> {
  const { data, info } = await openImage(bytes).resize(32, 32, { fit: 'inside' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.channels < 3) return 0;
  let sum = 0;
  for (let i = 0; i < data.length; i += info.channels) sum += Math.abs(data[i] - data[i + 1]) + Math.abs(data[i + 1] - data[i + 2]);
  return sum / (data.length / info.channels);
}

/**
 * The fit of `ds` to the model `c`, from up to `n` seeded items. Far off: colour images for a
 * grayscale model (most of the sample), or a median short side under half the model's input (each
 * image upsampled more than 2x) or over 16x it (a small model sees a thumbnail of every image).
 */
export async function corpusFit(ds: Dataset, c: ModelConfig, n = 32): Promise<CorpusFit> {
  const sides: number[] = [];
  let colour = 0;
  for (const i of seededSample([...Array(ds.size).keys()], n, 'corpus-fit')) {
    if (ds.pixels) {
      sides.push(Math.min(ds.pixels.width, ds.pixels.height));
      if (ds.pixels.channels === 3) colour++; // raw pixels: trust the declared channels
      continue;
    }
    try {
      const bytes = await ds.bytes(i);
      const meta = await openImage(bytes).metadata();
      sides.push(Math.min(meta.autoOrient?.width ?? meta.width ?? 0, meta.autoOrient?.height ?? meta.height ?? 0));
      if ((meta.channels ?? 1) >= 3 && (await colourfulness(bytes)) > 4) colour++;
    } catch {
      // Unreadable items are the build's to report, with their reason.
    }
  }
  const sorted = sides.sort((a, b) => a - b);
  const median = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
  const colourShare = sides.length ? colour / sides.length : 0;
  const warnings: string[] = [];
  const input = `${c.imageSize}x${c.imageSize} ${c.channels === 1 ? 'grayscale' : 'colour'}`;
  if (sides.length) {
    if (c.channels === 1 && colourShare > 0.5)
      warnings.push(
        `${Math.round(100 * colourShare)}% of the sampled images are in colour, but the model "${c.name}" reads ${input} images`,
      );
    if (median < c.imageSize / 2)
      warnings.push(
        `the sampled images' median short side is ${median} px, under half the model's ${c.imageSize} px input: each is upsampled more than 2x`,
      );
    if (median > 16 * c.imageSize)
      warnings.push(`the sampled images' median short side is ${median} px, over 16x the model's ${c.imageSize} px input (${input})`);
  }
  return { sampled: sides.length, medianShortSide: median, colourShare, warnings };
}
