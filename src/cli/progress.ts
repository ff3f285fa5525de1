// The one progress bar of the CLI and scripts, on stderr (cli-progress draws nothing when stderr is
// not a terminal). cli-progress is required on first use, so that `matvit --help` does not load it.
import { createRequire } from 'node:module';
import type cliProgressModule from 'cli-progress';

export interface PhaseBar {
  /** `done` of `total` `unit`s in `phase` ("classify", "index", ...): a new phase replaces the bar; `extra` ends the line. */
  update: (phase: string, done: number, total: number, unit?: string, extra?: string) => void;
  stop: () => void;
}

/** A bar per phase; the speed is the phase's own (items since the phase began, over its time). */
export function phaseBar(): PhaseBar {
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof cliProgressModule;
  const bar = new cliProgress.SingleBar(
    {
      format: '{phase} [{bar}] {value}/{total} {percentage}% | {speed} {unit}/s | eta {eta_formatted}{extra}',
      stream: process.stderr,
      etaBuffer: 100,
    },
    cliProgress.Presets.shades_classic,
  );
  let current: string | undefined;
  let t0 = 0;
  let done0 = 0;
  return {
    update: (phase, done, total, unit = 'img', extra = '') => {
      const payload = { phase, unit, extra: extra && ` | ${extra}` };
      if (phase !== current) {
        if (current !== undefined) bar.stop();
        current = phase;
        t0 = performance.now();
        done0 = done;
        bar.start(total, done, { ...payload, speed: '0' });
      }
      bar.update(done, { ...payload, speed: (((done - done0) * 1000) / Math.max(performance.now() - t0, 1)).toFixed(0) });
    },
    stop: () => void (current !== undefined && bar.stop()),
  };
}
