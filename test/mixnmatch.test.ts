// Mix'n'Match: the least-slope enumeration, the spread over MFLOPs, the Pareto front against a
// brute-force reference, recall with the self match dropped, and `matvit mixnmatch --write-menu`
// end to end on a tiny random-weight model.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import seedrandom from 'seedrandom';
import { parseDatasetSpec } from '../src/data/dataset.ts';
import { createEncoder } from '../src/engine/encoder.ts';
import { classify } from '../src/eval/classify.ts';
import {
  type MixRow,
  type Scored,
  checkFront,
  familyZ,
  pairedDiff,
  menuEntries,
  mixnmatchConfigs,
  paretoFront,
  spreadByMflops,
  withoutSelf,
} from '../src/eval/mixnmatch.ts';
import { loadCheckpoint, readMeta, saveCheckpoint } from '../src/model/checkpoint.ts';
import { GRANULARITY_NAMES, granularityDims } from '../src/model/config.ts';
import { mflops } from '../src/model/flops.ts';
import { initWeights } from '../src/model/weights.ts';
import { tinyConfig, tinyFmnistConfig } from './helpers/tiny.ts';
import { matvit } from './helpers/cli.ts';

/** Every per-layer assignment of the 4 granularities, by brute force, filtered by the paper's rule. */
function leastSlopeReference(depth: number, mlpDim: number): string[] {
  const widths = [mlpDim / 8, mlpDim / 4, mlpDim / 2, mlpDim];
  const out: string[] = [];
  for (let code = 0; code < 4 ** depth; code++) {
    const g = Array.from({ length: depth }, (_, i) => Math.floor(code / 4 ** (depth - 1 - i)) % 4);
    const nonDecreasing = g.every((x, i) => i === 0 || x >= g[i - 1]);
    if (nonDecreasing && g[depth - 1] - g[0] <= 1) out.push(g.map((x) => widths[x]).join());
  }
  return out.sort();
}

describe("Mix'n'Match enumeration", () => {
  it('depth 6: the 19 least-slope configs, non-decreasing, at most two adjacent granularities, cheapest first', () => {
    const c = tinyConfig({ depth: 6, mlpDim: 512 });
    const configs = mixnmatchConfigs(c);
    assert.equal(configs.length, 19);
    assert.deepEqual(configs.map((x) => x.ffnDims.join()).sort(), leastSlopeReference(6, 512));
    for (const x of configs) {
      assert.ok(
        x.ffnDims.every((w, i) => i === 0 || w >= x.ffnDims[i - 1]),
        `${x.name} non-decreasing`,
      );
      const used = new Set(x.ffnDims);
      assert.ok(
        used.size <= 2 && (used.size === 1 || Math.max(...used) === 2 * Math.min(...used)),
        `${x.name} uses adjacent granularities`,
      );
      assert.equal(x.mflops, mflops(c, x.ffnDims));
      assert.equal(x.uniform, used.size === 1);
    }
    assert.deepEqual(
      configs.filter((x) => x.uniform).map((x) => x.name),
      ['s', 'm', 'l', 'xl'],
    );
    assert.ok(configs.every((x, i) => i === 0 || x.mflops > configs[i - 1].mflops));
  });

  it('depth 1: only the 4 uniform granularities', () => {
    const configs = mixnmatchConfigs(tinyConfig({ depth: 1 }));
    assert.deepEqual(
      configs.map((x) => x.name),
      ['s', 'm', 'l', 'xl'],
    );
  });

  it('--max-configs keeps N, the uniform ones always, spread over MFLOPs', () => {
    const all = mixnmatchConfigs(tinyConfig({ depth: 6, mlpDim: 512 }));
    const maxGap = (xs: { mflops: number }[]) => Math.max(...xs.slice(1).map((x, i) => x.mflops - xs[i].mflops));
    for (const n of [4, 5, 8, 12]) {
      const kept = spreadByMflops(all, n);
      assert.equal(kept.length, n);
      assert.deepEqual(
        kept.filter((x) => x.uniform).map((x) => x.name),
        ['s', 'm', 'l', 'xl'],
      );
      assert.ok(kept.every((x) => all.includes(x)) && kept.every((x, i) => i === 0 || x.mflops > kept[i - 1].mflops));
      // Spread: no wider gap than keeping the uniform ones plus the cheapest mixes.
      const naive = [...all.filter((x) => x.uniform), ...all.filter((x) => !x.uniform).slice(0, n - 4)].sort((a, b) => a.mflops - b.mflops);
      assert.ok(maxGap(kept) <= maxGap(naive), `n=${n}: max gap ${maxGap(kept)} vs ${maxGap(naive)}`);
    }
    // The first extra config goes into the widest gap, between l and xl.
    const [l, xl] = all.filter((x) => x.name === 'l' || x.name === 'xl');
    const extra = spreadByMflops(all, 5).find((x) => !x.uniform)!;
    assert.ok(extra.mflops > l.mflops && extra.mflops < xl.mflops);
    assert.equal(spreadByMflops(all, 100).length, 19);
    assert.throws(() => spreadByMflops(all, 3), /at least 4/);
  });
});

describe('Pareto front', () => {
  /** p is on the front iff against every other point it is strictly better somewhere, or equal everywhere. */
  const reference = (pts: Scored[]) =>
    pts.map((p, i) =>
      pts.every(
        (q, j) =>
          i === j ||
          (q.mflops === p.mflops && q.top1 === p.top1 && q.recall === p.recall) ||
          p.mflops < q.mflops ||
          p.top1 > q.top1 ||
          p.recall > q.recall,
      ),
    );

  it('equals a brute-force reference on random points, ties included', () => {
    const rng = seedrandom('pareto');
    for (let trial = 0; trial < 300; trial++) {
      const grid = trial % 2 === 0 ? 4 : 1000; // coarse grids make many ties
      const pick = () => Math.floor(rng() * grid) / grid;
      const pts = Array.from({ length: 1 + Math.floor(rng() * 25) }, () => ({
        mflops: 10 + Math.floor(rng() * grid),
        top1: pick(),
        recall: pick(),
      }));
      const front = paretoFront(pts);
      assert.deepEqual(front, reference(pts), JSON.stringify(pts));
      assert.ok(front.some(Boolean));
    }
  });

  it('a point worse on one accuracy survives when cheaper; a costlier equal one is dropped', () => {
    const pts = [
      { mflops: 1, top1: 0.5, recall: 0.5 },
      { mflops: 2, top1: 0.6, recall: 0.4 },
      { mflops: 3, top1: 0.6, recall: 0.4 },
      { mflops: 3, top1: 0.6, recall: 0.4 },
    ];
    assert.deepEqual(paretoFront(pts), [true, true, false, false]);
  });
});

describe('recall and the front check', () => {
  it("withoutSelf drops the query's own row wherever it is", () => {
    // Q = 2, k = 2, lists of k + 1: query 0 finds itself first, query 1 does not find itself.
    const ids = Int32Array.from([0, 5, 6, 7, 8, 9]);
    assert.deepEqual(Array.from(withoutSelf(ids, 2, 2)), [5, 6, 7, 8]);
    assert.deepEqual(Array.from(withoutSelf(Int32Array.from([4, 7, 3, 2, 1, 5]), 2, 2)), [4, 7, 2, 5]); // self in the middle of row 1
  });

  it('familyZ: the two-sided normal quantile at alpha / comparisons (values from normal tables)', () => {
    assert.ok(Math.abs(familyZ(1) - 1.95996) < 1e-4);
    assert.ok(Math.abs(familyZ(17) - 2.97382) < 1e-4);
    assert.equal(familyZ(0), familyZ(1));
  });

  it('pairedDiff: the mean of per-query differences and its standard error', () => {
    // d = [1, 0, 0, 1]: mean 0.5, sample sd sqrt(1/3), se sqrt(1/3) / 2.
    const r = pairedDiff([1, 0, 1, 1], [0, 0, 1, 0]);
    assert.equal(r.diff, 0.5);
    assert.ok(Math.abs(r.se - Math.sqrt(1 / 3) / 2) < 1e-12);
    assert.deepEqual(pairedDiff([0.3, 0.3], [0.1, 0.1]).se, 0);
    assert.throws(() => pairedDiff([1], [1, 0]), /paired outcomes of 1 and 2 queries/);
  });

  it('counts front points between S and XL; a point is worse than the nearest uniform granularity only beyond noise', () => {
    const zero = { diff: 0, se: 0 };
    // paired: this row minus each uniform one; only the comparisons the check reads are set.
    const row = (name: string, m: number, top1: number, recall: number, uniform: boolean, paired: MixRow['paired'] = {}): MixRow => ({
      name,
      ffnDims: [m],
      mflops: m,
      uniform,
      latencyMs: 1,
      top1,
      recall,
      paired: uniform ? { [name]: { top1: zero, recall: zero } } : paired,
    });
    const vs = (top1: number, top1Se: number, recall = 0.01, recallSe = 0.001) => ({
      top1: { diff: top1, se: top1Se },
      recall: { diff: recall, se: recallSe },
    });
    const rows = [
      row('s', 10, 0.5, 0.5, true),
      row('a', 11, 0.52, 0.55, false, { s: vs(0.02, 0.01) }),
      row('m', 20, 0.6, 0.6, true),
      row('b', 21, 0.58, 0.7, false, { m: vs(-0.02, 0.005) }), // 0.02 below m, 4 standard errors: worse
      row('b2', 22, 0.597, 0.72, false, { m: vs(-0.003, 0.002) }), // 1.5 standard errors: noise
      row('xl', 40, 0.7, 1, true),
      row('c', 39, 0.71, 0.9, false, { xl: vs(0.01, 0.004, -0.1, 0.001), m: vs(0.11, 0.01, 0.3, 0.01) }),
    ];
    const onFront = rows.map(() => true);
    const check = checkFront(rows, onFront);
    assert.equal(check.betweenSAndXl, 5);
    // Four mixes compared: Bonferroni at 0.05 two-sided, z = 2.4977 (normal tables).
    assert.equal(check.comparisons, 4);
    assert.ok(Math.abs(check.noiseZ - 2.4977) < 1e-3, `z ${check.noiseZ}`);
    const byName = Object.fromEntries(check.points.map((p) => [p.name, p]));
    assert.equal(byName.a.nearestUniform, 's');
    assert.equal(byName.a.atLeastAsGood, true);
    assert.equal(byName.b.nearestUniform, 'm');
    assert.equal(byName.b.atLeastAsGood, false);
    assert.deepEqual(byName.b.vsNearest.top1, { diff: -0.02, se: 0.005 });
    assert.equal(byName.b2.atLeastAsGood, true);
    assert.equal(byName.b2.atLeastAsGoodAsCheaper, true);
    assert.equal(byName.c.nearestUniform, 'xl');
    assert.equal(byName.c.atLeastAsGood, true); // recall is not compared with the nearest (here XL, the reference)
    assert.equal(byName.c.cheaperUniform, 'm');
    assert.equal(byName.c.atLeastAsGoodAsCheaper, true);
    assert.equal(check.noneWorse, false);
    assert.equal(check.pass, false);
    assert.equal(
      checkFront(
        rows.filter((r) => r.name !== 'b'),
        onFront.slice(1),
      ).noneWorse,
      true,
    );
    assert.throws(() => checkFront([...rows, row('d', 12, 0.6, 0.6, false)], [...onFront, true]), /d: no paired comparison with s/);
    // The menu: the front and every uniform granularity, cheapest first; recallAt10 only for k 10.
    const dominated = [...rows, row('d', 30, 0.5, 0.5, false)];
    const menu = menuEntries(dominated, paretoFront(dominated), 10);
    assert.deepEqual(
      menu.map((m) => m.name),
      ['s', 'a', 'm', 'b', 'b2', 'c', 'xl'],
    );
    assert.equal(menu[0].recallAt10, 0.5);
    assert.equal(menuEntries(rows, onFront, 5)[0].recallAt10, undefined);
  });
});

describe('matvit mixnmatch', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-mixnmatch-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const c = tinyFmnistConfig({ patchSize: 7, depth: 3 });
  const model = path.join(dir, 'model');
  const weights = initWeights(c, 7);
  const before = saveCheckpoint(model, c, weights);

  it('--write-menu: the front goes into config.json, fingerprint unchanged, XL recall 1, exact MFLOPs, top-1 as classify', async () => {
    const out = path.join(dir, 'mnm.json');
    const { stdout } = await matvit(
      'mixnmatch',
      '--model',
      model,
      '--data',
      'fashion-mnist:test[0:200]',
      '--latency-runs',
      '3',
      '--batch',
      '50',
      '--out',
      out,
      '--write-menu',
    );
    assert.match(stdout, /\| submodel \| ffnDims \| MFLOPs \|/);
    assert.match(stdout, /menu of \d+ entries/);
    const report = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(report.kind, 'mixnmatch');
    assert.equal(report.fingerprint, before.fingerprint);
    assert.equal(report.count, 200);
    assert.equal(report.corpusCount, 200);
    assert.equal(report.configs.length, 4 + 3 * 2);
    assert.match(fs.readFileSync(path.join(dir, 'mnm.svg'), 'utf8'), /^<svg/);

    const rows = report.configs as (MixRow & { onFront: boolean })[];
    assert.deepEqual(
      rows.map((r) => r.onFront),
      paretoFront(rows),
    );
    for (const r of rows) {
      assert.equal(r.mflops, mflops(c, r.ffnDims));
      assert.ok(r.latencyMs > 0 && r.top1 >= 0 && r.top1 <= 1 && r.recall >= 0 && r.recall <= 1);
    }
    assert.equal(rows.find((r) => r.name === 'xl')!.recall, 1);

    const meta = readMeta(model);
    assert.equal(meta.fingerprint, before.fingerprint);
    assert.equal(loadCheckpoint(model).meta.fingerprint, before.fingerprint); // weights still match it
    assert.deepEqual(meta.menu, report.menu);
    const frontNames = rows.filter((r) => r.onFront).map((r) => r.name);
    assert.deepEqual(
      report.front.map((f: { name: string }) => f.name),
      frontNames,
    );
    assert.deepEqual(new Set(meta.menu.map((m) => m.name)), new Set([...frontNames, ...GRANULARITY_NAMES]));
    for (const m of meta.menu) {
      const r = rows.find((x) => x.name === m.name)!;
      assert.deepEqual(m, {
        name: r.name,
        ffnDims: r.ffnDims,
        mflops: mflops(c, m.ffnDims),
        latencyMs: r.latencyMs,
        top1: r.top1,
        recallAt10: r.recall,
      });
    }
    assert.equal(meta.menu.find((m) => m.name === 'xl')!.recallAt10, 1);

    // top-1 agrees with `eval classify`'s code path on the same images.
    const enc = await createEncoder('onnx', c, weights);
    try {
      const cls = await classify(
        enc,
        await parseDatasetSpec('fashion-mnist:test[0:200]'),
        GRANULARITY_NAMES.map((g) => ({ name: g, ffnDims: granularityDims(c, g) })),
      );
      for (const r of cls.rows) assert.equal(rows.find((x) => x.name === r.name)!.top1, r.top1, r.name);
    } finally {
      await enc.dispose();
    }
  });

  it('--corpus, --max-configs, --k; bad options name the flag', async () => {
    const out = path.join(dir, 'corpus.json');
    const menuBefore = readMeta(model).menu;
    await matvit(
      'mixnmatch',
      '--model',
      model,
      '--data',
      'fashion-mnist:test[0:100]',
      '--corpus',
      'fashion-mnist:test[100:250]',
      '--max-configs',
      '6',
      '--k',
      '5',
      '--latency-runs',
      '2',
      '--out',
      out,
    );
    const report = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(report.count, 100);
    assert.equal(report.corpusCount, 150);
    assert.equal(report.k, 5);
    assert.equal(report.configs.length, 6);
    assert.equal(report.configs.filter((r: MixRow) => r.uniform).length, 4);
    assert.equal(report.configs.find((r: MixRow) => r.name === 'xl').recall, 1);
    assert.ok(report.front.every((f: { recallAt10?: number }) => f.recallAt10 === undefined));
    assert.deepEqual(readMeta(model).menu, menuBefore); // untouched without --write-menu

    for (const [args, re] of [
      [['--max-configs', '3'], /--max-configs: .*\(received "3"\)/],
      [['--k', '5', '--write-menu'], /--k: the menu stores recall@10/],
    ] as const) {
      const e = await matvit(
        'mixnmatch',
        '--model',
        model,
        '--data',
        'fashion-mnist:test[0:10]',
        '--out',
        path.join(dir, 'x.json'),
        ...args,
      ).then(
        () => assert.fail('should fail'),
        (err: { code: number; stderr: string }) => err,
      );
      assert.equal(e.code, 2);
      assert.match(e.stderr, re);
    }
  });
});
