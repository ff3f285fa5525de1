import fs from 'node:fs';
import { Command } from 'commander';
import { z } from 'zod';
import { PRESETS, preset } from '../model/presets.ts';
import { readMeta } from '../model/checkpoint.ts';
import { Distill, TrainConfig } from '../train/config.ts';
import { UsageError, csv, flag, parseOptions, printJson } from './common.ts';
import { markdownTable } from '../util/format.ts';

const num = z.coerce.number();
const Options = z.object({
  preset: z.enum(Object.keys(PRESETS) as [string, ...string[]]).optional(),
  config: z.string().optional(),
  data: z.string().optional(),
  val: z.string().optional(),
  out: z.string().min(1),
  resume: z.boolean().default(false),
  backend: z.string().default('auto'),
  threads: z.coerce.number().int().positive().optional(),
  maxSteps: z.coerce.number().int().positive().optional(),
  // Overrides of the training config (undefined = keep the preset's / file's / schema's value).
  epochs: num.optional(),
  batchSize: num.optional(),
  lr: num.optional(),
  minLr: num.optional(),
  warmupSteps: num.optional(),
  weightDecay: num.optional(),
  objective: z.string().optional(),
  weights: z.string().optional(),
  baselineFfn: num.optional(),
  init: z.string().optional(),
  labelLoss: num.optional(),
  labelSmoothing: num.optional(),
  cropScale: z.string().optional(),
  flip: z.boolean().optional(),
  mixup: num.optional(),
  seed: num.optional(),
  checkpointEvery: num.optional(),
  evalEvery: num.optional(),
  distill: Distill.shape.teacher.unwrap().optional(),
  distillKl: num.optional(),
  distillCosine: num.optional(),
  distillTemperature: num.optional(),
});

/** preset or config file, then the command-line overrides, validated as one TrainConfig. */
function resolveConfig(o: z.infer<typeof Options>): TrainConfig {
  if (o.preset && o.config) throw new UsageError('give one of --preset NAME or --config FILE, not both');
  if (!o.preset && !o.config && !o.init) throw new UsageError('give one of --preset NAME, --config FILE or --init DIR (the model of DIR)');
  // --init alone: the model is the one of DIR (an imported or matformerized checkpoint), its weights the start.
  const base: Record<string, unknown> = o.config
    ? JSON.parse(fs.readFileSync(o.config, 'utf8'))
    : { model: o.preset ? preset(o.preset) : readMeta(o.init!).model };
  if (typeof base.model === 'string') base.model = preset(base.model);
  const overrides = Object.fromEntries(
    Object.entries({
      data: o.data,
      val: o.val,
      epochs: o.epochs,
      batchSize: o.batchSize,
      lr: o.lr,
      minLr: o.minLr,
      warmupSteps: o.warmupSteps,
      init: o.init,
      weightDecay: o.weightDecay,
      objective: o.objective,
      baselineFfn: o.baselineFfn,
      labelLoss: o.labelLoss,
      labelSmoothing: o.labelSmoothing,
      flip: o.flip,
      mixup: o.mixup,
      seed: o.seed,
      checkpointEvery: o.checkpointEvery,
      evalEvery: o.evalEvery,
      granularityWeights: o.weights ? csv(o.weights).map(Number) : undefined,
      cropScale: o.cropScale ? csv(o.cropScale).map(Number) : undefined,
    }).filter(([, v]) => v !== undefined),
  );
  const distill = Object.fromEntries(
    Object.entries({ teacher: o.distill, kl: o.distillKl, cosine: o.distillCosine, temperature: o.distillTemperature }).filter(
      ([, v]) => v !== undefined,
    ),
  );
  // Any --distill* flag turns distillation on; the others keep the config's or the schema's values.
  const withDistill = Object.keys(distill).length ? { distill: { ...(base.distill as object | undefined), ...distill } } : {};
  return parseOptions(TrainConfig, { ...base, ...overrides, ...withDistill });
}

/** The options of train and bench train; the training hyper-parameters' defaults are TrainConfig's. */
const trainOptions = (cmd: Command, O: z.ZodObject) =>
  cmd
    .addOption(flag(O, '--preset <name>', `model preset: ${Object.keys(PRESETS).join(', ')}`))
    .addOption(flag(O, '--config <file>', 'training config JSON (a TrainConfig; "model" may be a preset name)'))
    .addOption(flag(O, '--data <spec>', 'training data: a folder, idx:IMAGES,LABELS, fashion-mnist:train (slices: spec[a:b])'))
    .addOption(flag(O, '--val <spec>', 'validation data, evaluated per epoch for every granularity'))
    .addOption(flag(TrainConfig, '--epochs <n>', 'epochs'))
    .addOption(flag(TrainConfig, '--batch-size <n>', 'batch size'))
    .addOption(flag(TrainConfig, '--lr <x>', 'peak learning rate'))
    .addOption(flag(TrainConfig, '--min-lr <x>', 'final learning rate of the cosine'))
    .addOption(flag(TrainConfig, '--warmup-steps <n>', 'linear warm-up steps'))
    .addOption(flag(TrainConfig, '--weight-decay <x>', 'AdamW decoupled weight decay (matrices only)'))
    .addOption(
      flag(
        TrainConfig,
        '--objective <sum|sampled>',
        'MatFormer objective: sum of s,m,l,xl losses each step, or one sampled granularity per step',
      ),
    )
    .addOption(flag(TrainConfig, '--weights <s,m,l,xl>', 'sampling weights of the granularities (sampled objective)', 'granularityWeights'))
    .addOption(flag(TrainConfig, '--baseline-ffn <n>', 'train a plain ViT at this one FFN width (baselines)'))
    .addOption(flag(TrainConfig, '--init <dir>', 'start from the weights of this model directory or checkpoint (same architecture)'))
    .addOption(
      flag(TrainConfig, '--label-loss <x>', "weight of the cross-entropy on the data's labels (0: distillation only, no labels needed)"),
    )
    .addOption(flag(TrainConfig, '--label-smoothing <x>', 'label smoothing'))
    .addOption(flag(TrainConfig, '--crop-scale <a,b>', 'random-resized-crop scale range'))
    .addOption(flag(TrainConfig, '--no-flip', 'no horizontal flips'))
    .addOption(flag(TrainConfig, '--mixup <alpha>', 'mixup alpha (0: off)'))
    .addOption(flag(TrainConfig, '--seed <n>', 'seed of initialization, data order, augmentation and sampling'))
    .addOption(flag(TrainConfig, '--checkpoint-every <n>', 'steps between checkpoints'))
    .addOption(flag(TrainConfig, '--eval-every <epochs>', 'epochs between validations'))
    .addOption(
      flag(
        O,
        '--distill <teacher>',
        "distill every narrower submodel toward XL (off unless a --distill* flag is given): teacher 'self' (XL of the trained weights, the default) or 'init' (the frozen --init model)",
      ),
    )
    .addOption(flag(Distill, '--distill-kl <x>', 'weight of T^2 * KL(teacher || student) on the logits', 'kl'))
    .addOption(flag(Distill, '--distill-cosine <x>', 'weight of 1 - cos(student, teacher) on the embeddings', 'cosine'))
    .addOption(flag(Distill, '--distill-temperature <t>', 'softmax temperature of the KL term', 'temperature'))
    .addOption(flag(O, '--backend <name>', 'tfjs backend: auto, tensorflow, wasm, cpu'))
    .addOption(flag(O, '--threads <n>', 'tfjs-wasm threads (default: every core)'));

/** commander sets a `--no-x` switch's value to true when it is not given; the config's value (file or schema) must win then. */
const given = (raw: Record<string, unknown>, cmd: Command) => ({
  ...raw,
  flip: cmd.getOptionValueSource('flip') === 'cli' ? raw.flip : undefined,
});

export const trainCommand = trainOptions(
  new Command('train')
    .description('train a MatViT (tfjs) with checkpoints every N steps; --resume continues exactly')
    .addOption(flag(Options, '--out <dir>', 'run directory (checkpoints, metrics.jsonl, best/)'))
    .addOption(flag(Options, '--resume', 'continue from the newest checkpoint in --out'))
    .addOption(flag(Options, '--max-steps <n>', 'stop after this many steps in this process')),
  Options,
).action(async (raw, cmd: Command) => {
  const o = parseOptions(Options, given(raw, cmd));
  const { train } = await import('../train/trainer.ts');
  // On --resume the config saved in the checkpoint wins; the flags still need to parse.
  const cfg = o.resume && !o.preset && !o.config && !o.init ? undefined : resolveConfig(o);
  // --epochs with --resume re-plans the schedule's length; other overrides of a resumed run are ignored.
  const result = await train(cfg, o.out, {
    resume: o.resume,
    backend: o.backend,
    threads: o.threads,
    maxSteps: o.maxSteps,
    epochs: o.resume ? o.epochs : undefined,
  });
  process.stdout.write(
    `stopped at step ${result.step}; best validation score ${Number.isFinite(result.bestScore) ? result.bestScore.toFixed(4) : 'n/a'}\n`,
  );
});

const BenchOptions = Options.extend({
  out: z.string().optional(),
  json: z.boolean().default(false),
  profile: z.boolean().default(false),
  seconds: z.coerce.number().positive().default(3),
  rounds: z.coerce.number().int().positive().default(3),
});

export const benchTrainCommand = trainOptions(
  new Command('train')
    .description('tfjs forward-only and training img/s of a preset in one run, and their ratio')
    .addOption(flag(BenchOptions, '--seconds <n>', 'seconds per measurement'))
    .addOption(flag(BenchOptions, '--rounds <n>', 'interleaved rounds; the best of each measure is kept'))
    .addOption(flag(BenchOptions, '--profile', 'also the kernel time of a forward pass and of a training step, by kernel (tf.profile)'))
    .addOption(flag(BenchOptions, '--json', 'print JSON')),
  BenchOptions,
).action(async (raw, cmd: Command) => {
  const o = parseOptions(BenchOptions, given(raw, cmd));
  const [{ benchTrain }, { backendLabel }] = await Promise.all([import('../train/bench.ts'), import('../engine/tfjs-backend.ts')]);
  const cfg = resolveConfig({ ...o, out: '', resume: false, data: o.data ?? 'unused' });
  const r = await benchTrain(cfg, { backend: o.backend, threads: o.threads, seconds: o.seconds, rounds: o.rounds, profile: o.profile });
  if (o.json) return void printJson(r);
  process.stdout.write(`${r.model}, batch ${r.batchSize}, tfjs backend ${backendLabel(r.backend, r.threads)}\n`);
  process.stdout.write(
    markdownTable(
      ['measure', 'img/s'],
      [
        ['forward only (xl)', r.forwardImgPerSec.toFixed(1)],
        ['train step, xl (one granularity: sampled objective)', r.trainImgPerSec.xl.toFixed(1)],
        ['train step, s+m+l+xl (sum objective)', r.trainImgPerSec.sum.toFixed(1)],
        ['ratio train(xl) / forward', r.ratio.toFixed(3)],
      ],
    ) + '\n',
  );
  if (!r.kernels) return;
  const top = r.kernels.slice(0, 12);
  const sum = (ks: typeof top, f: 'forwardMs' | 'stepMs') => ks.reduce((s, k) => s + k[f], 0);
  const rest = r.kernels.slice(12);
  const row = (name: string, f: number, s: number) => [name, f.toFixed(1), s.toFixed(1)];
  process.stdout.write(
    '\nkernel time per call (ms; tf.profile, mean of 3), xl\n' +
      markdownTable(
        ['kernel', 'forward', 'training step'],
        [
          ...top.map((k) => row(k.kernel, k.forwardMs, k.stepMs)),
          row(`${rest.length} other kernels`, sum(rest, 'forwardMs'), sum(rest, 'stepMs')),
          row('all kernels', sum(r.kernels, 'forwardMs'), sum(r.kernels, 'stepMs')),
        ],
      ) +
      '\n',
  );
});
