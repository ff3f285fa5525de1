// Training configuration: one zod schema; a preset's model plus overrides. Saved in every checkpoint.
import { z } from 'zod';
import { ModelConfig } from '../model/config.ts';

export const Objective = z.enum(['sum', 'sampled']);

/**
 * Distillation toward the full-width model (nested fine-tuning of a dense or matformerized model):
 * every trained submodel narrower than XL also matches XL's outputs on the same batch, so all of
 * them stay in XL's metric space. The teacher is XL of the weights being trained (`self`, computed
 * before the update, no gradient) or of the frozen --init model (`init`). The default weights (KL 1,
 * cosine 1) kept submodels closest to XL's neighbours: results/fmnist-matformerize/distill-choice/.
 */
export const Distill = z
  .object({
    teacher: z.enum(['self', 'init']).default('self'),
    /** Weight of T^2 * KL(teacher || student) on the logits at temperature T (Hinton et al., arXiv 1503.02531). */
    kl: z.number().nonnegative().default(1),
    temperature: z.number().positive().default(1),
    /** Weight of 1 - cos(student embedding, teacher embedding): the retrieval space itself. */
    cosine: z.number().nonnegative().default(1),
  })
  .strict();
export type Distill = z.infer<typeof Distill>;

export const TrainConfig = z
  .object({
    model: ModelConfig,
    data: z.string().min(1),
    val: z.string().min(1).optional(),
    /**
     * sum: the losses of s, m, l and xl on the same batch every step (the released MatViT recipe).
     * sampled: one granularity per step, drawn with `granularityWeights` (the later paper text).
     * The default is sampled: at equal compute it was 6.5 points more accurate here
     * (results/objective-comparison.md), and it costs one forward/backward per step, not four.
     */
    objective: Objective.default('sampled'),
    granularityWeights: z.array(z.number().nonnegative()).length(4).default([1, 1, 1, 1]),
    /** Train a plain ViT at this one FFN width only (baselines): no nesting. */
    baselineFfn: z.number().int().positive().optional(),
    /**
     * Start from these weights (a model directory or checkpoint of the same architecture) instead of
     * a seeded initialization: a second stage with another recipe (timm's --initial-checkpoint).
     */
    init: z.string().min(1).optional(),
    /** Distill every narrower submodel toward XL (see Distill); off by default. */
    distill: Distill.optional(),
    epochs: z.number().positive().default(30),
    batchSize: z.number().int().positive().default(128),
    lr: z.number().positive().default(1e-3),
    minLr: z.number().nonnegative().default(1e-5),
    warmupSteps: z.number().int().nonnegative().default(500),
    weightDecay: z.number().nonnegative().default(0.05),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    adamEps: z.number().positive().default(1e-8),
    clipNorm: z.number().positive().default(1.0),
    /**
     * Weight of the cross-entropy on the dataset's labels. 0 trains on images alone by distillation
     * (unlabelled photos, a headless or CLIP model): the only way to make such a model elastic.
     */
    labelLoss: z.number().nonnegative().default(1),
    labelSmoothing: z.number().min(0).lt(1).default(0.1),
    /** Random-resized crop scale range and horizontal flip (set flip false for digits). */
    cropScale: z.tuple([z.number().gt(0).lte(1), z.number().gt(0).lte(1)]).default([0.5, 1]),
    flip: z.boolean().default(true),
    mixup: z.number().nonnegative().default(0),
    seed: z.number().int().default(0),
    checkpointEvery: z.number().int().positive().default(200),
    logEvery: z.number().int().positive().default(20),
    /** Evaluate on `val` every this many epochs (and at the end). */
    evalEvery: z.number().positive().default(1),
    concurrency: z.number().int().positive().default(8),
  })
  .strict()
  .superRefine((c, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    if (c.distill?.teacher === 'init' && c.init === undefined)
      issue(['distill', 'teacher'], "teacher 'init' needs --init DIR (the frozen model)");
    // A head that is the embedding (CLIP's projection) or no head at all: nothing to classify with.
    const classifier = c.model.numClasses > 0 && c.model.embedding === 'pre_logits';
    if (!classifier && c.labelLoss > 0)
      issue(
        ['labelLoss'],
        'the model has no classifier head (numClasses 0 or a head embedding): train by distillation with --label-loss 0',
      );
    if (!classifier && c.distill && c.distill.kl > 0)
      issue(['distill', 'kl'], 'the model has no classifier logits to distill: --distill-kl 0');
    if (c.labelLoss === 0 && !c.distill) issue(['labelLoss'], 'no loss: --label-loss 0 needs distillation (--distill self|init)');
    if (c.labelLoss === 0 && c.mixup > 0) issue(['mixup'], 'mixup mixes labels: it needs --label-loss above 0');
  });
export type TrainConfig = z.infer<typeof TrainConfig>;
export type TrainConfigInput = z.input<typeof TrainConfig>;
