// The ONNX Runtime engine: one sliced ONNX graph per submodel (onnx-graph.ts), run by
// onnxruntime-node on the CPU. ORT runs the same ViT several times faster than tfjs-wasm (3.9x at
// vit-s16 XL, batch 32, in README's `bench encode` output), so it is the default for inference;
// tfjs stays the checked fallback.
//
// Sessions are cached per ffnDims and stay warm: switching submodels between calls costs no
// rebuild. Each session holds its own copy of the weights (the shared attention/embedding weights
// are duplicated per submodel), the price of each submodel being a plain, small, fast graph.
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { type ModelConfig, checkFfnDims } from '../model/config.ts';
import { type WeightMap, checkWeights } from '../model/weights.ts';
import { type EncodeOutput, type Encoder, type EngineOptions, batchSize } from './types.ts';
import { buildMatMulModel, buildOnnxModel } from './onnx-graph.ts';

/** Threads for ORT's intra-op pool: the option if given, else every core. */
export function resolveThreads(threads: number | undefined): number {
  if (threads === undefined) return os.availableParallelism();
  if (!Number.isInteger(threads) || threads < 1)
    throw new Error(`threads ${threads}: expected a positive integer (default: ${os.availableParallelism()}, the number of cores)`);
  return threads;
}

/** "onnxruntime-node 1.30.0 (cpu, 2 threads[, where])": what every ORT encoder reports. */
export const describeOrt = (threads: number, where?: string) =>
  `onnxruntime-node ${ort.env.versions.node ?? ort.env.versions.common} (cpu, ${threads} thread${threads === 1 ? '' : 's'}${where ? `, ${where}` : ''})`;

/**
 * The session options of every ORT session in the project (encoders, the build worker, the ceiling
 * measurement). Pool threads do not spin while idle: on a shared 2-core machine spinning threads
 * took the cores the main thread needed.
 */
export const sessionOptions = (threads: number): ort.InferenceSession.SessionOptions => ({
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  intraOpNumThreads: threads,
  extra: { session: { intra_op: { allow_spinning: '0' } } },
});

export class OnnxEncoder implements Encoder {
  readonly engine = 'onnx' as const;
  /** ffnDims.join(',') -> the session, stored as a promise so racing first calls share one build. */
  private sessions = new Map<string, Promise<ort.InferenceSession>>();

  private constructor(
    readonly config: ModelConfig,
    readonly description: string,
    private weights: WeightMap,
    private threads: number,
  ) {}

  static async create(config: ModelConfig, weights: WeightMap, opts: EngineOptions = {}): Promise<OnnxEncoder> {
    checkWeights(config, weights);
    const threads = resolveThreads(opts.threads);
    return new OnnxEncoder(config, describeOrt(threads), weights, threads);
  }

  /** The warm session of a submodel, built on first use. */
  session(ffnDims: readonly number[]): Promise<ort.InferenceSession> {
    const dims = checkFfnDims(this.config, ffnDims);
    const key = dims.join(',');
    const cached = this.sessions.get(key);
    if (cached) return cached;
    const created = ort.InferenceSession.create(buildOnnxModel(this.config, this.weights, dims), sessionOptions(this.threads));
    this.sessions.set(key, created);
    // A failed build is forgotten, so the next call retries instead of rethrowing forever.
    created.catch(() => this.sessions.get(key) === created && this.sessions.delete(key));
    return created;
  }

  /**
   * Releases a submodel's session (the next encode builds it again): how a server bounds its
   * memory (serve/sessions.ts). The caller makes sure none of its encodes is running.
   */
  async release(ffnDims: readonly number[]): Promise<void> {
    const key = ffnDims.join(',');
    const pending = this.sessions.get(key);
    this.sessions.delete(key);
    await (await pending?.catch(() => undefined))?.release();
  }

  async encode(images: Float32Array, ffnDims: readonly number[]): Promise<EncodeOutput> {
    const c = this.config;
    const B = batchSize(c, images);
    const session = await this.session(ffnDims);
    const pixels = new ort.Tensor('float32', images, [B, c.channels, c.imageSize, c.imageSize]);
    const out = await session.run({ pixels });
    return { embeddings: out.embedding.data as Float32Array, logits: out.logits.data as Float32Array };
  }

  async dispose(): Promise<void> {
    const pending = [...this.sessions.values()];
    this.sessions.clear();
    const settled = await Promise.allSettled(pending);
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.release() : undefined)));
  }
}

export interface SgemmResult {
  gflops: number; // 2*M*K*N / seconds per product / 1e9
  shape: [number, number, number]; // [M, K, N]
  runs: number;
}

/**
 * The sgemm ceiling in ORT: times one [M, K] @ [K, N] MatMul (weights as a constant initializer, as
 * in the MatViT graph) for about `seconds` after a warm-up, with the same session options as the
 * encoder. The default shape is square and large enough that packing overhead does not count.
 */
export async function measureOrtSgemm(
  opts: { M?: number; K?: number; N?: number; threads?: number; seconds?: number } = {},
): Promise<SgemmResult> {
  const { M = 1024, K = 1024, N = 1024, seconds = 1 } = opts;
  const session = await ort.InferenceSession.create(buildMatMulModel(M, K, N), sessionOptions(resolveThreads(opts.threads)));
  try {
    const a = new ort.Tensor('float32', new Float32Array(M * K).fill(0.5), [M, K]);
    await session.run({ a }); // warm-up: first-run allocations and weight packing
    let runs = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000 || runs < 3) {
      await session.run({ a });
      runs++;
    }
    const perRun = (performance.now() - t0) / 1000 / runs;
    return { gflops: (2 * M * K * N) / perRun / 1e9, shape: [M, K, N], runs };
  } finally {
    await session.release();
  }
}
