// Micro-batching of query encodes. Concurrent requests for the same submodel are encoded in one
// engine call: a batch of B images costs far less than B calls of one (the weights are read once
// per call, and ORT's per-call overhead is paid once).
//
// One engine call runs at a time: ORT already spreads one call over every core, so two calls at
// once would only compete for them. While a call runs, requests queue per submodel; when it
// returns, the submodel whose oldest request has waited longest goes next, with up to maxBatch of
// its requests. When the engine is idle, a new request waits at most maxWaitMs for companions
// (or until maxBatch of them are there) before its call starts: that bounded wait is the whole
// latency price of batching. The queue is bounded: past maxQueue waiting images a request is
// refused with 503 at once rather than left to wait longer than any client would.
import type { Encoder } from '../engine/encoder.ts';
import type { BatchOptions } from './config.ts';
import { ApiError } from './errors.ts';

/** A submodel as the batcher sees it: `name` labels metrics, `ffnDims` is what runs. */
export interface BatchKey {
  name: string;
  ffnDims: readonly number[];
}

interface Pending {
  input: Float32Array;
  enqueuedAt: number;
  resolve: (embedding: Float32Array) => void;
  reject: (err: unknown) => void;
}

interface Queue {
  key: BatchKey;
  items: Pending[];
}

export interface BatchEvent {
  name: string;
  size: number;
  /** Engine time of the call. */
  ms: number;
}

export class MicroBatcher {
  private readonly queues = new Map<string, Queue>();
  private waiting = 0;
  private running = 0; // images in the engine call in flight
  private busy = false;
  private timer: NodeJS.Timeout | null = null;
  private idleWaiters: (() => void)[] = [];
  /** Engine calls made, for tests and metrics. */
  calls = 0;

  constructor(
    private readonly encoder: Encoder,
    private readonly opts: BatchOptions,
    private readonly onBatch?: (e: BatchEvent) => void,
  ) {}

  /** Images waiting for an engine call. */
  get depth(): number {
    return this.waiting;
  }

  /** Images waiting or being encoded. */
  get inFlight(): number {
    return this.waiting + this.running;
  }

  /** The L2-normalized embedding of one [C, H, W] input by the submodel `key`. */
  encode(input: Float32Array, key: BatchKey): Promise<Float32Array> {
    if (this.waiting >= this.opts.maxQueue)
      return Promise.reject(
        new ApiError(
          503,
          'overloaded',
          `${this.waiting} images are waiting to be encoded (the queue holds ${this.opts.maxQueue}); retry shortly`,
          {},
          { 'Retry-After': '1' },
        ),
      );
    const k = key.ffnDims.join(',');
    let q = this.queues.get(k);
    if (!q) this.queues.set(k, (q = { key, items: [] }));
    const p = new Promise<Float32Array>((resolve, reject) => q.items.push({ input, enqueuedAt: performance.now(), resolve, reject }));
    this.waiting++;
    if (!this.busy) {
      if (q.items.length >= this.opts.maxBatch) this.dispatch();
      else this.schedule();
    }
    return p;
  }

  /** Resolves when nothing is waiting or running (graceful shutdown). */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Arms the flush timer for the oldest waiting request, if not armed. */
  private schedule(): void {
    if (this.timer || this.waiting === 0) return;
    const oldest = this.oldest();
    const wait = Math.max(0, oldest!.items[0].enqueuedAt + this.opts.maxWaitMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.busy) this.dispatch();
    }, wait);
  }

  private oldest(): Queue | undefined {
    let best: Queue | undefined;
    for (const q of this.queues.values()) if (q.items.length && (!best || q.items[0].enqueuedAt < best.items[0].enqueuedAt)) best = q;
    return best;
  }

  /** Starts one engine call with the oldest submodel's requests; chains the next when it returns. */
  private dispatch(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const q = this.oldest();
    if (!q) {
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    const batch = q.items.splice(0, this.opts.maxBatch);
    if (q.items.length === 0) this.queues.delete(q.key.ffnDims.join(','));
    this.waiting -= batch.length;
    this.running = batch.length;
    this.busy = true;
    this.calls++;
    const per = batch[0].input.length;
    const images = new Float32Array(batch.length * per); // [B, C, H, W]
    batch.forEach((b, i) => images.set(b.input, i * per));
    const t0 = performance.now();
    this.encoder
      .encode(images, q.key.ffnDims)
      .then(({ embeddings }) => {
        const D = embeddings.length / batch.length;
        this.onBatch?.({ name: q.key.name, size: batch.length, ms: performance.now() - t0 });
        batch.forEach((b, i) => b.resolve(embeddings.slice(i * D, (i + 1) * D)));
      })
      .catch((err: unknown) => batch.forEach((b) => b.reject(err)))
      .finally(() => {
        this.busy = false;
        this.running = 0;
        // Requests that queued during the call have waited already: no further wait.
        this.dispatch();
      });
  }
}
