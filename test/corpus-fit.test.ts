// index build's warning when a corpus does not look like the model's input (src/data/corpus-fit.ts):
// colour images for a grayscale model, sizes far off; none for the model's own kind of data.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { corpusFit } from '../src/data/corpus-fit.ts';
import { parseDatasetSpec } from '../src/data/dataset.ts';
import { tinyConfig } from './helpers/tiny.ts';

const fmnistLike = tinyConfig({ imageSize: 28, patchSize: 7, channels: 1, mean: [0.3], std: [0.35] });

/** A folder of `n` PNGs of size w x h: colour stripes, or the same stripes in grey saved as RGB. */
async function folder(root: string, n: number, w: number, h: number, colour: boolean): Promise<string> {
  const dir = fs.mkdtempSync(path.join(root, 'imgs-'));
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(w * h * 3);
    for (let p = 0; p < w * h; p++) {
      const v = (p * (i + 3)) % 256;
      data.set(colour ? [v, 255 - v, (v * 7) % 256] : [v, v, v], p * 3);
    }
    await sharp(data, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toFile(path.join(dir, `${i}.png`));
  }
  return `files:${dir}`;
}

describe('corpusFit', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-fit-'));
  test.after(() => fs.rmSync(root, { recursive: true, force: true }));

  test('Fashion-MNIST for a 28x28 grayscale model: no warning', async () => {
    const fit = await corpusFit(await parseDatasetSpec('fashion-mnist:test[:100]'), fmnistLike);
    assert.deepEqual(fit.warnings, []);
    assert.equal(fit.medianShortSide, 28);
    assert.equal(fit.sampled, 32);
  });

  test('colour photos for a grayscale model are named; grey images saved as RGB are not colour', async () => {
    const colour = await corpusFit(await parseDatasetSpec(await folder(root, 6, 40, 30, true)), fmnistLike);
    assert.equal(colour.colourShare, 1);
    assert.match(colour.warnings.join('\n'), /100% of the sampled images are in colour, but the model "tiny" reads 28x28 grayscale/);
    const grey = await corpusFit(await parseDatasetSpec(await folder(root, 6, 40, 30, false)), fmnistLike);
    assert.equal(grey.colourShare, 0);
    assert.deepEqual(grey.warnings, []);
  });

  test('sizes far off: under half the input, or over 16x it', async () => {
    const small = await corpusFit(await parseDatasetSpec(await folder(root, 5, 12, 10, false)), fmnistLike);
    assert.match(small.warnings.join('\n'), /median short side is 10 px, under half the model's 28 px input/);
    const large = await corpusFit(await parseDatasetSpec(await folder(root, 3, 500, 460, false)), fmnistLike);
    assert.match(large.warnings.join('\n'), /median short side is 460 px, over 16x the model's 28 px input/);
    assert.deepEqual(
      (await corpusFit(await parseDatasetSpec(await folder(root, 3, 500, 460, true)), tinyConfig({ imageSize: 224, patchSize: 16 })))
        .warnings,
      [],
    );
  });
});
