// `matvit eval retrieval` (src/eval/retrieval.ts): the metric functions against plain-loop
// references, then end-to-end runs on a tiny random model over Fashion-MNIST test images (the CLI as
// a user runs it, and evalRetrieval on an index), checked against embeddings made here.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import seedrandom from 'seedrandom';
import { parseQueryModel } from '../src/cli/eval.ts';
import { parseDatasetSpec } from '../src/data/dataset.ts';
import { createEncoder } from '../src/engine/encoder.ts';
import { type RetrievalResult, type RetrievalRow, cheapestWithin, evalRetrieval, mapAt, nnAccuracy } from '../src/eval/retrieval.ts';
import { type Neighbours, recallAt } from '../src/util/recall.ts';
import { buildIndex } from '../src/index/build.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint.ts';
import { granularityDims } from '../src/model/config.ts';
import { mflops } from '../src/model/flops.ts';
import { initWeights } from '../src/model/weights.ts';
import { matvit } from './helpers/cli.ts';
import { tinyFmnistConfig } from './helpers/tiny.ts';

// ---- plain-loop references, over arrays of lists --------------------------------------------

const valid = (list: number[]) => list.filter((id) => id >= 0);

function refAccuracy(lists: number[][], corpusLabels: number[], queryLabels: number[]): number {
  let n = 0;
  lists.forEach((list, q) => {
    if (list.length > 0 && list[0] >= 0 && queryLabels[q] !== -1 && corpusLabels[list[0]] === queryLabels[q]) n++;
  });
  return n / lists.length;
}

function refRecall(lists: number[][], refs: number[][], k: number): number {
  let sum = 0;
  lists.forEach((list, q) => {
    const truth = valid(refs[q].slice(0, k));
    const found = valid(list.slice(0, k)).filter((id) => truth.includes(id)).length;
    sum += truth.length === 0 ? 1 : found / truth.length;
  });
  return sum / lists.length;
}

function refMap(lists: number[][], corpusLabels: number[], queryLabels: number[], k: number): number {
  let sum = 0;
  lists.forEach((list, q) => {
    const relevant = queryLabels[q] < 0 ? 0 : corpusLabels.filter((l) => l === queryLabels[q]).length;
    if (relevant === 0) return;
    let ap = 0;
    for (let rank = 1; rank <= k; rank++) {
      const id = list[rank - 1];
      if (id === undefined || id < 0 || corpusLabels[id] !== queryLabels[q]) continue;
      const above = list.slice(0, rank).filter((j) => j >= 0 && corpusLabels[j] === queryLabels[q]).length;
      ap += above / rank;
    }
    sum += ap / Math.min(k, relevant);
  });
  return sum / lists.length;
}

/** Lists -> [Q, k] rows padded with -1, as exactKnn returns them. */
function neighbours(lists: number[][], k: number): Neighbours {
  const ids = new Int32Array(lists.length * k).fill(-1);
  lists.forEach((l, q) => ids.set(l.slice(0, k), q * k));
  return { k, ids };
}

describe('retrieval metrics', () => {
  test('1-NN accuracy, recall@k and mAP@k equal plain loops on random lists (short lists, rare and absent labels)', () => {
    const rng = seedrandom('metrics');
    const N = 60,
      Q = 40,
      k = 10;
    // Labels 0..4 are common, 5 has 3 items (fewer relevant than k), 6 is only among the queries,
    // items 3..5 and query 0 are unlabelled (-1: never relevant, even to each other).
    const corpusLabels = Array.from({ length: N }, (_, i) => (i < 3 ? 5 : i < 6 ? -1 : Math.floor(rng() * 5)));
    const queryLabels = Array.from({ length: Q }, (_, q) => (q === 0 ? -1 : q === 1 ? 6 : q < 6 ? 5 : Math.floor(rng() * 5)));
    const shuffled = () => Array.from({ length: N }, (_, i) => i).sort(() => rng() - 0.5);
    // Some lists shorter than k (a small corpus, or a graph search that came back short).
    const lists = Array.from({ length: Q }, (_, q) => shuffled().slice(0, q % 7 === 1 ? Math.floor(rng() * k) : k));
    lists[0] = [3, ...lists[0].filter((id) => id !== 3)].slice(0, k); // unlabelled query, unlabelled 1-NN
    // References overlap the lists in part, so that recall is strictly between 0 and 1; some are
    // shorter than k (the reference of a corpus smaller than k).
    const refs = lists.map((l, q) =>
      [...l.filter(() => rng() < 0.6), ...shuffled()]
        .filter((id, i, a) => a.indexOf(id) === i)
        .slice(0, q % 5 === 2 ? 1 + Math.floor(rng() * (k - 1)) : k),
    );
    const cl = Int32Array.from(corpusLabels),
      ql = Int32Array.from(queryLabels);
    for (const kk of [1, 3, 10]) {
      const nn = neighbours(lists, k);
      assert.ok(Math.abs(recallAt(nn, neighbours(refs, k), kk) - refRecall(lists, refs, kk)) < 1e-12, `recall@${kk}`);
      assert.ok(Math.abs(mapAt(nn, cl, ql, kk) - refMap(lists, corpusLabels, queryLabels, kk)) < 1e-12, `mAP@${kk}`);
    }
    const acc = nnAccuracy(neighbours(lists, k), cl, ql);
    assert.equal(acc, refAccuracy(lists, corpusLabels, queryLabels));
    assert.ok(acc > 0 && acc < 1);
    const r = recallAt(neighbours(lists, k), neighbours(refs, k));
    assert.ok(r > 0.3 && r < 0.9, `recall ${r}`);
    assert.equal(recallAt(neighbours(refs, k), neighbours(refs, k)), 1);
  });

  test('mAP@k by hand: fewer relevant items than k, misses, an unknown label', () => {
    const corpusLabels = Int32Array.from([1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]); // label 1: 3 items
    const ql = Int32Array.from([1, 1, 0, -1]);
    const nn = neighbours(
      [
        [0, 1, 2, 3, 4],
        [2, 4, 0, 1, 3],
        [1, 0, 3, 2, 5],
        [0, 1, 2, 3, 4],
      ],
      5,
    );
    // q0: relevant at ranks 1, 3, 5 of R = 3: (1 + 2/3 + 3/5) / 3. q1: all 3 first: 1.
    // q2: label 0 has 8 items, at ranks 1, 3, 5 of k = 5: (1 + 2/3 + 3/5) / 5. q3: unknown, 0.
    const ap = [(1 + 2 / 3 + 3 / 5) / 3, 1, (1 + 2 / 3 + 3 / 5) / 5, 0];
    assert.ok(Math.abs(mapAt(nn, corpusLabels, ql) - ap.reduce((a, b) => a + b) / 4) < 1e-12);
    assert.equal(nnAccuracy(nn, corpusLabels, ql), 3 / 4);
    assert.throws(() => mapAt(nn, corpusLabels, ql, 6), /k = 6: expected an integer in 1\.\.5/);
  });

  test('cheapestWithin: the cheapest own submodel within the tolerance of XL; baselines never', () => {
    const row = (name: string, mflops: number, top1: number, queryModel?: string): RetrievalRow => ({
      name,
      ffnDims: [],
      mflops,
      mflopsFraction: mflops / 100,
      ...(queryModel && { queryModel }),
      exact: { top1, recall: 1, map: 1 },
      hnsw: { top1, recall: 1, map: 1 },
      sameEncoderTop1: top1,
      imgPerSec: 1,
    });
    const rows = [row('s', 40, 0.79), row('m', 55, 0.797), row('l', 70, 0.8005), row('xl', 100, 0.801), row('base', 10, 0.9, '/b')];
    assert.equal(cheapestWithin(rows, 0.005)?.name, 'm');
    assert.equal(cheapestWithin(rows, 0.001)?.name, 'l');
    assert.equal(cheapestWithin(rows, 0.02)?.name, 's');
    assert.equal(
      cheapestWithin(
        rows.map((r) => (r.name === 'xl' ? row('xl', 100, 0.9) : r)),
        0.005,
      )?.name,
      'xl',
    );
    assert.equal(
      cheapestWithin(
        rows.filter((r) => r.name !== 'xl'),
        0.005,
      ),
      undefined,
    );
  });

  test('--query-model NAME=DIR[:sub]: a colon stays in DIR unless a submodel follows', () => {
    assert.deepEqual(parseQueryModel('base=/runs/b:s'), { name: 'base', dir: '/runs/b', submodel: 's' });
    assert.deepEqual(parseQueryModel('b=runs/b:64,64'), { name: 'b', dir: 'runs/b', submodel: '64,64' });
    assert.deepEqual(parseQueryModel('b=C:\\runs\\b'), { name: 'b', dir: 'C:\\runs\\b' });
    assert.throws(() => parseQueryModel('runs/b'), /"runs\/b" is not NAME=DIR/);
  });
});

// ---- end to end -----------------------------------------------------------------------------

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-retrieval-test-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

// 28x28 gray, 4 tokens + CLS, d_ff 32 (s = 4): an image costs about 30 kFLOPs.
const TINY = tinyFmnistConfig({ name: 'tiny-retrieval', interpolation: 'bilinear', cropPct: 1 });
const CORPUS = 'fashion-mnist:test[0:240]';
const QUERIES = 'fashion-mnist:test[240:300]';
const NAMED = ['s', 'm', 'l', 'xl'] as const;

/** timm's init scaled up (std 0.02 makes every embedding nearly the CLS token's), so neighbours depend on the image. */
function makeModel(out: string, seed: number): string {
  const w = initWeights(TINY, seed);
  for (const t of Object.values(w))
    if (t.shape.length === 2) for (let i = 0; i < t.data.length; i++) t.data[i] *= 1 / (0.02 * Math.sqrt(t.shape[0]));
  return saveCheckpoint(out, TINY, w).fingerprint;
}

/** Every image of a dataset spec embedded in one batch by `ffnDims` of a checkpoint: [N, D], and the labels. */
async function embedHere(modelDir: string, spec: string, ffnDims: number[]): Promise<{ vectors: Float32Array; labels: number[] }> {
  const { weights } = loadCheckpoint(modelDir);
  const ds = await parseDatasetSpec(spec);
  const per = TINY.imageSize * TINY.imageSize;
  const images = new Float32Array(ds.size * per);
  for (let i = 0; i < ds.size; i++) images.set(await ds.load(i, TINY), i * per);
  const enc = await createEncoder('onnx', TINY, weights);
  try {
    return { vectors: (await enc.encode(images, ffnDims)).embeddings, labels: Array.from({ length: ds.size }, (_, i) => ds.item(i).label) };
  } finally {
    await enc.dispose();
  }
}

/**
 * Plain-loop 1-NN accuracy in float64, and the tolerance it deserves: queries whose best two scores
 * are within float noise of each other may go either way between batchings.
 */
function plainNn(
  q: { vectors: Float32Array; labels: number[] },
  c: { vectors: Float32Array; labels: number[] },
): { acc: number; slack: number } {
  const D = TINY.dim;
  let correct = 0,
    close = 0;
  q.labels.forEach((label, i) => {
    let best = -Infinity,
      second = -Infinity,
      at = -1;
    c.labels.forEach((_, j) => {
      let s = 0;
      for (let d = 0; d < D; d++) s += q.vectors[i * D + d] * c.vectors[j * D + d];
      if (s > best) [second, best, at] = [best, s, j];
      else if (s > second) second = s;
    });
    if (c.labels[at] === label) correct++;
    if (best - second < 1e-5) close++;
  });
  return { acc: correct / q.labels.length, slack: close / q.labels.length + 1e-12 };
}

describe('eval retrieval end to end', () => {
  let modelA: string, modelB: string, fpA: string, fpB: string, indexA: string;
  /** 1-NN accuracies recomputed here: `${queryModel}/${sub}` queries against `${corpusModel}/${sub}`. */
  const expected = new Map<string, { acc: number; slack: number }>();

  before(async () => {
    modelA = path.join(root, 'model-a');
    modelB = path.join(root, 'model-b');
    fpA = makeModel(modelA, 0);
    fpB = makeModel(modelB, 1);
    indexA = path.join(root, 'index-a');
    await buildIndex({ checkpoint: loadCheckpoint(modelA), modelDir: modelA, data: CORPUS, out: indexA, batch: 32 });
    const xlA = await embedHere(modelA, CORPUS, granularityDims(TINY, 'xl'));
    for (const g of NAMED) {
      const dims = granularityDims(TINY, g);
      const queries = await embedHere(modelA, QUERIES, dims);
      expected.set(`${g} vs xl`, plainNn(queries, xlA));
      expected.set(`${g} vs ${g}`, plainNn(queries, await embedHere(modelA, CORPUS, dims)));
    }
    const sB = granularityDims(TINY, 's');
    const baseQueries = await embedHere(modelB, QUERIES, sB);
    expected.set('base vs xl', plainNn(baseQueries, xlA));
    expected.set('base vs base', plainNn(baseQueries, await embedHere(modelB, CORPUS, sB)));
  });

  const near = (got: number, key: string) => {
    const e = expected.get(key)!;
    assert.ok(Math.abs(got - e.acc) <= e.slack, `${key}: 1-NN ${got}, plain loop ${e.acc} (slack ${e.slack})`);
  };

  test("the CLI: s/m/l/xl, a Mix'n'Match row and a baseline; figures match a plain loop; JSON, SVG, table", async () => {
    const json = path.join(root, 'retrieval.json');
    const { stdout } = await matvit(
      'eval',
      'retrieval',
      '--model',
      modelA,
      '--corpus',
      CORPUS,
      '--queries',
      QUERIES,
      '--ffn-dims',
      '4,32',
      '--query-model',
      `base=${modelB}:s`,
      '--batch',
      '50',
      '--json',
      json,
    );
    const r = JSON.parse(fs.readFileSync(json, 'utf8')) as RetrievalResult & { command: string };
    assert.equal(r.kind, 'retrieval');
    assert.match(r.command, /^eval retrieval --model /);
    assert.equal(r.fingerprint, fpA);
    assert.deepEqual([r.corpusCount, r.queryCount, r.k, r.skipped.length], [240, 60, 10, 0]);
    assert.deepEqual(r.hnsw, { M: 16, efConstruction: 64, ef: 128, source: 'memory' });
    assert.deepEqual(
      r.rows.map((x) => x.name),
      ['s', 'm', 'l', 'xl', '4,32', 'base'],
    );
    const xlMflops = mflops(TINY, granularityDims(TINY, 'xl'));
    const row = (name: string) => r.rows.find((x) => x.name === name)!;
    for (const g of NAMED) {
      const x = row(g);
      assert.deepEqual(x.ffnDims, granularityDims(TINY, g));
      assert.equal(x.mflopsFraction, mflops(TINY, x.ffnDims) / xlMflops);
      near(x.exact.top1, `${g} vs xl`);
      near(x.sameEncoderTop1, `${g} vs ${g}`);
      for (const f of [x.exact, x.hnsw]) for (const v of Object.values(f)) assert.ok(v >= 0 && v <= 1);
      assert.ok(x.imgPerSec > 0);
    }
    assert.equal(row('xl').exact.recall, 1);
    assert.ok(row('xl').hnsw.recall > 0.95, `HNSW recall of XL ${row('xl').hnsw.recall}`);
    assert.ok(row('s').exact.recall < 1, 'a cheaper submodel finds other neighbours');
    assert.equal(row('xl').sameEncoderTop1, row('xl').exact.top1);
    assert.ok(row('s').mflopsFraction < row('m').mflopsFraction && row('m').mflopsFraction < 1);
    const base = row('base');
    assert.equal(base.queryModel, modelB);
    assert.equal(base.mflopsFraction, mflops(TINY, granularityDims(TINY, 's')) / xlMflops);
    near(base.exact.top1, 'base vs xl');
    near(base.sameEncoderTop1, 'base vs base');
    const best = cheapestWithin(r.rows, 0.005)!;
    assert.deepEqual(r.cheapest, {
      name: best.name,
      mflopsFraction: best.mflopsFraction,
      top1: best.exact.top1,
      xlTop1: row('xl').exact.top1,
    });

    assert.match(stdout, /^\| query encoder \| ffnDims \| MFLOPs \| of XL \| 1-NN exact \| 1-NN HNSW \| R@10 exact/m);
    assert.match(stdout, /^\| base \| 4x2 \|/m);
    assert.ok(
      stdout.includes(
        `cheapest query submodel within 0.5 pt of XL's exact 1-NN (${(100 * row('xl').exact.top1).toFixed(2)}): ${best.name}, `,
      ),
      stdout,
    );
    assert.match(fs.readFileSync(path.join(root, 'retrieval.svg'), 'utf8'), /^<svg[\s\S]*recall@10/);
  });

  test('queries that are also in the corpus are refused (each would find itself), naming how many', async () => {
    const run = (corpus: string, queries: string) =>
      (async () =>
        evalRetrieval({
          modelDir: modelA,
          checkpoint: loadCheckpoint(modelA),
          corpus: await parseDatasetSpec(corpus),
          queries: await parseDatasetSpec(queries),
          submodels: [],
          k: 5,
        }))();
    await assert.rejects(
      run('fashion-mnist:test[0:240]', 'fashion-mnist:test[200:260]'),
      /^Error: 40 of the queries fashion-mnist:test\[200:260\] are also in the corpus/,
    );
    await assert.rejects(run('fashion-mnist:test[0:240]', 'fashion-mnist:test'), /240 of the queries/);
  });

  test('--index: the index vectors and graph are searched; a model of another fingerprint is refused, naming both', async () => {
    const r = await evalRetrieval({
      modelDir: modelA,
      checkpoint: loadCheckpoint(modelA),
      corpus: await parseDatasetSpec(CORPUS),
      queries: await parseDatasetSpec(QUERIES),
      submodels: [{ name: 's', ffnDims: granularityDims(TINY, 's') }],
      indexDir: indexA,
      k: 5,
    });
    assert.deepEqual(r.hnsw, { M: 16, efConstruction: 64, ef: 128, source: 'index' });
    assert.deepEqual(
      r.rows.map((x) => x.name),
      ['s', 'xl'],
    ); // XL added: recall's reference
    assert.equal(r.corpusCount, 240);
    assert.equal(r.rows[1].exact.recall, 1);
    near(r.rows[0].exact.top1, 's vs xl');
    near(r.rows[1].exact.top1, 'xl vs xl');
    near(r.rows[0].sameEncoderTop1, 's vs s');

    const refused = await matvit('eval', 'retrieval', '--model', modelB, '--index', indexA, '--corpus', CORPUS, '--queries', QUERIES).then(
      () => assert.fail('a model of another fingerprint was accepted'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`fingerprint ${fpA}.*fingerprint ${fpB}`));
  });

  test('--index of a LanceDB index: the exact figures of the SQLite index of the same corpus; its search is an exact scan', async () => {
    const lanceDir = path.join(root, 'index-a-lance');
    await buildIndex({ checkpoint: loadCheckpoint(modelA), modelDir: modelA, data: CORPUS, out: lanceDir, store: 'lance', batch: 32 });
    const run = async (indexDir: string) =>
      evalRetrieval({
        modelDir: modelA,
        checkpoint: loadCheckpoint(modelA),
        corpus: await parseDatasetSpec(CORPUS),
        queries: await parseDatasetSpec(QUERIES),
        submodels: [{ name: 's', ffnDims: granularityDims(TINY, 's') }],
        indexDir,
        k: 5,
      });
    const [sqlite, lance] = [await run(indexA), await run(lanceDir)];
    assert.equal(lance.hnsw.ann, 'LanceDB exact scan (no ANN index yet)');
    assert.equal(lance.corpusCount, 240);
    assert.deepEqual(
      lance.rows.map((x) => x.exact),
      sqlite.rows.map((x) => x.exact),
    );
    assert.deepEqual(
      lance.rows.map((x) => x.hnsw),
      lance.rows.map((x) => x.exact),
      'below annMinRows LanceDB searches exactly',
    );
  });
});
