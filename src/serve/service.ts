// The search service behind the HTTP app: one corpus (index + model), one encoder, the menu of
// query encoders, the policy that picks them, the micro-batcher, metrics. It knows nothing of
// HTTP; app.ts validates requests and calls it.
//
// Every image takes the project's one path: bytes -> preprocessImage (sharp, on libuv's pool, so
// decoding never blocks the event loop) -> encoder (batched) -> index. Index calls are synchronous
// (VectorIndex), so a write and a search never interleave inside the index: searches running
// during writes see the index before or after each write, never half of one.
import fs from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { preprocessImage } from '../data/preprocess.ts';
import type { Encoder } from '../engine/encoder.ts';
import type { Corpus } from '../index/corpus.ts';
import type { Filter } from '../index/filter.ts';
import { FilterUnsupported } from '../index/lance-filter.ts';
import type { Item, SearchHit } from '../index/vector-index.ts';
import { writeFileAtomic } from '../util/durable.ts';
import { sha256Hex } from '../util/hash.ts';
import { MicroBatcher } from './batcher.ts';
import { confidence, shouldEscalate, storedCascade } from './cascade.ts';
import { ServeConfig, type ServeConfigInput } from './config.ts';
import { ApiError } from './errors.ts';
import { CorpusImages, type ImageFile, UPLOADS_DIR, removeStaleUploads, uploadExtension, uploadPath, uploadSource } from './images.ts';
import { ServiceMenu, type ServiceEntry } from './menu.ts';
import { type Metrics, createMetrics } from './metrics.ts';
import { EncoderPolicy } from './policy.ts';
import { serviceInfo } from './service-info.ts';
import type { EncoderRun, SearchResponse, SearchResult } from './responses.ts';
import { BoundedSessions } from './sessions.ts';

export interface ServiceDeps {
  corpus: Corpus;
  encoder: Encoder;
  config?: ServeConfigInput;
  log?: Logger;
  /** Why the index cannot be written (server.ts detects it); set: writes answer 503, the index is open read-only. */
  readOnly?: string;
}

/** Search options after validation (app.ts). */
export interface SearchOptions {
  k: number;
  encoder: 'auto' | ServiceEntry;
  maxMflops?: number;
  maxLatencyMs?: number;
  ef?: number;
  label?: number;
  filter?: Filter;
  scoreThreshold?: number;
  offset: number;
  withPayload: boolean;
}

/** What is searched: an image (encoded here), a vector a client encoded with a menu entry, or an item's stored vector. */
export type SearchInput =
  { kind: 'image'; image: Buffer } | { kind: 'vector'; vector: Float32Array; entry: ServiceEntry } | { kind: 'id'; id: number };

export type ServiceState = 'warming' | 'ready' | 'draining' | 'closed';

const round = (ms: number) => Math.round(ms * 100) / 100;

export class SearchService {
  readonly config: ServeConfig;
  readonly menu: ServiceMenu;
  readonly policy: EncoderPolicy;
  readonly batcher: MicroBatcher;
  readonly sessions: BoundedSessions;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Why `auto` answers as it does: the stored cascade, or why there is none and what to run. */
  readonly autoWhy: string;
  private readonly images: CorpusImages;
  private refreshTimer: NodeJS.Timeout | null = null;
  state: ServiceState = 'warming';

  constructor(readonly deps: ServiceDeps) {
    const { corpus, encoder } = deps;
    this.config = ServeConfig.parse(deps.config ?? {});
    this.log = deps.log ?? pino({ level: 'silent' });
    const manifest = corpus.index.info().manifest;
    this.menu = new ServiceMenu(corpus.checkpoint.meta.model, corpus.checkpoint.meta.menu, manifest.ffnDims);
    const { cascade, why } = storedCascade(corpus.index, this.model, this.menu.corpus.name);
    this.autoWhy = why;
    this.policy = new EncoderPolicy(this.menu, cascade, this.config.load);
    this.log[cascade ? 'info' : 'warn']({ auto: this.policy.ladder[0].label }, `auto: ${why}`);
    this.metrics = createMetrics({ defaultMetrics: this.config.defaultMetrics });
    // Menu entries and the cascade's stages keep their sessions; other widths share a few (sessions.ts).
    const pinned = [...this.menu.entries, ...this.policy.ladder.flatMap((r) => r.stages.map((st) => st.entry))].map((e) => e.ffnDims);
    this.sessions = new BoundedSessions(encoder, pinned, this.config.sessions.customSessions, () => this.metrics.sessionEvictions.inc());
    this.batcher = new MicroBatcher(this.sessions, this.config.batch, (e) => {
      this.metrics.batchSize.observe({ encoder: e.name }, e.size);
      this.metrics.engineLatency.observe({ encoder: e.name }, e.ms);
    });
    this.images = new CorpusImages(corpus.index.dir, manifest.corpus);
    if (!this.readOnly) {
      const removed = removeStaleUploads(corpus.index.dir);
      if (removed.length) this.log.info({ removed }, `removed ${removed.length} temp file(s) of interrupted uploads`);
    }
    if (this.config.refreshMs > 0) {
      // Picks up what `matvit index add/remove` committed from another process.
      this.refreshTimer = setInterval(() => this.refresh(), this.config.refreshMs);
      this.refreshTimer.unref();
    }
  }

  get index() {
    return this.deps.corpus.index;
  }

  /** Why writes are disabled by the index directory, if they are. */
  get readOnly(): string | undefined {
    return this.deps.readOnly;
  }

  get model() {
    return this.deps.corpus.checkpoint.meta.model;
  }

  /** Measures each named submodel's latency (building its engine session), then reports ready. */
  async warm(): Promise<void> {
    const notes = await this.menu.measureLatency(this.deps.encoder, this.config.latency);
    for (const note of notes) this.log.info(`batch-1 latency: ${note}`);
    if (this.state === 'warming') this.state = 'ready';
    this.log.info(
      { menu: this.menu.entries.map((e) => `${e.name}: ${e.mflops.toPrecision(3)} MFLOPs, ${e.latencyMs?.toFixed(2)} ms`) },
      'encoders warm',
    );
  }

  refresh(): void {
    if (this.state === 'closed') return;
    try {
      const r = this.index.refresh();
      if (r.added || r.deleted) this.log.info(r, 'picked up changes committed by another process');
    } catch (e) {
      this.log.error({ err: e }, 'refresh failed');
    }
  }

  private assertOpen(): void {
    if (this.state === 'closed') throw new ApiError(503, 'shutting-down', 'the server is shutting down', {}, { 'Retry-After': '5' });
  }

  assertWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new ApiError(503, 'read-only', `the index is open read-only: ${this.readOnly}`);
  }

  /** Metrics label of an entry: explicit widths from a request are all "custom". */
  private label(e: ServiceEntry): string {
    return e.origin === 'request' ? 'custom' : e.name;
  }

  async search(query: SearchInput, o: SearchOptions): Promise<SearchResponse> {
    this.assertOpen();
    if (query.kind !== 'image') return this.searchStored(query, o);
    const t0 = performance.now();
    const input = await preprocessImage(query.image, this.model);
    const decodeMs = performance.now() - t0;
    if (o.maxLatencyMs !== undefined && this.state === 'warming')
      throw new ApiError(
        503,
        'warming',
        'maxLatencyMs: encoder latencies are still being measured; retry in a moment',
        { field: 'maxLatencyMs' },
        { 'Retry-After': '1' },
      );
    const plan = this.policy.plan(o, this.batcher.depth);
    const runs: EncoderRun[] = [];
    let hits: SearchHit[] = [];
    for (const [i, stage] of plan.stages.entries()) {
      const last = i === plan.stages.length - 1;
      this.assertOpen();
      const t1 = performance.now();
      const vector = await this.batcher.encode(input, stage.entry);
      const t2 = performance.now();
      this.assertOpen(); // the index may have been closed while this query waited for the engine
      hits = this.neighbours(vector, last ? 0 : plan.confidenceK, o);
      const run: EncoderRun = {
        name: stage.entry.name,
        ffnDims: stage.entry.ffnDims,
        mflops: stage.entry.mflops,
        encodeMs: round(t2 - t1),
        searchMs: round(performance.now() - t2),
      };
      runs.push(run);
      this.metrics.encodeLatency.observe({ encoder: this.label(stage.entry) }, t2 - t1);
      this.metrics.encoderRuns.inc({ encoder: this.label(stage.entry) });
      if (last || !stage.rule) break;
      run.confidence = confidence(hits, plan.confidenceK);
      run.escalated = shouldEscalate(stage.rule, run.confidence);
      if (!run.escalated) break;
      this.metrics.escalations.inc({ from: this.label(stage.entry), to: this.label(plan.stages[i + 1].entry) });
    }
    const final = plan.stages[runs.length - 1].entry;
    const spent = runs.reduce((s, r) => s + r.mflops, 0);
    const totalMs = performance.now() - t0;
    this.policy.observe(totalMs);
    this.metrics.searches.inc({ encoder: this.label(final), mode: plan.mode });
    this.metrics.searchLatency.observe({ encoder: this.label(final) }, totalMs);
    this.metrics.queryMflops.inc(spent);
    return {
      input: 'image',
      results: this.page(hits, o),
      encoder: {
        name: final.name,
        ffnDims: final.ffnDims,
        mflops: final.mflops,
        xlMflops: this.menu.xlMflops,
        savedFraction: 1 - spent / this.menu.xlMflops,
      },
      encoders: runs,
      policy: { mode: plan.mode, loadLevel: plan.loadLevel, why: plan.why },
      timings: {
        decodeMs: round(decodeMs),
        encodeMs: round(runs.reduce((s, r) => s + r.encodeMs, 0)),
        searchMs: round(runs.reduce((s, r) => s + r.searchMs, 0)),
        totalMs: round(totalMs),
      },
    };
  }

  /** A vector sent by the client, or an item's stored vector: searched as it is, nothing encoded here. */
  private searchStored(query: Exclude<SearchInput, { kind: 'image' }>, o: SearchOptions): SearchResponse {
    const t0 = performance.now();
    const self = query.kind === 'id' ? query.id : undefined;
    const vector = query.kind === 'vector' ? query.vector : this.index.vectorOf(this.item(query.id).id);
    if (!vector) throw notFound(query.kind === 'id' ? query.id : 0, undefined); // deleted between the two reads
    const entry = query.kind === 'vector' ? query.entry : this.menu.corpus;
    const results = this.page(this.neighbours(vector, 0, o, self), o);
    const ms = round(performance.now() - t0);
    const mode = query.kind === 'vector' ? 'client' : 'stored';
    this.metrics.searches.inc({ encoder: this.label(entry), mode });
    this.metrics.searchLatency.observe({ encoder: this.label(entry) }, ms);
    return {
      input: query.kind,
      results,
      encoder: { name: entry.name, ffnDims: entry.ffnDims, mflops: entry.mflops, xlMflops: this.menu.xlMflops, savedFraction: 1 },
      encoders: [],
      policy: {
        mode,
        loadLevel: this.policy.load.level,
        why: query.kind === 'vector' ? `encoded by the client with ${entry.name}` : `item ${query.id}'s stored vector (${entry.name})`,
      },
      timings: { decodeMs: 0, encodeMs: 0, searchMs: ms, totalMs: ms },
    };
  }

  /** The hits a page needs (offset + k, at least `atLeast`), the item `self` left out. */
  private neighbours(vector: Float32Array, atLeast: number, o: SearchOptions, self?: number): SearchHit[] {
    const n = Math.max(atLeast, o.offset + o.k) + (self === undefined ? 0 : 1);
    let hits: SearchHit[];
    try {
      hits = this.index.search(vector, n, { ef: o.ef, label: o.label, filter: o.filter });
    } catch (e) {
      if (e instanceof FilterUnsupported) throw new ApiError(501, 'not-supported', `filter: ${e.message}`, { field: 'filter' });
      throw e;
    }
    return self === undefined ? hits : hits.filter((h) => h.id !== self);
  }

  /** The page of results: offset, k, the score threshold (hits are best first). */
  private page(hits: SearchHit[], o: SearchOptions): SearchResult[] {
    const page = hits.slice(o.offset, o.offset + o.k).filter((h) => o.scoreThreshold === undefined || h.score >= o.scoreThreshold);
    return page.map((h) => this.result(h, o.withPayload));
  }

  /** An item's own label name, else the model's name for its label: never another item's. */
  labelNameOf(item: Pick<Item, 'label' | 'labelName'>): string | null {
    return item.labelName ?? (item.label >= 0 ? (this.model.classNames[item.label] ?? null) : null);
  }

  /** A hit as returned: label and name read from the hit's own item in the store. */
  private result(h: SearchHit, withPayload: boolean): SearchResult {
    const item = this.index.item(h.id);
    const label = item?.label ?? h.label;
    return {
      id: h.id,
      score: h.score,
      label,
      labelName: item ? this.labelNameOf(item) : null,
      path: h.source,
      imageUrl: `/v1/items/${h.id}/image`,
      ...(withPayload && { payload: item?.payload ?? null }),
    };
  }

  /**
   * Adds an image embedded with the corpus submodel. The image is kept under DIR/uploads (so GET
   * .../image serves it) and written durably before the store commit; the item is durable when
   * this returns. The same content twice gives the existing item (created: false).
   */
  async add(
    image: Buffer,
    meta: { label?: number; labelName?: string; payload?: Record<string, unknown> },
  ): Promise<{ id: number; created: boolean }> {
    this.assertWritable();
    const sha = sha256Hex(image);
    const known = this.index.existing([sha]).get(sha);
    if (known !== undefined) return { id: known, created: false };
    const name = `${sha}.${await uploadExtension(image)}`; // refuses SVG before any encoding
    const input = await preprocessImage(image, this.model);
    const vector = await this.batcher.encode(input, this.menu.corpus);
    this.assertOpen();
    fs.mkdirSync(path.join(this.index.dir, UPLOADS_DIR), { recursive: true });
    writeFileAtomic(uploadPath(this.index.dir, name), image);
    const labelName = meta.labelName ?? (meta.label !== undefined && meta.label >= 0 ? (this.model.classNames[meta.label] ?? null) : null);
    const r = this.index.add([
      { source: uploadSource(name), label: meta.label ?? -1, labelName, sha256: sha, bytes: image.length, vector, payload: meta.payload },
    ]);
    if (r.ids[0] === null) return { id: r.duplicates[0].existingId, created: false }; // the same image raced in
    this.metrics.writes.inc({ op: 'add' });
    this.log.info({ id: r.ids[0], sha256: sha }, 'item added');
    return { id: r.ids[0], created: true };
  }

  /** Deletes a live item; 404 when there is none with this id. */
  remove(id: number): { id: number; removed: true } {
    this.assertWritable();
    const item = this.index.item(id);
    const r = this.index.remove([id]);
    if (r.removed.length === 0) throw notFound(id, item);
    this.metrics.writes.inc({ op: 'remove' });
    if (item?.source.startsWith('upload:')) fs.rmSync(uploadPath(this.index.dir, item.source.slice('upload:'.length)), { force: true });
    this.log.info({ id }, 'item removed');
    return { id, removed: true };
  }

  /** A live item's metadata; 404 when deleted or unknown. */
  item(id: number): Item {
    this.assertOpen();
    const item = this.index.item(id);
    if (!item || item.deletedSeq !== null) throw notFound(id, item);
    return item;
  }

  async image(id: number): Promise<ImageFile> {
    const item = this.item(id);
    return this.images.image(id, item.source);
  }

  /** GET /v1/index's description of the service (service-info.ts). */
  info() {
    this.assertOpen();
    return serviceInfo(this);
  }

  /** Sets the gauges that are read, not counted, just before a scrape. */
  async scrape(): Promise<string> {
    this.metrics.queueDepth.set(this.batcher.depth);
    this.metrics.loadLevel.set(this.policy.load.level);
    this.metrics.customSessions.set(this.sessions.customCount);
    if (this.state !== 'closed') this.metrics.items.set(this.index.size);
    return this.metrics.registry.metrics();
  }

  /** Waits for queued encodes, snapshots and closes the index, releases the engine. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'draining';
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    await this.batcher.idle();
    this.state = 'closed';
    this.index.close(); // writes the graph snapshot when it holds changes
    await this.deps.encoder.dispose();
  }
}

function notFound(id: number, item: Item | undefined): ApiError {
  const message = item ? `id: item ${id} was deleted (at store seq ${item.deletedSeq})` : `id: no item with id ${id}`;
  return new ApiError(404, 'not-found', message, { field: 'id', received: id });
}
