// The menu of query encoders the service offers: s, m, l, xl, the Mix'n'Match entries stored with
// the model (CheckpointMeta.menu), and the corpus submodel (the reference every query is compared
// against; XL unless the index was built with another width). Each entry knows its MFLOPs, its
// latency on this machine, and its accuracy when the menu measured it.
import { GRANULARITY_NAMES, type ModelConfig, granularityDims, submodelName } from '../model/config.ts';
import type { MenuEntry } from '../model/checkpoint.ts';
import { mflops } from '../model/flops.ts';
import type { Encoder } from '../engine/encoder.ts';
import { monotoneLatencies, sampleLatencies } from './latency.ts';

export interface ServiceEntry {
  name: string;
  ffnDims: number[];
  mflops: number;
  /** mflops / XL's. */
  fractionOfXl: number;
  latencyMs?: number;
  latencySource?: 'measured' | 'menu' | 'interpolated';
  top1?: number;
  recallAt10?: number;
  /** Where it comes from: a named granularity, the model's menu, the index, or a request's explicit widths. */
  origin: 'granularity' | 'menu' | 'corpus' | 'request';
}

const key = (ffnDims: readonly number[]) => ffnDims.join(',');

export class ServiceMenu {
  /** Cheapest first. */
  readonly entries: ServiceEntry[];
  readonly xl: ServiceEntry;
  /** The submodel that embedded the corpus: the top of `auto`, and what new items are embedded with. */
  readonly corpus: ServiceEntry;

  constructor(
    readonly config: ModelConfig,
    menu: readonly MenuEntry[],
    corpusFfnDims: readonly number[],
  ) {
    const c = config;
    const xlMflops = mflops(c, granularityDims(c, 'xl'));
    const entry = (name: string, ffnDims: number[], origin: ServiceEntry['origin'], m?: MenuEntry): ServiceEntry => ({
      name,
      ffnDims,
      mflops: mflops(c, ffnDims),
      fractionOfXl: mflops(c, ffnDims) / xlMflops,
      origin,
      ...(m?.latencyMs !== undefined && { latencyMs: m.latencyMs, latencySource: 'menu' as const }),
      ...(m?.top1 !== undefined && { top1: m.top1 }),
      ...(m?.recallAt10 !== undefined && { recallAt10: m.recallAt10 }),
    });
    const byKey = new Map<string, ServiceEntry>();
    for (const g of GRANULARITY_NAMES) {
      const dims = granularityDims(c, g);
      // The model's menu may measure s/m/l/xl too (mixnmatch keeps them on its front): use its figures.
      byKey.set(
        key(dims),
        entry(
          g,
          dims,
          'granularity',
          menu.find((m) => key(m.ffnDims) === key(dims)),
        ),
      );
    }
    const names = new Set([...GRANULARITY_NAMES, 'auto']);
    for (const m of menu) {
      if (byKey.has(key(m.ffnDims)) || names.has(m.name)) continue; // a duplicate width, or a name that would shadow s/m/l/xl/auto
      names.add(m.name);
      byKey.set(key(m.ffnDims), entry(m.name, [...m.ffnDims], 'menu', m));
    }
    if (!byKey.has(key(corpusFfnDims))) byKey.set(key(corpusFfnDims), entry(submodelName(c, corpusFfnDims), [...corpusFfnDims], 'corpus'));
    this.entries = [...byKey.values()].sort((a, b) => a.mflops - b.mflops || a.name.localeCompare(b.name));
    this.xl = byKey.get(key(granularityDims(c, 'xl')))!;
    this.corpus = byKey.get(key(corpusFfnDims))!;
  }

  get xlMflops(): number {
    return this.xl.mflops;
  }

  byName(name: string): ServiceEntry | undefined {
    return this.entries.find((e) => e.name === name);
  }

  byFfnDims(ffnDims: readonly number[]): ServiceEntry | undefined {
    return this.entries.find((e) => key(e.ffnDims) === key(ffnDims));
  }

  /** The entry for explicit widths: the menu's when it has them, else an ad hoc one (checked by the caller). */
  forFfnDims(ffnDims: readonly number[]): ServiceEntry {
    const known = this.byFfnDims(ffnDims);
    if (known) return known;
    const m = mflops(this.config, ffnDims);
    return {
      name: submodelName(this.config, ffnDims),
      ffnDims: [...ffnDims],
      mflops: m,
      fractionOfXl: m / this.xlMflops,
      origin: 'request',
      latencyMs: this.estimateLatency(m),
      latencySource: 'interpolated',
    };
  }

  /**
   * Higher is more accurate. Figures measured by the menu (recall@10 against XL's neighbours, then
   * top-1) are compared when every entry has them; otherwise MFLOPs stand in: the widths are nested,
   * so within one model more FFN width has been more accurate at every scale the paper reports.
   */
  accuracyOf(): (e: ServiceEntry) => number {
    if (this.entries.every((e) => e.recallAt10 !== undefined)) return (e) => e.recallAt10!;
    if (this.entries.every((e) => e.top1 !== undefined)) return (e) => e.top1!;
    return (e) => e.mflops;
  }

  /** The most accurate of `candidates` (ties: the cheaper). */
  mostAccurate(candidates: readonly ServiceEntry[]): ServiceEntry | undefined {
    const acc = this.accuracyOf();
    return [...candidates].sort((a, b) => acc(b) - acc(a) || a.mflops - b.mflops)[0];
  }

  /** Entries no other entry beats on both cost and accuracy, most accurate (and costly) first. */
  front(): ServiceEntry[] {
    const acc = this.accuracyOf();
    const out: ServiceEntry[] = [];
    for (const e of this.entries) if (out.length === 0 || acc(e) > acc(out[out.length - 1])) out.push(e); // entries are cheapest first
    return out.reverse();
  }

  /**
   * Batch-1 latency of s/m/l/xl (and the corpus submodel) on this machine: `runs` rotated
   * interleaved rounds after a warm-up call each (which also builds each session), fitted monotone
   * in MFLOPs where the medians differ by less than their noise (latency.ts); returns what the fit
   * changed, for the log. Other entries keep their menu latency when `useMenu`, else get one
   * interpolated from MFLOPs, so start-up does not build a session for every Mix'n'Match entry.
   */
  async measureLatency(encoder: Encoder, opts: { runs: number; useMenu: boolean }): Promise<string[]> {
    const measured = this.entries.filter((e) => e.origin === 'granularity' || e === this.corpus);
    const samples = await sampleLatencies(
      encoder,
      measured.map((e) => e.ffnDims),
      opts.runs,
    );
    const fit = monotoneLatencies(measured.map((e, j) => ({ name: e.name, mflops: e.mflops, samples: samples[j] })));
    measured.forEach((e, j) => {
      e.latencyMs = fit.ms[j];
      e.latencySource = 'measured';
    });
    for (const e of this.entries) {
      if (e.latencySource === 'measured' || (opts.useMenu && e.latencySource === 'menu')) continue;
      e.latencyMs = this.estimateLatency(e.mflops);
      e.latencySource = 'interpolated';
    }
    return fit.notes;
  }

  /** Latency at `m` MFLOPs, linear between the two measured entries around it (proportional outside them). */
  estimateLatency(m: number): number | undefined {
    const pts = this.entries.filter((e) => e.latencySource === 'measured').map((e) => [e.mflops, e.latencyMs!] as const);
    if (pts.length === 0) return undefined;
    const hi = pts.findIndex(([x]) => x >= m);
    if (hi === 0 || pts.length === 1) return (pts[0][1] * m) / pts[0][0];
    if (hi === -1) return (pts[pts.length - 1][1] * m) / pts[pts.length - 1][0];
    const [x0, y0] = pts[hi - 1],
      [x1, y1] = pts[hi];
    return y0 + ((y1 - y0) * (m - x0)) / (x1 - x0);
  }

  /** What a client reads: GET /v1/index. */
  toJSON() {
    return this.entries.map(({ name, ffnDims, mflops, fractionOfXl, latencyMs, latencySource, top1, recallAt10, origin }) => ({
      name,
      ffnDims,
      mflops,
      fractionOfXl,
      latencyMs,
      latencySource,
      top1,
      recallAt10,
      origin,
      corpus: key(ffnDims) === key(this.corpus.ffnDims) || undefined,
    }));
  }
}
