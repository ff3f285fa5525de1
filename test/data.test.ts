// src/data: IDX, folders, specs, preprocessing golden values, bad files, decoding variants,
// augmentation, batches and export. Every input is made here with sharp in a temp dir.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import seedrandom from 'seedrandom';
import sharp, { type Color, type CreateRaw } from 'sharp';
import { ModelConfig } from '../src/model/config.ts';
import { preset } from '../src/model/presets.ts';
import { mixup, randomResizedCrop, sampleBeta } from '../src/data/augment.ts';
import { type Dataset, batches, fashionMnistDirs, findFashionMnist, loadBatch, parseDatasetSpec } from '../src/data/dataset.ts';
import { classFolderName, exportDataset } from '../src/data/export.ts';
import { listImages, readClassFolder, resolveSplit } from '../src/data/folder.ts';
import { readIdxImages, readIdxLabels, readIdxPair } from '../src/data/idx.ts';
import { writeSynthFolder } from '../src/data/synth.ts';
import { DecodeError, decoding, evalPlan, preprocessImage, preprocessPixels } from '../src/data/preprocess.ts';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'matvit-data-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** A small test config: imageSize S, no center-crop margin unless asked. */
const cfgOf = (over: Partial<ModelConfig> & { channels: 1 | 3 }): ModelConfig =>
  ModelConfig.parse({
    name: 't',
    imageSize: 16,
    patchSize: 4,
    dim: 16,
    depth: 1,
    heads: 1,
    mlpDim: 16,
    numClasses: 10,
    mean: over.channels === 1 ? [0.5] : [0.485, 0.456, 0.406],
    std: over.channels === 1 ? [0.25] : [0.229, 0.224, 0.225],
    interpolation: 'nearest',
    cropPct: 1,
    ...over,
  });
const gray = cfgOf({ channels: 1 });
const rgb = cfgOf({ channels: 3 });
/** The expected model input value, computed independently of src/. */
const norm = (v: number, cfg: ModelConfig, c = 0) => Math.fround((v / 255 - cfg.mean[c]) / cfg.std[c]);
const solid = (width: number, height: number, background: Color, channels: 3 | 4 = 3) =>
  sharp({ create: { width, height, channels, background } });
/** Interleaved 8-bit pixels -> a sharp image. */
const fromPixels = (px: Uint8Array, width: number, height: number, channels: 1 | 3 | 4) =>
  sharp(Buffer.from(px), { raw: { width, height, channels } });
const write = async (rel: string, data: Buffer | string) => {
  const file = path.join(tmp, rel);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, data);
  return file;
};
/** One channel plane [S, S] of a [C, S, S] output. */
const plane = (x: Float32Array, cfg: ModelConfig, c: number) => x.subarray(c * cfg.imageSize ** 2, (c + 1) * cfg.imageSize ** 2);
const assertAll = (x: Float32Array, v: number, msg: string) =>
  assert.equal(x.filter((y) => y !== v).length, 0, `${msg}: ${x.slice(0, 4)} vs ${v}`);

// ---------------------------------------------------------------------------------------------
function idxFile(magic: number, dims: number[], data: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, data]);
}
const IMAGES = 0x803;
const LABELS = 0x801;

describe('idx', () => {
  const pixels = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => (i * 37) % 256);
  const labels = Uint8Array.from([3, 1, 4, 1, 5]);

  it('reads raw and gzipped files alike (gzip detected by magic, not name)', async () => {
    const raw = await write('idx/img-raw', idxFile(IMAGES, [5, 4, 3], pixels));
    const gz = await write('idx/img-gz.bin', gzipSync(idxFile(IMAGES, [5, 4, 3], pixels)));
    for (const f of [raw, gz]) {
      const im = await readIdxImages(f);
      assert.deepEqual([im.count, im.rows, im.cols], [5, 4, 3]);
      assert.deepEqual([...im.pixels], [...pixels]);
    }
    const lab = await write('idx/lab.gz', gzipSync(idxFile(LABELS, [5], labels)));
    assert.deepEqual([...(await readIdxLabels(lab))], [...labels]);
    const pair = await readIdxPair(gz, lab);
    assert.equal(pair.count, 5);
  });

  it('names the file and the problem: bad magic, truncated, trailing bytes, bad gzip, count mismatch', async () => {
    const img = await write('idx/ok-img', idxFile(IMAGES, [5, 4, 3], pixels));
    const lab = await write('idx/ok-lab', idxFile(LABELS, [5], labels));
    await assert.rejects(
      readIdxImages(lab),
      (e: Error) => e.message.includes(lab) && /magic number 0x00000801, expected 0x00000803.*IDX labels file/.test(e.message),
    );
    const short = await write('idx/short', idxFile(IMAGES, [5, 4, 3], pixels.subarray(0, 50)));
    await assert.rejects(readIdxImages(short), /short: header says \[5, 4, 3\] = 60 data bytes, the file has 50 \(truncated\)/);
    const long = await write('idx/long', Buffer.concat([idxFile(LABELS, [5], labels), Buffer.from([0])]));
    await assert.rejects(readIdxLabels(long), /trailing bytes/);
    const header = await write('idx/header', idxFile(IMAGES, [5, 4, 3], pixels).subarray(0, 10));
    await assert.rejects(readIdxImages(header), /truncated header, 10 bytes of 16/);
    const gz = gzipSync(idxFile(IMAGES, [5, 4, 3], pixels));
    const badGz = await write('idx/bad.gz', gz.subarray(0, gz.length - 10));
    await assert.rejects(readIdxImages(badGz), /bad\.gz: gzip data is truncated or corrupt/);
    const lab4 = await write('idx/lab4', idxFile(LABELS, [4], labels.subarray(0, 4)));
    await assert.rejects(readIdxPair(img, lab4), /has 5 images but .*lab4 has 4 labels/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('folders', () => {
  it('class index = code-point order of class folders; images found recursively, extensions case-insensitive', async () => {
    const png = await solid(4, 4, '#808080').png().toBuffer();
    for (const f of [
      'cls/b/1.png',
      'cls/a/2.PNG',
      'cls/a/sub/3.Jpeg',
      'cls/B/4.webp',
      'cls/a-x/5.tif',
      'cls/a/notes.txt',
      'cls/a/.6.png',
      'cls/.hidden/7.png',
      'cls/top.png',
    ])
      await write(f, png);
    const { classNames, files } = await readClassFolder(path.join(tmp, 'cls'));
    assert.deepEqual(classNames, ['B', 'a', 'a-x', 'b']);
    assert.deepEqual(files, [
      { path: 'B/4.webp', label: 0 },
      { path: 'a/2.PNG', label: 1 },
      { path: 'a/sub/3.Jpeg', label: 1 },
      { path: 'a-x/5.tif', label: 2 },
      { path: 'b/1.png', label: 3 },
    ]);
    assert.deepEqual(await listImages(path.join(tmp, 'cls')), ['B/4.webp', 'a-x/5.tif', 'a/2.PNG', 'a/sub/3.Jpeg', 'b/1.png', 'top.png']);
    const flat = await parseDatasetSpec(`files:${path.join(tmp, 'cls')}`);
    assert.equal(flat.size, 6);
    assert.deepEqual(flat.item(5), { index: 5, label: -1, path: 'top.png', ref: 'top.png' });
  });

  it('split synonyms as timm: val finds validation; the split folder itself is accepted', async () => {
    const png = await solid(4, 4, '#808080').png().toBuffer();
    await write('inet/train/cat/1.png', png);
    await write('inet/train/dog/2.png', png);
    await write('inet/validation/cat/3.png', png);
    const root = path.join(tmp, 'inet');
    assert.equal(await resolveSplit(root, 'val'), path.join(root, 'validation'));
    assert.equal(await resolveSplit(root, 'training'), path.join(root, 'train'));
    assert.equal(await resolveSplit(path.join(root, 'validation'), 'val'), path.join(root, 'validation'));
    await assert.rejects(resolveSplit(root, 'test'), /split "test": no folder test in .*inet; its folders are: train, validation/);
    const val = await parseDatasetSpec(root, { split: 'val' });
    assert.equal(val.spec, path.join(root, 'validation'));
    assert.deepEqual([val.size, val.classNames], [1, ['cat']]);
    assert.equal((await parseDatasetSpec(path.join(root, 'train'))).size, 2);
    await assert.rejects(parseDatasetSpec(root), /holds split folders \(train, validation\), not class folders: give a split/);
    await assert.rejects(parseDatasetSpec(path.join(tmp, 'nope')), /no such folder .*accepted: a folder path/);
  });
});

// ---------------------------------------------------------------------------------------------
describe('synthetic folders (dataset synth)', () => {
  it('write decodable RGB images of the asked sizes, formats by extension, class i % K, the same bytes for the same seed', async () => {
    const o = { count: 30, classes: 3, minSize: 16, maxSize: 40, seed: 4 };
    const r = await writeSynthFolder(path.join(tmp, 'synth-a'), o);
    await writeSynthFolder(path.join(tmp, 'synth-b'), o);
    assert.equal(r.written, 30);
    const { classNames, files } = await readClassFolder(path.join(tmp, 'synth-a'));
    assert.deepEqual(classNames, ['00_class00', '01_class01', '02_class02']);
    assert.equal(files.length, 30);
    const formats = new Set<string>();
    for (const f of files) {
      const i = Number(path.basename(f.path).split('.')[0]);
      assert.equal(f.label, i % 3, f.path);
      const bytes = await fs.readFile(path.join(tmp, 'synth-a', f.path));
      assert.deepEqual(bytes, await fs.readFile(path.join(tmp, 'synth-b', f.path)), `${f.path} differs between two runs`);
      const meta = await sharp(bytes).metadata();
      const ext = path.extname(f.path).slice(1);
      assert.equal(meta.format, ext === 'jpg' ? 'jpeg' : ext, f.path);
      assert.equal(meta.channels, 3);
      for (const side of [meta.width!, meta.height!]) assert.ok(side >= 16 && side <= 40, `${f.path}: ${meta.width}x${meta.height}`);
      formats.add(ext);
    }
    assert.deepEqual([...formats].sort(), ['jpg', 'png', 'webp']);
    assert.equal(
      Object.values(r.byFormat).reduce((a, b) => a + b, 0),
      30,
    );
  });
});

describe('preprocessing golden values', () => {
  it('a constant colour normalizes to (v/255 - mean)/std exactly, through a bicubic resize and crop', async () => {
    const cfg = preset('vit-b16');
    const x = await preprocessImage(await solid(300, 200, { r: 200, g: 100, b: 50 }).png().toBuffer(), cfg);
    assert.equal(x.length, 3 * 224 * 224);
    [200, 100, 50].forEach((v, c) => assertAll(plane(x, cfg, c), norm(v, cfg, c), `channel ${c}`));
  });

  it('eval geometry follows timm: short side floor(S / cropPct), torchvision rounding', () => {
    const b16 = preset('vit-b16');
    assert.deepEqual(evalPlan(500, 375, b16), {
      resize: { width: 341, height: 256 },
      after: { left: 58, top: 16, width: 224, height: 224 },
      flip: false,
    });
    // (261 - 224) / 2 = 18.5 rounds half to even, as Python's round().
    assert.deepEqual(evalPlan(257, 300, { ...b16, cropPct: 1 }).after, { left: 0, top: 18, width: 224, height: 224 });
    assert.deepEqual(evalPlan(28, 28, preset('fmnist-tiny')), { resize: undefined, after: undefined, flip: false });
  });

  it('the center crop keeps the middle: a 40x20 black|gray|white image gives all gray', async () => {
    // Columns 0-9 black, 10-29 gray, 30-39 white. Nearest resize to 32x16 maps output column x to
    // source floor((x + 0.5) * 1.25); the crop keeps output columns 8..23 = source 10..29: gray.
    // One column off either way would bring in black (7 -> 9) or white (24 -> 30).
    const px = new Uint8Array(40 * 20).map((_, i) => (i % 40 < 10 ? 0 : i % 40 < 30 ? 128 : 255));
    const x = await preprocessImage(await fromPixels(px, 40, 20, 1).png().toBuffer(), gray);
    assertAll(x, norm(128, gray), 'wide image');
    // The same transposed (tall image): rows instead of columns.
    const tall = new Uint8Array(20 * 40).map((_, i) => {
      const y = Math.floor(i / 20);
      return y < 10 ? 0 : y < 30 ? 128 : 255;
    });
    assertAll(await preprocessImage(await fromPixels(tall, 20, 40, 1).png().toBuffer(), gray), norm(128, gray), 'tall image');
  });

  it('raw pixels: the identity plan skips sharp and equals the PNG path exactly; grey -> RGB replicates', async () => {
    const px = Uint8Array.from({ length: 16 * 16 }, (_, i) => (i * 29) % 256);
    const raw = await preprocessPixels(px, { width: 16, height: 16, channels: 1 }, gray);
    assert.deepEqual(
      raw,
      Float32Array.from(px, (v) => norm(v, gray)),
    );
    assert.deepEqual(await preprocessImage(await fromPixels(px, 16, 16, 1).png().toBuffer(), gray), raw);
    const x3 = await preprocessPixels(px, { width: 16, height: 16, channels: 1 }, rgb);
    [0, 1, 2].forEach((c) =>
      assert.deepEqual(
        plane(x3, rgb, c),
        Float32Array.from(px, (v) => norm(v, rgb, c)),
      ),
    );
    await assert.rejects(
      preprocessPixels(px.subarray(1), { width: 16, height: 16, channels: 1 }, gray),
      /255 bytes does not match its shape 16x16x1 \(256 bytes\)/,
    );
  });
});

// ---------------------------------------------------------------------------------------------
describe('decoding', () => {
  const red = { r: 200, g: 10, b: 50 };
  const expectRed = (x: Float32Array, tol = 0) =>
    [200, 10, 50].forEach((v, c) => {
      const worst = plane(x, rgb, c).reduce((m, y) => Math.max(m, Math.abs(y - norm(v, rgb, c))), 0);
      assert.ok(worst <= tol, `channel ${c}: off by ${worst}`);
    });

  it('alpha is flattened onto white', async () => {
    const x = await preprocessImage(await solid(20, 20, { r: 0, g: 0, b: 0, alpha: 0 }, 4).png().toBuffer(), rgb);
    [0, 1, 2].forEach((c) => assertAll(plane(x, rgb, c), norm(255, rgb, c), 'transparent'));
  });

  it('palette PNG, 16-bit PNG and CMYK JPEG decode to the same sRGB colour', async () => {
    const base = solid(20, 20, red);
    expectRed(await preprocessImage(await base.clone().png({ palette: true }).toBuffer(), rgb));
    const png16 = await base.clone().toColourspace('rgb16').png().toBuffer();
    assert.equal((await sharp(png16).metadata()).depth, 'ushort');
    expectRed(await preprocessImage(png16, rgb));
    const cmyk = await base.clone().toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
    // A CMYK round trip is lossy (blue 50 -> 35 here); read as raw channels it would be off by ~200.
    expectRed(await preprocessImage(cmyk, rgb), 20 / 255 / 0.224);
  });

  it('EXIF orientation is applied (orientation 6 = rotate 90 degrees clockwise)', async () => {
    // Stored 32x16: left half black, right half white. Displayed: 16x32, top black, bottom white.
    const px = new Uint8Array(32 * 16 * 3).map((_, i) => (Math.floor(i / 3) % 32 < 16 ? 0 : 255));
    const stored = fromPixels(px, 32, 16, 3).jpeg({ quality: 100 });
    const cfg = { ...rgb, imageSize: 16 };
    const upright = plane(await preprocessImage(await stored.clone().toBuffer(), cfg), cfg, 0);
    const rotated = plane(await preprocessImage(await stored.clone().withMetadata({ orientation: 6 }).toBuffer(), cfg), cfg, 0);
    const [black, white] = [norm(0, cfg), norm(255, cfg)];
    const near = (a: number, b: number) => Math.abs(a - b) < 0.1;
    assert.ok(near(upright[0], black) && near(upright[15], white), 'upright: left black, right white');
    assert.ok(near(rotated[0], black) && near(rotated[15], black), 'rotated: first row black');
    assert.ok(near(rotated[15 * 16], white) && near(rotated[15 * 16 + 15], white), 'rotated: last row white');
  });

  it('animated GIF and WebP: the first frame', async () => {
    const frame = (r: number, b: number) => new Uint8Array(8 * 8 * 3).map((_, i) => [r, 0, b][i % 3]);
    const frames = Buffer.concat([frame(255, 0), frame(0, 255)]);
    const anim = () => sharp(frames, { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } as CreateRaw });
    for (const bytes of [await anim().gif().toBuffer(), await anim().webp({ lossless: true }).toBuffer()]) {
      assert.equal((await sharp(bytes).metadata()).pages, 2);
      const x = await preprocessImage(bytes, { ...rgb, imageSize: 8 });
      assert.ok(x[0] > 2 && x[2 * 64] < -1.5, `red frame expected, got r ${x[0]} b ${x[128]}`);
    }
  });

  it('every bad file is skipped with its reason; the good ones load in order', async () => {
    const good = await solid(64, 48, red).jpeg().toBuffer();
    const png = await fromPixels(
      new Uint8Array(60 * 60 * 3).map((_, i) => (i * 13) % 256),
      60,
      60,
      3,
    )
      .png()
      .toBuffer();
    const files: [string, Buffer | string][] = [
      ['0-good.jpg', good],
      ['1-empty.jpg', Buffer.alloc(0)],
      ['2-truncated.jpg', good.subarray(0, Math.floor(good.length * 0.6))],
      ['3-truncated.png', png.subarray(0, Math.floor(png.length * 0.6))],
      ['4-text.jpg', 'this is not an image\n'],
      ['5-huge.png', await solid(2000, 1000, red).png().toBuffer()],
      ['6-good.png', png],
      ['7-corrupt.png', Buffer.from(png.map((v, i) => (i > png.length / 2 && i < png.length / 2 + 64 ? v ^ 0x55 : v)))],
    ];
    for (const [name, data] of files) await write(`bad/c/${name}`, data);
    const ds = await parseDatasetSpec(path.join(tmp, 'bad'), { limitInputPixels: 1_000_000 });
    const b = await loadBatch(ds, [0, 1, 2, 3, 4, 5, 6, 7], rgb, { concurrency: 3 });
    assert.deepEqual(b.indices, [0, 6]);
    assert.deepEqual([...b.labels], [0, 0]);
    assert.equal(b.images.length, 2 * 3 * 16 * 16);
    assert.deepEqual(
      b.skipped.map((s) => [s.ref, s.reason]),
      [
        ['c/1-empty.jpg', 'empty'],
        ['c/2-truncated.jpg', 'truncated'],
        ['c/3-truncated.png', 'truncated'],
        ['c/4-text.jpg', 'unsupported-format'],
        ['c/5-huge.png', 'too-many-pixels'],
        ['c/7-corrupt.png', 'corrupt'],
      ],
    );
    assert.match(b.skipped[4].message, /more than limitInputPixels = 1000000 pixels/);
    await assert.rejects(ds.load(1, rgb), (e: unknown) => e instanceof DecodeError && e.reason === 'empty');
    // A bug is not a bad file: it is not turned into a DecodeError.
    await assert.rejects(
      decoding(good, {}, async () => {
        throw new TypeError('bug');
      }),
      (e: unknown) => e instanceof TypeError,
    );
    // A file that vanished after listing is reported too, not thrown.
    await fs.rm(path.join(tmp, 'bad/c/0-good.jpg'));
    assert.equal((await loadBatch(ds, [0], rgb)).skipped[0].reason, 'unreadable');
  });
});

// ---------------------------------------------------------------------------------------------
describe('augmentation', () => {
  it('random-resized crop boxes stay inside the image, within the scale range when not falling back', () => {
    const rng = seedrandom('crop');
    for (let t = 0; t < 500; t++) {
      const [W, H] = [20 + Math.floor(rng() * 300), 20 + Math.floor(rng() * 300)];
      const b = randomResizedCrop(W, H, { scale: [0.3, 1], ratio: [3 / 4, 4 / 3] }, rng);
      assert.ok(
        b.left >= 0 && b.top >= 0 && b.width >= 1 && b.height >= 1 && b.left + b.width <= W && b.top + b.height <= H,
        JSON.stringify({ W, H, b }),
      );
      // Rounding w and h to integers moves the area by at most (w + h) / 2 + 1/4.
      const fellBack = b.width === W || b.height === H;
      assert.ok(fellBack || b.width * b.height >= 0.3 * W * H - (b.width + b.height) / 2 - 0.25, JSON.stringify({ W, H, b }));
    }
    assert.throws(
      () => randomResizedCrop(10, 10, { scale: [0.5, 0.2], ratio: [1, 1] }, rng),
      /scale \[0.5, 0.2\]: expected \[lo, hi\] with 0 < lo <= hi <= 1/,
    );
  });

  it('flip mirrors exactly; a full-image crop equals eval; same seed, same result at any concurrency', async () => {
    const px = Uint8Array.from({ length: 16 * 16 }, (_, i) => (i * 7) % 256);
    const shape = { width: 16, height: 16, channels: 1 } as const;
    const full = { scale: [1, 1] as [number, number], ratio: [1, 1] as [number, number] };
    const evalX = await preprocessPixels(px, shape, gray);
    // Find a seed whose flip coin says yes / no.
    const run = (seed: string) => preprocessPixels(px, shape, gray, { augment: { ...full, flip: true, rng: seedrandom(seed) } });
    const outs = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map(run));
    const mirrored = Float32Array.from(evalX, (_, i) => evalX[Math.floor(i / 16) * 16 + 15 - (i % 16)]);
    assert.ok(
      outs.some((o) => o.every((v, i) => v === evalX[i])),
      'some unflipped',
    );
    assert.ok(
      outs.some((o) => o.every((v, i) => v === mirrored[i])),
      'some flipped',
    );
    assert.ok(outs.every((o) => o.every((v, i) => v === evalX[i]) || o.every((v, i) => v === mirrored[i])));

    const ds = await parseDatasetSpec('fashion-mnist:test[:64]');
    const fm = preset('fmnist-tiny');
    const augment = { scale: [0.3, 1] as [number, number], ratio: [3 / 4, 4 / 3] as [number, number], flip: true };
    const idx = Array.from({ length: 64 }, (_, i) => 63 - i);
    const a = await loadBatch(ds, idx, fm, { augment, rng: seedrandom('s'), concurrency: 1 });
    const b = await loadBatch(ds, idx, fm, { augment, rng: seedrandom('s'), concurrency: 8 });
    assert.deepEqual(a.images, b.images);
    const byIndex = (i: number) => seedrandom(`r:${i}`);
    const c = await loadBatch(ds, idx, fm, { augment, rngFor: byIndex, concurrency: 8 });
    const d = await loadBatch(ds, idx.slice(0, 1), fm, { augment, rngFor: byIndex });
    assert.deepEqual(c.images.subarray(0, d.images.length), d.images, 'an item augments the same whatever batch it is in');
    assert.notDeepEqual(a.images, (await loadBatch(ds, idx, fm)).images);
    await assert.rejects(loadBatch(ds, idx, fm, { augment }), /augment needs rngFor or rng/);
  });

  it('mixup: lambda ~ Beta(a, a); images and targets mixed with the reversed batch', () => {
    const rng = seedrandom('beta');
    const xs = Array.from({ length: 20000 }, () => sampleBeta(0.5, 0.5, rng));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.01 && Math.abs(variance - 0.125) < 0.005, `mean ${mean} var ${variance}`); // Beta(.5,.5): 1/2, 1/8
    const images = Float32Array.from([1, 1, 2, 2, 3, 3]); // 3 images of 2 floats
    const labels = Int32Array.from([0, 1, 2]);
    const m = mixup(images, labels, 3, { alpha: 0.4, smoothing: 0.3, rng: seedrandom('m') });
    const l = m.lambda;
    assert.deepEqual(m.images, Float32Array.from([l + 3 * (1 - l), l + 3 * (1 - l), 2, 2, 3 * l + (1 - l), 3 * l + (1 - l)]));
    const [on, off] = [0.8, 0.1];
    assert.deepEqual(m.targets.subarray(0, 3), Float32Array.from([l * on + (1 - l) * off, off, l * off + (1 - l) * on]));
    assert.deepEqual(images, Float32Array.from([1, 1, 2, 2, 3, 3]), 'input untouched');
  });
});

// ---------------------------------------------------------------------------------------------
describe('specs, Fashion-MNIST, batches and export', () => {
  it('fashion-mnist:test is the committed t10k pair: 10000 items, 10 named classes', async () => {
    const [images] = findFashionMnist('test');
    assert.equal(images, path.resolve(import.meta.dirname, '../datasets/fashion-mnist/t10k-images-idx3-ubyte.gz'));
    const ds = await parseDatasetSpec('fashion-mnist:test');
    assert.deepEqual([ds.spec, ds.size, ds.pixels], ['fashion-mnist:test', 10000, { width: 28, height: 28, channels: 1 }]);
    assert.equal(ds.classNames[0], 'T-shirt/top');
    assert.equal(ds.classNames[9], 'Ankle boot');
    assert.deepEqual(ds.item(0), { index: 0, label: 9, ref: 'idx:#0' }); // the first test image is an ankle boot
    assert.equal((await ds.bytes(0)).length, 784);
    assert.throws(
      () => findFashionMnist('train', [path.join(tmp, 'none')]),
      /not found in .*none.*apt-get install dataset-fashion-mnist.*scripts\/download-fashion-mnist\.sh/,
    );
    assert.throws(() => findFashionMnist('val'), /unknown split; accepted: fashion-mnist:train, fashion-mnist:test/);
    assert.equal(fashionMnistDirs()[1], '/usr/share/datasets/fashion-mnist');
    await assert.rejects(parseDatasetSpec('fashion-mnist:test', { split: 'val' }), /applies to class folders only/);
  });

  it('slices [a:b] as Python: open ends, negatives, nesting; refs keep the source position', async () => {
    const ds = await parseDatasetSpec('fashion-mnist:test');
    const cases: [string, number, number][] = [
      ['[:100]', 0, 100],
      ['[9990:]', 9990, 10000],
      ['[-5:]', 9995, 10000],
      ['[10:5]', 10, 10],
      ['[100:200][10:20]', 110, 120],
    ];
    for (const [s, a, b] of cases) {
      const sl = await parseDatasetSpec(`fashion-mnist:test${s}`);
      assert.equal(sl.size, b - a, s);
      if (sl.size > 0) {
        assert.deepEqual(sl.item(0), { ...ds.item(a), index: 0 });
        assert.equal(sl.item(0).ref, `idx:#${a}`);
        assert.deepEqual(await sl.bytes(sl.size - 1), await ds.bytes(b - 1));
      }
      assert.equal((await parseDatasetSpec(sl.spec)).size, sl.size, `canonical spec ${sl.spec} parses again`);
    }
    assert.throws(() => ds.item(10000), /item 10000 is outside 0..9999/);
  });

  it('batches: prefetched, in order, last batch smaller; the caller may stop early', async () => {
    const ds = await parseDatasetSpec('fashion-mnist:test[:50]');
    const fm = preset('fmnist-tiny');
    const seen: number[] = [];
    for await (const b of batches(
      ds,
      Array.from({ length: 50 }, (_, i) => i),
      16,
      fm,
      { prefetch: 2 },
    )) {
      assert.equal(b.images.length, b.indices.length * 784);
      seen.push(...b.indices);
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 50 }, (_, i) => i),
    );
    for await (const b of batches(ds, [5, 3, 1], 2, fm)) {
      assert.deepEqual(b.indices, [5, 3]);
      break;
    }
  });

  it('export -> folder round trip: same labels and exactly the same model input as the IDX pixels', async () => {
    const n = 40;
    const px = Uint8Array.from({ length: n * 784 }, (_, i) => (i * 2654435761) % 251);
    const labels = Uint8Array.from({ length: n }, (_, i) => (i * 7) % 10);
    const img = await write('rt/images.gz', gzipSync(idxFile(IMAGES, [n, 28, 28], px)));
    const lab = await write('rt/labels', idxFile(LABELS, [n], labels));
    const src = await parseDatasetSpec(`idx:${img},${lab}`);
    const out = path.join(tmp, 'rt/out');
    const res = await exportDataset(src, out, { limit: 30 });
    assert.equal(res.written, 30);
    assert.deepEqual(res.classFolders.slice(0, 2), ['00_0', '01_1']);
    const back = await parseDatasetSpec(out);
    assert.equal(back.size, 30);
    assert.deepEqual(back.classNames, res.classFolders);
    const fm = preset('fmnist-tiny');
    const x = await loadBatch(
      back,
      Array.from({ length: 30 }, (_, i) => i),
      fm,
    );
    const sourceIndex = (d: Dataset, i: number) => Number(path.basename(d.item(i).path!, '.png'));
    const y = await loadBatch(
      src,
      x.indices.map((i) => sourceIndex(back, i)),
      fm,
    );
    assert.deepEqual([...x.labels], [...y.labels]);
    assert.deepEqual(x.images, y.images);
    // Fashion-MNIST names become sortable folder names.
    assert.equal(classFolderName(0, 'T-shirt/top', 10), '00_T-shirt_top');
    assert.equal(classFolderName(9, 'Ankle boot', 10), '09_Ankle_boot');
    assert.equal(classFolderName(7, 'x', 1000), '007_x');
    await assert.rejects(exportDataset(await parseDatasetSpec(`files:${out}`), path.join(tmp, 'rt/o2')), /has no classes/);
  });
});
