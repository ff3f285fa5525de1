// SVG charts rendered in Node with vega-lite (compiled to vega, rendered headless to SVG). vega and
// vega-lite load on the first render: building a chart's spec needs neither.
import type { TopLevelSpec } from 'vega-lite';

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export interface Series {
  name: string; // legend entry
  points: { x: number; y: number; label?: string }[];
  /** false: points only (unrelated configs, single baselines); default: joined by a line. */
  line?: boolean;
}

/** A scatter-and-line chart of one or more series: y against x, each point optionally labelled. */
export function xyChart(o: { title: string; x: string; y: string; series: Series[]; width?: number; height?: number }): TopLevelSpec {
  const values = o.series.flatMap((s) =>
    s.points.map((p) => ({ series: s.name, x: p.x, y: p.y, label: p.label ?? '', line: s.line !== false })),
  );
  const enc = {
    x: { field: 'x', type: 'quantitative', title: o.x, scale: { zero: false } },
    y: { field: 'y', type: 'quantitative', title: o.y, scale: { zero: false } },
    color: { field: 'series', type: 'nominal', title: null },
  } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: o.title,
    width: o.width ?? 480,
    height: o.height ?? 300,
    data: { values },
    layer: [
      { transform: [{ filter: 'datum.line' }], mark: { type: 'line' }, encoding: { ...enc, order: { field: 'x' } } },
      { mark: { type: 'point', filled: true }, encoding: enc },
      { mark: { type: 'text', dy: -8, fontSize: 10 }, encoding: { x: enc.x, y: enc.y, text: { field: 'label' } } },
    ],
  } as TopLevelSpec;
}
