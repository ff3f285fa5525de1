// The query cascade of `encoder=auto`: encode with a small submodel, search, and re-encode with a
// larger one only when the neighbours look unsure. Both the service (policy.ts) and
// `matvit calibrate` (serve/calibrate.ts) judge confidence with the functions below, so the
// thresholds calibrated offline mean the same thing at serving time.
//
// Two confidence signals, both read off the k nearest neighbours of the first encoding:
// - margin: top-1 score minus the k-th score. When the top-1 stands well clear of the rest, a
//   slightly different encoding of the query keeps it first; when the k neighbours are all about
//   as close, a small change of encoder reorders them. Works without labels.
// - agreement: the share of the k neighbours whose label is the top-1's. When the neighbourhood
//   is split between classes, the small submodel's top-1 is the likeliest to differ from XL's.
// A stage escalates when any signal its rule names falls below the rule's threshold.
import { z } from 'zod';
import type { IndexStore } from '../index/store-api.ts';
import type { SearchHit } from '../index/types.ts';
import { type ModelConfig, checkFfnDims } from '../model/config.ts';

/** The index metadata key (IndexStore.setMeta) the calibration is stored under. */
export const CASCADE_META_KEY = 'serve.cascade';

export const EscalationRule = z
  .object({
    /** Escalate when top-1 score minus k-th score is below this. */
    margin: z.number().optional(),
    /** Escalate when the share of the k neighbours labelled as the top-1 is below this. */
    agreement: z.number().min(0).max(1).optional(),
  })
  .strict()
  .refine((r) => r.margin !== undefined || r.agreement !== undefined, 'a rule names margin, agreement or both');
export type EscalationRule = z.infer<typeof EscalationRule>;

const Stage = z.object({ name: z.string().min(1), ffnDims: z.array(z.number().int().positive()).min(1) }).strict();

const HeldOut = z
  .object({
    queries: z.number().int().nonnegative(),
    accuracy: z.number().optional(),
    precisionAt10: z.number().optional(),
    recallAt10: z.number(),
    mflopsFraction: z.number(),
    escalationRate: z.number(),
  })
  .strict();
export type HeldOut = z.infer<typeof HeldOut>;

export const Cascade = z
  .object({
    version: z.literal(1),
    /** Neighbours the signals are computed on. */
    k: z.number().int().positive(),
    /** stages[i] escalates to stages[i + 1] when rules[i] fires; the last stage answers. */
    stages: z.array(Stage).min(2),
    rules: z.array(EscalationRule),
    /** What the thresholds were chosen to preserve: labels (1-NN accuracy, precision@10) or XL's neighbours. */
    basis: z.enum(['labels', 'xl-neighbours']),
    tolerance: z.number().nonnegative(),
    minRecall: z.number().optional(),
    /** The held-out queries (dataset spec) and what the cascade and always-XL scored on them. */
    queries: z.string(),
    heldOut: HeldOut,
    reference: HeldOut,
    fingerprint: z.string(),
    calibratedAt: z.iso.datetime(),
  })
  .strict()
  .refine((c) => c.rules.length === c.stages.length - 1, 'one rule per stage but the last');
export type Cascade = z.infer<typeof Cascade>;

export interface Confidence {
  margin: number;
  agreement: number;
}

/** The confidence signals of a result list (best first), over its first k hits. */
export function confidence(hits: readonly Pick<SearchHit, 'score' | 'label'>[], k: number): Confidence {
  if (hits.length === 0) return { margin: 0, agreement: 0 };
  const top = hits.slice(0, k);
  const margin = top[0].score - top[top.length - 1].score;
  const agreement = top.filter((h) => h.label === top[0].label).length / top.length;
  return { margin, agreement };
}

/** Does this rule send the query to the next stage? */
export function shouldEscalate(rule: EscalationRule, c: Confidence): boolean {
  return (rule.margin !== undefined && c.margin < rule.margin) || (rule.agreement !== undefined && c.agreement < rule.agreement);
}

/**
 * The calibration stored in `index`, if it fits the index and its model; with why `auto` answers as
 * it does either way (for the log and GET /v1/index), and what to run when it is not calibrated.
 */
export function storedCascade(
  index: Pick<IndexStore, 'dir' | 'getMeta' | 'info'>,
  model: ModelConfig,
  corpusName: string,
): { cascade: Cascade | null; why: string } {
  const raw = index.getMeta(CASCADE_META_KEY);
  const xl = `answers with ${corpusName}, the corpus submodel (no compute saved)`;
  const run = `run \`matvit calibrate --index ${index.dir}\` and restart the server`;
  if (raw === undefined)
    return { cascade: null, why: `${xl}: the index is not calibrated; ${run} to let auto answer easy queries with a cheaper encoder` };
  if (raw === null) return { cascade: null, why: `${xl}: matvit calibrate found no cascade cheaper than it within its tolerance` };
  const parsed = Cascade.safeParse(raw);
  const problem = parsed.success
    ? cascadeProblem(parsed.data, index.info().manifest, model)
    : `it is not a valid calibration (${parsed.error.message})`;
  if (problem)
    return { cascade: null, why: `${xl}: the cascade stored in the index (${CASCADE_META_KEY}) is ignored because ${problem}; ${run}` };
  const c = parsed.data!;
  return { cascade: c, why: `the cascade ${c.stages.map((s) => s.name).join(' -> ')} calibrated on ${c.queries} at ${c.calibratedAt}` };
}

/** Why a stored cascade does not fit the index (its model and corpus submodel), if it does not. */
function cascadeProblem(c: Cascade, manifest: { fingerprint: string; ffnDims: number[] }, model: ModelConfig): string | undefined {
  if (c.fingerprint !== manifest.fingerprint)
    return `it was calibrated for model ${c.fingerprint}, the index holds ${manifest.fingerprint}`;
  if (c.stages[c.stages.length - 1].ffnDims.join() !== manifest.ffnDims.join()) return 'its last stage is not the corpus submodel';
  try {
    for (const st of c.stages) checkFfnDims(model, st.ffnDims);
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
}
