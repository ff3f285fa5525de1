// What opening an index checks before its graph is loaded (vector-index.ts): the model, whether
// this process can write the directory, the store's file, and whether the store still holds every
// change the index acknowledged (acked.ts). Nothing is written until those checks pass.
import fs from 'node:fs';
import path from 'node:path';
import { removeStaleTemps } from '../util/durable.ts';
import { notWritable } from '../util/writable.ts';
import { ACKED_FILE, type Acked, type Loss, findLoss, readAcked, writeAcked } from './acked.ts';
import { IndexError, corruptionError } from './errors.ts';
import { Graph } from './hnsw.ts';
import { type IndexParams, MANIFEST_FILE, type Manifest, newManifest, readManifest, writeManifest } from './manifest.ts';
import { Store } from './store.ts';

export const STORE_FILE = 'store.sqlite';
/** The files SQLite writes in place (the others are replaced by rename: the directory's permission is what counts). */
const SQLITE_FILES = [STORE_FILE, `${STORE_FILE}-wal`, `${STORE_FILE}-shm`];

/**
 * write: fail, naming the directory and the permission, when this process cannot write it.
 * read: no writes at all (no snapshot, no manifest or acked.json update, no temp cleanup).
 * auto: write when this process can, else read, with the reason in the open report.
 */
export type OpenMode = 'write' | 'read' | 'auto';

export interface OpenOptions {
  /** The fingerprint of the model that will embed queries or new items; omit only for tools that embed nothing (info, verify, merge). */
  expectedFingerprint?: string;
  /** Default 'write'. */
  mode?: OpenMode;
  /**
   * Run SQLite's quick_check on the store first (default true: 0.16 s for a 60k-item, 50 MB store),
   * so that a damaged page stops a writer at open rather than failing its writes later.
   */
  quickCheck?: boolean;
  /** LanceDB store: the bound on this process's index cache (the ANN partitions it keeps in memory); default LanceDB's (6 GB). */
  indexCacheMB?: number;
}

/** What the checks found, for the open report. */
export interface Checked {
  manifest: Manifest;
  store: Store;
  /** Why the index is open read-only (mode 'read', or a directory this process cannot write in mode 'auto'). */
  readOnlyReason?: string;
  /** Acknowledged changes the store does not hold; only with mode 'read' (the other modes refuse). */
  loss?: Loss;
  /** Damage the files still have after opening, one sentence each (a writable open repairs a bad snapshot: a warning then): verify fails on these. */
  damage: string[];
  /** Everything else worth a line in the log (what was cleaned up or migrated). */
  warnings: string[];
}

/** What SQLite's check found in `file`, and what to do about it. */
export function integrityMessage(file: string, check: 'quick_check' | 'integrity_check', faults: readonly string[]): string {
  const shown = faults.slice(0, 3).join('; ') + (faults.length > 3 ? `; and ${faults.length - 3} more` : '');
  return `${file} is damaged: SQLite's ${check} reports ${shown}. Restore the index directory from a backup, or build the index again`;
}

/** The checks of the file header; the caller owns (and closes) the returned store. */
export function checkOnOpen(dir: string, opts: OpenOptions): Checked {
  const manifest = readManifest(dir);
  if (opts.expectedFingerprint !== undefined && opts.expectedFingerprint !== manifest.fingerprint)
    throw new Error(
      `${dir} was built with model ${manifest.modelName} of fingerprint ${manifest.fingerprint}; the model given has fingerprint ${opts.expectedFingerprint}. Queries embedded by another model live in another metric space: use that model, or build a new index`,
    );
  const mode = opts.mode ?? 'write';
  let readOnlyReason = mode === 'read' ? 'opened read-only' : undefined;
  if (mode !== 'read') {
    const why = notWritable(dir, SQLITE_FILES);
    if (why && mode === 'write')
      throw new IndexError(
        'unwritable',
        `${dir} cannot be opened for writing: ${why}. Give this user write permission on the directory and its files, or open the index read-only (matvit serve does so by itself, with writes disabled)`,
      );
    if (why) readOnlyReason = `${why}: writes are disabled`;
  }
  const readOnly = readOnlyReason !== undefined;
  const file = path.join(dir, STORE_FILE);
  const store = Store.open(file, { readOnly });
  const damage: string[] = [],
    warnings: string[] = [];
  try {
    if (store.dim !== manifest.dim)
      throw new Error(`${dir}: the store holds ${store.dim}-d vectors, the manifest says dim ${manifest.dim}`);
    const faults = opts.quickCheck === false ? [] : store.integrityCheck();
    if (faults.length) {
      const msg = integrityMessage(file, 'quick_check', faults);
      if (mode !== 'read') throw new IndexError('corrupt', msg);
      damage.push(msg);
    }
    let acked: Acked | null;
    try {
      acked = readAcked(dir);
    } catch (e) {
      if (mode !== 'read') throw new IndexError('corrupt', (e as Error).message);
      damage.push((e as Error).message);
      acked = null;
    }
    const now = { storeId: store.storeId, seq: store.seq(), maxId: store.maxId() };
    const loss = findLoss(dir, now, acked, Graph.watermark(dir));
    if (loss && mode !== 'read') throw new IndexError('lost-writes', loss.message);
    if (loss) damage.push(loss.message);
    for (const note of [store.migrated, store.outdated]) if (note) warnings.push(note);
    if (!readOnly) {
      const removed = removeStaleTemps(dir, (f, why) => warnings.push(`could not remove ${f}, a temp file of a killed writer: ${why}`));
      if (removed.length) warnings.push(`removed ${removed.length} temp file(s) of killed writers: ${removed.join(', ')}`);
      if (acked === null && !damage.length) {
        writeAcked(dir, now);
        warnings.push(
          `acked.json was missing (an index made before it existed): wrote it (seq ${now.seq}, id ${now.maxId}); a lost write-ahead log is detected from now on`,
        );
      }
    } else if (acked === null && !damage.length)
      warnings.push(
        'acked.json is missing (an index made before it existed): a lost write-ahead log cannot be detected until the index is opened writable once',
      );
    return { manifest, store, readOnlyReason, loss, damage, warnings };
  } catch (e) {
    store.close({ untouched: true });
    throw corruptionError(file, e);
  }
}

/**
 * The files of a new, empty index in `dir` (new or empty): the store, acked.json, and the
 * manifest last, which marks a complete index.
 */
export function createFiles(dir: string, params: IndexParams): void {
  if (fs.existsSync(path.join(dir, MANIFEST_FILE))) throw new Error(`${dir} already holds an index (${MANIFEST_FILE}); open it instead`);
  fs.mkdirSync(dir, { recursive: true });
  const why = notWritable(dir);
  if (why) throw new IndexError('unwritable', `cannot create an index in ${dir}: ${why}`);
  const storeFile = path.join(dir, STORE_FILE);
  if (fs.existsSync(storeFile)) {
    // A store without a manifest: a create that did not finish (empty store, safe to replace),
    // or an index whose manifest was lost (items: never deleted here).
    const old = Store.open(storeFile, { readOnly: true });
    const seq = old.seq();
    old.close();
    if (seq > 0)
      throw new Error(
        `${dir} has no ${MANIFEST_FILE} but its ${STORE_FILE} holds ${seq} changes; restore the manifest, or move the directory away to start a new index`,
      );
    for (const f of fs.readdirSync(dir)) if (f.startsWith(STORE_FILE) || f === ACKED_FILE) fs.rmSync(path.join(dir, f), { force: true });
  }
  const foreign = fs.readdirSync(dir);
  if (foreign.length > 0)
    throw new Error(
      `${dir} is not empty (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}); an index is created in a new or empty directory`,
    );
  const store = Store.create(storeFile, params.dim);
  try {
    writeAcked(dir, { storeId: store.storeId, seq: 0, maxId: 0 });
  } finally {
    store.close();
  }
  writeManifest(dir, newManifest(params));
}
