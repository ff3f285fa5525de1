// The ONNX Runtime engine in a worker thread. onnxruntime-node's run() is synchronous on the
// calling thread (it only defers the call with setImmediate; microsoft/onnxruntime#19611), so an
// in-process encoder stops the event loop for the whole of every batch: a server answers nothing
// meanwhile and an index build cannot commit or hash while it embeds. Here the sessions live in a
// worker; encode() only posts the pixels and waits.
//
// Same graphs and session options as OnnxEncoder (onnx.ts): a submodel's graph is built on this
// thread when a worker first needs it and sent to that worker, which keeps one warm session per
// ffnDims. Messages are handled in order, so a graph always arrives before the first batch that
// uses it. With several workers (index builds) each batch goes to the least busy one.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { type ModelConfig, checkFfnDims } from '../model/config.ts';
import { type WeightMap, checkWeights } from '../model/weights.ts';
import { type EncodeOutput, type Encoder, type EngineOptions, batchSize } from './types.ts';
import { describeOrt, resolveThreads, sessionOptions } from './onnx.ts';
import { buildOnnxModel } from './onnx-graph.ts';

/**
 * The worker, CommonJS evaluated from a string so that it loads nothing but onnxruntime-node (by
 * absolute path): no TypeScript loader is needed in the worker.
 *   {load: key, model}               -> builds the session of submodel `key`
 *   {run: key, id, images, dims}     -> {id, embeddings, logits} or {id, error}
 *   {unload: key}                    -> releases that session once the runs posted before it are done
 *   {close: true}                    -> {closed: true} once every session is settled and released
 */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ort);
const sessions = new Map();
const running = new Set();
parentPort.on('message', async (m) => {
  if (m.load !== undefined) {
    const created = ort.InferenceSession.create(m.model, workerData.options);
    created.catch(() => {}); // reported by the runs that need it
    sessions.set(m.load, created);
    return;
  }
  if (m.unload !== undefined) {
    const s = sessions.get(m.unload);
    sessions.delete(m.unload);
    await Promise.allSettled([...running]); // runs posted before this message hold the session
    try { await (await s).release(); } catch {}
    return;
  }
  if (m.close) {
    // Terminating while a session is being created aborts the process inside onnxruntime-node
    // ("terminate called after throwing an instance of 'Napi::Error'"): settle everything first.
    await Promise.allSettled([...running]);
    for (const s of await Promise.allSettled([...sessions.values()])) if (s.status === 'fulfilled') await s.value.release();
    parentPort.postMessage({ closed: true });
    return;
  }
  const job = (async () => {
    try {
      const session = await sessions.get(m.run);
      const out = await session.run({ pixels: new ort.Tensor('float32', m.images, m.dims) });
      const embeddings = out.embedding.data, logits = out.logits.data;
      parentPort.postMessage({ id: m.id, embeddings, logits }, [embeddings.buffer, logits.buffer]);
    } catch (err) {
      parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) });
    }
  })();
  running.add(job);
  await job;
  running.delete(job);
});
`;

export class OnnxWorkerEncoder implements Encoder {
  readonly engine = 'onnx' as const;
  readonly description: string;
  private readonly workers: { worker: Worker; busy: number; loaded: Set<string> }[];
  private readonly waiting = new Map<number, { resolve: (o: EncodeOutput) => void; reject: (e: Error) => void; done: () => void }>();
  private next = 0;
  private failure?: Error;

  /**
   * `opts.workers` (default 1) workers share `opts.threads`: each runs whole batches on its own
   * threads. For throughput (an index build) 2 workers x 1 thread beat 1 x 2 on 2 cores once the
   * JS thread also needs a core: no intra-op barrier waits on a preempted thread (build.ts).
   */
  constructor(
    readonly config: ModelConfig,
    private readonly weights: WeightMap,
    opts: EngineOptions = {},
  ) {
    checkWeights(config, weights);
    const threads = resolveThreads(opts.threads);
    const count = opts.workers ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > threads)
      throw new Error(`workers ${count}: expected an integer from 1 to threads (${threads})`);
    const require = createRequire(import.meta.url);
    this.description = describeOrt(threads, count === 1 ? 'in a worker thread' : `in ${count} worker threads`);
    const failAll = (e: Error) => {
      this.failure ??= e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    this.workers = Array.from({ length: count }, (_, i) => {
      const own = Math.floor(threads / count) + (i < threads % count ? 1 : 0);
      const worker = new Worker(WORKER, {
        eval: true,
        workerData: { ort: require.resolve('onnxruntime-node'), options: sessionOptions(own) }, // plain data: crosses as it is
      });
      worker.on('message', (m: { id: number; embeddings?: Float32Array; logits?: Float32Array; error?: string }) => {
        const w = this.waiting.get(m.id);
        if (!w) return;
        this.waiting.delete(m.id);
        w.done();
        if (m.error !== undefined) w.reject(new Error(`onnxruntime-node: ${m.error}`));
        else w.resolve({ embeddings: m.embeddings!, logits: m.logits! });
      });
      worker.on('error', failAll);
      worker.on('exit', (code) => failAll(new Error(`the encoder worker exited (code ${code})`)));
      return { worker, busy: 0, loaded: new Set<string>() };
    });
  }

  /**
   * images [B, C, H, W] are copied to the worker, not transferred: callers reuse their buffers
   * (one batch for several submodels), and the copy is tiny next to the encode. The batch goes to
   * the worker with the fewest batches outstanding.
   */
  // async, so a bad argument rejects; there is no await before the posts, so they keep call order.
  async encode(images: Float32Array, ffnDims: readonly number[]): Promise<EncodeOutput> {
    if (this.failure) throw this.failure;
    const c = this.config;
    const dims = checkFfnDims(c, ffnDims);
    const key = dims.join(',');
    const shape = [batchSize(c, images), c.channels, c.imageSize, c.imageSize];
    // The least busy worker; a worker builds a submodel's session on its first batch of it.
    const w = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    if (!w.loaded.has(key)) {
      // Built per worker and transferred, not kept: a 224 model's graph holds all its weights.
      const model = buildOnnxModel(c, this.weights, dims);
      w.worker.postMessage({ load: key, model }, [model.buffer as ArrayBuffer]);
      w.loaded.add(key);
    }
    const id = this.next++;
    w.busy++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, done: () => w.busy-- });
      w.worker.postMessage({ run: key, id, images, dims: shape });
    });
  }

  /**
   * Releases a submodel's session in every worker that built it (serve/sessions.ts bounds memory
   * with it); batches already posted for it run first, and the next batch builds it again.
   */
  async release(ffnDims: readonly number[]): Promise<void> {
    const key = ffnDims.join(',');
    for (const w of this.workers) if (w.loaded.delete(key)) w.worker.postMessage({ unload: key });
  }

  /** Lets every worker settle its sessions (see WORKER's close), then stops it. */
  async dispose(): Promise<void> {
    await Promise.all(
      this.workers.map(async ({ worker }) => {
        if (!this.failure) {
          const closed = new Promise<void>((resolve) => {
            worker.on('message', (m: { closed?: boolean }) => m.closed && resolve());
            worker.once('exit', () => resolve());
          });
          worker.postMessage({ close: true });
          await closed;
        }
        await worker.terminate();
      }),
    );
  }
}
