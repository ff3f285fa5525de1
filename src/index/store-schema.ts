// The store's SQLite schema, its migrations, and the checks on an item before it is stored.
import { hash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { type VectorLike, unitVector } from './vectors.ts';

/** 'MtVi': marks the SQLite file as a MatViT index store (PRAGMA application_id). */
export const APPLICATION_ID = 0x4d745669;
/** 2 added items.vector_check, 3 items.payload. */
export const SCHEMA_VERSION = 3;
/** An item's payload, as stored (compact JSON), at most this many bytes: it is read with every result that asks for it. */
export const MAX_PAYLOAD_BYTES = 4096;
const SHA256 = /^[0-9a-f]{64}$/;
/** Labels are kept in memory as int32 (live-set.ts): the store takes no label it could not give back. */
export const MAX_LABEL = 2 ** 31 - 1;

export const SCHEMA = `
CREATE TABLE items (
  id           INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: an id is never reused
  source       TEXT    NOT NULL,                  -- path relative to the corpus root, or 'idx:#123'
  label        INTEGER NOT NULL,                  -- class index, -1 when unknown
  label_name   TEXT,
  sha256       TEXT    NOT NULL,                  -- of the content (image file bytes)
  bytes        INTEGER NOT NULL,
  added_at     TEXT    NOT NULL,                  -- ISO 8601
  vector       BLOB    NOT NULL,                  -- float32 little-endian, unit length
  seq          INTEGER NOT NULL UNIQUE,           -- change seq of the insert
  deleted_seq  INTEGER UNIQUE,                    -- change seq of the delete; NULL while live
  vector_check BLOB,                              -- vectorCheck(vector); NULL only mid-migration
  payload      TEXT                               -- a JSON object set by the user (search filters and returns it); NULL: none
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

/**
 * A checksum of a stored vector's bytes: the first 8 bytes of their sha256. SQLite checks its own
 * structure (PRAGMA integrity_check) but not the bytes inside a blob; this lets `index verify`
 * check every vector, which a graph rebuilt from a damaged vector would otherwise agree with.
 */
export const vectorCheck = (blob: Uint8Array): Buffer => hash('sha256', blob, 'buffer').subarray(0, 8);

/**
 * Brings a store of an older schema to SCHEMA_VERSION in one transaction; returns what it did, or
 * undefined when there was nothing to do. Version 1 -> 2: a checksum for every vector, computed
 * from the vectors as they are now (it vouches for them from here on, not for their past).
 * 2 -> 3: an empty payload column.
 */
export function migrate(db: Database.Database, file: string, from: number): string | undefined {
  if (from === SCHEMA_VERSION) return undefined;
  if (from !== 1 && from !== 2)
    throw new Error(`${file}: store schema version ${from}, this version reads ${SCHEMA_VERSION} (and migrates 1, 2)`);
  let n = 0;
  db.transaction(() => {
    if (from === 1) {
      db.exec('ALTER TABLE items ADD COLUMN vector_check BLOB');
      const read = db.prepare('SELECT id, vector FROM items WHERE id > ? ORDER BY id LIMIT 4096');
      const write = db.prepare('UPDATE items SET vector_check = ? WHERE id = ?');
      for (let after = 0; ;) {
        const page = read.all(after) as { id: number; vector: Buffer }[];
        for (const r of page) write.run(vectorCheck(r.vector), r.id);
        n += page.length;
        if (page.length === 0) break;
        after = page[page.length - 1].id;
      }
    }
    db.exec('ALTER TABLE items ADD COLUMN payload TEXT');
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
  const payload = `store.sqlite had no payload column (schema ${from}): added it, empty`;
  return from === 1
    ? `store.sqlite had no vector checksums (schema 1): added them for its ${n} stored vectors, as the vectors are now; ${payload}`
    : payload;
}

/** Throws naming `where` unless `p` is a plain JSON object of at most MAX_PAYLOAD_BYTES; returns its stored text. */
export function payloadText(p: unknown, where: string): string {
  if (p === null || typeof p !== 'object' || Array.isArray(p) || Object.getPrototypeOf(p) !== Object.prototype)
    throw new Error(`${where}: expected a JSON object`);
  const text = JSON.stringify(p);
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_PAYLOAD_BYTES) throw new Error(`${where}: ${bytes} bytes of JSON, the limit is ${MAX_PAYLOAD_BYTES}`);
  return text;
}

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
  /** A JSON object (payloadText's limits); null or absent: none. */
  payload?: Record<string, unknown> | null;
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
  payload: Record<string, unknown> | null;
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

export interface Row {
  id: number;
  source: string;
  label: number;
  label_name: string | null;
  sha256: string;
  bytes: number;
  added_at: string;
  seq: number;
  deleted_seq: number | null;
  payload: string | null;
}
export const ITEM_COLUMNS = 'id, source, label, label_name, sha256, bytes, added_at, seq, deleted_seq, payload';
export const toItem = (r: Row): Item => ({
  id: r.id,
  source: r.source,
  label: r.label,
  labelName: r.label_name,
  sha256: r.sha256,
  bytes: r.bytes,
  addedAt: r.added_at,
  seq: r.seq,
  deletedSeq: r.deleted_seq,
  payload: r.payload === null ? null : (JSON.parse(r.payload) as Record<string, unknown>),
});

/** Validates an item; returns the row to insert (unit vector as a float32 blob, with its checksum). */
export function checkItem(it: NewItem, i: number, dim: number) {
  const where = `items[${i}]`;
  if (typeof it.source !== 'string' || it.source.length === 0)
    throw new Error(`${where}.source = ${JSON.stringify(it.source)}: expected a non-empty path or 'idx:#N'`);
  const label = it.label ?? -1;
  if (!Number.isInteger(label) || label < -1 || label > MAX_LABEL)
    throw new Error(`${where}.label = ${label}: expected an integer in 0..${MAX_LABEL}, or -1 for unknown`);
  if (typeof it.sha256 !== 'string' || !SHA256.test(it.sha256))
    throw new Error(`${where}.sha256 = ${JSON.stringify(it.sha256)}: expected 64 lowercase hex digits`);
  if (!Number.isSafeInteger(it.bytes) || it.bytes < 0) throw new Error(`${where}.bytes = ${it.bytes}: expected an integer >= 0`);
  const addedAt = it.addedAt ?? new Date().toISOString();
  if (Number.isNaN(Date.parse(addedAt))) throw new Error(`${where}.addedAt = ${JSON.stringify(addedAt)}: expected an ISO 8601 time`);
  const v = unitVector(it.vector, dim, `${where}.vector`);
  const vector = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const payload = it.payload === undefined || it.payload === null ? null : payloadText(it.payload, `${where}.payload`);
  return {
    source: it.source,
    label,
    labelName: it.labelName ?? null,
    sha256: it.sha256,
    bytes: it.bytes,
    addedAt,
    vector,
    vectorCheck: vectorCheck(vector),
    payload,
  };
}
