// The shipped model (models/matvit-fmnist): loadable with its fingerprint, within the size budget,
// a menu the service can use, and still the classifier its model card describes on the bundled
// test images (a regression check of the weights and of preprocessing; the card's figures are on
// all 10k test images, this reads the first 1000).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadCheckpoint } from '../src/model/checkpoint.ts';
import { GRANULARITY_NAMES, checkFfnDims, granularityDims } from '../src/model/config.ts';
import { matvit } from './helpers/cli.ts';

const MODEL = path.resolve(import.meta.dirname, '../models/matvit-fmnist');

describe('the shipped model', () => {
  it('loads (fingerprint checked), weighs at most 10 MB and carries a menu with s, m, l, xl', () => {
    const { meta } = loadCheckpoint(MODEL);
    assert.ok(fs.statSync(path.join(MODEL, 'model.safetensors')).size <= 10 * 2 ** 20);
    const c = meta.model;
    for (const g of GRANULARITY_NAMES)
      assert.ok(
        meta.menu.some((e) => e.ffnDims.join() === granularityDims(c, g).join()),
        `menu has ${g}`,
      );
    for (const e of meta.menu) {
      checkFfnDims(c, e.ffnDims);
      assert.ok(e.top1 !== undefined && e.top1 > 0.85, `${e.name}: validation top-1 ${e.top1}`);
    }
  });

  it('classifies the first 1000 test images at >= 85% top-1 with every granularity', { timeout: 120_000 }, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-shipped-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const out = path.join(dir, 'r.json');
    await matvit('eval', 'classify', '--model', MODEL, '--data', 'fashion-mnist:test[:1000]', '--json', out);
    const { rows, count } = JSON.parse(fs.readFileSync(out, 'utf8')) as { rows: { name: string; top1: number }[]; count: number };
    assert.equal(count, 1000);
    assert.deepEqual(
      rows.map((r) => r.name),
      ['s', 'm', 'l', 'xl'],
    );
    for (const r of rows) assert.ok(r.top1 >= 0.85, `${r.name}: top-1 ${r.top1}`);
  });
});
