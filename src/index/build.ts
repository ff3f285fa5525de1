// `matvit index build` and `matvit index add`: open (or create) the index, start the corpus
// encoder, run the pipeline (pipeline.ts) and record the run.
import os from 'node:os';
import { type Dataset, parseDatasetSpec, specRoot } from '../data/dataset.ts';
import { type Encoder, type EngineName, createEncoder } from '../engine/encoder.ts';
import type { Checkpoint } from '../model/checkpoint.ts';
import { mflops } from '../model/flops.ts';
import type { WeightMap } from '../model/weights.ts';
import { type ModelConfig, embeddingDim, granularityDims, submodelName } from '../model/config.ts';
import { openCorpus, modelPathFor } from './corpus.ts';
import { corpusOf, fileListDataset } from './file-list.ts';
import { readManifest } from './manifest.ts';
import { type PipelineOptions, type PipelineResult, runPipeline } from './pipeline.ts';
import type { LanceParamsInput } from './lance-params.ts';
import { openOrCreateIndex } from './open-store.ts';
import type { IndexStore, StoreKind } from './store-api.ts';
import type { OpenReport } from './vector-index.ts';

export interface BuildSummary extends PipelineResult {
  index: string;
  model: { dir: string; name: string; fingerprint: string };
  submodel: { name: string; ffnDims: number[] };
  engine: string;
  data: string;
  shard: string | null;
  /** Live items in the index after the run. */
  live: number;
  opened: OpenReport;
  peakRssMB: number;
}

/**
 * The build's encoder: ONNX in worker threads, so that the JS thread commits and decodes while they
 * embed. A small model gets one worker per core with one intra-op thread each, every worker
 * running whole batches: on fmnist-tiny (41 MFLOPs per image), fashion-mnist:train, 2 cores, one
 * worker of 2 intra-op threads reached 0.63 of `bench encode`'s XL batch-256 throughput
 * (efConstruction 100): the JS thread's HNSW insertion, as much CPU as encoding there, preempted
 * one of the two threads and the other waited at ORT's barrier (183% CPU of 200%); two workers
 * reached 0.71 at the same setting. A large model gets one worker with every core: there the
 * JS thread's share is ~1% and each worker would hold a copy of the model (vit-s16 over 1000
 * photos: 2 workers 14 img/s, peak RSS 1490 MB; 1 worker 15 img/s, 1035 MB). In-process (the
 * first design) the build ran at 0.51-0.63: encoding and committing took turns. tfjs (the
 * fallback, ~25x slower: encoding dominates anyway) runs in-process.
 */
const POOL_MAX_MFLOPS = 1000;

function corpusEncoder(
  engine: EngineName,
  cfg: ModelConfig,
  weights: WeightMap,
  ffnDims: readonly number[],
  workers?: number,
): Promise<Encoder> {
  if (engine !== 'onnx') return createEncoder(engine, cfg, weights);
  const cores = os.availableParallelism();
  const n = workers ?? (mflops(cfg, ffnDims) < POOL_MAX_MFLOPS ? cores : 1);
  return createEncoder(engine, cfg, weights, { offThread: true, threads: cores, workers: Math.min(n, cores) });
}

/** Embeds one image first, so that session creation is not counted as throughput (as bench does). */
async function warmUp(encoder: Encoder, ffnDims: readonly number[]): Promise<void> {
  const c = encoder.config;
  await encoder.encode(new Float32Array(c.channels * c.imageSize * c.imageSize), ffnDims);
}

const peakRssMB = () => Math.round(process.resourceUsage().maxRSS / 1024); // maxRSS is in KiB

export interface BuildOptions extends PipelineOptions {
  checkpoint: Checkpoint;
  /** The checkpoint's directory: the manifest records it (relative to the index) as modelPath. */
  modelDir: string;
  /** A dataset spec (dataset.ts). */
  data: string;
  out: string;
  /** The corpus submodel (default XL). */
  ffnDims?: number[];
  engine?: EngineName;
  /** ONNX encoder workers sharing the cores (default: one per core); each holds a copy of the model. */
  workers?: number;
  /** HNSW parameters of a new index (defaults in manifest.ts); for an existing one they must match it. */
  M?: number;
  efConstruction?: number;
  ef?: number;
  /** The store of a new index (default sqlite: store-api.ts); an existing one keeps its own. */
  store?: StoreKind;
  /** LanceDB store settings of a new index (lance-params.ts). */
  lance?: LanceParamsInput;
}

/**
 * Creates the index of a build in `out`, or opens the one there (its HNSW parameters must be the
 * ones asked for): `index build`, and `index enqueue --model` for the queue's collector (src/queue/).
 */
export function openBuildIndex(
  o: Pick<BuildOptions, 'checkpoint' | 'modelDir' | 'out' | 'M' | 'efConstruction' | 'ef' | 'store' | 'lance'>,
  ffnDims: number[],
  ds: Dataset,
  shard: string | null = null,
): IndexStore {
  const { meta } = o.checkpoint;
  const cfg = meta.model;
  const root = specRoot(ds.spec);
  const index = openOrCreateIndex(
    o.out,
    {
      fingerprint: meta.fingerprint,
      modelName: cfg.name,
      ffnDims,
      dim: embeddingDim(cfg),
      M: o.M,
      efConstruction: o.efConstruction,
      ef: o.ef,
      model: cfg,
      modelPath: modelPathFor(o.out, o.modelDir),
      corpus: { spec: ds.spec, ...(root && { root }), classNames: ds.classNames, ...(shard && { shard }) },
    },
    o.store ?? 'sqlite',
    o.lance,
  );
  const have = index.params;
  const clash = (['M', 'efConstruction', 'ef'] as const).filter((k) => o[k] !== undefined && o[k] !== have[k]);
  if (clash.length) {
    index.close();
    throw new Error(
      `${o.out} already holds an index with ${clash.map((k) => `${k} ${have[k]}`).join(', ')}; asked for ${clash.map((k) => `${k} ${o[k]}`).join(', ')}. Leave them out to continue it, or build into a new directory`,
    );
  }
  return index;
}

/** `matvit index build`: creates the index in `out` or continues it (see the file header). */
export async function buildIndex(o: BuildOptions): Promise<BuildSummary> {
  const { meta, weights } = o.checkpoint;
  const cfg = meta.model;
  const ffnDims = o.ffnDims ?? granularityDims(cfg, 'xl');
  const ds = await parseDatasetSpec(o.data, { limitInputPixels: o.maxPixels });
  const shard = o.shard && o.shard.count > 1 ? `${o.shard.index}/${o.shard.count}` : null;
  const index = openBuildIndex(o, ffnDims, ds, shard);
  try {
    const encoder = await corpusEncoder(o.engine ?? 'onnx', cfg, weights, ffnDims, o.workers);
    let r: PipelineResult;
    try {
      await warmUp(encoder, ffnDims);
      r = await runPipeline(index, encoder, ffnDims, ds, o);
    } finally {
      await encoder.dispose();
    }
    const summary: BuildSummary = {
      index: o.out,
      model: { dir: o.modelDir, name: cfg.name, fingerprint: meta.fingerprint },
      submodel: { name: submodelName(cfg, ffnDims), ffnDims },
      engine: encoder.description,
      data: ds.spec,
      shard,
      ...r,
      live: index.size,
      opened: index.info().opened,
      peakRssMB: peakRssMB(),
    };
    recordRun(index, summary);
    return summary;
  } finally {
    index.close();
  }
}

/** Keeps the last runs' counts in the store's metadata, for `index info`. */
function recordRun(index: IndexStore, s: BuildSummary): void {
  const runs = (index.getMeta('runs') as unknown[] | undefined) ?? [];
  const run = {
    at: new Date().toISOString(),
    data: s.data,
    shard: s.shard,
    added: s.added,
    duplicates: s.duplicates.count,
    alreadyIndexed: s.alreadyIndexed,
    skipped: s.skipped.count,
    seconds: Math.round(s.seconds * 10) / 10,
  };
  index.setMeta('runs', [...runs.slice(-49), run]);
}

export interface AddOptions extends PipelineOptions {
  index: string;
  paths: string[];
  /** Another copy of the index's model (default: the manifest's modelPath). */
  model?: string;
  engine?: EngineName;
  /** ONNX encoder workers sharing the cores (default: one per core); each holds a copy of the model. */
  workers?: number;
}

/** `matvit index add`: embeds the files with the index's model and corpus submodel and adds what is new. */
export async function addPaths(o: AddOptions): Promise<BuildSummary> {
  const { index, checkpoint, modelDir } = openCorpus(o.index, { model: o.model });
  try {
    const cfg = checkpoint.meta.model;
    const { ffnDims } = readManifest(o.index);
    const ds = await fileListDataset(o.paths, corpusOf(o.index), { limitInputPixels: o.maxPixels });
    const encoder = await corpusEncoder(o.engine ?? 'onnx', cfg, checkpoint.weights, ffnDims, o.workers);
    let r: PipelineResult;
    try {
      r = await runPipeline(index, encoder, ffnDims, ds, { ...o, shard: undefined });
    } finally {
      await encoder.dispose();
    }
    const summary: BuildSummary = {
      index: o.index,
      model: { dir: modelDir, name: cfg.name, fingerprint: checkpoint.meta.fingerprint },
      submodel: { name: submodelName(cfg, ffnDims), ffnDims },
      engine: encoder.description,
      data: ds.spec,
      shard: null,
      ...r,
      live: index.size,
      opened: index.info().opened,
      peakRssMB: peakRssMB(),
    };
    recordRun(index, summary);
    return summary;
  } finally {
    index.close();
  }
}
