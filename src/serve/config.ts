// The service's configuration: one zod schema, defaults only here. `matvit serve` flags and the
// tests pass partial objects; GET /v1/index shows the resolved one.
import { z } from 'zod';

/** Micro-batching (batcher.ts). */
export const BatchOptions = z
  .object({
    /** How long an idle engine waits for more requests of the same submodel (ms). */
    maxWaitMs: z.number().nonnegative().default(2),
    /** Images per engine call at most. */
    maxBatch: z.number().int().positive().default(32),
    /** Images waiting (not yet in an engine call) at most; past it requests get 503. */
    maxQueue: z.number().int().positive().default(256),
  })
  .strict();
export type BatchOptions = z.infer<typeof BatchOptions>;

/** When `auto` steps down under load (policy.ts). */
export const LoadTargets = z
  .object({
    /** Step `auto` down when the load controller sees this; false: never. */
    enabled: z.boolean().default(true),
    /** Images waiting for the engine above which the server is overloaded. */
    queueDepth: z.number().int().positive().default(16),
    /** Recent p95 request latency (ms) above which the server is overloaded. */
    p95Ms: z.number().positive().default(250),
    /** Requests needed since the last step before their p95 is trusted. */
    minSamples: z.number().int().positive().default(20),
    /** Least time between two steps (ms): each step's effect is seen before the next. */
    holdMs: z.number().nonnegative().default(1000),
    /** Step back up once queue and p95 are both under this fraction of their targets (hysteresis). */
    recover: z.number().gt(0).lt(1).default(0.5),
  })
  .strict();
export type LoadTargets = z.infer<typeof LoadTargets>;

/** Engine sessions of widths outside the menu (sessions.ts). */
export const SessionLimits = z
  .object({
    /** Serve FFN widths outside the menu (ffnDims, encoder=a,b,...); false: such requests get 400. */
    customWidths: z.boolean().default(true),
    /** Engine sessions kept for widths outside the menu; past it the least recently used is released. */
    customSessions: z.number().int().positive().default(4),
  })
  .strict();
export type SessionLimits = z.infer<typeof SessionLimits>;

export const ServeConfig = z
  .object({
    /** Largest image accepted, in bytes (multipart file or raw body; JSON base64 may be 4/3 of it). */
    maxImageBytes: z
      .number()
      .int()
      .positive()
      .default(8 * 1024 * 1024),
    batch: BatchOptions.prefault({}),
    load: LoadTargets.prefault({}),
    sessions: SessionLimits.prefault({}),
    latency: z
      .object({
        /** Batch-1 rounds over the named submodels at start-up (the median of each is kept; latency.ts). */
        runs: z.number().int().positive().default(20),
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
    /** POST /v1/search/batch: queries per request, and the JSON body's size (base64 images count 4/3). */
    searchBatch: z
      .object({
        maxQueries: z.number().int().positive().default(32),
        maxBodyBytes: z
          .number()
          .int()
          .positive()
          .default(16 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    /** Origins allowed to call the API from a browser (CORS); '*': any; empty: same origin only. */
    cors: z.array(z.string().min(1)).default([]),
    /** Requests per client address per window, past which the API answers 429 (health and metrics are exempt); absent: no limit. */
    rateLimit: z
      .object({ limit: z.number().int().positive(), windowMs: z.number().int().positive().default(60_000) })
      .strict()
      .optional(),
  })
  .strict();
export type ServeConfig = z.infer<typeof ServeConfig>;
export type ServeConfigInput = z.input<typeof ServeConfig>;
