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
import { corruptionError, readOnlyWalError } from './errors.ts';
import type { CompiledFilter } from './filter.ts';
import { APPLICATION_ID, ITEM_COLUMNS, SCHEMA, SCHEMA_VERSION, checkItem, migrate, toItem, vectorCheck } from './store-schema.ts';
import type { Counts, Duplicate, InsertResult, Item, NewItem, RemoveResult, Row, VectorChunk } from './store-schema.ts';

export type { Counts, Duplicate, InsertResult, Item, NewItem, RemoveResult, VectorChunk } from './store-schema.ts';

// "Live as of seq S": inserted at or before S and not deleted at or before S.
const LIVE_AT = 'seq <= @at AND (deleted_seq IS NULL OR deleted_seq > @at)';

export interface StoreOptions {
  readOnly?: boolean;
}

export class Store {
  /** What opening migrated (see store-schema.ts), for the open report. */
  migrated?: string;
  /** Set on a read-only open of a store older than SCHEMA_VERSION: what the old schema lacks. */
  outdated?: string;
  private columns = ITEM_COLUMNS;

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

  /** Opens a store; a writable open migrates an older schema (store-schema.ts). Damage is reported naming the file. */
  static open(file: string, opts: StoreOptions = {}): Store {
    const readOnly = opts.readOnly ?? false;
    let db: Database.Database;
    try {
      db = new Database(file, { fileMustExist: true, readonly: readOnly });
    } catch (e) {
      throw corruptionError(file, e);
    }
    try {
      const app = db.pragma('application_id', { simple: true });
      const version = db.pragma('user_version', { simple: true }) as number;
      if (app !== APPLICATION_ID)
        throw new Error(`${file} is not a MatViT index store (application_id ${app}, expected ${APPLICATION_ID})`);
      if (version > SCHEMA_VERSION || version < 1)
        throw new Error(`${file}: store schema version ${version}, this version reads ${SCHEMA_VERSION}`);
      if (!readOnly) configure(db);
      const migrated = readOnly ? undefined : migrate(db, file, version);
      const s = db.prepare('SELECT store_id, dim FROM state').get() as { store_id: string; dim: number };
      const store = new Store(db, file, s.dim, s.store_id, readOnly);
      store.migrated = migrated;
      if (readOnly && version < SCHEMA_VERSION) {
        const lacks = version < 2 ? 'vector checksums and item payloads' : 'item payloads';
        store.outdated = `store.sqlite has schema ${version}, without ${lacks}: they are added when the index is next opened writable (e.g. matvit index compact)`;
        if (version < 3) store.columns = ITEM_COLUMNS.replace('payload', 'NULL AS payload'); // read as "no payload"
      }
      return store;
    } catch (e) {
      db.close();
      throw (readOnly && readOnlyWalError(file, e)) || corruptionError(file, e);
    }
  }

  /**
   * Closes the connection. A writer leaves the file in rollback-journal mode when it is the last
   * connection (see the header); with another connection open the switch fails at once, harmlessly.
   * `untouched`: no switch, for an open that found the store damaged and leaves it as it is.
   */
  close(opts: { untouched?: boolean } = {}): void {
    if (!this.db.open) return;
    if (!this.readOnly && !opts.untouched) {
      try {
        this.db.pragma('busy_timeout = 0');
        this.db.pragma('journal_mode = DELETE');
      } catch {
        // another connection holds the file: it stays in WAL mode, which that one needs
      }
    }
    this.db.close();
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
    const ins = this.stmt(`INSERT INTO items (source, label, label_name, sha256, bytes, added_at, vector, vector_check, payload, seq)
      VALUES (@source, @label, @labelName, @sha256, @bytes, @addedAt, @vector, @vectorCheck, @payload, @seq)`);
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
    try {
      return tx.immediate();
    } catch (e) {
      throw corruptionError(this.file, e);
    }
  }

  /** The highest item id ever handed out (AUTOINCREMENT's sqlite_sequence): ids above it are new. */
  maxId(): number {
    const r = this.stmt("SELECT seq FROM sqlite_sequence WHERE name = 'items'").get() as { seq: number } | undefined;
    return r?.seq ?? 0;
  }

  /** Runs `fn` holding the write lock (an IMMEDIATE transaction that changes nothing), so that writers take turns. */
  underWriteLock<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /**
   * After a loss (acked.ts): the change seq and the id counter go up to what was handed out
   * before, so that neither is ever handed out again, and the store gets a new id, so that no
   * graph snapshot of the old history is loaded. `record` is appended to the meta key 'losses'.
   */
  raiseHighWater(seq: number, maxId: number, record: Record<string, unknown>): { storeId: string; seq: number; maxId: number } {
    const storeId = randomUUID();
    this.db
      .transaction(() => {
        this.stmt('UPDATE state SET seq = max(seq, ?), store_id = ?').run(seq, storeId);
        if (this.stmt("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'items'").run(maxId).changes === 0)
          this.stmt("INSERT INTO sqlite_sequence (name, seq) VALUES ('items', ?)").run(maxId);
        const losses = (this.getMeta('losses') as unknown[] | undefined) ?? [];
        this.setMeta('losses', [...losses, record]);
      })
      .immediate();
    return { storeId, seq: this.seq(), maxId: this.maxId() };
  }

  /** SQLite's own check of the file's structure (quick_check, or the slower integrity_check); [] when it finds nothing. */
  integrityCheck(full = false): string[] {
    try {
      const rows = this.db.pragma(full ? 'integrity_check' : 'quick_check') as Record<string, string>[];
      // One row may hold several lines, under a "*** in database main ***" heading.
      const msgs = rows.flatMap((r) => Object.values(r)[0].split('\n')).filter((m) => m && !m.startsWith('***'));
      return msgs.length === 1 && msgs[0] === 'ok' ? [] : msgs;
    } catch (e) {
      return [(e as Error).message];
    }
  }

  /**
   * Recomputes every stored vector's checksum (store-schema.ts), deleted items too: ids whose bytes
   * changed since they were stored, and how many rows have no checksum yet (a store not yet migrated).
   */
  checkVectors(): { checked: number; bad: number[]; unchecked: number } {
    const out = { checked: 0, bad: [] as number[], unchecked: 0 };
    const stmt = this.stmt('SELECT id, vector, vector_check FROM items WHERE id > @after ORDER BY id LIMIT @limit');
    for (const page of this.pages<{ id: number; vector: Buffer; vector_check: Buffer | null }>(stmt, {}, 4096)) {
      for (const r of page) {
        if (r.vector_check === null) out.unchecked++;
        else if (!vectorCheck(r.vector).equals(r.vector_check)) out.bad.push(r.id);
        else out.checked++;
      }
    }
    return out;
  }

  get(id: number): Item | undefined {
    const r = this.stmt(`SELECT ${this.columns} FROM items WHERE id = ?`).get(id) as Row | undefined;
    return r && toItem(r);
  }

  /** Sources by id, in one statement: search results need them for a handful of ids per query. */
  sourcesOf(ids: readonly number[]): Map<number, string> {
    const rows = this.stmt('SELECT id, source FROM items WHERE id IN (SELECT value FROM json_each(?))').raw().all(JSON.stringify(ids));
    return new Map(rows as [number, string][]);
  }

  /** The live items with these content hashes (to skip encoding what is already indexed). */
  findSha256(sha256s: readonly string[]): Map<string, Item> {
    const find = this.stmt(`SELECT ${this.columns} FROM items WHERE sha256 = ? AND deleted_seq IS NULL`);
    const out = new Map<string, Item>();
    for (const sha of sha256s) {
      const r = find.get(sha) as Row | undefined;
      if (r) out.set(sha, toItem(r));
    }
    return out;
  }

  /** Ids of the live items matching a compiled filter (filter.ts), in id order; not cached like the others: filters vary. */
  matchingIds(f: CompiledFilter): number[] {
    const sql = `SELECT id FROM items WHERE deleted_seq IS NULL AND ${f.where} ORDER BY id`;
    return this.db
      .prepare(sql)
      .pluck()
      .all(...f.params) as number[];
  }

  /** The stored (unit) vectors of these ids, flat [n, dim] in the given order; throws on an unknown id. */
  vectorsOf(ids: readonly number[]): Float32Array {
    // One statement for the lot: a statement per id costs more than reading its vector.
    const rows = this.stmt('SELECT id, vector FROM items WHERE id IN (SELECT value FROM json_each(?))').raw().all(JSON.stringify(ids));
    const found = new Map(rows as [number, Buffer][]);
    const out = new Float32Array(ids.length * this.dim);
    const dst = Buffer.from(out.buffer);
    ids.forEach((id, i) => {
      const v = found.get(id);
      if (!v) throw new Error(`no item with id ${id} in ${this.file}`);
      v.copy(dst, i * this.dim * 4);
    });
    return out;
  }

  counts(atSeq = this.seq()): Counts {
    const r = this.stmt(
      `SELECT
        count(*) FILTER (WHERE ${LIVE_AT}) AS live,
        count(*) FILTER (WHERE deleted_seq <= @at) AS deleted
      FROM items WHERE seq <= @at`,
    ).get({ at: atSeq }) as Counts;
    return { live: r.live, deleted: r.deleted };
  }

  /**
   * Vectors of the items inserted after `afterSeq` and live as of `atSeq`, in id order, `chunk`
   * at a time: bounded memory whatever the store's size. afterSeq 0 streams everything live.
   * Pages are keyed on seq, which orders inserts as id does (both are handed out in insertion
   * order under the write lock), so the seq index serves both the range and the order. With
   * `bad`, each vector is checked against its checksum and the ids that fail are pushed there.
   */
  *liveVectors(opts: { afterSeq?: number; atSeq?: number; label?: number; chunk?: number; bad?: number[] } = {}): Generator<VectorChunk> {
    const { afterSeq = 0, atSeq = this.seq(), label, chunk = 1024, bad } = opts;
    const byLabel = label === undefined ? '' : 'AND label = @label';
    const stmt = this.stmt(`SELECT id, label, vector, seq${bad ? ', vector_check' : ''} FROM items
      WHERE seq > @after AND ${LIVE_AT} ${byLabel} ORDER BY seq LIMIT @limit`);
    const params = label === undefined ? { at: atSeq } : { at: atSeq, label };
    type R = { id: number; label: number; vector: Buffer; seq: number; vector_check?: Buffer | null };
    for (const page of this.pages<R, 'seq'>(stmt, params, chunk, 'seq', afterSeq)) {
      const vectors = new Float32Array(page.length * this.dim);
      const dst = Buffer.from(vectors.buffer);
      page.forEach((r, i) => {
        r.vector.copy(dst, i * this.dim * 4);
        if (bad && r.vector_check && !vectorCheck(r.vector).equals(r.vector_check)) bad.push(r.id);
      });
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
    const stmt = this.stmt(`SELECT ${this.columns}, vector FROM items
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
    const rows = this.stmt(
      `SELECT id FROM items
      WHERE deleted_seq > @afterSeq AND deleted_seq <= @at AND seq <= @afterSeq ORDER BY id`,
    ).all({ afterSeq, at: atSeq });
    return (rows as { id: number }[]).map((r) => r.id);
  }

  /**
   * Keyset pagination (key > last key seen): each page is its own short statement, so no read
   * cursor stays open between pages and writes on this connection are never blocked by a scan.
   */
  private *pages<R extends Record<K, number>, K extends string = 'id'>(
    stmt: Database.Statement,
    params: Record<string, unknown>,
    chunk: number,
    key: K = 'id' as K,
    from = 0,
  ): Generator<R[]> {
    for (let after = from; ;) {
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
    else
      this.stmt('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(
        key,
        JSON.stringify(value),
      );
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
