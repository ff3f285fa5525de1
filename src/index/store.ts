// The index's source of truth: items, their unit vectors and a change sequence, in one SQLite file.
// The HNSW graph (hnsw.ts) is derived from it and can always be rebuilt from it.
//
// Durability: WAL with synchronous=FULL. In WAL mode NORMAL only fsyncs at checkpoints, so a power
// loss or OS crash may roll back the last committed batches. The builder reports a batch as done
// once add() returns, and graph snapshots are fsynced with the watermark seq they hold; with FULL,
// neither can ever be ahead of the store. FULL costs one WAL fsync per transaction, i.e. per batch
// of embedded images, which is negligible next to encoding them. (A plain SIGKILL loses nothing
// under either setting: the WAL is in the OS page cache.)
//
// Change sequence: every insert and every delete takes the next `seq` (state.seq), within the
// same transaction. A graph snapshot records the seq it holds (its watermark); the changes past
// it are (a) items with seq > watermark, still live, to add, and (b) items with seq <= watermark
// whose deleted_seq > watermark, to mark deleted. Rows are never physically removed: a delete
// sets deleted_seq (a tombstone), so any past state "as of seq S" can be queried.
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { type VectorLike, unitVector } from './vectors.ts';

/** 'MtVi': marks the SQLite file as a MatViT index store (PRAGMA application_id). */
const APPLICATION_ID = 0x4d745669;
const SCHEMA_VERSION = 1;
const SHA256 = /^[0-9a-f]{64}$/;

const SCHEMA = `
CREATE TABLE items (
  id          INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: an id is never reused
  source      TEXT    NOT NULL,                  -- path relative to the corpus root, or 'idx:#123'
  label       INTEGER NOT NULL,                  -- class index, -1 when unknown
  label_name  TEXT,
  sha256      TEXT    NOT NULL,                  -- of the content (image file bytes)
  bytes       INTEGER NOT NULL,
  added_at    TEXT    NOT NULL,                  -- ISO 8601
  vector      BLOB    NOT NULL,                  -- float32 little-endian, unit length
  seq         INTEGER NOT NULL UNIQUE,           -- change seq of the insert
  deleted_seq INTEGER UNIQUE                     -- change seq of the delete; NULL while live
) STRICT;
CREATE UNIQUE INDEX items_live_sha256 ON items (sha256) WHERE deleted_seq IS NULL;
CREATE INDEX items_live_source ON items (source) WHERE deleted_seq IS NULL;
CREATE INDEX items_label ON items (label, seq); -- exact search within a label, in seq (= id) order
CREATE TABLE state (
  one      INTEGER PRIMARY KEY CHECK (one = 1),
  store_id TEXT    NOT NULL, -- random, so a graph snapshot can tell which store it was built from
  dim      INTEGER NOT NULL,
  seq      INTEGER NOT NULL  -- the last change seq handed out
) STRICT;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT; -- JSON values
`;

export interface NewItem {
  /** Path relative to the corpus root, or 'idx:#123' for a record of an IDX file. */
  source: string;
  /** Class index; -1 (the default) when unknown. */
  label?: number;
  labelName?: string | null;
  /** sha256 of the content, 64 lowercase hex digits: the identity used to detect duplicates. */
  sha256: string;
  bytes: number;
  /** Stored scaled to unit length; must be finite and non-zero. */
  vector: VectorLike;
  /** ISO time; defaults to now (merge keeps the shard's). */
  addedAt?: string;
}

export interface Item {
  id: number;
  source: string;
  label: number;
  labelName: string | null;
  sha256: string;
  bytes: number;
  addedAt: string;
  seq: number;
  deletedSeq: number | null;
}

export interface Duplicate {
  /** Position in the batch. */
  index: number;
  sha256: string;
  source: string;
  /** The live item with the same sha256 (possibly an earlier item of the same batch). */
  existingId: number;
  existingSource: string;
}

export interface InsertResult {
  /** One per input item: its new id, or null when it was a duplicate (listed in `duplicates`). */
  ids: (number | null)[];
  duplicates: Duplicate[];
  /** Store seq before and after the transaction; fromSeq tells whether another writer came between. */
  fromSeq: number;
  toSeq: number;
}

export interface RemoveResult {
  /** Ids that were live and are now deleted, in request order. */
  removed: number[];
  /** Requested ids or sources that matched no live item. */
  missing: (number | string)[];
  fromSeq: number;
  toSeq: number;
}

/** A chunk of vectors in id order: ids[i]'s vector is vectors[i*dim .. (i+1)*dim). */
export interface VectorChunk {
  ids: number[];
  labels: number[];
  vectors: Float32Array;
}

export interface Counts {
  live: number;
  deleted: number;
}

interface Row {
  id: number;
  source: string;
  label: number;
  label_name: string | null;
  sha256: string;
  bytes: number;
  added_at: string;
  seq: number;
  deleted_seq: number | null;
}
const ITEM_COLUMNS = 'id, source, label, label_name, sha256, bytes, added_at, seq, deleted_seq';
const toItem = (r: Row): Item => ({
  id: r.id, source: r.source, label: r.label, labelName: r.label_name, sha256: r.sha256,
  bytes: r.bytes, addedAt: r.added_at, seq: r.seq, deletedSeq: r.deleted_seq,
});

// "Live as of seq S": inserted at or before S and not deleted at or before S.
const LIVE_AT = 'seq <= @at AND (deleted_seq IS NULL OR deleted_seq > @at)';

export interface StoreOptions {
  readOnly?: boolean;
}

export class Store {
  private constructor(
    private readonly db: Database.Database,
    readonly file: string,
    readonly dim: number,
    /** Random per store: a graph snapshot built from another store (e.g. a restored copy) is stale. */
    readonly storeId: string,
    readonly readOnly: boolean,
  ) {}

  static create(file: string, dim: number): Store {
    if (!Number.isInteger(dim) || dim < 1) throw new Error(`dim = ${dim}: expected a positive integer`);
    const db = new Database(file);
    try {
      if ((db.prepare('SELECT count(*) AS n FROM sqlite_schema').get() as { n: number }).n > 0)
        throw new Error(`${file} already holds a database; an index store is only created in a new file`);
      configure(db);
      db.transaction(() => {
        db.exec(SCHEMA);
        db.prepare('INSERT INTO state (one, store_id, dim, seq) VALUES (1, ?, ?, 0)').run(randomUUID(), dim);
        db.pragma(`application_id = ${APPLICATION_ID}`);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } catch (e) {
      db.close();
      throw e;
    }
    db.close();
    return Store.open(file);
  }

  static open(file: string, opts: StoreOptions = {}): Store {
    const readOnly = opts.readOnly ?? false;
    const db = new Database(file, { fileMustExist: true, readonly: readOnly });
    try {
      const app = db.pragma('application_id', { simple: true });
      const version = db.pragma('user_version', { simple: true });
      if (app !== APPLICATION_ID) throw new Error(`${file} is not a MatViT index store (application_id ${app}, expected ${APPLICATION_ID})`);
      if (version !== SCHEMA_VERSION) throw new Error(`${file}: store schema version ${version}, this version reads ${SCHEMA_VERSION}`);
      if (!readOnly) configure(db);
      const s = db.prepare('SELECT store_id, dim FROM state').get() as { store_id: string; dim: number };
      return new Store(db, file, s.dim, s.store_id, readOnly);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** The last change seq handed out: everything up to it is committed. */
  seq(): number {
    return (this.stmt('SELECT seq FROM state').get() as { seq: number }).seq;
  }

  /**
   * Inserts a batch in one transaction. Items whose sha256 matches a live item (or an earlier item
   * of the batch) are reported in `duplicates`, not inserted. Returns once the batch is durable.
   */
  insert(items: readonly NewItem[]): InsertResult {
    const rows = items.map((it, i) => checkItem(it, i, this.dim));
    const findSha = this.stmt('SELECT id, source FROM items WHERE sha256 = ? AND deleted_seq IS NULL');
    const ins = this.stmt(`INSERT INTO items (source, label, label_name, sha256, bytes, added_at, vector, seq)
      VALUES (@source, @label, @labelName, @sha256, @bytes, @addedAt, @vector, @seq)`);
    return this.write((fromSeq) => {
      let seq = fromSeq;
      const ids: (number | null)[] = [];
      const duplicates: Duplicate[] = [];
      rows.forEach((r, index) => {
        const dup = findSha.get(r.sha256) as { id: number; source: string } | undefined;
        if (dup) {
          ids.push(null);
          duplicates.push({ index, sha256: r.sha256, source: r.source, existingId: dup.id, existingSource: dup.source });
          return;
        }
        ids.push(Number(ins.run({ ...r, seq: ++seq }).lastInsertRowid));
      });
      return { ids, duplicates, toSeq: seq };
    });
  }

  /** Deletes live items by id (tombstones: the row and its vector stay, deleted_seq is set). */
  removeIds(ids: readonly number[]): RemoveResult {
    for (const id of ids) if (!Number.isSafeInteger(id)) throw new Error(`item id ${id}: expected an integer`);
    return this.remove(ids, 'SELECT id FROM items WHERE id = ? AND deleted_seq IS NULL');
  }

  /** Deletes every live item with one of these sources. */
  removeSources(sources: readonly string[]): RemoveResult {
    return this.remove(sources, 'SELECT id FROM items WHERE source = ? AND deleted_seq IS NULL ORDER BY id');
  }

  private remove(keys: readonly (number | string)[], findSql: string): RemoveResult {
    const find = this.stmt(findSql);
    const del = this.stmt('UPDATE items SET deleted_seq = ? WHERE id = ?');
    return this.write((fromSeq) => {
      let seq = fromSeq;
      const removed: number[] = [];
      const missing: (number | string)[] = [];
      for (const key of new Set(keys)) {
        const found = find.all(key) as { id: number }[];
        if (found.length === 0) missing.push(key);
        for (const { id } of found) {
          del.run(++seq, id);
          removed.push(id);
        }
      }
      return { removed, missing, toSeq: seq };
    });
  }

  /** Runs a write in an IMMEDIATE transaction (the write lock is taken up front) and bumps state.seq. */
  private write<T extends { toSeq: number }>(body: (fromSeq: number) => T): T & { fromSeq: number } {
    if (this.readOnly) throw new Error(`${this.file} is open read-only`);
    const tx = this.db.transaction(() => {
      const fromSeq = this.seq();
      const out = body(fromSeq);
      if (out.toSeq !== fromSeq) this.stmt('UPDATE state SET seq = ?').run(out.toSeq);
      return { ...out, fromSeq };
    });
    return tx.immediate();
  }

  get(id: number): Item | undefined {
    const r = this.stmt(`SELECT ${ITEM_COLUMNS} FROM items WHERE id = ?`).get(id) as Row | undefined;
    return r && toItem(r);
  }

  /** Sources by id, in one statement: search results need them for a handful of ids per query. */
  sourcesOf(ids: readonly number[]): Map<number, string> {
    const rows = this.stmt('SELECT id, source FROM items WHERE id IN (SELECT value FROM json_each(?))').raw().all(JSON.stringify(ids));
    return new Map(rows as [number, string][]);
  }

  /** The live items with these content hashes (to skip encoding what is already indexed). */
  findSha256(sha256s: readonly string[]): Map<string, Item> {
    const find = this.stmt(`SELECT ${ITEM_COLUMNS} FROM items WHERE sha256 = ? AND deleted_seq IS NULL`);
    const out = new Map<string, Item>();
    for (const sha of sha256s) {
      const r = find.get(sha) as Row | undefined;
      if (r) out.set(sha, toItem(r));
    }
    return out;
  }

  /** The stored (unit) vectors of these ids, flat [n, dim] in the given order; throws on an unknown id. */
  vectorsOf(ids: readonly number[]): Float32Array {
    const get = this.stmt('SELECT vector FROM items WHERE id = ?');
    const out = new Float32Array(ids.length * this.dim);
    const dst = Buffer.from(out.buffer);
    ids.forEach((id, i) => {
      const r = get.get(id) as { vector: Buffer } | undefined;
      if (!r) throw new Error(`no item with id ${id} in ${this.file}`);
      r.vector.copy(dst, i * this.dim * 4);
    });
    return out;
  }

  counts(atSeq = this.seq()): Counts {
    const r = this.stmt(`SELECT
        count(*) FILTER (WHERE ${LIVE_AT}) AS live,
        count(*) FILTER (WHERE deleted_seq <= @at) AS deleted
      FROM items WHERE seq <= @at`).get({ at: atSeq }) as Counts;
    return { live: r.live, deleted: r.deleted };
  }

  /**
   * Vectors of the items inserted after `afterSeq` and live as of `atSeq`, in id order, `chunk`
   * at a time: bounded memory whatever the store's size. afterSeq 0 streams everything live.
   * Pages are keyed on seq, which orders inserts as id does (both are handed out in insertion
   * order under the write lock), so the seq index serves both the range and the order.
   */
  *liveVectors(opts: { afterSeq?: number; atSeq?: number; label?: number; chunk?: number } = {}): Generator<VectorChunk> {
    const { afterSeq = 0, atSeq = this.seq(), label, chunk = 1024 } = opts;
    const byLabel = label === undefined ? '' : 'AND label = @label';
    const stmt = this.stmt(`SELECT id, label, vector, seq FROM items
      WHERE seq > @after AND ${LIVE_AT} ${byLabel} ORDER BY seq LIMIT @limit`);
    const params = label === undefined ? { at: atSeq } : { at: atSeq, label };
    for (const page of this.pages<{ id: number; label: number; vector: Buffer; seq: number }, 'seq'>(stmt, params, chunk, 'seq', afterSeq)) {
      const vectors = new Float32Array(page.length * this.dim);
      const dst = Buffer.from(vectors.buffer);
      page.forEach((r, i) => r.vector.copy(dst, i * this.dim * 4));
      yield { ids: page.map((r) => r.id), labels: page.map((r) => r.label), vectors };
    }
  }

  /** (id, label) of every item live as of `atSeq`, in id order, `chunk` at a time (no vectors). */
  *liveLabels(atSeq: number, chunk = 16384): Generator<{ id: number; label: number }[]> {
    const stmt = this.stmt(`SELECT id, label FROM items WHERE id > @after AND ${LIVE_AT} ORDER BY id LIMIT @limit`);
    yield* this.pages<{ id: number; label: number }>(stmt, { at: atSeq }, chunk);
  }

  /** Live items with their metadata and vectors, in id order, `chunk` at a time (merge copies these). */
  *liveItems(chunk = 1024): Generator<(Item & { vector: Float32Array })[]> {
    const stmt = this.stmt(`SELECT ${ITEM_COLUMNS}, vector FROM items
      WHERE id > @after AND deleted_seq IS NULL ORDER BY id LIMIT @limit`);
    for (const page of this.pages<Row & { vector: Buffer }>(stmt, {}, chunk)) {
      yield page.map((r) => {
        const vector = new Float32Array(this.dim);
        r.vector.copy(Buffer.from(vector.buffer));
        return { ...toItem(r), vector };
      });
    }
  }

  /** Ids inserted at or before `afterSeq` and deleted in (afterSeq, atSeq]: the deletes to replay. */
  deletedBetween(afterSeq: number, atSeq: number): number[] {
    const rows = this.stmt(`SELECT id FROM items
      WHERE deleted_seq > @afterSeq AND deleted_seq <= @at AND seq <= @afterSeq ORDER BY id`).all({ afterSeq, at: atSeq });
    return (rows as { id: number }[]).map((r) => r.id);
  }

  /**
   * Keyset pagination (key > last key seen): each page is its own short statement, so no read
   * cursor stays open between pages and writes on this connection are never blocked by a scan.
   */
  private *pages<R extends Record<K, number>, K extends string = 'id'>(stmt: Database.Statement, params: Record<string, unknown>, chunk: number, key: K = 'id' as K, from = 0): Generator<R[]> {
    for (let after = from; ; ) {
      const page = stmt.all({ ...params, after, limit: chunk }) as R[];
      if (page.length === 0) return;
      yield page;
      if (page.length < chunk) return;
      after = page[page.length - 1][key];
    }
  }

  getMeta(key: string): unknown {
    const r = this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r === undefined ? undefined : JSON.parse(r.value);
  }

  /** Stores a JSON-serializable value (e.g. calibration results); undefined deletes the key. */
  setMeta(key: string, value: unknown): void {
    if (value === undefined) this.stmt('DELETE FROM meta WHERE key = ?').run(key);
    else this.stmt('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, JSON.stringify(value));
  }

  metaKeys(): string[] {
    return (this.stmt('SELECT key FROM meta ORDER BY key').all() as { key: string }[]).map((r) => r.key);
  }

  /** Prepared statements, cached per SQL text. */
  private readonly stmts = new Map<string, Database.Statement>();
  private stmt(sql: string): Database.Statement {
    let s = this.stmts.get(sql);
    if (!s) this.stmts.set(sql, (s = this.db.prepare(sql)));
    return s;
  }
}

function configure(db: Database.Database): void {
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL'); // why FULL: see the header
}

/** Validates an item; returns the row to insert (unit vector as a float32 blob). */
function checkItem(it: NewItem, i: number, dim: number) {
  const where = `items[${i}]`;
  if (typeof it.source !== 'string' || it.source.length === 0) throw new Error(`${where}.source = ${JSON.stringify(it.source)}: expected a non-empty path or 'idx:#N'`);
  const label = it.label ?? -1;
  if (!Number.isInteger(label) || label < -1) throw new Error(`${where}.label = ${label}: expected an integer >= 0, or -1 for unknown`);
  if (typeof it.sha256 !== 'string' || !SHA256.test(it.sha256)) throw new Error(`${where}.sha256 = ${JSON.stringify(it.sha256)}: expected 64 lowercase hex digits`);
  if (!Number.isSafeInteger(it.bytes) || it.bytes < 0) throw new Error(`${where}.bytes = ${it.bytes}: expected an integer >= 0`);
  const addedAt = it.addedAt ?? new Date().toISOString();
  if (Number.isNaN(Date.parse(addedAt))) throw new Error(`${where}.addedAt = ${JSON.stringify(addedAt)}: expected an ISO 8601 time`);
  const v = unitVector(it.vector, dim, `${where}.vector`);
  return {
    source: it.source, label, labelName: it.labelName ?? null, sha256: it.sha256, bytes: it.bytes, addedAt,
    vector: Buffer.from(v.buffer, v.byteOffset, v.byteLength),
  };
}
