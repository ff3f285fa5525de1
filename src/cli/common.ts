// Shared plumbing of the CLI commands: zod validation of options with errors that name the flag.
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { type ModelConfig, parseSubmodel, granularityDims, submodelName } from '../model/config.ts';
import { formatZodError } from '../util/zod-error.ts';

export class UsageError extends Error {}

/** Parses commander's options with a zod schema; an error names the flag, the value and what is accepted. */
export function parseOptions<S extends z.ZodType>(schema: S, raw: Record<string, unknown>): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const flag = (p: PropertyKey[]) => (p.length ? `--${String(p[0]).replace(/[A-Z]/g, (m) => '-' + m.toLowerCase())}` : 'options');
  throw new UsageError(formatZodError(r.error, raw, { name: flag, topLevel: true }));
}

/** Comma-separated list -> string[] */
export const csv = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);

/** --granularity / --ffn-dims -> checked ffnDims and a display name. Default: xl. */
export function submodelOption(c: ModelConfig, o: { granularity?: string; ffnDims?: string }): { name: string; ffnDims: number[] } {
  if (o.granularity && o.ffnDims) throw new UsageError('--granularity and --ffn-dims: give one, not both');
  let ffnDims: number[];
  try {
    ffnDims = o.ffnDims ? parseSubmodel(c, o.ffnDims) : o.granularity ? parseSubmodel(c, o.granularity) : granularityDims(c, 'xl');
  } catch (e) {
    throw new UsageError(`${o.ffnDims ? '--ffn-dims' : '--granularity'}: ${(e as Error).message}`);
  }
  return { name: submodelName(c, ffnDims), ffnDims };
}

export const printJson = (v: unknown) => process.stdout.write(JSON.stringify(v, null, 2) + '\n');

/** A progress bar on stderr per phase ("classify", "corpus", ...): a new phase replaces the bar. */
export function phaseBar(): { update: (phase: string, done: number, total: number, unit?: string) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar({ format: '{phase} [{bar}] {value}/{total} {percentage}% | {speed} {unit}/s | eta {eta_formatted}', stream: process.stderr }, cliProgress.Presets.shades_classic);
  let current: string | undefined;
  let t0 = 0;
  return {
    update: (phase, done, total, unit = 'img') => {
      if (phase !== current) {
        if (current !== undefined) bar.stop();
        current = phase;
        t0 = performance.now();
        bar.start(total, 0, { phase, speed: '0', unit });
      }
      bar.update(done, { speed: ((done * 1000) / Math.max(performance.now() - t0, 1)).toFixed(0), unit });
    },
    stop: () => void (current !== undefined && bar.stop()),
  };
}
