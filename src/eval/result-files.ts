// The result files `matvit report` reads (written by `matvit eval classify`, `matvit eval retrieval`
// and `matvit mixnmatch`): one zod schema per kind, and the parser that names the file and field of an error.
import { z } from 'zod';
import { fieldPath, formatZodError, preview } from '../util/zod-error.ts';

// ---- the input files: one schema per kind; extra fields pass through (newer writers may add some) ----

const fraction = z.number().min(0).max(1);
const count = z.number().int().nonnegative();
const ffnDims = z.array(z.number().int().positive()).min(1);
const fingerprint = z.string().regex(/^[0-9a-f]{12,}$/i, 'expected a hex sha256 fingerprint');
const written = { command: z.string(), model: z.string().min(1), fingerprint, engine: z.string() };

const ClassifyRow = z
  .object({
    name: z.string().min(1),
    ffnDims,
    top1: fraction,
    top5: fraction,
    consistency: fraction,
    params: count,
    mflops: z.number().positive(),
    imgPerSec: z.number().nonnegative(),
  })
  .passthrough();
export const ClassifyFile = z
  .object({
    kind: z.literal('classify'),
    ...written,
    data: z.string(),
    count,
    rows: z.array(ClassifyRow).min(1),
    skipped: z.array(z.unknown()),
  })
  .passthrough();
export type ClassifyFile = z.infer<typeof ClassifyFile>;

const Figures = z.object({ top1: fraction, recall: fraction, map: fraction }).passthrough();
const RetrievalRowSchema = z
  .object({
    name: z.string().min(1),
    ffnDims,
    queryModel: z.string().optional(),
    mflops: z.number().positive(),
    mflopsFraction: z.number().positive(),
    exact: Figures,
    hnsw: Figures,
    sameEncoderTop1: fraction,
    imgPerSec: z.number().nonnegative(),
  })
  .passthrough();
export const RetrievalFile = z
  .object({
    kind: z.literal('retrieval'),
    ...written,
    corpus: z.string(),
    queries: z.string(),
    corpusCount: count,
    queryCount: count,
    k: z.number().int().positive(),
    hnsw: z.object({ M: count, efConstruction: count, ef: count, source: z.enum(['index', 'memory']) }).passthrough(),
    rows: z.array(RetrievalRowSchema).min(1),
    skipped: z.array(z.unknown()),
  })
  .passthrough();
export type RetrievalFile = z.infer<typeof RetrievalFile>;

const MixRow = z
  .object({
    name: z.string().min(1),
    ffnDims,
    mflops: z.number().positive(),
    uniform: z.boolean(),
    latencyMs: z.number().nonnegative(),
    top1: fraction,
    recall: fraction,
    onFront: z.boolean(),
  })
  .passthrough();
const Paired = z.object({ diff: z.number(), se: z.number().nonnegative() });
const PairedPair = z.object({ top1: Paired, recall: Paired });
const FrontCheck = z
  .object({
    minBetween: count,
    betweenSAndXl: count,
    comparisons: count,
    alpha: z.number().positive().lt(1),
    noiseZ: z.number().nonnegative(),
    points: z.array(
      z
        .object({
          name: z.string(),
          mflops: z.number(),
          nearestUniform: z.string(),
          vsNearest: PairedPair,
          atLeastAsGood: z.boolean(),
          cheaperUniform: z.string(),
          vsCheaper: PairedPair,
          atLeastAsGoodAsCheaper: z.boolean(),
        })
        .passthrough(),
    ),
    noneWorse: z.boolean(),
    noneWorseThanCheaper: z.boolean(),
    pass: z.boolean(),
  })
  .passthrough();
export const MixnmatchFile = z
  .object({
    kind: z.literal('mixnmatch'),
    ...written,
    data: z.string(),
    corpus: z.string(),
    count,
    corpusCount: count,
    k: z.number().int().positive(),
    latencyRuns: count,
    configs: z.array(MixRow).min(1),
    check: FrontCheck,
    skipped: count,
  })
  .passthrough()
  // "of XL" and the S-to-XL check need the uniform xl config, which the writer always measures.
  .refine((f) => f.configs.some((c) => c.uniform && c.name === 'xl'), { message: 'no uniform config named "xl"', path: ['configs'] });
export type MixnmatchFile = z.infer<typeof MixnmatchFile>;

const KINDS = {
  classify: { schema: ClassifyFile, writer: 'matvit eval classify --json' },
  retrieval: { schema: RetrievalFile, writer: 'matvit eval retrieval --json' },
  mixnmatch: { schema: MixnmatchFile, writer: 'matvit mixnmatch --out' },
} as const;

export type Result = ClassifyFile | RetrievalFile | MixnmatchFile;

/** Validates one parsed JSON file; errors name the file, the field, the value found and what is accepted. */
export function parseResult(file: string, json: unknown): Result {
  const kinds = Object.entries(KINDS)
    .map(([k, v]) => `"${k}" (${v.writer})`)
    .join(', ');
  const kind = json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as { kind?: unknown }).kind : undefined;
  if (typeof kind !== 'string' || !(kind in KINDS)) throw new Error(`${file}: field kind: received ${preview(kind)}; accepted: ${kinds}`);
  const r = KINDS[kind as keyof typeof KINDS].schema.safeParse(json);
  if (r.success) return r.data;
  throw new Error(formatZodError(r.error, json, { name: (p) => `${file}: field ${fieldPath(p)}` }));
}
