// Bounds the engine sessions a server keeps. ONNX Runtime builds one session per FFN-width vector,
// each with its own copy of the weights (onnxruntime-node offers no way to share initializers
// between sessions: docs/serving-memory.md), so a client sending many distinct `ffnDims` would
// otherwise grow the server without limit. Menu entries (and the cascade's stages) keep their
// sessions for good; other widths share `customSessions` slots, the least recently used released
// first (never while one of its encodes runs). `customWidths: false` refuses such widths (400).
import type { Encoder, EncodeOutput } from '../engine/encoder.ts';

/** An engine that can drop one submodel's session (the ORT engines); others keep nothing per width. */
interface Releasable {
  release(ffnDims: readonly number[]): Promise<void>;
}
const canRelease = (e: Encoder): e is Encoder & Releasable => typeof (e as Partial<Releasable>).release === 'function';

const key = (ffnDims: readonly number[]) => ffnDims.join(',');

/** The encoder the service runs through: `inner` with at most `customSessions` sessions outside `pinned`. */
export class BoundedSessions implements Encoder {
  /** Custom widths by key, least recently used first, with their encodes in flight. */
  private readonly lru = new Map<string, { ffnDims: readonly number[]; busy: number }>();
  private readonly pinned: Set<string>;
  /** Sessions released so far (metrics, tests). */
  evictions = 0;

  constructor(
    private readonly inner: Encoder,
    pinned: readonly (readonly number[])[],
    private readonly limit: number,
    private readonly onEvict?: (ffnDims: readonly number[]) => void,
  ) {
    this.pinned = new Set(pinned.map(key));
  }

  get engine() {
    return this.inner.engine;
  }
  get description() {
    return this.inner.description;
  }
  get config() {
    return this.inner.config;
  }

  /** Custom widths holding a session now. */
  get customCount(): number {
    return this.lru.size;
  }

  async encode(images: Float32Array, ffnDims: readonly number[]): Promise<EncodeOutput> {
    const k = key(ffnDims);
    if (this.pinned.has(k) || !canRelease(this.inner)) return this.inner.encode(images, ffnDims);
    const slot = this.lru.get(k) ?? { ffnDims: [...ffnDims], busy: 0 };
    this.lru.delete(k);
    this.lru.set(k, slot); // most recently used last
    slot.busy++;
    try {
      return await this.inner.encode(images, ffnDims);
    } finally {
      slot.busy--;
      await this.evict(this.inner);
    }
  }

  /** Releases the least recently used idle custom sessions past the limit. */
  private async evict(inner: Encoder & Releasable): Promise<void> {
    for (const [k, slot] of this.lru) {
      if (this.lru.size <= this.limit) return;
      if (slot.busy > 0) continue;
      this.lru.delete(k);
      this.evictions++;
      this.onEvict?.(slot.ffnDims);
      await inner.release(slot.ffnDims);
    }
  }

  dispose(): Promise<void> {
    this.lru.clear();
    return this.inner.dispose();
  }
}
