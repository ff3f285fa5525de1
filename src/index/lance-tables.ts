// The LanceDB store's tables (lance-store.ts): their columns, SQL literals, the meta table's
// key -> JSON rows, and telling a complete index from the leftovers of a create that was killed.
import fs from 'node:fs';
import path from 'node:path';
import type { ColumnSpec, Columns, LanceWorker } from './lance-worker.ts';
import type { checkItem } from './store-schema.ts';

export const ITEMS = 'items';
export const META = 'meta';
export const LIVE = 'deleted_seq IS NULL';
export const ITEM_COLS = ['id', 'source', 'label', 'label_name', 'sha256', 'bytes', 'added_at', 'seq', 'deleted_seq', 'payload'];

export const itemColumns = (dim: number): ColumnSpec[] => [
  { name: 'id', type: 'int64', nullable: false },
  { name: 'source', type: 'utf8', nullable: false },
  { name: 'label', type: 'int32', nullable: false },
  { name: 'label_name', type: 'utf8', nullable: true },
  { name: 'sha256', type: 'utf8', nullable: false },
  { name: 'live_sha256', type: 'utf8', nullable: true },
  { name: 'bytes', type: 'int64', nullable: false },
  { name: 'added_at', type: 'utf8', nullable: false },
  { name: 'seq', type: 'int64', nullable: false },
  { name: 'deleted_seq', type: 'int64', nullable: true },
  { name: 'payload', type: 'utf8', nullable: true },
  // payload again as JSONB, which search filters read with Lance's json_extract (lance-filter.ts); payload keeps the exact text.
  { name: 'payload_jsonb', type: 'json', nullable: true },
  { name: 'vector', type: 'vector', nullable: false, dim },
];
export const META_COLS: ColumnSpec[] = [
  { name: 'key', type: 'utf8', nullable: false },
  { name: 'value', type: 'utf8', nullable: false },
];

/** New items (store-schema.ts's checkItem rows with their id and seq) as the items table's columns. */
export function newRows(items: readonly (ReturnType<typeof checkItem> & { id: number; seq: number })[], dim: number): Columns {
  const vectors = new Float32Array(items.length * dim);
  items.forEach((it, i) => vectors.set(new Float32Array(it.vector.buffer, it.vector.byteOffset, dim), i * dim));
  const col = <T>(f: (it: (typeof items)[number]) => T) => items.map(f);
  const payload = col((it) => it.payload ?? null);
  return {
    __rows: items.length,
    id: col((it) => it.id),
    source: col((it) => it.source),
    label: col((it) => it.label),
    label_name: col((it) => it.labelName),
    sha256: col((it) => it.sha256),
    live_sha256: col((it) => it.sha256),
    bytes: col((it) => it.bytes),
    added_at: col((it) => it.addedAt),
    seq: col((it) => it.seq),
    deleted_seq: col(() => null),
    payload,
    payload_jsonb: payload,
    vector: vectors,
  };
}

/** A SQL string literal (LanceDB's filters are DataFusion SQL). */
export const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;
export const isUri = (s: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
export type Row = Record<string, unknown>;
export const rows = (c: Columns): Row[] =>
  Array.from({ length: c.__rows }, (_, i) =>
    Object.fromEntries(Object.entries(c).flatMap(([k, v]) => (k === '__rows' ? [] : [[k, (v as unknown[])[i]]]))),
  );

/** Whether `uri` holds a complete index (a meta table with the manifest), the leftovers of a killed create, or nothing; leaves `db` connected. */
export function probe(db: LanceWorker, uri: string): 'complete' | 'partial' | 'none' {
  const tables = db.call<string[]>('connect', { uri });
  if (!tables.includes(META) && !tables.includes(ITEMS)) return 'none';
  try {
    db.call('open', { name: META });
    if (getMeta(db, ['manifest']).manifest) return 'complete';
  } catch (e) {
    // LanceDB writes every file readable by its owner only (mode 0600, whatever the umask), and each commit writes new ones.
    if (/permission denied|os error 13/i.test(String(e)))
      throw new Error(
        `${uri}: permission denied reading the index: LanceDB writes its files readable by their owner only (mode 0600), so run every process that opens it as the user that writes it`,
      );
    // else: a meta table killed before its first commit
  }
  return 'partial';
}

/** Drops a table, also one LanceDB cannot open (killed before its first commit: then, locally, its directory goes). */
export function dropTable(db: LanceWorker, uri: string, name: string): void {
  try {
    db.call('drop', { name });
  } catch (e) {
    if (isUri(uri)) throw e;
    fs.rmSync(path.join(uri, `${name}.lance`), { recursive: true, force: true });
  }
}

/** Meta values by key (all keys when `keys` is omitted). */
export function getMeta(db: LanceWorker, keys?: string[]): Record<string, unknown> {
  const where = keys ? `key IN (${keys.map(lit).join(', ')})` : undefined;
  const c = db.call<Columns>('query', { name: META, where, select: ['key', 'value'] });
  return Object.fromEntries(rows(c).map((r) => [r.key, JSON.parse(r.value as string)]));
}

/** Sets meta keys in one commit (a merge-insert keyed on key). */
export function putMeta(db: LanceWorker, values: Record<string, unknown>): void {
  const entries = Object.entries(values);
  db.call('upsert', {
    name: META,
    key: 'key',
    cols: { __rows: entries.length, key: entries.map((e) => e[0]), value: entries.map((e) => JSON.stringify(e[1])) },
  });
}

/** Whether `dirOrUri` holds a LanceDB index (a URI always names one; a local directory when it has the items table). */
export const holdsLance = (dirOrUri: string): boolean => isUri(dirOrUri) || fs.existsSync(path.join(dirOrUri, `${ITEMS}.lance`));
