// `matvit report` (src/eval/report.ts, src/cli/report.ts) on small synthetic result files of each
// kind: table rows and the cheapest-within-0.5-pt sentence recomputed here from the inputs, charts
// written and referenced, identical bytes on a re-run, and malformed inputs named with their field.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { buildReport, modelLabels } from '../src/eval/report.ts';
import { parseResult } from '../src/eval/result-files.ts';
import { fails, matvit } from './helpers/cli.ts';

const pct = (x: number) => (100 * x).toFixed(2);
const fp = (c: string) => c.repeat(64);
const dims = (w: number) => Array(6).fill(w);
// MFLOPs of the uniform granularities of a made-up 6-layer model, and of one mix between s and m.
const MFLOPS = { s: 17.8, m: 21.1, l: 27.8, xl: 41.2 };
const granularities = [
  ['s', 64],
  ['m', 128],
  ['l', 256],
  ['xl', 512],
] as const;

function classifyFile(model: string, top1: number[]) {
  return {
    kind: 'classify',
    model,
    fingerprint: fp(model.length % 2 ? 'a' : 'b'),
    data: 'fashion-mnist:test',
    count: 10000,
    engine: 'onnxruntime-node 1.30.0 (cpu, 2 threads)',
    rows: granularities.map(([name, w], i) => ({
      name,
      ffnDims: dims(w),
      top1: top1[i],
      top5: 0.99 - i * 0.001,
      consistency: 0.9 + i * 0.025,
      params: 500000 + i * 100000,
      mflops: MFLOPS[name],
      imgPerSec: 1000 - i,
    })),
    skipped: [],
    command: `eval classify --model ${model} --data fashion-mnist:test --json out.json`,
  };
}

const figures = (top1: number, recall: number) => ({ top1, recall, map: top1 - 0.1 });
const RETRIEVAL_TOP1 = { s: 0.8512, mix: 0.8538, m: 0.8561, l: 0.8588, xl: 0.8593 };
function retrievalFile() {
  const own = [
    ...granularities.map(([name, w]) => ({ name, ffnDims: dims(w), mflops: MFLOPS[name], top1: RETRIEVAL_TOP1[name] })),
    { name: '64,64,64,128,128,128', ffnDims: [64, 64, 64, 128, 128, 128], mflops: 19.45, top1: RETRIEVAL_TOP1.mix },
  ];
  const row = (r: { name: string; ffnDims: number[]; mflops: number; top1: number }) => ({
    name: r.name,
    ffnDims: r.ffnDims,
    mflops: r.mflops,
    mflopsFraction: r.mflops / MFLOPS.xl,
    exact: figures(r.top1, r.mflops / 50),
    hnsw: figures(r.top1 - 0.001, r.mflops / 51),
    sameEncoderTop1: r.top1 + 0.002,
    imgPerSec: 500,
  });
  // A cheap baseline that beats XL: cheapest-within must still ignore it.
  const baseline = {
    ...row({ name: 'vit-s', ffnDims: dims(64), mflops: 10, top1: 0.95 }),
    queryModel: 'runs/vit-small/best',
    sameEncoderTop1: 0.84,
  };
  return {
    kind: 'retrieval',
    command:
      'eval retrieval --model runs/matvit/best --corpus fashion-mnist:train --queries fashion-mnist:test --ffn-dims 64,64,64,128,128,128 --query-model vit-s=runs/vit-small/best --json r.json',
    model: 'runs/matvit/best',
    fingerprint: fp('c'),
    engine: 'onnxruntime-node 1.30.0 (cpu, 2 threads)',
    corpus: 'fashion-mnist:train',
    queries: 'fashion-mnist:test',
    corpusCount: 60000,
    corpusEmbedded: 60000,
    queryCount: 10000,
    k: 10,
    hnsw: { M: 16, efConstruction: 200, ef: 64, source: 'memory' },
    rows: [...own.map(row), baseline],
    cheapest: null,
    skipped: [],
  };
}

function mixnmatchFile() {
  const configs = [
    { name: 's', ffnDims: dims(64), mflops: MFLOPS.s, uniform: true, top1: 0.8, recall: 0.7, onFront: true },
    {
      name: '64,64,64,128,128,128',
      ffnDims: [64, 64, 64, 128, 128, 128],
      mflops: 19.45,
      uniform: false,
      top1: 0.81,
      recall: 0.74,
      onFront: true,
    },
    {
      name: '64,128,128,128,128,128',
      ffnDims: [64, 128, 128, 128, 128, 128],
      mflops: 20.5,
      uniform: false,
      top1: 0.805,
      recall: 0.73,
      onFront: false,
    },
    { name: 'm', ffnDims: dims(128), mflops: MFLOPS.m, uniform: true, top1: 0.82, recall: 0.78, onFront: true },
    { name: 'l', ffnDims: dims(256), mflops: MFLOPS.l, uniform: true, top1: 0.83, recall: 0.85, onFront: true },
    { name: 'xl', ffnDims: dims(512), mflops: MFLOPS.xl, uniform: true, top1: 0.84, recall: 1, onFront: true },
  ].map((c, i) => ({ ...c, latencyMs: 1 + i / 4 }));
  const vs = (top1: number, recall: number) => ({ top1: { diff: top1, se: 0.002 }, recall: { diff: recall, se: 0.004 } });
  const point = (name: string, mflops: number, near: string, cheaper: string) => ({
    name,
    mflops,
    nearestUniform: near,
    vsNearest: vs(0.01, 0.04),
    atLeastAsGood: true,
    cheaperUniform: cheaper,
    vsCheaper: vs(0.01, 0.04),
    atLeastAsGoodAsCheaper: true,
  });
  return {
    kind: 'mixnmatch',
    command: 'mixnmatch --model runs/matvit/best --data fashion-mnist:train[55000:] --out m.json',
    model: 'runs/matvit/best',
    fingerprint: fp('c'),
    data: 'fashion-mnist:train[55000:]',
    corpus: 'fashion-mnist:train[55000:] (XL, self excluded)',
    count: 5000,
    corpusCount: 5000,
    k: 10,
    latencyRuns: 20,
    engine: 'onnxruntime-node 1.30.0 (cpu, 2 threads)',
    configs,
    front: [],
    menu: [],
    check: {
      minBetween: 8,
      comparisons: 1,
      alpha: 0.05,
      noiseZ: 1.96,
      betweenSAndXl: 3,
      points: [
        point('s', 17.8, 's', 's'),
        point('64,64,64,128,128,128', 19.45, 's', 's'),
        point('m', 21.1, 'm', 'm'),
        point('l', 27.8, 'l', 'l'),
        point('xl', 41.2, 'xl', 'xl'),
      ],
      noneWorse: true,
      noneWorseThanCheaper: true,
      pass: false,
    },
    skipped: 0,
  };
}

const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** The five input files in a fresh directory; the classify pair collides on the basename "best". */
function writeInputs() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-report-'));
  dirs.push(dir);
  const files = {
    matvit: classifyFile('runs/matvit/best', [0.8123, 0.8245, 0.8301, 0.8399]),
    baseline: classifyFile('runs/xl-only/best', [0.4102, 0.6003, 0.7707, 0.8452]),
    retrieval: retrievalFile(),
    mixnmatch: mixnmatchFile(),
  };
  const paths = Object.fromEntries(
    Object.entries(files).map(([k, v]) => {
      const p = path.join(dir, `${k}.json`);
      fs.writeFileSync(p, JSON.stringify(v, null, 2));
      return [k, p];
    }),
  ) as Record<keyof typeof files, string>;
  return { dir, files, paths };
}

const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;

describe('matvit report', () => {
  const { dir, files, paths } = writeInputs();
  const out = path.join(dir, 'report');
  const args = [
    'report',
    '--in',
    paths.matvit,
    paths.baseline,
    paths.retrieval,
    paths.mixnmatch,
    '--out',
    out,
    '--title',
    'Fashion-MNIST results',
  ];
  let page = '';

  it('writes README.md with the provenance, per-model tables and XL fractions recomputed from the inputs', async () => {
    await matvit(...args);
    page = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
    assert.match(page, /^# Fashion-MNIST results\n/);
    assert.ok(page.includes("--title 'Fashion-MNIST results'`"), "the page's own command, quoted for the shell");
    for (const f of Object.values(files)) {
      assert.ok(page.includes(`matvit ${f.command}\n`), `command of ${f.kind}`);
      assert.ok(page.includes('`' + f.fingerprint.slice(0, 12) + '`'), 'short fingerprint');
      assert.ok(!page.includes(f.fingerprint), 'never the whole fingerprint');
    }
    assert.ok(page.includes('[../matvit.json](../matvit.json)'), 'inputs linked relative to the page');
    for (const f of [files.matvit, files.baseline])
      for (const r of f.rows)
        assert.ok(
          page.includes(
            row([
              r.name,
              `${r.ffnDims[0]}x6`,
              r.mflops.toFixed(1),
              pct(r.mflops / MFLOPS.xl),
              pct(r.top1),
              pct(r.top5),
              pct(r.consistency),
            ]),
          ),
          `classify row ${r.name}`,
        );
    // Basenames collide ("best"): the models are told apart by their last two path components.
    assert.ok(page.includes('### matvit/best: `runs/matvit/best`'));
    assert.ok(page.includes('### xl-only/best: `runs/xl-only/best`'));
    const [a, b] = [files.matvit.rows[0], files.baseline.rows[0]];
    assert.ok(
      page.includes(row(['s', '64x6', '17.8', pct(a.top1), pct(b.top1), (100 * (b.top1 - a.top1)).toFixed(2)])),
      'combined table with the difference',
    );
  });

  it('retrieval: rows, baselines labelled, the cheapest submodel within 0.5 pt of XL recomputed here', () => {
    const r = files.retrieval;
    const own = r.rows.filter((x) => !('queryModel' in x));
    const xl = own.find((x) => x.name === 'xl')!;
    const best = own.filter((x) => x.exact.top1 >= xl.exact.top1 - 0.005).sort((p, q) => p.mflops - q.mflops)[0];
    assert.equal(best.name, 'm'); // the data are built so; the cheaper mix is 0.55 pt below XL, the baseline is not the model's
    assert.ok(
      page.includes(
        `Cheapest query submodel within 0.5 pt of XL's 1-NN accuracy: **${best.name}** at ${pct(best.mflops / MFLOPS.xl)}% of XL's MFLOPs`,
      ),
    );
    for (const x of r.rows) {
      const name = 'queryModel' in x ? `${x.name} (baseline)` : x.name;
      const cells = [
        pct(x.exact.top1),
        pct(x.hnsw.top1),
        pct(x.exact.recall),
        pct(x.hnsw.recall),
        pct(x.exact.map),
        pct(x.hnsw.map),
        pct(x.sameEncoderTop1),
      ];
      assert.ok(
        page.includes(
          row([
            name,
            x.ffnDims[0] === x.ffnDims[5] ? `${x.ffnDims[0]}x6` : '64x3,128x3',
            x.mflops.toFixed(1),
            pct(x.mflopsFraction),
            ...cells,
          ]),
        ),
        `retrieval row ${name}`,
      );
    }
    assert.match(page, /- vit-s \(baseline\): queries embedded by `runs\/vit-small\/best`/);
    assert.ok(page.includes(`(${pct(1 - best.mflops / MFLOPS.xl)}% saved)`), 'compare with the paper: the computed saving');
  });

  it("Mix'n'Match: every config, the front flag and the check", () => {
    const m = files.mixnmatch;
    for (const c of m.configs)
      assert.ok(
        page.includes(
          row([
            c.uniform ? c.name : 'mix',
            c.uniform ? `${c.ffnDims[0]}x6` : c.ffnDims[1] === 64 ? '64x3,128x3' : '64,128x5',
            c.mflops.toFixed(1),
            pct(c.mflops / MFLOPS.xl),
            c.latencyMs.toFixed(2),
            pct(c.top1),
            pct(c.recall),
            c.onFront ? 'yes' : '',
          ]),
        ),
        `config ${c.name}`,
      );
    assert.ok(page.includes(`Front: 5 of 6 configs; ${m.check.betweenSAndXl} strictly between S and XL in MFLOPs.`));
    assert.ok(page.includes(`: **fail**: only ${m.check.betweenSAndXl} front points strictly between S and XL.`));
    assert.ok(
      page.includes(
        row(['64x3,128x3', (19.45).toFixed(1), 's', '1.00 ± 0.20', '4.00 ± 0.40', 'yes', 's', '1.00 ± 0.20', '4.00 ± 0.40', 'yes']),
      ),
      'check row of the mix, named by its widths',
    );
  });

  it('every chart is written, is an SVG and is referenced by relative path; a re-run gives the same bytes', async () => {
    const refs = [...page.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
    const svgs = fs
      .readdirSync(out)
      .filter((f) => f.endsWith('.svg'))
      .sort();
    assert.deepEqual([...refs].sort(), svgs);
    assert.deepEqual(svgs, [
      'classify-top1.svg',
      'mixnmatch-1-recall.svg',
      'mixnmatch-1-top1.svg',
      'retrieval-1nn.svg',
      'retrieval-recall.svg',
    ]);
    for (const f of svgs) assert.match(fs.readFileSync(path.join(out, f), 'utf8'), /^<svg[\s\S]*<\/svg>\s*$/);
    const before = Object.fromEntries(fs.readdirSync(out).map((f) => [f, fs.readFileSync(path.join(out, f))]));
    await matvit(...args);
    for (const [f, bytes] of Object.entries(before)) assert.ok(bytes.equals(fs.readFileSync(path.join(out, f))), `${f} identical`);
  });

  it('charts: one classify series per model, own retrieval submodels apart from the baseline', () => {
    const inputs = Object.values(files).map((f) => ({ file: `${f.kind}.json`, result: parseResult(`${f.kind}.json`, f) }));
    const { charts } = buildReport(inputs, { title: 't' });
    const seriesOf = (file: string) => {
      const values = (charts.find((c) => c.file === file)!.spec as { data: { values: { series: string; x: number; y: number }[] } }).data
        .values;
      return [...new Set(values.map((v) => v.series))].map((s) => ({ s, points: values.filter((v) => v.series === s) }));
    };
    assert.deepEqual(
      seriesOf('classify-top1.svg').map((x) => x.s),
      ['matvit/best', 'xl-only/best'],
    );
    const nn = seriesOf('retrieval-1nn.svg');
    assert.deepEqual(
      nn.map((x) => [x.s, x.points.length]),
      [
        ['matvit/best', 5],
        ['baseline vit-s', 1],
      ],
    );
    assert.ok(
      nn[0].points.some((p) => p.x === 100 && Math.abs(p.y - 100 * RETRIEVAL_TOP1.xl) < 1e-9),
      'XL at 100% of its MFLOPs',
    );
  });

  it('a malformed file or an unknown kind: non-zero exit, the error names the file and the field', async () => {
    const bad = path.join(dir, 'bad.json');
    const broken = structuredClone(files.retrieval) as { rows: { exact: { top1: unknown } }[] };
    broken.rows[2].exact.top1 = 'high';
    fs.writeFileSync(bad, JSON.stringify(broken));
    const e = await fails(['report', '--in', paths.matvit, bad, '--out', path.join(dir, 'r2')]);
    assert.notEqual(e.code, 0);
    assert.ok(e.stderr.includes(`${bad}: field rows[2].exact.top1:`), e.stderr);
    assert.match(e.stderr, /received "high"/);

    const unknown = path.join(dir, 'unknown.json');
    fs.writeFileSync(unknown, JSON.stringify({ ...files.matvit, kind: 'clasify' }));
    const u = await fails(['report', '--in', unknown, '--out', path.join(dir, 'r3')]);
    assert.notEqual(u.code, 0);
    assert.ok(u.stderr.includes(`${unknown}: field kind: received "clasify"; accepted: "classify"`), u.stderr);
    assert.ok(!fs.existsSync(path.join(dir, 'r2')) && !fs.existsSync(path.join(dir, 'r3')), 'nothing written');
  });

  it('parseResult: a missing field and a mix file without xl are named', () => {
    const { rows, ...noRows } = files.matvit;
    assert.ok(rows.length);
    assert.throws(() => parseResult('a.json', noRows), /^Error: a\.json: field rows: /);
    const m = files.mixnmatch;
    assert.throws(
      () => parseResult('m.json', { ...m, configs: m.configs.filter((c) => c.name !== 'xl') }),
      /m\.json: field configs: no uniform config named "xl"/,
    );
    assert.throws(() => parseResult('x.json', [1]), /x\.json: field kind: received nothing/);
  });

  it("modelLabels: basenames (a run's best/latest by run) unless they collide between different directories", () => {
    assert.deepEqual(modelLabels(['runs/a/best', 'runs/b/best', 'models/fm']), ['a/best', 'b/best', 'fm']);
    assert.deepEqual(modelLabels(['runs/a/best', './runs/a/best/']), ['a/best', 'a/best']);
    assert.deepEqual(modelLabels(['runs/a/checkpoint', './runs/a/checkpoint/']), ['checkpoint', 'checkpoint']);
    assert.deepEqual(modelLabels(['x/a/best', 'y/a/best']), ['x/a/best', 'y/a/best']);
    assert.deepEqual(modelLabels(['best', 'runs/best']), ['best', 'runs/best']);
  });
});
