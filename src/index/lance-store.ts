// The LanceDB store: an index as a Lance database (a local directory, or an s3:// / gs:// / az://
// URI with credentials from the environment) holding two tables. `items`: one row per item ever
// added (vector, content sha256, source, label, label name, added-at, payload and its JSONB copy, change seq), a
// delete being a tombstone (deleted_seq set, live_sha256 cleared). `meta`: key -> JSON, the
// manifest (manifest.ts) under 'manifest' and this store's settings (lance-params.ts) under 'lance'.
// A local index also gets manifest.json, a copy for the tools that read it by path (corpus.ts).
//
// Writes: one LanceDB commit per add or remove, acknowledged when LanceDB has committed it
// (lance-worker.ts). An add looks its contents up among the live ones and appends the rest, so
// content is never live twice, whatever crashed before; ids and seqs continue from the highest
// stored ones. Both hold because one process writes at a time (serve with writes, or a build).
// Searches: exact (a flat scan) until snapshot() or compact() finds annMinRows items and trains
// LanceDB's IVF-PQ (or IVF-HNSW-SQ) index; rows added since are searched flat next to it until the
// next snapshot() or compact() adds them (optimize); filters (label, payload fields: lance-filter.ts;
// deleted) run inside LanceDB, before the vector search.
// Replicas (read-only opens) read the version they checked out until refresh() checks out the latest.
import { notWritable } from '../util/writable.ts';
import { IndexError } from './errors.ts';
import { type LanceParams, LanceParams as LanceParamsSchema, annSettings } from './lance-params.ts';
import { ITEMS, LIVE, META, type Row, getMeta, isUri, lit, newRows, probe, putMeta, rows } from './lance-tables.ts';
import { annState, keyIndexes, trainAnn } from './lance-ann.ts';
import { addPayloadJsonb } from './lance-migrate.ts';
import { lanceMatching, lanceSearch } from './lance-search.ts';
import { type Columns, LanceWorker } from './lance-worker.ts';
import { checkVectors, liveItems, liveMatrix, readItem, readVector } from './lance-read.ts';
import { type Manifest, softwareVersions, writeManifest } from './manifest.ts';
import type { OpenOptions } from './open.ts';
import type { IndexStore, StoreState } from './store-api.ts';
import { type Duplicate, type InsertResult, type Item, type NewItem, type RemoveResult, checkItem } from './store-schema.ts';
import type { Filter } from './filter.ts';
import type { IndexInfo, OpenReport, SearchHit, SearchOptions } from './types.ts';
import type { VectorLike } from './vectors.ts';

export class LanceIndex implements IndexStore {
  readonly kind = 'lance' as const;
  private seq = 0;
  private maxId = 0;
  private live = 0;
  private deleted = 0;
  private version = 0;
  private checkedAt = new Date().toISOString();
  /** The meta key 'ann': how many rows the ANN index was trained on (unset: no index yet). */
  private annBuilt: { rows: number } | undefined;
  private labelCache: { version: number; labels: Record<string, number> } | null = null;
  private report!: OpenReport;

  private constructor(
    readonly dir: string,
    private readonly db: LanceWorker,
    /** As of the last writeMirror (counts) or open. */
    public manifest: Manifest,
    private readonly lance: LanceParams,
    readonly readOnly: boolean,
  ) {}

  get params() {
    const { space, dim, M, efConstruction, ef } = this.manifest;
    return { space, dim, M, efConstruction, ef };
  }

  get size(): number {
    return this.live;
  }

  get opened(): OpenReport {
    return this.report;
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  static open(uri: string, opts: OpenOptions = {}): LanceIndex {
    const t0 = performance.now();
    const mode = opts.mode ?? 'write';
    let readOnlyReason = mode === 'read' ? 'opened read-only' : undefined;
    if (mode !== 'read' && !isUri(uri)) {
      const why = notWritable(uri);
      if (why && mode === 'write') throw new IndexError('unwritable', `${uri} cannot be opened for writing: ${why}`);
      if (why) readOnlyReason = `${why}: writes are disabled`;
    }
    const db = new LanceWorker({ indexCacheMB: opts.indexCacheMB });
    try {
      const found = probe(db, uri);
      if (found === 'none') throw new Error(`${uri} is not a MatViT LanceDB index (no ${META} / ${ITEMS} tables)`);
      if (found === 'partial')
        throw new Error(`${uri}: an index whose creation did not finish (no manifest yet); run the same index build again to create it`);
      db.call('open', { name: ITEMS });
      const meta = getMeta(db, ['manifest', 'lance']);
      if (!meta.manifest) throw new Error(`${uri}: the ${META} table holds no manifest (a create that did not finish)`);
      const manifest = meta.manifest as Manifest;
      if (opts.expectedFingerprint !== undefined && opts.expectedFingerprint !== manifest.fingerprint)
        throw new Error(
          `${uri} was built with model ${manifest.modelName} of fingerprint ${manifest.fingerprint}; the model given has fingerprint ${opts.expectedFingerprint}. Use that model, or build a new index`,
        );
      const index = new LanceIndex(uri, db, manifest, LanceParamsSchema.parse(meta.lance ?? {}), readOnlyReason !== undefined);
      if (!index.readOnly) addPayloadJsonb(db); // an index made before payload filters gets their column
      index.loadState();
      const warnings: string[] = [];
      index.report = {
        writable: !index.readOnly,
        ...(readOnlyReason && { readOnlyReason }),
        damage: [],
        warnings,
        snapshot: 'none',
        rebuilt: false,
        replayed: { added: 0, deleted: 0 },
        ms: Math.round(performance.now() - t0),
      };
      return index;
    } catch (e) {
      db.close();
      // A committed version whose files are gone (lance-recover.ts): say what finds the last one that reads.
      // LanceDB words it either way, depending on the read path.
      const missing = /Object at location (\S+) not found|Not found: ([^,\s]+\.lance)/.exec(String(e));
      if (missing)
        throw new IndexError(
          'corrupt',
          `${uri}: ${missing[1] ?? missing[2]}, a file of its latest version, is missing; \`matvit index recover --index ${uri}\` finds the latest version that can be read`,
        );
      throw e;
    }
  }

  close(): void {
    try {
      if (!this.readOnly) this.writeMirror();
    } finally {
      this.db.close();
    }
  }

  /**
   * Counts, the highest id and seq, from the stored rows: whatever a killed writer left, they are
   * what was committed. The meta key 'state' (written with every mirror, after the rows it counts)
   * is a lower bound for id and seq, so only rows changed since then are read, not the whole table
   * (reading every row's id and seq held ~200 MB of JS arrays per million items: docs/lance-store.md).
   */
  private loadState(): void {
    this.version = this.db.call<number>('version', { name: ITEMS });
    const meta = getMeta(this.db, ['state', 'ann']);
    const known = (meta.state as { seq: number; maxId: number } | undefined) ?? { seq: 0, maxId: 0 };
    // Both what the mirror recorded and what this process read before (refresh) are lower bounds.
    const from = Math.max(known.seq, this.seq);
    const c = this.db.call<Columns>('query', {
      name: ITEMS,
      where: from > 0 ? `seq > ${from} OR deleted_seq > ${from}` : undefined,
      select: ['id', 'seq', 'deleted_seq'],
    });
    const ids = c.id as number[],
      seqs = c.seq as number[],
      del = c.deleted_seq as (number | null)[];
    let maxId = Math.max(known.maxId, this.maxId),
      seq = from;
    for (let i = 0; i < c.__rows; i++) {
      if (ids[i] > maxId) maxId = ids[i];
      seq = Math.max(seq, seqs[i], del[i] ?? 0);
    }
    const total = this.db.call<number>('count', { name: ITEMS });
    const live = this.db.call<number>('count', { name: ITEMS, where: LIVE });
    Object.assign(this, { maxId, seq, live, deleted: total - live, checkedAt: new Date().toISOString() });
    this.annBuilt = meta.ann as { rows: number } | undefined;
  }

  /** Checks out the latest committed version of both tables (what a replica does every refresh interval). */
  refresh(): { added: number; deleted: number } {
    const before = this.seq;
    this.db.call('checkoutLatest', { name: META });
    const v = this.db.call<number>('checkoutLatest', { name: ITEMS });
    this.checkedAt = new Date().toISOString();
    if (v === this.version) return { added: 0, deleted: 0 };
    this.loadState();
    const added = this.db.call<number>('count', { name: ITEMS, where: `seq > ${before} AND ${LIVE}` });
    const deleted = this.db.call<number>('count', { name: ITEMS, where: `deleted_seq > ${before}` });
    return { added, deleted };
  }

  // ---- changes ---------------------------------------------------------------------------------

  private assertWritable(): void {
    if (this.readOnly) throw new IndexError('unwritable', `${this.dir} is open read-only: ${this.report?.readOnlyReason ?? ''}`);
  }

  /**
   * Content already live (looked up by live_sha256, a B-tree index once snapshot() made one) or
   * earlier in the batch is reported as a duplicate; the rest is appended in one commit. Lookup then
   * append is idempotent by content because one process writes (see the header); a merge-insert
   * keyed on live_sha256 would also guard against a second writer, but it scans the whole table per
   * batch here (7.6 s against 0.9 s lookup + append of 10k rows into 80k: docs/lance-store.md).
   */
  add(items: readonly NewItem[]): InsertResult {
    this.assertWritable();
    const dim = this.manifest.dim;
    const checked = items.map((it, i) => checkItem(it, i, dim));
    const fromSeq = this.seq;
    const shas = [...new Set(checked.map((r) => r.sha256))];
    const known = new Map<string, { id: number; source: string }>();
    if (this.live > 0)
      for (const r of this.findLive(`live_sha256 IN (${shas.map(lit).join(', ')})`))
        known.set(r.sha256 as string, { id: r.id as number, source: r.source as string });
    const ids: (number | null)[] = [];
    const duplicates: Duplicate[] = [];
    const fresh: { r: (typeof checked)[number]; id: number; seq: number }[] = [];
    let id = this.maxId,
      seq = this.seq;
    checked.forEach((r, index) => {
      const dup = known.get(r.sha256);
      if (dup) {
        ids.push(null);
        duplicates.push({ index, sha256: r.sha256, source: r.source, existingId: dup.id, existingSource: dup.source });
        return;
      }
      ids.push(++id);
      fresh.push({ r, id, seq: ++seq });
      known.set(r.sha256, { id, source: r.source });
    });
    if (fresh.length) {
      const cols = newRows(
        fresh.map((f) => ({ ...f.r, id: f.id, seq: f.seq })),
        dim,
      );
      const r = this.db.call<{ version: number }>('append', { name: ITEMS, cols });
      Object.assign(this, { maxId: id, seq, live: this.live + fresh.length, version: r.version });
    }
    return { ids, duplicates, fromSeq, toSeq: this.seq };
  }

  remove(ids: readonly number[]): RemoveResult {
    for (const id of ids) if (!Number.isSafeInteger(id)) throw new Error(`item id ${id}: expected an integer`);
    return this.tombstone(ids, 'id', String);
  }

  removeSources(sources: readonly string[]): RemoveResult {
    return this.tombstone(sources, 'source', lit);
  }

  private tombstone<K extends number | string>(keys: readonly K[], column: 'id' | 'source', sql: (k: K) => string): RemoveResult {
    this.assertWritable();
    const fromSeq = this.seq;
    const uniq = [...new Set(keys)];
    const found = uniq.length ? this.findLive(`${column} IN (${uniq.map(sql).join(', ')})`) : [];
    const idsOf = new Map<K, number[]>();
    for (const f of found) {
      const ids = idsOf.get(f[column] as K);
      if (ids) ids.push(f.id as number);
      else idsOf.set(f[column] as K, [f.id as number]);
    }
    const removed = uniq.flatMap((k) => (idsOf.get(k) ?? []).sort((a, b) => a - b));
    const missing = uniq.filter((k) => !idsOf.has(k));
    if (removed.length) {
      const seq = this.seq + 1;
      const r = this.db.call<{ updated: number; version: number }>('update', {
        name: ITEMS,
        where: `id IN (${removed.join(', ')}) AND ${LIVE}`,
        valuesSql: { deleted_seq: String(seq), live_sha256: 'NULL' },
      });
      Object.assign(this, { seq, live: this.live - r.updated, deleted: this.deleted + r.updated, version: r.version });
    }
    return { removed, missing, fromSeq, toSeq: this.seq };
  }

  private findLive(where: string): Row[] {
    return rows(this.db.call<Columns>('query', { name: ITEMS, where: `${where} AND ${LIVE}`, select: ['id', 'source', 'sha256'] }));
  }

  existing(sha256s: readonly string[]): Map<string, number> {
    if (!sha256s.length) return new Map();
    const found = this.findLive(`live_sha256 IN (${sha256s.map(lit).join(', ')})`);
    return new Map(found.map((r) => [r.sha256 as string, r.id as number]));
  }

  item(id: number): Item | undefined {
    return readItem(this.db, id);
  }

  /** The live items with their vectors in id order, `chunk` ids at a time (lance-read.ts). */
  liveItems(chunk?: number): Generator<(Item & { vector: Float32Array })[]> {
    return liveItems(this.db, this.maxId, this.manifest.dim, chunk);
  }

  getMeta(key: string): unknown {
    return getMeta(this.db, [key])[key];
  }

  setMeta(key: string, value: unknown): void {
    this.assertWritable();
    if (value === undefined) this.db.call('remove', { name: META, where: `key = ${lit(key)}` });
    else putMeta(this.db, { [key]: value });
  }

  // ---- search ----------------------------------------------------------------------------------

  search(vector: VectorLike, k: number, opts: SearchOptions = {}): SearchHit[] {
    return this.query(vector, k, opts, false);
  }

  searchExact(vector: VectorLike, k: number, opts: Pick<SearchOptions, 'label'> = {}): SearchHit[] {
    return this.query(vector, k, opts, true);
  }

  private query(vector: VectorLike, k: number, opts: SearchOptions, exact: boolean): SearchHit[] {
    const { nprobes, refineFactor } = this.annParams();
    const { space, dim } = this.manifest;
    const refine = this.lance.ann === 'ivf-pq' ? refineFactor : undefined;
    return lanceSearch(this.db, { dir: this.dir, space, dim, tombstones: this.deleted > 0, nprobes, refine }, vector, k, opts, exact);
  }

  /** The live items matching a filter, ascending ids (LanceDB evaluates it, as in a search). */
  matchingIds(filter: Filter): Int32Array {
    return lanceMatching(this.db, this.dir, filter);
  }

  vectorOf(id: number): Float32Array | undefined {
    return readVector(this.db, id);
  }

  liveMatrix(): { ids: number[]; labels: Int32Array; vectors: Float32Array } {
    return liveMatrix(this.db, this.maxId, this.live, this.manifest.dim);
  }

  // ---- maintenance -----------------------------------------------------------------------------

  /**
   * The ANN index once the table passes annMinRows, trained again when the table has grown 4x since
   * (its partitions were sized for the rows it was trained on). Rows added in between are searched
   * flat next to it until snapshot() or compact() brings the index up to date.
   */
  private maybeTrain(): boolean {
    if (this.live < this.lance.annMinRows) return false;
    if (this.annBuilt && this.live < 4 * this.annBuilt.rows) return false;
    this.buildAnn();
    return true;
  }

  /** The search settings for the ANN index as it was built (nprobes derived from its partitions unless set). */
  private annParams() {
    return annSettings(this.lance, this.annBuilt?.rows ?? this.live, this.manifest.dim);
  }

  /** (Re)builds the ANN index over every row, with the parameters annSettings derives for the live count. */
  buildAnn(): void {
    this.assertWritable();
    this.annBuilt = trainAnn(this.db, this.lance, this.live, this.manifest);
    this.version = this.db.call<number>('version', { name: ITEMS });
  }

  private annState(): StoreState['ann'] {
    return annState(this.db);
  }

  /** LanceDB's optimize: compacts fragments, adds new rows to the indexes, prunes versions older than pruneOlderThanMs. */
  private optimize(): { compacted: unknown; pruned: unknown } {
    const r = this.db.call<{ compacted: unknown; pruned: unknown }>('optimize', { name: ITEMS, olderThanMs: this.lance.pruneOlderThanMs });
    this.db.call('optimize', { name: META, olderThanMs: this.lance.pruneOlderThanMs });
    this.version = this.db.call<number>('version', { name: ITEMS });
    return r;
  }

  /** What a build calls every few batches: the ANN index kept up (maybeTrain, else optimize when reindexFraction of the rows are outside it) and the manifest's counts. */
  snapshot(): void {
    this.assertWritable();
    if (this.live > 0 && !this.db.call<{ name: string }[]>('indices', { name: ITEMS }).some((i) => i.name === 'live_sha256_idx'))
      keyIndexes(this.db);
    const ann = this.maybeTrain() ? null : this.annState();
    if (ann && ann.unindexedRows > this.lance.reindexFraction * ann.indexedRows) this.optimize();
    this.writeMirror();
  }

  /** The manifest with the current counts, in the meta table and (local index) as manifest.json. */
  private writeMirror(): void {
    this.manifest = {
      ...this.manifest,
      counts: { live: this.live, deleted: this.deleted, seq: this.seq },
      versions: softwareVersions(),
      updatedAt: new Date().toISOString(),
    };
    putMeta(this.db, { manifest: this.manifest, state: { seq: this.seq, maxId: this.maxId } });
    if (!isUri(this.dir)) writeManifest(this.dir, this.manifest);
  }

  compact(): { before: number; after: number; ms: number; badVectors: number[] } {
    this.assertWritable();
    const t0 = performance.now();
    const before = this.live + this.deleted;
    if (this.live >= this.lance.annMinRows) this.buildAnn();
    this.optimize();
    this.writeMirror();
    return { before, after: before, ms: Math.round(performance.now() - t0), badVectors: this.checkVectors().bad };
  }

  checkVectors(): { checked: number; bad: number[]; unchecked: number } {
    return checkVectors(this.db, this.maxId, this.manifest.dim);
  }

  /** Columns of every row matching `where` (every row when omitted), for verify. */
  scan(select: string[], where?: string): Columns {
    return this.db.call<Columns>('query', { name: ITEMS, where, select });
  }

  storeState(): StoreState {
    return { kind: 'lance', uri: this.dir, version: this.version, checkedAt: this.checkedAt, ann: this.annState() };
  }

  info(): IndexInfo & { store: StoreState } {
    if (this.labelCache?.version !== this.version) {
      const c = this.db.call<Columns>('query', { name: ITEMS, where: LIVE, select: ['label'] });
      const labels: Record<string, number> = {};
      for (const l of (c.label as number[] | undefined) ?? []) labels[l] = (labels[l] ?? 0) + 1; // an empty result has no columns
      this.labelCache = { version: this.version, labels };
    }
    const stats = (name: string) => this.db.call<{ totalBytes: number }>('stats', { name }).totalBytes;
    const { nprobes } = this.annParams();
    return {
      dir: this.dir,
      manifest: this.manifest,
      storeSeq: this.seq,
      counts: { live: this.live, deleted: this.deleted },
      labels: Object.fromEntries(Object.entries(this.labelCache.labels).sort((a, b) => Number(a[0]) - Number(b[0]))),
      metaKeys: Object.keys(getMeta(this.db)).sort(),
      graph: {
        points: this.live + this.deleted,
        capacity: this.live + this.deleted,
        deletedSlots: this.deleted,
        appliedSeq: this.seq,
        ef: nprobes,
      },
      snapshot: null,
      files: { [`${ITEMS}.lance`]: stats(ITEMS), [`${META}.lance`]: stats(META) },
      opened: this.report,
      store: this.storeState(),
    };
  }
}

export { holdsLance } from './lance-tables.ts';
