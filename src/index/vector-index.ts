// VectorIndex: the corpus embeddings of one model, searchable by any of its submodels.
//
// An index directory holds manifest.json (manifest.ts), store.sqlite (the source of truth:
// store.ts) and graph.bin + graph.json (the HNSW graph snapshot and its watermark: hnsw.ts).
// Every change is committed to the store first, then applied to the in-memory graph; the graph
// on disk is only a cache of "the store up to seq W". Opening loads that cache if it is intact,
// replays what the store holds past W, and rebuilds from the stored vectors otherwise. So a
// crash at any point loses nothing committed, and a change never costs a rebuild. Every write
// also records what it acknowledged in acked.json (acked.ts), and opening checks the store
// against it first (open.ts): a store that lost acknowledged changes is never served silently.
//
// All methods are synchronous: better-sqlite3 is, and only hnswlib's sync calls are used, so all
// graph calls on an index are serialized by the JS thread without a mutex. A snapshot of a large
// graph therefore blocks the event loop while it is written (about 0.1 s per 30 MB).
import fs from 'node:fs';
import path from 'node:path';
import { type Scored, TopK } from '../util/topk.ts';
import { writeAcked } from './acked.ts';
import { badVectorsMessage } from './errors.ts';
import { type Filter, compileFilter } from './filter.ts';
import { Graph, type GraphFile, type GraphParams } from './hnsw.ts';
import { MatchCache } from './match-cache.ts';
import { LiveSet } from './live-set.ts';
import { type IndexParamsInput, MANIFEST_FILE, type Manifest, parseIndexParams, softwareVersions, writeManifest } from './manifest.ts';
import { type Checked, type OpenOptions, checkOnOpen, createFiles } from './open.ts';
import { type InsertResult, type Item, type NewItem, type RemoveResult, Store } from './store.ts';
import type { IndexStore } from './store-api.ts';
import type { IndexInfo, OpenReport, SearchHit, SearchOptions } from './types.ts';
import { type VectorLike, queryVector, scoreChunk, unitVector } from './vectors.ts';

export { IndexParams, type IndexParamsInput, type Manifest } from './manifest.ts';
export { type OpenMode, type OpenOptions, STORE_FILE } from './open.ts';
export type { Duplicate, InsertResult, Item, NewItem, RemoveResult } from './store.ts';
export type { IndexInfo, OpenReport, SearchHit, SearchOptions } from './types.ts';

/** Restricted searches that keep at most this fraction of the live items scan them exactly (measured in docs/search-api.md). */
const EXACT_BELOW = 0.02;
/** A restricted graph search walks with this many times the ef: recall@10 at 50% kept was 0.943 at 1x, 0.951 at 4x, 0.961 at 8x (docs/search-api.md). */
const RESTRICTED_EF = 8;
/** Filters whose matches are kept (match-cache.ts). */
const MATCH_CACHE = 16;

export class VectorIndex implements IndexStore {
  readonly kind = 'sqlite' as const;
  private live = new LiveSet();
  private readonly matches = new MatchCache(MATCH_CACHE);
  /** The store seq whose changes the in-memory graph reflects. */
  private appliedSeq = 0;
  /** The graph file on disk and its watermark, when this process knows it to be valid. */
  private onDisk: GraphFile | null = null;
  private graph!: Graph; // set by loadGraph
  private report!: OpenReport;

  private constructor(
    readonly dir: string,
    private manifest: Manifest,
    private readonly store: Store,
    readonly readOnly: boolean,
  ) {}

  get params(): GraphParams {
    const { space, dim, M, efConstruction, ef } = this.manifest;
    return { space, dim, M, efConstruction, ef };
  }

  /** Live items. */
  get size(): number {
    return this.live.size;
  }

  /** What opening found and did (see OpenReport). */
  get opened(): OpenReport {
    return this.report;
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Creates an empty index in `dir` (new or empty): open.ts's createFiles, then open. */
  static create(dir: string, input: IndexParamsInput): VectorIndex {
    const params = parseIndexParams(input);
    createFiles(dir, params);
    return VectorIndex.open(dir, { expectedFingerprint: params.fingerprint });
  }

  /** Opens an index: the checks of open.ts, then the graph (see the file header). */
  static open(dir: string, opts: OpenOptions = {}): VectorIndex {
    const t0 = performance.now();
    const checked = checkOnOpen(dir, opts);
    const readOnly = checked.readOnlyReason !== undefined;
    try {
      const index = new VectorIndex(dir, checked.manifest, checked.store, readOnly);
      index.report = index.loadGraph(checked);
      index.report.ms = Math.round(performance.now() - t0);
      return index;
    } catch (e) {
      checked.store.close();
      throw e;
    }
  }

  /**
   * Opens the index in `dir` if there is one (it must match the model, ffnDims, dim and space
   * given), else creates it: what a resumable build calls.
   */
  static openOrCreate(dir: string, input: IndexParamsInput): VectorIndex {
    if (!fs.existsSync(path.join(dir, MANIFEST_FILE))) return VectorIndex.create(dir, input);
    const want = parseIndexParams(input);
    const index = VectorIndex.open(dir, { expectedFingerprint: want.fingerprint });
    const have = index.manifest;
    const diff = (['ffnDims', 'dim', 'space'] as const).filter((k) => JSON.stringify(have[k]) !== JSON.stringify(want[k]));
    if (diff.length > 0) {
      index.close();
      throw new Error(
        `${dir} holds an index with ${diff.map((k) => `${k} ${JSON.stringify(have[k])}`).join(', ')}; asked for ${diff.map((k) => `${k} ${JSON.stringify(want[k])}`).join(', ')}`,
      );
    }
    return index;
  }

  /**
   * Snapshots the graph if it holds changes not yet on disk (unless read-only or snapshot: false),
   * then closes. Skipping the snapshot loses nothing: the next open replays the store.
   */
  close(opts: { snapshot?: boolean } = {}): void {
    try {
      const dirty = this.onDisk === null || this.onDisk.seq !== this.appliedSeq;
      if (!this.readOnly && (opts.snapshot ?? true) && dirty) this.snapshot();
    } finally {
      this.store.close();
    }
  }

  // ---- graph state -----------------------------------------------------------------------------

  /** Loads the snapshot (or rebuilds) and replays the store past its watermark; says what it did. */
  private loadGraph(checked: Checked): OpenReport {
    const { readOnlyReason, loss, damage, warnings } = checked;
    const base = { writable: !this.readOnly, ...(readOnlyReason && { readOnlyReason }), ...(loss && { loss }), damage, warnings, ms: 0 };
    const seq = this.store.seq();
    const snap = Graph.readSnapshot(this.dir, this.params, { storeId: this.store.storeId, seq });
    if ('graph' in snap) {
      this.graph = snap.graph;
      this.onDisk = snap.file;
      this.appliedSeq = snap.file.seq;
      for (const chunk of this.store.liveLabels(this.appliedSeq)) for (const r of chunk) this.live.add(r.id, r.label);
      return { ...base, snapshot: 'loaded', rebuilt: false, replayed: this.catchUp() };
    }
    // An empty store has nothing to rebuild: that is the normal state of a new index.
    if (seq === 0 && snap.problem === 'missing') return { ...base, snapshot: 'none', rebuilt: false, replayed: this.rebuild() };
    const t = performance.now();
    const bad: number[] = []; // a rebuild reads every vector: their checksums cost little more
    const replayed = this.rebuild(bad);
    const did = `rebuilt the graph from the ${this.live.size} live stored vectors in ${Math.round(performance.now() - t)} ms`;
    if (!this.readOnly) this.snapshot(); // else every open would rebuild again
    if (bad.length) damage.push(badVectorsMessage(this.store.file, bad));
    const note = `graph snapshot ${snap.problem} (${snap.reason}): ${did}${this.readOnly ? ' in memory (read-only: the files are left as they are)' : ' and wrote a new snapshot'}`;
    // Damage is what remains on disk: a writable open has repaired it; a stale snapshot (another
    // hnswlib version, or a store recovered from a loss) is expected to be rebuilt.
    (snap.problem === 'stale' || !this.readOnly ? warnings : damage).push(note);
    return { ...base, snapshot: snap.problem, reason: snap.reason, rebuilt: true, replayed };
  }

  /** A new graph from the live stored vectors only: deleted items leave no slots behind. */
  private rebuild(bad?: number[]): { added: number; deleted: number } {
    this.graph = Graph.create(this.params, this.store.counts().live);
    this.live = new LiveSet();
    this.appliedSeq = 0;
    return this.catchUp(bad);
  }

  /**
   * Applies the store's changes past appliedSeq to the graph: items inserted since and still live
   * are added, items the graph holds that were deleted since are marked deleted. Also picks up
   * what other processes committed to the same store.
   */
  private catchUp(bad?: number[]): { added: number; deleted: number } {
    const to = this.store.seq();
    let added = 0,
      deleted = 0;
    if (to === this.appliedSeq) return { added, deleted };
    for (const c of this.store.liveVectors({ afterSeq: this.appliedSeq, atSeq: to, bad })) {
      this.applyAdds(c.ids, c.labels, c.vectors);
      added += c.ids.length;
    }
    for (const id of this.store.deletedBetween(this.appliedSeq, to)) if (this.applyDelete(id)) deleted++;
    this.appliedSeq = to;
    return { added, deleted };
  }

  private applyAdds(ids: readonly number[], labels: readonly number[], vectors: Float32Array): void {
    this.graph.add(ids, vectors);
    ids.forEach((id, i) => this.live.add(id, labels[i]));
  }

  private applyDelete(id: number): boolean {
    if (!this.live.delete(id)) return false;
    this.graph.markDeleted(id);
    return true;
  }

  /** Applies what other processes committed since (a server reading an index being built calls this). */
  refresh(): { added: number; deleted: number } {
    return this.catchUp();
  }

  // ---- changes ---------------------------------------------------------------------------------

  /**
   * Adds items: committed to the store first (durable when this returns), then inserted into
   * the graph. Items whose sha256 is already indexed are reported as duplicates, not added.
   */
  add(items: readonly NewItem[]): InsertResult {
    const vectors = items.map((it, i) => unitVector(it.vector, this.manifest.dim, `items[${i}].vector`));
    const r = this.store.insert(items.map((it, i) => ({ ...it, vector: vectors[i] })));
    this.ack(r);
    if (r.fromSeq !== this.appliedSeq) {
      this.catchUp(); // another writer came between: replay everything, ours included
      return r;
    }
    const ids: number[] = [],
      labels: number[] = [];
    const flat = new Float32Array(items.length * this.manifest.dim);
    r.ids.forEach((id, i) => {
      if (id === null) return;
      flat.set(vectors[i], ids.length * this.manifest.dim);
      ids.push(id);
      labels.push(items[i].label ?? -1);
    });
    this.applyAdds(ids, labels, flat.subarray(0, ids.length * this.manifest.dim));
    this.appliedSeq = r.toSeq;
    return r;
  }

  /** Deletes items by id; removed items are never returned by search again. */
  remove(ids: readonly number[]): RemoveResult {
    return this.applyRemove(this.store.removeIds(ids));
  }

  /** Deletes every live item with one of these sources (paths relative to the corpus root). */
  removeSources(sources: readonly string[]): RemoveResult {
    return this.applyRemove(this.store.removeSources(sources));
  }

  private applyRemove(r: RemoveResult): RemoveResult {
    this.ack(r);
    if (r.fromSeq !== this.appliedSeq) this.catchUp();
    else {
      for (const id of r.removed) this.applyDelete(id);
      this.appliedSeq = r.toSeq;
    }
    return r;
  }

  /**
   * Records a committed write in acked.json before it is acknowledged (see acked.ts), holding the
   * store's write lock, so that concurrent writers record in commit order and the file only grows.
   */
  private ack(r: { fromSeq: number; toSeq: number }): void {
    if (r.toSeq === r.fromSeq) return;
    this.store.underWriteLock(() =>
      writeAcked(this.dir, { storeId: this.store.storeId, seq: this.store.seq(), maxId: this.store.maxId() }),
    );
  }

  /** The live items among these content hashes, so a build can skip decoding and encoding them. */
  existing(sha256s: readonly string[]): Map<string, number> {
    return new Map([...this.store.findSha256(sha256s)].map(([sha, item]) => [sha, item.id]));
  }

  /** One item's metadata (deleted ones too: deletedSeq is then set). */
  item(id: number): Item | undefined {
    return this.store.get(id);
  }

  getMeta(key: string): unknown {
    return this.store.getMeta(key);
  }

  setMeta(key: string, value: unknown): void {
    this.store.setMeta(key, value);
  }

  // ---- search ----------------------------------------------------------------------------------

  /**
   * k nearest live items (with `label`, matching `filter`) by graph search; fewer only when fewer
   * such items exist. A restriction that keeps at most EXACT_BELOW of the items is answered by an
   * exact scan of them instead: a graph walk would pass mostly excluded nodes (docs/search-api.md).
   */
  search(vector: VectorLike, k: number, opts: SearchOptions = {}): SearchHit[] {
    const q = queryVector(vector, this.manifest.dim, this.manifest.space);
    const ef = opts.ef ?? this.manifest.ef;
    if (!Number.isInteger(k) || k < 1) throw new Error(`k = ${k}: expected a positive integer`);
    if (!Number.isInteger(ef) || ef < 1) throw new Error(`ef = ${ef}: expected a positive integer`);
    const { label, filter, route = 'auto' } = opts;
    const live = this.live;
    const labelled = (id: number) => live.has(id) && (label === undefined || live.labels[id] === label);
    let ids: Int32Array | undefined;
    let allowed = labelled;
    if (filter) {
      const m = this.matches.get(filter, this.appliedSeq, () => this.matchingIds(filter));
      ids = label === undefined ? m.ids : m.ids.filter(labelled);
      allowed = (id: number) => m.bits[id] === 1 && labelled(id);
    }
    const available = ids ? ids.length : label === undefined ? live.size : (live.perLabel.get(label) ?? 0);
    const kk = Math.min(k, available);
    if (kk === 0) return [];
    const exact = () => (ids ? this.exactOf(q, kk, ids) : this.exact([q], kk, label)[0]);
    const restricted = label !== undefined || ids !== undefined;
    if (restricted && (route === 'exact' || (route === 'auto' && available <= EXACT_BELOW * live.size))) return this.describe(exact());
    // Deleted items are marked in the graph, so a plain search never returns them; the check on
    // live ids below is the guarantee, and costs nothing, unlike a callback per visited node.
    // Excluded nodes still route the walk, but a query whose own neighbourhood is excluded needs a wider one.
    const walk = restricted ? ef * RESTRICTED_EF : ef;
    let r = this.graph.search(q, kk, walk, restricted ? allowed : undefined);
    let hits = r.ids.map((id, i) => ({ id, score: r.scores[i] })).filter((h) => allowed(h.id));
    if (hits.length < r.ids.length) {
      r = this.graph.search(q, kk, walk, allowed);
      hits = r.ids.map((id, i) => ({ id, score: r.scores[i] })).filter((h) => allowed(h.id));
    }
    // A graph thinned by deletes can leave the search short of k: the exact scan is then correct.
    if (hits.length < kk) hits = exact();
    return this.describe(hits);
  }

  /** The live items matching a filter, in id order (evaluated by the store, which holds the payloads). */
  matchingIds(filter: Filter): Int32Array {
    return Int32Array.from(this.store.matchingIds(compileFilter(filter))).filter((id) => this.live.has(id));
  }

  /** An item's stored (unit) vector; undefined unless it is live in the graph. */
  vectorOf(id: number): Float32Array | undefined {
    return this.live.has(id) ? this.store.vectorsOf([id]) : undefined;
  }

  /** Exact top k among the given live ids (a filter's matches), their vectors read in chunks. */
  private exactOf(q: Float32Array, k: number, ids: Int32Array): Scored[] {
    const top = new TopK(k);
    for (let i = 0; i < ids.length; i += 1024) {
      const chunk = Array.from(ids.subarray(i, i + 1024));
      scoreChunk([q], [top], chunk, this.store.vectorsOf(chunk), this.manifest.dim);
    }
    return top.result();
  }

  /**
   * The items the graph holds (live as of its watermark), in id order, as one matrix: vectors
   * [N, dim], with ids and labels by row. For evaluations and benchmarks that need them all at once.
   */
  liveMatrix(): { ids: number[]; labels: Int32Array; vectors: Float32Array } {
    const chunks = [...this.store.liveVectors({ atSeq: this.appliedSeq })];
    const ids = chunks.flatMap((ch) => ch.ids);
    const labels = Int32Array.from(chunks.flatMap((ch) => ch.labels));
    const vectors = new Float32Array(ids.length * this.manifest.dim);
    let row = 0;
    for (const ch of chunks) {
      vectors.set(ch.vectors, row * this.manifest.dim);
      row += ch.ids.length;
    }
    return { ids, labels, vectors };
  }

  liveItems(chunk?: number): Iterable<(Item & { vector: Float32Array })[]> {
    return this.store.liveItems(chunk);
  }

  /** k nearest live items by brute force over the stored vectors (ground truth for verify). */
  searchExact(vector: VectorLike, k: number, opts: Pick<SearchOptions, 'label'> = {}): SearchHit[] {
    if (!Number.isInteger(k) || k < 1) throw new Error(`k = ${k}: expected a positive integer`);
    return this.describe(this.exact([queryVector(vector, this.manifest.dim, this.manifest.space)], k, opts.label)[0]);
  }

  /** One streamed pass over the live stored vectors for all queries (bounded memory). */
  private exact(queries: Float32Array[], k: number, label?: number): Scored[][] {
    const tops = queries.map(() => new TopK(k));
    for (const c of this.store.liveVectors({ atSeq: this.appliedSeq, label }))
      scoreChunk(queries, tops, c.ids, c.vectors, this.manifest.dim);
    return tops.map((t) => t.result());
  }

  /** Adds label (kept in memory) and source (one store query for all hits) to scored ids. */
  private describe(hits: Scored[]): SearchHit[] {
    const sources = this.store.sourcesOf(hits.map((h) => h.id));
    return hits.map(({ id, score }) => ({ id, score, label: this.live.labels[id], source: sources.get(id)! }));
  }

  // ---- maintenance -----------------------------------------------------------------------------

  /** Writes the graph snapshot (atomic, with its watermark) and refreshes the manifest's counts. */
  snapshot(): GraphFile {
    if (this.readOnly) throw new Error(`${this.dir} is open read-only: no snapshot`);
    this.catchUp();
    this.onDisk = this.graph.saveSnapshot(this.dir, this.store.storeId, this.appliedSeq, this.onDisk);
    const counts = this.store.counts(this.appliedSeq);
    this.manifest = {
      ...this.manifest,
      counts: { ...counts, seq: this.appliedSeq },
      versions: softwareVersions(),
      updatedAt: new Date().toISOString(),
    };
    writeManifest(this.dir, this.manifest);
    return this.onDisk;
  }

  /**
   * Rebuilds the graph from the live stored vectors (reclaiming deleted slots), then snapshots it;
   * `badVectors`: live items whose stored vector fails its checksum (they are in the graph as they are).
   */
  compact(): { before: number; after: number; ms: number; badVectors: number[] } {
    const t0 = performance.now();
    const before = this.graph.count;
    const badVectors: number[] = [];
    this.rebuild(badVectors);
    if (!this.readOnly) this.snapshot();
    return { before, after: this.graph.count, ms: Math.round(performance.now() - t0), badVectors };
  }

  /** Every stored vector against its checksum (a full read of the store: about 1 s per 60k 128-d items here). */
  checkVectors(): { checked: number; bad: number[]; unchecked: number } {
    return this.store.checkVectors();
  }

  info(): IndexInfo {
    const files: Record<string, number> = {};
    for (const f of fs.readdirSync(this.dir)) {
      const st = fs.statSync(path.join(this.dir, f), { throwIfNoEntry: false }); // a temp file may be renamed meanwhile
      if (st) files[f] = st.size;
    }
    const storeSeq = this.store.seq();
    const { graph, live, onDisk } = this;
    const { ef } = this.manifest;
    return {
      dir: this.dir,
      manifest: this.manifest,
      storeSeq,
      counts: this.store.counts(storeSeq),
      labels: Object.fromEntries([...this.live.perLabel].sort((a, b) => a[0] - b[0])),
      metaKeys: this.store.metaKeys(),
      graph: { points: graph.count, capacity: graph.capacity, deletedSlots: graph.count - live.size, appliedSeq: this.appliedSeq, ef },
      snapshot: onDisk && { seq: onDisk.seq, writtenAt: onDisk.writtenAt, bytes: onDisk.bytes, behind: storeSeq - onDisk.seq },
      files,
      opened: this.report,
    };
  }

  /** The parts verify.ts inspects, caught up with the store; other callers use the methods above. */
  internals() {
    this.catchUp();
    const { store, graph, live, appliedSeq, manifest } = this;
    return { store, graph, live, appliedSeq, manifest, exact: (queries: Float32Array[], k: number) => this.exact(queries, k) };
  }
}
