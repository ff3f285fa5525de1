// The service's decision logic without HTTP: the encoder policy (fixed, budget, load, cascade),
// the micro-batcher with a counting fake engine, the calibration search on synthetic runs, the
// latency fit and bench serve's summary on synthetic figures, and the session bound on a real engine.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chooseCascade, evaluateCascade } from '../src/serve/calibrate.ts';
import type { Embedded, SubmodelRun } from '../src/serve/queries.ts';
import type { EncodeOutput, Encoder } from '../src/engine/encoder.ts';
import { granularityDims } from '../src/model/config.ts';
import { mflops } from '../src/model/flops.ts';
import { MicroBatcher } from '../src/serve/batcher.ts';
import { type Cascade, confidence, shouldEscalate } from '../src/serve/cascade.ts';
import { ServiceMenu } from '../src/serve/menu.ts';
import { LoadTargets } from '../src/serve/config.ts';
import { EncoderPolicy } from '../src/serve/policy.ts';
import { speedupLine } from '../src/serve/bench.ts';
import { monotoneLatencies } from '../src/serve/latency.ts';
import { BoundedSessions } from '../src/serve/sessions.ts';
import { OnnxEncoder } from '../src/engine/onnx.ts';
import { initWeights } from '../src/model/weights.ts';
import { tinyConfig } from './helpers/tiny.ts';

const c = tinyConfig({ depth: 2, mlpDim: 32 });
const XL = granularityDims(c, 'xl');
const MIX = [4, 16];
const menuOf = (extra: { top1?: number }[] = []) =>
  new ServiceMenu(c, [{ name: 'mix', ffnDims: MIX, mflops: mflops(c, MIX), ...extra[0] }], XL);

function cascadeOf(rule: Cascade['rules'][0], first = granularityDims(c, 's')): Cascade {
  const held = { queries: 1, recallAt10: 1, mflopsFraction: 1, escalationRate: 0 };
  return {
    version: 1,
    k: 10,
    stages: [
      { name: 'first', ffnDims: first },
      { name: 'xl', ffnDims: XL },
    ],
    rules: [rule],
    basis: 'labels',
    tolerance: 0.005,
    queries: 'q',
    heldOut: held,
    reference: held,
    fingerprint: 'f'.repeat(64),
    calibratedAt: new Date().toISOString(),
  };
}

const targets = (o: Partial<LoadTargets> = {}) => LoadTargets.parse({ queueDepth: 8, p95Ms: 100, minSamples: 5, holdMs: 1000, ...o });
const names = (p: { stages: { entry: { name: string } }[] }) => p.stages.map((s) => s.entry.name);

describe('menu', () => {
  test('s, m, l, xl plus the model menu, cheapest first; latency interpolated between measured points', () => {
    const menu = menuOf();
    assert.deepEqual(
      menu.entries.map((e) => e.name),
      ['s', 'm', 'mix', 'l', 'xl'],
    );
    assert.equal(menu.corpus.name, 'xl');
    assert.equal(menu.xl.fractionOfXl, 1);
    for (const e of menu.entries.filter((x) => x.origin === 'granularity'))
      Object.assign(e, { latencyMs: e.mflops * 2, latencySource: 'measured' });
    assert.ok(Math.abs(menu.estimateLatency(menu.byName('mix')!.mflops)! - menu.byName('mix')!.mflops * 2) < 1e-9);
    assert.equal(menu.forFfnDims([8, 8]).name, 'm');
    assert.equal(menu.forFfnDims([8, 16]).origin, 'request');
  });
});

describe('policy', () => {
  test('fixed: the encoder asked for; a budget with it is a 400 naming the budget', () => {
    const menu = menuOf();
    const p = new EncoderPolicy(menu, null, targets());
    assert.deepEqual(names(p.plan({ encoder: menu.byName('m')! }, 0)), ['m']);
    assert.throws(
      () => p.plan({ encoder: menu.byName('m')!, maxMflops: 100 }, 0),
      (e: { status: number; details: { field: string } }) => e.status === 400 && e.details.field === 'maxMflops',
    );
  });

  test('budget: the most accurate entry that fits MFLOPs and latency', () => {
    const menu = menuOf();
    const lat: Record<string, number> = { s: 1, m: 2, mix: 3, l: 4, xl: 8 };
    for (const e of menu.entries) e.latencyMs = lat[e.name];
    const p = new EncoderPolicy(menu, null, targets());
    const pick = (o: { maxMflops?: number; maxLatencyMs?: number }) => names(p.plan({ encoder: 'auto', ...o }, 0))[0];
    const cost = (n: string) => menu.byName(n)!.mflops;
    assert.equal(pick({ maxMflops: cost('xl') }), 'xl');
    assert.equal(pick({ maxMflops: cost('l') - 1e-9 }), 'mix');
    assert.equal(pick({ maxMflops: cost('m') }), 'm');
    assert.equal(pick({ maxLatencyMs: 3.5 }), 'mix');
    assert.equal(pick({ maxLatencyMs: 100, maxMflops: cost('s') }), 's');
    assert.equal(pick({ maxLatencyMs: 1.5, maxMflops: cost('xl') }), 's');
    assert.throws(() => pick({ maxMflops: cost('s') / 2 }), /maxMflops: no encoder fits this budget.*accepted: at least/);
    assert.throws(() => pick({ maxLatencyMs: 0.5 }), /maxLatencyMs/);
  });

  test('budget ranks by measured accuracy when the whole menu has it', () => {
    // A menu whose Mix'n'Match entry is measured more accurate than l (and s/m/l/xl measured too).
    const top1 = { s: 0.8, m: 0.82, l: 0.83, xl: 0.86 };
    const menu = new ServiceMenu(
      c,
      [
        { name: 'mix', ffnDims: MIX, mflops: mflops(c, MIX), top1: 0.85 },
        ...Object.entries(top1).map(([g, t]) => ({
          name: g,
          ffnDims: granularityDims(c, g as 's'),
          mflops: mflops(c, granularityDims(c, g as 's')),
          top1: t,
        })),
      ],
      XL,
    );
    const p = new EncoderPolicy(menu, null, targets());
    assert.equal(names(p.plan({ encoder: 'auto', maxMflops: menu.byName('l')!.mflops }, 0))[0], 'mix');
    assert.deepEqual(
      menu.front().map((e) => e.name),
      ['xl', 'mix', 'm', 's'],
      'l is dominated by the cheaper, more accurate mix',
    );
  });

  test('load: auto steps down under queue or p95 pressure, one step per hold, and back up when load falls', () => {
    const menu = menuOf();
    let now = 0;
    const p = new EncoderPolicy(menu, null, targets(), now);
    const plan = (queue: number) => names(p.plan({ encoder: 'auto' }, queue, now))[0];
    assert.deepEqual(
      p.ladder.map((r) => r.label),
      ['xl', 'l', 'mix', 'm', 's'],
    );
    assert.equal(plan(0), 'xl');
    assert.equal(plan(50), 'xl', 'no step before holdMs has passed');
    now = 1500;
    assert.equal(plan(50), 'l', 'queue above target: one step down');
    assert.equal(plan(50), 'l', 'held');
    now = 2600;
    for (let i = 0; i < 5; i++) p.observe(300); // p95 300 ms > 100 ms, queue fine
    assert.equal(plan(0), 'mix');
    now = 3700;
    for (let i = 0; i < 5; i++) p.observe(80); // under the target but above recover * target: stay
    assert.equal(plan(0), 'mix');
    for (let i = 0; i < 100; i++) p.observe(20); // the 80s fall out of the top 5%
    assert.equal(plan(6), 'mix', 'queue 6 > recover * 8: stay');
    assert.equal(plan(2), 'l', 'calm: one step up');
    now = 4800;
    assert.equal(plan(0), 'xl', 'idle (too few samples to judge p95) and queue calm: back to the top');
    assert.equal(p.load.level, 0);
    now = 10_000;
    for (let step = 1; step <= 6; step++, now += 1001) plan(100);
    assert.equal(p.load.level, 4, 'never below the last rung');
    assert.equal(plan(100), 's');
  });

  test('load shedding can be switched off', () => {
    let now = 0;
    const p = new EncoderPolicy(menuOf(), null, targets({ enabled: false }), now);
    now = 5000;
    assert.equal(names(p.plan({ encoder: 'auto' }, 1000, now))[0], 'xl');
  });

  test('a budget under load is capped by the current rung', () => {
    const menu = menuOf();
    let now = 0;
    const p = new EncoderPolicy(menu, null, targets(), now);
    now = 2000;
    p.plan({ encoder: 'auto' }, 100, now); // level 1: l
    assert.equal(names(p.plan({ encoder: 'auto', maxMflops: 1e9 }, 100, now))[0], 'l');
  });

  test('cascade: auto runs first -> xl with the rule; under load the first stage alone, then cheaper', () => {
    const menu = menuOf();
    let now = 0;
    const p = new EncoderPolicy(menu, cascadeOf({ agreement: 0.7, margin: 0.01 }, granularityDims(c, 'm')), targets(), now);
    assert.deepEqual(
      p.ladder.map((r) => r.label),
      ['cascade m -> xl', 'm (no escalation)', 's'],
    );
    const plan = p.plan({ encoder: 'auto' }, 0, now);
    assert.deepEqual(names(plan), ['m', 'xl']);
    assert.deepEqual(plan.stages[0].rule, { agreement: 0.7, margin: 0.01 });
    assert.equal(plan.confidenceK, 10);
    // A label filter makes agreement meaningless: only the margin signal remains.
    assert.deepEqual(p.plan({ encoder: 'auto', label: 3 }, 0, now).stages[0].rule, { margin: 0.01 });
    now = 2000;
    assert.deepEqual(names(p.plan({ encoder: 'auto' }, 100, now)), ['m']);
    now = 4000;
    assert.deepEqual(names(p.plan({ encoder: 'auto' }, 100, now)), ['s']);
  });

  test('an agreement-only cascade with a label filter answers with the last stage', () => {
    const p = new EncoderPolicy(menuOf(), cascadeOf({ agreement: 0.7 }), targets());
    assert.deepEqual(names(p.plan({ encoder: 'auto', label: 1 }, 0)), ['xl']);
  });

  test('confidence: margin and label agreement over the top k; escalation when either is low', () => {
    const hits = (scores: number[], labels: number[]) => scores.map((score, i) => ({ score, label: labels[i] }));
    const sure = confidence(hits([0.9, 0.6, 0.5, 0.4], [1, 1, 1, 1]), 4);
    assert.ok(Math.abs(sure.margin - 0.5) < 1e-12);
    assert.equal(sure.agreement, 1);
    const split = confidence(hits([0.9, 0.89, 0.88, 0.87], [1, 2, 2, 1]), 4);
    assert.equal(split.agreement, 0.5);
    const rule = { agreement: 0.75, margin: 0.1 };
    assert.equal(shouldEscalate(rule, sure), false);
    assert.equal(shouldEscalate(rule, split), true);
    assert.equal(shouldEscalate({ margin: 0.1 }, { margin: 0.2, agreement: 0 }), false);
    assert.equal(shouldEscalate({ margin: 0 }, { margin: 0, agreement: 0 }), false, 'margin < 0 never fires');
    assert.deepEqual(confidence([], 10), { margin: 0, agreement: 0 });
    assert.equal(confidence(hits([1, 0.5, 0.2], [3, 3, 4]), 2).margin, 0.5, 'only the first k hits count');
  });
});

describe('micro-batcher', () => {
  /** An engine that records its calls and answers [B, 2] embeddings: (first pixel, width). */
  function fakeEncoder(delayMs = 5) {
    const calls: { B: number; dims: string }[] = [];
    const enc: Encoder = {
      engine: 'onnx',
      description: 'fake',
      config: c,
      async encode(images, ffnDims): Promise<EncodeOutput> {
        const per = 3 * 8 * 8;
        const B = images.length / per;
        calls.push({ B, dims: ffnDims.join() });
        await new Promise((r) => setTimeout(r, delayMs));
        const embeddings = new Float32Array(B * 2);
        for (let b = 0; b < B; b++) embeddings.set([images[b * per], ffnDims[0]], 2 * b);
        return { embeddings, logits: new Float32Array(0) };
      },
      async dispose() {},
    };
    return { enc, calls };
  }
  const input = (v: number) => new Float32Array(3 * 8 * 8).fill(v);
  const S = { name: 's', ffnDims: [4, 4] },
    L = { name: 'l', ffnDims: [16, 16] };

  test('concurrent requests for one submodel are one engine call; each gets its own row', async () => {
    const { enc, calls } = fakeEncoder();
    const sizes: number[] = [];
    const b = new MicroBatcher(enc, { maxWaitMs: 5, maxBatch: 32, maxQueue: 100 }, (e) => sizes.push(e.size));
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => b.encode(input(i), S)));
    assert.equal(calls.length, 1);
    assert.deepEqual(sizes, [10]);
    out.forEach((e, i) => assert.deepEqual([...e], [i, 4]));
  });

  test('submodels are batched apart; maxBatch splits; requests arriving during a call form the next batch', async () => {
    const { enc, calls } = fakeEncoder(20);
    const b = new MicroBatcher(enc, { maxWaitMs: 2, maxBatch: 4, maxQueue: 100 });
    const first = Promise.all(Array.from({ length: 6 }, (_, i) => b.encode(input(i), S)));
    const mixed = Promise.all([b.encode(input(1), L), b.encode(input(2), L)]);
    await new Promise((r) => setTimeout(r, 10)); // the first call is running
    const later = Promise.all(Array.from({ length: 3 }, (_, i) => b.encode(input(i), S)));
    const [, l] = await Promise.all([first, mixed, later]);
    assert.deepEqual([...l[0]], [1, 16]);
    assert.deepEqual(calls, [
      { B: 4, dims: '4,4' }, // maxBatch reached: no wait
      { B: 4, dims: '4,4' }, // the oldest head is s: its 2 left plus 2 that arrived during the call
      { B: 2, dims: '16,16' },
      { B: 1, dims: '4,4' },
    ]);
    await b.idle();
    assert.equal(b.inFlight, 0);
  });

  test('a full queue refuses at once with 503; an engine failure rejects its batch only', async () => {
    const { enc } = fakeEncoder(20);
    const b = new MicroBatcher(enc, { maxWaitMs: 1, maxBatch: 1, maxQueue: 2 });
    const ok = [b.encode(input(0), S), b.encode(input(1), S), b.encode(input(2), S)]; // one running, two waiting
    await assert.rejects(b.encode(input(2), S), (e: { status: number; code: string }) => e.status === 503 && e.code === 'overloaded');
    await Promise.all(ok);
    const failing: Encoder = { ...enc, encode: async () => Promise.reject(new Error('engine down')) };
    const fb = new MicroBatcher(failing, { maxWaitMs: 1, maxBatch: 8, maxQueue: 8 });
    await assert.rejects(Promise.all([fb.encode(input(0), S), fb.encode(input(1), S)]), /engine down/);
    await fb.idle();
  });
});

describe('calibration search', () => {
  /**
   * Synthetic runs over N queries, k = 4: the reference is always right; the cheap first stage
   * is right exactly where its neighbours agree (agreement 1), wrong where they are split.
   */
  function synthetic(N = 40, wrongEvery = 5): { e: Embedded; menu: ServiceMenu } {
    const menu = menuOf();
    const k = 4;
    const run = (entry: (typeof menu.entries)[0], wrong: (i: number) => boolean): SubmodelRun => {
      const r = { entry, ids: new Int32Array(N * k), scores: new Float32Array(N * k), labels: new Int32Array(N * k) };
      for (let i = 0; i < N; i++)
        for (let j = 0; j < k; j++) {
          r.ids[i * k + j] = wrong(i) ? 1000 + i * k + j : i * k + j + 1;
          r.scores[i * k + j] = 1 - j * (wrong(i) ? 0.001 : 0.1);
          r.labels[i * k + j] = wrong(i) ? (j % 2 === 0 ? 99 : i % 3) : i % 3;
        }
      return r;
    };
    const queryLabels = Int32Array.from({ length: N }, (_, i) => i % 3);
    const e: Embedded = {
      k,
      queryLabels,
      skipped: 0,
      inIndex: 0,
      runs: [run(menu.byName('s')!, (i) => i % wrongEvery === 0), run(menu.corpus, () => false)],
    };
    return { e, menu };
  }

  test('labels: the cheapest rule within the tolerance escalates exactly the unsure queries', () => {
    const { e, menu } = synthetic();
    const { best, reference, submodels } = chooseCascade(e, menu, { tolerance: 0.005, minRecall: 0.95, labelled: true });
    assert.equal(reference.accuracy, 1);
    assert.equal(submodels.find((r) => r.name === 's')!.accuracy, 0.8);
    assert.ok(best && best.rule);
    const held = evaluateCascade(e, best.first, e.runs[1], best.rule, true, menu.xlMflops);
    assert.equal(held.accuracy, 1);
    assert.equal(held.precisionAt10, 1);
    assert.equal(held.escalationRate, 0.2, 'the 8 wrong queries of 40, no more');
    assert.ok(Math.abs(held.mflopsFraction - (menu.byName('s')!.mflops + 0.2 * menu.xlMflops) / menu.xlMflops) < 1e-12);
  });

  test('a looser tolerance escalates less; an impossible budget keeps always-XL', () => {
    const { e, menu } = synthetic();
    const loose = chooseCascade(e, menu, { tolerance: 0.25, minRecall: 0, labelled: true }).best!;
    assert.equal(loose.rule, null, 's alone is within 25 pt');
    // Escalating costs more than XL when s + 0.2 XL >= XL: make s expensive by asking for no loss with every query wrong.
    const { e: allWrong, menu: m2 } = synthetic(40, 1);
    assert.equal(chooseCascade(allWrong, m2, { tolerance: 0, minRecall: 1, labelled: true }).best, null);
  });

  test('without labels: recall@k against the reference neighbours', () => {
    const { e, menu } = synthetic();
    const { best, reference } = chooseCascade(e, menu, { tolerance: 0, minRecall: 0.99, labelled: false });
    assert.equal(reference.recallAt10, 1);
    assert.equal(reference.accuracy, undefined);
    const held = evaluateCascade(e, best!.first, e.runs[1], best!.rule, false, menu.xlMflops);
    assert.ok(held.recallAt10 >= 0.99);
    assert.equal(held.escalationRate, 0.2);
    assert.deepEqual(Object.keys(best!.rule!), ['margin'], 'only the margin signal without labels');
  });
});

describe('batch-1 latencies monotone in MFLOPs within noise (latency.ts)', () => {
  /** The plain median, independent of latency.ts's quantile. */
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const close = (a: number[], b: number[]) => a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 1e-12, `${a} vs ${b}`));

  test('backwards medians within noise are pooled (the s 0.95 / l 0.82 ms case); the result never falls as MFLOPs rise', () => {
    const s = [0.8, 0.9, 0.95, 1.0, 1.1],
      m = [0.78, 0.85, 0.9, 0.98, 1.05],
      l = [0.75, 0.8, 0.82, 0.95, 1.0],
      xl = [1.4, 1.45, 1.5, 1.55, 1.6];
    const fit = monotoneLatencies([
      { name: 's', mflops: 10, samples: s },
      { name: 'm', mflops: 12, samples: m },
      { name: 'l', mflops: 16, samples: l },
      { name: 'xl', mflops: 24, samples: xl },
    ]);
    close(fit.ms, [median([...s, ...m, ...l]), median([...s, ...m, ...l]), median([...s, ...m, ...l]), median(xl)]);
    assert.equal(fit.notes.length, 1);
    assert.match(fit.notes[0], /^s, m, l: medians s 0\.950, m 0\.900, l 0\.820 ms fall as MFLOPs rise within noise/);
  });

  test('an inversion beyond noise is kept and reported; increasing medians are left alone; input order is kept', () => {
    const fast = [0.5, 0.51, 0.52, 0.53, 0.54],
      slow = [1.0, 1.01, 1.02, 1.03, 1.04];
    const inverted = monotoneLatencies([
      { name: 'm', mflops: 12, samples: fast },
      { name: 's', mflops: 10, samples: slow },
    ]);
    close(inverted.ms, [median(fast), median(slow)]);
    assert.equal(inverted.notes.length, 1);
    assert.match(inverted.notes[0], /^m measured faster than the cheaper s beyond noise .*kept as measured$/);
    const rising = monotoneLatencies([
      { name: 's', mflops: 10, samples: fast },
      { name: 'xl', mflops: 24, samples: slow },
    ]);
    close(rising.ms, [median(fast), median(slow)]);
    assert.deepEqual(rising.notes, []);
  });
});

describe("bench serve's summary line", () => {
  test('it says how much of the compute-bound speed-up the table shows, or that there is none', () => {
    // The README's fmnist table: s 714.5 QPS at 17.80 MFLOPs, xl 624.5 at 41.20.
    const qps = 714.5 / 624.5,
      mf = 41.2 / 17.8;
    const line = speedupLine({ qps, mflops: mf, realized: (qps - 1) / (mf - 1) });
    assert.equal(
      line,
      `s vs xl: 1.14x the QPS at 1/2.31 of the MFLOPs per query: ${Math.round((100 * (qps - 1)) / (mf - 1))}% of the 2.31x a compute-bound server would reach`,
    );
    assert.match(speedupLine({ qps: 0.95, mflops: 2.31, realized: -0.05 / 1.31 }), /s is not faster in this run/);
  });
});

describe('bounded engine sessions (sessions.ts)', () => {
  test('custom widths beyond the limit are released least recently used first, never while encoding; pinned ones stay; answers do not change', async () => {
    const w = initWeights(c, 3);
    const engine = await OnnxEncoder.create(c, w, { threads: 1 });
    const reference = await OnnxEncoder.create(c, w, { threads: 1 });
    const released: string[] = [];
    const bounded = new BoundedSessions(engine, [XL], 2, (d) => released.push(d.join(',')));
    const input = new Float32Array(c.channels * c.imageSize * c.imageSize).map((_, i) => Math.sin(i));
    const widths = [
      [1, 2],
      [3, 4],
      [5, 6],
      [7, 8],
      [9, 10],
      [11, 12],
    ];
    try {
      for (const d of widths) {
        await bounded.encode(input, XL);
        const out = await bounded.encode(input, d);
        assert.deepEqual(out.embeddings, (await reference.encode(input, d)).embeddings);
      }
      assert.deepEqual(released, ['1,2', '3,4', '5,6', '7,8']);
      assert.equal(bounded.customCount, 2);
      // Touching 9,10 makes 11,12 the least recently used.
      await bounded.encode(input, [9, 10]);
      await bounded.encode(input, [13, 14]);
      assert.equal(released.at(-1), '11,12');
      // Six widths at once: all six are in flight, so none is released before its encode ends.
      const outs = await Promise.all(widths.map((d) => bounded.encode(input, d)));
      for (const [i, d] of widths.entries()) assert.deepEqual(outs[i].embeddings, (await reference.encode(input, d)).embeddings);
      assert.equal(bounded.customCount, 2);
      assert.ok(!released.includes(XL.join(',')), 'a pinned width is never released');
    } finally {
      await bounded.dispose();
      await reference.dispose();
    }
  });
});
