// Batch-1 latencies that budgets can trust (maxLatencyMs). Measured at start-up on a machine that
// may be busy, a few runs per submodel came out backwards (s 0.95 ms, l 0.82 ms), so a latency budget
// picked a larger encoder than an MFLOPs budget of the same intent. Two remedies:
// - sampling: interleaved rounds whose order rotates every round (no submodel always runs first
//   after another's weights were in cache), many rounds, the median;
// - a monotone fit: a submodel with more MFLOPs is not faster unless the samples say so beyond
//   noise. Where a cheaper submodel measured slower and the two interquartile ranges overlap, both
//   get the median of their pooled samples (pool-adjacent-violators, gated by noise); an inversion
//   beyond noise is kept as measured. Every change is reported, for the log.
import type { Encoder } from '../engine/encoder.ts';

/** Batch-1 encode times (ms) per submodel: a warm-up call each, then `rounds` rotated interleaved rounds. */
export async function sampleLatencies(encoder: Encoder, ffnDims: readonly (readonly number[])[], rounds: number): Promise<number[][]> {
  const c = encoder.config;
  const input = new Float32Array(c.channels * c.imageSize * c.imageSize); // [1, C, H, W]
  for (const dims of ffnDims) await encoder.encode(input, dims);
  const times = ffnDims.map((): number[] => []);
  for (let r = 0; r < rounds; r++)
    for (let i = 0; i < ffnDims.length; i++) {
      const j = (i + r) % ffnDims.length;
      const t0 = performance.now();
      await encoder.encode(input, ffnDims[j]);
      times[j].push(performance.now() - t0);
    }
  return times;
}

/** The q-quantile of sorted values (linear interpolation between order statistics). */
export function quantile(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos),
    hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export interface LatencyPoint {
  name: string;
  mflops: number;
  samples: readonly number[];
}

export interface MonotoneLatencies {
  /** Per point, in the input's order: its latency after the fit (ms). */
  ms: number[];
  /** One sentence per change (or inversion kept), for the log. */
  notes: string[];
}

/** See the header. Points are fitted in order of MFLOPs; the result keeps the input's order. */
export function monotoneLatencies(points: readonly LatencyPoint[]): MonotoneLatencies {
  const order = points.map((_, i) => i).sort((a, b) => points[a].mflops - points[b].mflops);
  interface Block {
    members: number[];
    samples: number[];
    median: number;
    q1: number;
    q3: number;
  }
  const block = (members: number[], samples: number[]): Block => {
    const s = [...samples].sort((a, b) => a - b);
    return { members, samples: s, median: quantile(s, 0.5), q1: quantile(s, 0.25), q3: quantile(s, 0.75) };
  };
  const fmt = (x: number) => x.toFixed(3);
  const notes: string[] = [];
  const blocks: Block[] = [];
  for (const i of order) {
    blocks.push(block([i], [...points[i].samples]));
    while (blocks.length >= 2) {
      const b = blocks[blocks.length - 1],
        a = blocks[blocks.length - 2];
      if (b.median >= a.median) break;
      if (b.q3 < a.q1) {
        notes.push(
          `${names(points, b.members)} measured faster than the cheaper ${names(points, a.members)} beyond noise ` +
            `(medians ${fmt(b.median)} vs ${fmt(a.median)} ms, interquartile ranges apart): kept as measured`,
        );
        break;
      }
      blocks.splice(-2, 2, block([...a.members, ...b.members], [...a.samples, ...b.samples]));
    }
  }
  const ms = new Array<number>(points.length);
  for (const b of blocks) {
    for (const i of b.members) ms[i] = b.median;
    if (b.members.length > 1) {
      const measured = b.members
        .map(
          (i) =>
            `${points[i].name} ${fmt(
              quantile(
                [...points[i].samples].sort((x, y) => x - y),
                0.5,
              ),
            )}`,
        )
        .join(', ');
      notes.push(
        `${names(points, b.members)}: medians ${measured} ms fall as MFLOPs rise within noise (interquartile ranges overlap): ${fmt(b.median)} ms each, their pooled median`,
      );
    }
  }
  return { ms, notes };
}

const names = (points: readonly LatencyPoint[], members: readonly number[]) => members.map((i) => points[i].name).join(', ');
