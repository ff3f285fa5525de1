// The ONNX Runtime engine in a worker thread. onnxruntime-node's run() is synchronous on the
// calling thread (it only defers the call with setImmediate; microsoft/onnxruntime#19611), so an
// in-process encoder stops the event loop for the whole of every batch: a server answers nothing
// meanwhile and an index build cannot commit or hash while it embeds. Here the sessions live in a
// worker; encode() only posts the pixels and waits.
//
// Same graphs and session options as OnnxEncoder (onnx.ts): a submodel's graph is built on this
// thread on first use and sent to the worker, which keeps one warm session per ffnDims. Messages
// are handled in order, so a graph always arrives before the first batch that uses it.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { type ModelConfig, checkFfnDims } from '../model/config.ts';
import { type WeightMap, checkWeights } from '../model/weights.ts';
import { type EncodeOutput, type Encoder, type EngineOptions, batchSize } from './encoder.ts';
import { describeOrt, resolveThreads, sessionOptions } from './onnx.ts';
import { buildOnnxModel } from './onnx-graph.ts';

/**
 * The worker, CommonJS evaluated from a string so that it loads nothing but onnxruntime-node (by
 * absolute path): no TypeScript loader is needed in the worker.
 *   {load: key, model}               -> builds the session of submodel `key`
 *   {run: key, id, images, dims}     -> {id, embeddings, logits} or {id, error}
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ort);
const sessions = new Map();
parentPort.on('message', async (m) => {
  if (m.load !== undefined) {
    const created = ort.InferenceSession.create(m.model, workerData.options);
    created.catch(() => {}); // reported by the runs that need it
    sessions.set(m.load, created);
    return;
  }
  try {
    const session = await sessions.get(m.run);
    const out = await session.run({ pixels: new ort.Tensor('float32', m.images, m.dims) });
    const embeddings = out.embedding.data, logits = out.logits.data;
    parentPort.postMessage({ id: m.id, embeddings, logits }, [embeddings.buffer, logits.buffer]);
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) });
  }
});
`;

export class OnnxWorkerEncoder implements Encoder {
  readonly engine = 'onnx' as const;
  readonly description: string;
  private readonly worker: Worker;
  private readonly loaded = new Set<string>();
  private readonly waiting = new Map<number, { resolve: (o: EncodeOutput) => void; reject: (e: Error) => void }>();
  private next = 0;
  private failure?: Error;

  constructor(
    readonly config: ModelConfig,
    private readonly weights: WeightMap,
    opts: EngineOptions = {},
  ) {
    checkWeights(config, weights);
    const threads = resolveThreads(opts.threads);
    const require = createRequire(import.meta.url);
    this.description = describeOrt(threads, 'in a worker thread');
    this.worker = new Worker(WORKER, {
      eval: true,
      workerData: { ort: require.resolve('onnxruntime-node'), options: sessionOptions(threads) }, // plain data: crosses as it is
    });
    this.worker.on('message', (m: { id: number; embeddings?: Float32Array; logits?: Float32Array; error?: string }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined) w.reject(new Error(`onnxruntime-node: ${m.error}`));
      else w.resolve({ embeddings: m.embeddings!, logits: m.logits! });
    });
    const failAll = (e: Error) => {
      this.failure ??= e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    this.worker.on('error', failAll);
    this.worker.on('exit', (code) => failAll(new Error(`the encoder worker exited (code ${code})`)));
  }

  /**
   * images [B, C, H, W] are copied to the worker, not transferred: callers reuse their buffers
   * (one batch for several submodels), and the copy is tiny next to the encode.
   */
  // async, so a bad argument rejects; there is no await before the posts, so they keep call order.
  async encode(images: Float32Array, ffnDims: readonly number[]): Promise<EncodeOutput> {
    if (this.failure) throw this.failure;
    const c = this.config;
    const dims = checkFfnDims(c, ffnDims);
    const key = dims.join(',');
    const shape = [batchSize(c, images), c.channels, c.imageSize, c.imageSize];
    if (!this.loaded.has(key)) {
      const model = buildOnnxModel(c, this.weights, dims);
      this.worker.postMessage({ load: key, model }, [model.buffer as ArrayBuffer]);
      this.loaded.add(key);
    }
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ run: key, id, images, dims: shape });
    });
  }

  async dispose(): Promise<void> {
    await this.worker.terminate();
  }
}
