// The service's configuration: one zod schema, defaults only here. `matvit serve` flags and the
// tests pass partial objects; GET /v1/index shows the resolved one.
import { z } from 'zod';
import { BatchOptions } from './batcher.ts';
import { LoadTargets } from './policy.ts';
import { SessionLimits } from './sessions.ts';

export const ServeConfig = z
  .object({
    /** Largest image accepted, in bytes (multipart file or raw body; JSON base64 may be 4/3 of it). */
    maxImageBytes: z.number().int().positive().default(8 * 1024 * 1024),
    batch: BatchOptions.prefault({}),
    load: LoadTargets.prefault({}),
    sessions: SessionLimits.prefault({}),
    latency: z
      .object({
        /** Batch-1 runs per named submodel at startup (the median is kept). */
        runs: z.number().int().positive().default(5),
        /** Use the model menu's latencyMs for Mix'n'Match entries instead of interpolating this machine's. */
        useMenu: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    /** How often to pick up what other processes (`matvit index add`) committed to the store; 0: never. */
    refreshMs: z.number().int().nonnegative().default(5000),
    /** Graceful shutdown: how long in-flight requests may take before connections are cut. */
    shutdownTimeoutMs: z.number().int().positive().default(15000),
    /** Process metrics (CPU, memory, event loop lag, GC) in /metrics. */
    defaultMetrics: z.boolean().default(false),
  })
  .strict();
export type ServeConfig = z.infer<typeof ServeConfig>;
export type ServeConfigInput = z.input<typeof ServeConfig>;
