// `matvit report`: the JSON results of `matvit eval classify`, `matvit eval retrieval` and
// `matvit mixnmatch` -> one Markdown page and the specs of its charts. Pure (no files, no clock), so
// the same inputs give the same bytes and a report can be regenerated and diffed. Every number on the
// page is computed from the inputs, except the paper's claims (MatFormer, arXiv 2310.07707).
import path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { type Series, xyChart } from './plot.ts';
import { cheapestWithin, NEAR_XL_TOLERANCE } from './retrieval.ts';
import { compact, markdownTable } from '../util/format.ts';
import type { ClassifyFile, MixnmatchFile, Result, RetrievalFile } from './result-files.ts';

// ---- labels --------------------------------------------------------------------------------------

/**
 * A short name per model directory for headings and legends: its basename, or as many trailing
 * path components as it takes to tell it from other directories (runs/a/best and runs/b/best ->
 * a/best and b/best; models/fm stays fm). The same directory keeps one label. Two labels of
 * different directories never match: with equal lengths they differ by construction, and a label
 * shorter than asked for is a whole (distinct) path.
 */
export function modelLabels(models: readonly string[]): string[] {
  const parts = models.map((m) => path.posix.normalize(m.replaceAll('\\', '/')).split('/').filter(Boolean));
  const ids = parts.map((p) => p.join('/'));
  const suffix = (p: string[], n: number) => p.slice(-n).join('/') || '.';
  // A training run's checkpoint (run/best, run/latest) is named by its run.
  const generic = new Set(['best', 'latest']);
  return parts.map((p, i) => {
    let n = generic.has(p[p.length - 1]) && p.length > 1 ? 2 : 1;
    while (n < p.length && parts.some((q, j) => ids[j] !== ids[i] && suffix(q, n) === suffix(p, n))) n++;
    return suffix(p, n);
  });
}

/** Per item, candidate names by preference; the first level at which all are distinct (else the last). */
function firstUnique(options: readonly string[][]): string[] {
  const levels = Math.max(0, ...options.map((o) => o.length));
  for (let l = 0; l < levels; l++) {
    const names = options.map((o) => o[Math.min(l, o.length - 1)]);
    if (new Set(names).size === names.length) return names;
  }
  return options.map((o) => o[o.length - 1]);
}

// ---- formatting ----------------------------------------------------------------------------------

const pct = (x: number) => (100 * x).toFixed(2);
const signedPt = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)}`;
/** Text from an input inside a table cell: a pipe would end the cell. */
const cell = (s: string) => s.replaceAll('|', '\\|');
const code = (s: string) => '`' + cell(s) + '`';
const byMflops = <T extends { mflops: number }>(rows: readonly T[]) => [...rows].sort((a, b) => a.mflops - b.mflops);

// ---- the page ------------------------------------------------------------------------------------

export interface Input {
  /** How the page links to the file (relative to the report's directory). */
  file: string;
  result: Result;
}

export interface Chart {
  /** SVG file name, next to the page. */
  file: string;
  title: string;
  spec: TopLevelSpec;
}

export interface Report {
  markdown: string;
  charts: Chart[];
}

type Item<R extends Result = Result> = Input & { result: R; label: string };
interface Section {
  markdown: string[];
  charts: Chart[];
}

/** "Within 0.5 pt": the paper's headline tolerance (under 0.5% accuracy drop), in accuracy units. */
const TOLERANCE_TEXT = `${(100 * NEAR_XL_TOLERANCE).toFixed(1)} pt`;

const chart = (file: string, title: string, o: Omit<Parameters<typeof xyChart>[0], 'title'>): Chart => ({
  file,
  title,
  spec: xyChart({ title, ...o }),
});
const image = (c: Chart) => `![${c.title}](${c.file})`;

export function buildReport(inputs: readonly Input[], o: { title: string; command?: string }): Report {
  const labels = modelLabels(inputs.map((i) => i.result.model));
  const items: Item[] = inputs.map((i, j) => ({ ...i, label: labels[j] }));
  const of = <K extends Result['kind']>(kind: K) => items.filter((x): x is Item<Extract<Result, { kind: K }>> => x.result.kind === kind);
  const sections = [
    classification(of('classify')),
    retrieval(of('retrieval')),
    mixnmatch(of('mixnmatch')),
    compareWithPaper(of('retrieval'), of('mixnmatch')),
  ];
  const markdown =
    [`# ${o.title.replace(/\s+/g, ' ')}`, ...provenance(items, o.command), ...sections.flatMap((s) => s.markdown)].join('\n\n') + '\n';
  return { markdown, charts: sections.flatMap((s) => s.charts) };
}

function provenance(items: Item[], command: string | undefined): string[] {
  const describe = (r: Result): [string, string, number] =>
    r.kind === 'classify'
      ? [r.data, `${r.count} images`, r.skipped.length]
      : r.kind === 'retrieval'
        ? [`queries ${r.queries}; corpus ${r.corpus}`, `${r.queryCount} queries, ${r.corpusCount} corpus items`, r.skipped.length]
        : [`queries ${r.data}; corpus ${r.corpus}`, `${r.count} queries, ${r.corpusCount} corpus items`, r.skipped];
  const rows = items.map(({ file, label, result: r }) => {
    const [data, n, skipped] = describe(r);
    return [
      `[${cell(file)}](${encodeURI(file)})`,
      r.kind,
      `${cell(label)}: ${code(r.model)}`,
      code(r.fingerprint.slice(0, 12)),
      cell(data),
      n,
      cell(r.engine),
      skipped,
    ];
  });
  return [
    '## How these results were produced',
    markdownTable(['input', 'kind', 'model', 'fingerprint', 'data', 'count', 'engine', 'skipped'], rows),
    'Commands, in the order of the inputs:',
    ['```sh', ...items.map((x) => `matvit ${x.result.command}`), '```'].join('\n'),
    ...(command ? [`This page: \`matvit ${command}\`.`] : []),
  ];
}

function classification(items: Item<ClassifyFile>[]): Section {
  if (items.length === 0) return { markdown: [], charts: [] };
  const names = firstUnique(items.map((x) => [x.label, `${x.label} on ${x.result.data}`, x.file]));
  const md = [
    '## Classification',
    'Accuracies in percent. "of XL": the share of the XL submodel\'s MFLOPs. Consistency: the share of images whose top-1 class is XL\'s.',
  ];
  for (const [i, { result: r }] of items.entries()) {
    const xl = r.rows.find((row) => row.name === 'xl');
    md.push(`### ${cell(names[i])}: ${code(r.model)} on ${cell(r.data)}, ${r.count} images`);
    md.push(
      markdownTable(
        ['submodel', 'ffnDims', 'MFLOPs', 'of XL (%)', 'top-1', 'top-5', 'consistency with XL'],
        byMflops(r.rows).map((row) => [
          cell(row.name),
          compact(row.ffnDims),
          row.mflops.toFixed(1),
          xl ? pct(row.mflops / xl.mflops) : 'n/a (no xl row)',
          pct(row.top1),
          pct(row.top5),
          pct(row.consistency),
        ]),
      ),
    );
  }
  if (items.length > 1) md.push(...combinedClassification(items, names));
  const c = chart('classify-top1.svg', 'Classification: top-1 vs MFLOPs', {
    x: 'MFLOPs per image',
    y: 'top-1 (%)',
    series: items.map((x, i) => ({
      name: names[i],
      points: byMflops(x.result.rows).map((r) => ({ x: r.mflops, y: 100 * r.top1, label: r.name })),
    })),
  });
  md.push(image(c));
  return { markdown: md, charts: [c] };
}

/** One row per submodel (same name, widths and MFLOPs), one top-1 column per model; with two models, their difference. */
function combinedClassification(items: Item<ClassifyFile>[], names: string[]): string[] {
  const key = (r: { name: string; ffnDims: number[]; mflops: number }) => `${r.name}|${r.ffnDims.join()}|${r.mflops.toFixed(1)}`;
  const rows = new Map<string, ClassifyFile['rows'][number]>();
  for (const r of byMflops(items.flatMap((x) => x.result.rows))) if (!rows.has(key(r))) rows.set(key(r), r);
  const top1 = (x: Item<ClassifyFile>, k: string) => x.result.rows.find((r) => key(r) === k)?.top1;
  const two = items.length === 2;
  const data = [...new Set(items.map((x) => x.result.data))];
  return [
    '### All models',
    ...(data.length > 1
      ? [`Note: the models were evaluated on different data (${data.map(cell).join(', ')}); their accuracies do not compare directly.`]
      : []),
    markdownTable(
      [
        'submodel',
        'ffnDims',
        'MFLOPs',
        ...names.map((n) => `top-1 ${cell(n)}`),
        ...(two ? [`${cell(names[1])} - ${cell(names[0])} (pt)`] : []),
      ],
      [...rows].map(([k, r]) => {
        const t = items.map((x) => top1(x, k));
        return [
          cell(r.name),
          compact(r.ffnDims),
          r.mflops.toFixed(1),
          ...t.map((v) => (v === undefined ? '' : pct(v))),
          ...(two ? [t[0] !== undefined && t[1] !== undefined ? signedPt(t[1] - t[0]) : ''] : []),
        ];
      }),
    ),
  ];
}

type Row = RetrievalFile['rows'][number];
const ownRows = (r: RetrievalFile) => byMflops(r.rows.filter((x) => x.queryModel === undefined));
const baselineRows = (r: RetrievalFile) => r.rows.filter((x) => x.queryModel !== undefined);
/** XL as cheapestWithin defines it: the model's own row at MFLOPs fraction 1. */
const xlRow = (r: RetrievalFile) => ownRows(r).find((x) => x.mflopsFraction === 1);

function retrieval(items: Item<RetrievalFile>[]): Section {
  if (items.length === 0) return { markdown: [], charts: [] };
  const names = firstUnique(items.map((x) => [x.label, `${x.label}, queries ${x.result.queries}`, x.file]));
  const md = [
    '## Retrieval',
    'The corpus is embedded once by XL; each query encoder embeds the queries. In percent: 1-NN accuracy; recall@k, the share of the XL queries\' exact top k that is returned; mAP@k by label; same-encoder 1-NN, with the corpus embedded by the query encoder too. "of XL": the share of XL\'s query MFLOPs.',
  ];
  for (const [i, { result: r }] of items.entries()) {
    const { k, hnsw } = r;
    const figures = (x: Row) => [
      pct(x.exact.top1),
      pct(x.hnsw.top1),
      pct(x.exact.recall),
      pct(x.hnsw.recall),
      pct(x.exact.map),
      pct(x.hnsw.map),
      pct(x.sameEncoderTop1),
    ];
    md.push(
      `### ${cell(names[i])}: ${code(r.model)}, queries ${cell(r.queries)} (${r.queryCount}) against corpus ${cell(r.corpus)}, ${r.corpusCount} items`,
    );
    md.push(
      `${hnsw.ann ? `HNSW columns: the index's ${hnsw.ann}` : `HNSW (${hnsw.source === 'index' ? "the index's graph" : 'built in memory'}): M ${hnsw.M}, efConstruction ${hnsw.efConstruction}, ef ${hnsw.ef}`}; k = ${k}.`,
    );
    md.push(
      markdownTable(
        [
          'query encoder',
          'ffnDims',
          'MFLOPs',
          'of XL (%)',
          '1-NN exact',
          '1-NN HNSW',
          `R@${k} exact`,
          `R@${k} HNSW`,
          `mAP@${k} exact`,
          `mAP@${k} HNSW`,
          '1-NN same-encoder',
        ],
        [...ownRows(r), ...baselineRows(r)].map((x) => [
          cell(x.queryModel === undefined ? x.name : `${x.name} (baseline)`),
          compact(x.ffnDims),
          x.mflops.toFixed(1),
          pct(x.mflopsFraction),
          ...figures(x),
        ]),
      ),
    );
    md.push(cheapestSentence(r));
    const baselines = baselineRows(r).map(
      (b) =>
        `- ${cell(b.name)} (baseline): queries embedded by ${code(b.queryModel!)} (${compact(b.ffnDims)}), another checkpoint, searched in this model's XL corpus; its same-encoder figure searches a corpus it embedded itself.`,
    );
    if (baselines.length) md.push(baselines.join('\n'));
  }
  const baselineNames = firstUnique(
    items.flatMap((x, i) => baselineRows(x.result).map((b) => [`baseline ${b.name}`, `baseline ${b.name} (${names[i]})`])),
  );
  // Own submodels as one curve per file; each baseline alone (a line between unrelated models would suggest a trade-off).
  const series = (y: (x: Row) => number, suffix: (r: RetrievalFile) => string): Series[] => {
    const point = (x: Row) => ({ x: 100 * x.mflopsFraction, y: 100 * y(x), label: x.name });
    const baselines = items.flatMap((x) => baselineRows(x.result).map((b) => ({ b, r: x.result })));
    return [
      ...items.map((x, i) => ({ name: names[i] + suffix(x.result), points: ownRows(x.result).map(point) })),
      ...baselines.map(({ b, r }, j) => ({ name: baselineNames[j] + suffix(r), points: [point(b)], line: false })),
    ];
  };
  const ks = [...new Set(items.map((x) => x.result.k))];
  const x = "query MFLOPs (% of XL's)";
  const nn = chart('retrieval-1nn.svg', 'Retrieval: 1-NN accuracy vs query MFLOPs (exact search)', {
    x,
    y: '1-NN accuracy (%)',
    series: series(
      (r) => r.exact.top1,
      () => '',
    ),
  });
  const recall = chart('retrieval-recall.svg', 'Retrieval: recall@k vs query MFLOPs (exact search)', {
    x,
    y: ks.length === 1 ? `recall@${ks[0]} (%)` : 'recall@k (%)',
    series: series(
      (r) => r.exact.recall,
      (r) => (ks.length === 1 ? '' : ` (k=${r.k})`),
    ),
  });
  md.push(`${image(nn)}\n${image(recall)}`);
  return { markdown: md, charts: [nn, recall] };
}

function cheapestSentence(r: RetrievalFile): string {
  const best = cheapestWithin(r.rows, NEAR_XL_TOLERANCE);
  const xl = xlRow(r);
  if (!best || !xl)
    return `Cheapest query submodel within ${TOLERANCE_TEXT} of XL's 1-NN accuracy: not computable, the file has no XL query row (MFLOPs fraction 1).`;
  return `Cheapest query submodel within ${TOLERANCE_TEXT} of XL's 1-NN accuracy: **${cell(best.name)}** at ${pct(best.mflopsFraction)}% of XL's MFLOPs (exact 1-NN ${pct(best.exact.top1)}% vs XL's ${pct(xl.exact.top1)}%).`;
}

function mixnmatch(items: Item<MixnmatchFile>[]): Section {
  if (items.length === 0) return { markdown: [], charts: [] };
  const names = firstUnique(items.map((x) => [x.label, `${x.label} on ${x.result.data}`, x.file]));
  const md = [
    "## Mix'n'Match",
    "Least-slope configs (granularity non-decreasing with depth), each measured on a validation split: top-1 of its logits, recall@k of its query embedding against the XL queries' neighbours in an XL-embedded corpus, batch-1 latency (median). The front is the Pareto front over MFLOPs, top-1 and recall. In percent except MFLOPs and latency.",
  ];
  const charts: Chart[] = [];
  for (const [i, { result: r }] of items.entries()) {
    const { k, check } = r;
    const configs = byMflops(r.configs);
    const xl = configs.find((c) => c.uniform && c.name === 'xl')!;
    const byName = new Map(configs.map((c) => [c.name, c]));
    const display = (name: string) => (byName.get(name)?.uniform === false ? compact(byName.get(name)!.ffnDims) : name);
    const front = configs.filter((c) => c.onFront);
    md.push(
      `### ${cell(names[i])}: ${code(r.model)}, queries ${cell(r.data)} (${r.count}) against corpus ${cell(r.corpus)}, ${r.corpusCount} items`,
    );
    md.push(
      markdownTable(
        ['submodel', 'ffnDims', 'MFLOPs', 'of XL (%)', 'latency (ms)', 'top-1', `recall@${k}`, 'on front'],
        configs.map((c) => [
          c.uniform ? cell(c.name) : 'mix',
          compact(c.ffnDims),
          c.mflops.toFixed(1),
          pct(c.mflops / xl.mflops),
          c.latencyMs.toFixed(2),
          pct(c.top1),
          pct(c.recall),
          c.onFront ? 'yes' : '',
        ]),
      ),
    );
    const failures = [
      ...(check.betweenSAndXl < check.minBetween ? [`only ${check.betweenSAndXl} front points strictly between S and XL`] : []),
      ...check.points.filter((p) => !p.atLeastAsGood).map((p) => `${display(p.name)} is worse than ${p.nearestUniform}`),
    ];
    md.push(
      `Front: ${front.length} of ${configs.length} configs; ${check.betweenSAndXl} strictly between S and XL in MFLOPs. ` +
        `Check (at least ${check.minBetween} front points between S and XL, none worse than the uniform granularity nearest in MFLOPs: ` +
        `in top-1, since recall rises with cost by construction; worse = below by more than ${check.noiseZ.toFixed(2)} standard errors of the paired difference over the same queries, ` +
        `the family-wise threshold at alpha ${check.alpha} over the ${check.comparisons} mixes compared): ` +
        `**${check.pass ? 'pass' : 'fail'}**${failures.length ? `: ${failures.map(cell).join('; ')}` : ''}.`,
    );
    const d = (x: { diff: number; se: number }) => `${(100 * x.diff).toFixed(2)} ± ${(100 * x.se).toFixed(2)}`;
    md.push(
      markdownTable(
        [
          'front point',
          'MFLOPs',
          'nearest uniform',
          'top-1 diff (pt)',
          'recall diff (pt)',
          'not worse',
          'costliest uniform no costlier',
          'top-1 diff (pt)',
          'recall diff (pt)',
          'not worse',
        ],
        check.points.map((p) => [
          cell(display(p.name)),
          p.mflops.toFixed(1),
          cell(p.nearestUniform),
          d(p.vsNearest.top1),
          d(p.vsNearest.recall),
          p.atLeastAsGood ? 'yes' : 'no',
          cell(p.cheaperUniform),
          d(p.vsCheaper.top1),
          d(p.vsCheaper.recall),
          p.atLeastAsGoodAsCheaper ? 'yes' : 'no',
        ]),
      ),
    );
    const series = (y: (c: MixnmatchFile['configs'][number]) => number): Series[] => {
      const points = (cs: typeof configs, labelled: boolean) =>
        cs.map((c) => ({ x: c.mflops, y: 100 * y(c), label: labelled ? c.name : undefined }));
      return [
        {
          name: 's/m/l/xl',
          points: points(
            configs.filter((c) => c.uniform),
            true,
          ),
        },
        { name: 'front', points: points(front, false) },
        {
          name: 'other configs',
          points: points(
            configs.filter((c) => !c.uniform && !c.onFront),
            false,
          ),
          line: false,
        },
      ];
    };
    const title = (what: string) => `Mix'n'Match (${names[i]}): ${what} vs MFLOPs`;
    const top1 = chart(`mixnmatch-${i + 1}-top1.svg`, title('top-1'), {
      x: 'MFLOPs per image',
      y: 'top-1 (%)',
      series: series((c) => c.top1),
    });
    const recall = chart(`mixnmatch-${i + 1}-recall.svg`, title(`recall@${k}`), {
      x: 'MFLOPs per image',
      y: `recall@${k} (%)`,
      series: series((c) => c.recall),
    });
    md.push(`${image(top1)}\n${image(recall)}`);
    charts.push(top1, recall);
  }
  return { markdown: md, charts };
}

/** The paper's claims: MatFormer, arXiv 2310.07707 (elastic retrieval: Figure 5; Mix'n'Match: sections 3 and 4). */
const PAPER = {
  headline:
    "MatViT-L/16 queries with a 175M Mix'n'Match submodel instead of the 300M XL cost 40% less compute for under 0.5% accuracy drop",
  baselines: 'independently trained smaller ViTs used as query encoders give nearly 0 accuracy: their metric space is a different one',
  menu: "Mix'n'Match configs with granularity increasing with least slope matched or beat evolutionary NAS; good ones are picked by a quick evaluation on a validation split and kept as an accuracy-vs-compute menu",
};

function compareWithPaper(retrievals: Item<RetrievalFile>[], mixes: Item<MixnmatchFile>[]): Section {
  if (retrievals.length === 0 && mixes.length === 0) return { markdown: [], charts: [] };
  const lines: string[] = [];
  for (const { label, result: r } of retrievals) {
    const best = cheapestWithin(r.rows, NEAR_XL_TOLERANCE);
    const xl = xlRow(r);
    if (best && xl && best.mflopsFraction < 1)
      lines.push(
        `- ${cell(label)}: query submodel ${cell(best.name)} costs ${pct(best.mflopsFraction)}% of XL's query MFLOPs (${pct(1 - best.mflopsFraction)}% saved) for a 1-NN change of ${signedPt(best.exact.top1 - xl.exact.top1)} pt (${pct(best.exact.top1)}% vs ${pct(xl.exact.top1)}%).`,
      );
    else if (xl) {
      const cheaper = ownRows(r)
        .filter((x) => x.mflopsFraction < 1)
        .sort((a, b) => b.exact.top1 - a.exact.top1 || a.mflops - b.mflops)[0];
      lines.push(
        `- ${cell(label)}: no query submodel cheaper than XL stays within ${TOLERANCE_TEXT} of its 1-NN accuracy (${pct(xl.exact.top1)}%)${cheaper ? `; the most accurate cheaper one, ${cell(cheaper.name)} at ${pct(cheaper.mflopsFraction)}% of XL's MFLOPs, changes it by ${signedPt(cheaper.exact.top1 - xl.exact.top1)} pt` : ''}.`,
      );
    }
    for (const b of baselineRows(r))
      lines.push(
        `- ${cell(label)}, baseline ${cell(b.name)} (another checkpoint): 1-NN ${pct(b.exact.top1)}% in the XL corpus, ${pct(b.sameEncoderTop1)}% in a corpus it embedded itself${xl ? `; XL's own queries ${pct(xl.exact.top1)}%` : ''}.`,
      );
  }
  for (const { label, result: r } of mixes)
    lines.push(
      `- ${cell(label)}, Mix'n'Match: ${r.configs.filter((c) => c.onFront).length} of ${r.configs.length} least-slope configs on the front, ${r.check.betweenSAndXl} strictly between S and XL; ${r.check.noneWorse ? 'none' : 'some'} worse (beyond noise) than the uniform granularity nearest in MFLOPs.`,
    );
  const data = [...new Set([...retrievals.map((x) => x.result.queries), ...mixes.map((x) => x.result.data)])];
  return {
    markdown: [
      '## Compare with the paper',
      `The paper (MatFormer, [arXiv 2310.07707](https://arxiv.org/abs/2310.07707); retrieval: Figure 5): ${PAPER.headline}; ${PAPER.baselines}. Also (sections 3 and 4): ${PAPER.menu}. It measures ImageNet-1K with ViT-B/16 and L/16; the results here are on ${data.map(cell).join(', ')}, so the trade-offs compare, the absolute accuracies do not. Here:`,
      lines.join('\n'),
    ],
    charts: [],
  };
}
