// `matvit import` as a user runs it: a 224 model in timm's layout (timm's vit_tiny_patch16_224 with
// random weights, written by test/fixtures/write_timm.py) imported, shown by `matvit info`, indexed
// by the unchanged `matvit index build`, served by `matvit serve` and made nested by `matvit
// matformerize`; and the CLI's errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import seedrandom from 'seedrandom';
import { BIN, fails, matvit } from './helpers/cli.ts';
import { runFixture, tempDir } from './fixtures/python.ts';

const root = tempDir({ after });
const src = path.join(root, 'hub');
const model = path.join(root, 'model');
const images = path.join(root, 'images');

/** Random-noise photos of different sizes and aspect ratios (resized and center-cropped to 224 by the model's preprocessing). */
async function writeImages(n: number) {
  fs.mkdirSync(images);
  const rng = seedrandom('import-cli');
  for (let i = 0; i < n; i++) {
    const [w, h] = [200 + Math.floor(rng() * 200), 200 + Math.floor(rng() * 200)];
    const pixels = Buffer.from(Array.from({ length: w * h * 3 }, () => Math.floor(rng() * 256)));
    await sharp(pixels, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toFile(path.join(images, `photo-${i}.png`));
  }
}

describe('an imported 224 model (timm vit_tiny_patch16_224) through index build and serve', () => {
  before(async () => {
    runFixture('write_timm.py', src, 'tiny224');
    await writeImages(6);
  });

  test('matvit import prints what it wrote; matvit info shows the preprocessing, embedding and source', async () => {
    const { stdout } = await matvit('import', '--from', 'timm', '--weights', src, '--out', model);
    assert.match(stdout, /^imported vit_tiny_patch16_224\.augreg_in21k_ft_in1k \(timm\) -> /);
    assert.match(stdout, /224x224 x3, patch 16, dim 192, depth 12, heads 3, mlp 768, 10 outputs; embedding pre_logits \(192-d\)/);
    assert.match(stdout, /preprocessing: mean \[0\.5,0\.5,0\.5\], std \[0\.5,0\.5,0\.5\], crop 0\.9, bicubic/);
    const info = JSON.parse((await matvit('info', '--model', model, '--json')).stdout);
    assert.deepEqual(
      [info.model.imageSize, info.model.dim, info.model.depth, info.model.mlpDim, info.model.embedding],
      [224, 192, 12, 768, 'pre_logits'],
    );
    assert.deepEqual([info.model.mean, info.model.cropPct, info.model.interpolation], [[0.5, 0.5, 0.5], 0.9, 'bicubic']);
    const prov = info.provenance.import;
    assert.equal(prov.format, 'timm');
    assert.equal(prov.architecture, 'vit_tiny_patch16_224.augreg_in21k_ft_in1k');
    assert.match(prov.command, /^matvit import --from timm --weights /);
    const weights = prov.files.find((f: { file: string }) => f.file.endsWith('model.safetensors'));
    assert.match(weights.sha256, /^[0-9a-f]{64}$/);
    const text = (await matvit('info', '--model', model)).stdout;
    assert.match(text, /embedding: "pre_logits"/);
    assert.match(
      text,
      /preprocessing: short side resized to 248 \(bicubic\), center crop 224, mean \[0\.5,0\.5,0\.5\], std \[0\.5,0\.5,0\.5\]/,
    );
    assert.match(text, /imported from: timm vit_tiny_patch16_224\.augreg_in21k_ft_in1k/);
  });

  test('index build and serve run on it unchanged; a photo searched at xl finds itself first', async () => {
    const index = path.join(root, 'index');
    const built = JSON.parse(
      (await matvit('index', 'build', '--model', model, '--data', `files:${images}`, '--out', index, '--no-progress', '--json')).stdout,
    );
    assert.equal(built.added, 6, JSON.stringify(built));

    const child = spawn(process.execPath, [BIN, 'serve', '--index', index, '--port', '0', '--log-level', 'warn', '--threads', '2'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exit = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      let stderr = '';
      child.stdout.resume();
      const url = await new Promise<string>((resolve, reject) => {
        child.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          const m = /listening on (http:\/\/\S+)/.exec(stderr);
          if (m) resolve(m[1]);
        });
        exit.then((code) => reject(new Error(`serve exited ${code} before listening:\n${stderr}`)));
      });
      for (let i = 0; (await fetch(`${url}/readyz`)).status !== 200; i++) {
        assert.ok(i < 600, 'ready within 60 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      const query = fs.readFileSync(path.join(images, 'photo-3.png'));
      const r = await fetch(`${url}/v1/search?encoder=xl&k=3`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: new Uint8Array(query),
      });
      const body = await r.json();
      assert.equal(r.status, 200, JSON.stringify(body));
      assert.equal(body.results.length, 3);
      assert.equal(body.results[0].path, 'photo-3.png');
      assert.ok(body.results[0].score > 0.999, `self-similarity ${body.results[0].score}`);
      assert.equal(body.encoder.name, 'xl');
    } finally {
      child.kill('SIGTERM');
      await exit;
    }
  });

  test('matvit matformerize runs on it and keeps its source and preprocessing', async () => {
    const nested = path.join(root, 'matformerized');
    await matvit('matformerize', '--model', model, '--out', nested, '--data', `files:${images}`, '--samples', '6', '--batch', '6');
    const info = JSON.parse((await matvit('info', '--model', nested, '--json')).stdout);
    assert.deepEqual([info.model.imageSize, info.model.mlpDim, info.model.mean, info.model.cropPct], [224, 768, [0.5, 0.5, 0.5], 0.9]);
    assert.equal(info.provenance.import.architecture, 'vit_tiny_patch16_224.augreg_in21k_ft_in1k');
  });
});

describe('matvit import: errors name the flag and what is wrong', () => {
  const dir = path.join(root, 'small');
  before(() => runFixture('write_timm.py', dir, 'deit3'));

  test('bad flags exit 2', async () => {
    let r = await fails(['import', '--from', 'onnx', '--weights', dir, '--out', path.join(root, 'x')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--from: .*timm.*big_vision.*scenic.*\(received "onnx"\)/);
    r = await fails(['import', '--from', 'timm', '--weights', path.join(root, 'missing'), '--out', path.join(root, 'x')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--weights: .*missing does not exist/);
    r = await fails(['import', '--from', 'timm', '--weights', dir, '--out', path.join(root, 'x'), '--mean', '0.5,abc']);
    assert.match(r.stderr, /--mean: expected comma-separated numbers/);
  });

  test('an existing checkpoint is never overwritten; an image size that the patches do not tile is refused', async () => {
    const out = path.join(root, 'once');
    await matvit('import', '--from', 'timm', '--weights', dir, '--out', out);
    const before = fs.readFileSync(path.join(out, 'config.json'), 'utf8');
    let r = await fails(['import', '--from', 'timm', '--weights', dir, '--out', out, '--name', 'other']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--out: .* already holds a checkpoint/);
    assert.equal(fs.readFileSync(path.join(out, 'config.json'), 'utf8'), before);
    r = await fails(['import', '--from', 'timm', '--weights', dir, '--out', path.join(root, 'y'), '--image-size', '40']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--image-size 40: must be a multiple of the patch size 16/);
  });

  test('preprocessing flags override the source and land in config.json', async () => {
    const out = path.join(root, 'flags');
    await matvit(
      'import',
      '--from',
      'timm',
      '--weights',
      dir,
      '--out',
      out,
      '--mean',
      '0.4,0.4,0.4',
      '--std',
      '0.2,0.2,0.2',
      '--crop-pct',
      '0.8',
      '--interpolation',
      'bilinear',
      '--name',
      'mine',
    );
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).model;
    assert.deepEqual(
      [cfg.name, cfg.mean, cfg.std, cfg.cropPct, cfg.interpolation],
      ['mine', [0.4, 0.4, 0.4], [0.2, 0.2, 0.2], 0.8, 'bilinear'],
    );
  });
});
