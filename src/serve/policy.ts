// Which submodel(s) encode a query. Per request, one of:
// - fixed: the encoder asked for (s, m, l, xl, a menu entry, or explicit widths);
// - budget: the most accurate menu entry whose MFLOPs / latency on this machine fit maxMflops /
//   maxLatencyMs;
// - auto (the default): the calibrated cascade (cascade.ts) when the index has one, else the corpus
//   submodel, whose answers are by construction those of the corpus' own metric space. Under load
//   `auto` walks down a ladder of cheaper plans and back up when load falls (LoadController), so
//   the server sheds compute instead of queueing: cascade -> its first stage alone -> cheaper
//   entries of the accuracy/cost front.
import { type Cascade, type EscalationRule } from './cascade.ts';
import type { LoadTargets } from './config.ts';
import { invalidField } from './errors.ts';
import type { ServiceEntry, ServiceMenu } from './menu.ts';

const WINDOW = 256; // latencies kept for the p95: the most recent ones since the last step

/** The load level: 0 = normal, each level one rung down the ladder. */
export class LoadController {
  level = 0;
  private samples: number[] = [];
  private changedAt: number;
  /** Why the level last changed, for responses and logs. */
  reason = 'normal load';

  constructor(
    readonly targets: LoadTargets,
    private readonly maxLevel: number,
    now = performance.now(),
  ) {
    this.changedAt = now;
  }

  /** A finished request's total latency. */
  observe(latencyMs: number): void {
    this.samples.push(latencyMs);
    if (this.samples.length > WINDOW) this.samples.splice(0, this.samples.length - WINDOW);
  }

  /** p95 of the latencies since the last step, once there are enough of them. */
  p95(): number | undefined {
    if (this.samples.length < this.targets.minSamples) return undefined;
    const s = [...this.samples].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)];
  }

  /** Re-evaluates the level (at most one step per holdMs) and returns it. */
  update(queueDepth: number, now = performance.now()): number {
    const t = this.targets;
    if (!t.enabled || this.maxLevel === 0 || now - this.changedAt < t.holdMs) return this.level;
    const p95 = this.p95();
    const fmt = (x: number) => x.toFixed(0);
    if (this.level < this.maxLevel && (queueDepth > t.queueDepth || (p95 !== undefined && p95 > t.p95Ms)))
      this.step(+1, now, queueDepth > t.queueDepth ? `queue ${queueDepth} > ${t.queueDepth}` : `p95 ${fmt(p95!)} ms > ${t.p95Ms} ms`);
    else if (this.level > 0 && queueDepth <= t.queueDepth * t.recover && (p95 === undefined || p95 <= t.p95Ms * t.recover))
      this.step(-1, now, `queue ${queueDepth}, p95 ${p95 === undefined ? 'n/a' : `${fmt(p95)} ms`}: under ${t.recover} of the targets`);
    return this.level;
  }

  private step(delta: number, now: number, reason: string): void {
    this.level += delta;
    this.changedAt = now;
    this.samples = []; // latencies of the previous level say nothing about this one
    this.reason = reason;
  }
}

export interface Stage {
  entry: ServiceEntry;
  /** When it fires on this stage's neighbours, the query goes to the next stage. */
  rule?: EscalationRule;
}

export interface Plan {
  mode: 'fixed' | 'budget' | 'auto';
  stages: Stage[];
  /** Neighbours the cascade's confidence is computed on (search at least this many). */
  confidenceK: number;
  loadLevel: number;
  why: string;
}

export interface EncoderRequest {
  /** 'auto', or the entry of a fixed encoder (menu or explicit widths). */
  encoder: 'auto' | ServiceEntry;
  maxMflops?: number;
  maxLatencyMs?: number;
  /** A label filter: every neighbour then shares one label, so agreement says nothing. */
  label?: number;
}

interface Rung {
  stages: Stage[];
  /** MFLOPs of the first stage: the cap a budget request gets at this load level. */
  mflops: number;
  label: string;
}

export class EncoderPolicy {
  readonly ladder: Rung[];
  readonly load: LoadController;

  constructor(
    readonly menu: ServiceMenu,
    readonly cascade: Cascade | null,
    targets: LoadTargets,
    now = performance.now(),
  ) {
    this.ladder = this.buildLadder();
    this.load = new LoadController(targets, this.ladder.length - 1, now);
  }

  private buildLadder(): Rung[] {
    const menu = this.menu;
    const rungs: Rung[] = [];
    let top: ServiceEntry;
    if (this.cascade) {
      const stages = this.cascade.stages.map((s, i) => ({ entry: menu.forFfnDims(s.ffnDims), rule: this.cascade!.rules[i] }));
      top = stages[0].entry;
      rungs.push({ stages, mflops: top.mflops, label: `cascade ${stages.map((s) => s.entry.name).join(' -> ')}` });
      rungs.push({ stages: [{ entry: top }], mflops: top.mflops, label: `${top.name} (no escalation)` });
    } else {
      top = menu.corpus;
      rungs.push({ stages: [{ entry: top }], mflops: top.mflops, label: top.name });
    }
    for (const e of menu.front()) if (e.mflops < top.mflops) rungs.push({ stages: [{ entry: e }], mflops: e.mflops, label: e.name });
    return rungs;
  }

  /** The plan for one request; throws a 400 ApiError for a budget nothing fits or a fixed encoder with a budget. */
  plan(req: EncoderRequest, queueDepth: number, now = performance.now()): Plan {
    const level = this.load.update(queueDepth, now);
    const k = this.cascade?.k ?? 0;
    const budget = req.maxMflops !== undefined || req.maxLatencyMs !== undefined;
    if (req.encoder !== 'auto') {
      if (budget) {
        const field = req.maxMflops !== undefined ? 'maxMflops' : 'maxLatencyMs';
        throw invalidField(
          field,
          req.maxMflops ?? req.maxLatencyMs,
          `a budget with encoder=auto (the default), or a fixed encoder without a budget`,
          `encoder "${req.encoder.name}" is fixed, so a budget cannot choose it`,
        );
      }
      return { mode: 'fixed', stages: [{ entry: req.encoder }], confidenceK: 0, loadLevel: level, why: `fixed: ${req.encoder.name}` };
    }
    const rung = this.ladder[level];
    const loadNote = level > 0 ? `; load level ${level}/${this.ladder.length - 1} (${this.load.reason})` : '';
    if (budget) return this.budgetPlan(req, level, loadNote);
    let stages = rung.stages;
    if (req.label !== undefined && stages.length > 1) stages = withoutAgreement(stages);
    return {
      mode: 'auto',
      stages,
      confidenceK: stages.length > 1 ? k : 0,
      loadLevel: level,
      why: `auto: ${stages.length > 1 ? rung.label : stages[0].entry.name}${loadNote}`,
    };
  }

  private budgetPlan(req: EncoderRequest, level: number, loadNote: string): Plan {
    const { maxMflops, maxLatencyMs } = req;
    const fits = (e: ServiceEntry) =>
      (maxMflops === undefined || e.mflops <= maxMflops) &&
      (maxLatencyMs === undefined || (e.latencyMs !== undefined && e.latencyMs <= maxLatencyMs));
    const candidates = this.menu.entries.filter(fits);
    if (candidates.length === 0) {
      const field = maxMflops !== undefined && !this.menu.entries.some((e) => e.mflops <= maxMflops) ? 'maxMflops' : 'maxLatencyMs';
      const cheapest = this.menu.entries[0];
      const accepted =
        field === 'maxMflops'
          ? `at least ${cheapest.mflops.toFixed(2)} (the cheapest encoder, ${cheapest.name})`
          : `at least ${Math.min(...this.menu.entries.map((e) => e.latencyMs ?? Infinity)).toFixed(2)} ms (the fastest encoder's latency measured on this machine)`;
      throw invalidField(field, field === 'maxMflops' ? maxMflops : maxLatencyMs, accepted, 'no encoder fits this budget');
    }
    // Under load the budget is capped further by the ladder's rung, unless that leaves nothing.
    const capped = level > 0 ? candidates.filter((e) => e.mflops <= this.ladder[level].mflops) : candidates;
    const entry = this.menu.mostAccurate(capped.length ? capped : candidates)!;
    const limits = [maxMflops !== undefined && `maxMflops ${maxMflops}`, maxLatencyMs !== undefined && `maxLatencyMs ${maxLatencyMs}`]
      .filter(Boolean)
      .join(', ');
    return {
      mode: 'budget',
      stages: [{ entry }],
      confidenceK: 0,
      loadLevel: level,
      why: `budget: most accurate within ${limits}: ${entry.name}${loadNote}`,
    };
  }

  /** A finished request's latency, for the load controller. */
  observe(latencyMs: number): void {
    this.load.observe(latencyMs);
  }
}

/**
 * A cascade without its label-agreement signal: with a label filter every neighbour shares the
 * label, so agreement is always 1. Stages left without any signal can never escalate; if the
 * first one cannot, the last stage (the corpus submodel) answers alone, the safe choice.
 */
function withoutAgreement(stages: Stage[]): Stage[] {
  const out = stages.map((s) => (s.rule ? { ...s, rule: s.rule.margin === undefined ? undefined : { margin: s.rule.margin } } : s));
  return out[0].rule ? out : [out[out.length - 1]];
}
