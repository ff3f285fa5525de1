// acked.json: how far the index has acknowledged changes (the store's change seq and its highest
// item id), kept where a lost SQLite write-ahead log cannot take it back.
//
// A batch is acknowledged once the store has committed it, and a commit in WAL mode lives in
// store.sqlite-wal until a checkpoint copies it into store.sqlite. Lose that file after a crash
// and SQLite opens the older state without a word: acknowledged items vanish, and AUTOINCREMENT
// hands their ids out again. So every write of VectorIndex records the store's seq and highest id
// here (fsynced, atomically replaced: util/durable.ts) before it returns, under the store's write
// lock so that concurrent writers record in commit order. Opening compares: a store behind
// acked.json (or behind its own graph snapshot's watermark) has lost acknowledged changes.
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../util/durable.ts';

export const ACKED_FILE = 'acked.json';

export const Acked = z
  .object({
    format: z.literal('matvit-acked'),
    version: z.literal(1),
    /** The store these figures are of (state.store_id). */
    storeId: z.string().min(1),
    /** The store's change seq when the last acknowledged write returned. */
    seq: z.number().int().nonnegative(),
    /** The highest item id handed out by then. */
    maxId: z.number().int().nonnegative(),
    at: z.iso.datetime(),
  })
  .strict();
export type Acked = z.infer<typeof Acked>;

/** acked.json of `dir`: null when there is none (an index made before it existed); throws naming the file when it is unreadable. */
export function readAcked(dir: string): Acked | null {
  const file = path.join(dir, ACKED_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    return Acked.parse(JSON.parse(text));
  } catch (e) {
    throw new Error(
      `${file} is unreadable (${(e as Error).message.split('\n')[0]}): it records the last acknowledged change, so a lost write-ahead log could not be detected; restore it, or run matvit index recover --accept-loss to start it again from the store`,
    );
  }
}

export function writeAcked(dir: string, state: { storeId: string; seq: number; maxId: number }): void {
  const acked: Acked = { format: 'matvit-acked', version: 1, ...state, at: new Date().toISOString() };
  writeFileAtomic(path.join(dir, ACKED_FILE), JSON.stringify(acked, null, 2) + '\n');
}

/** Acknowledged changes a store no longer holds, and how that was found. */
export interface Loss {
  store: { storeId: string; seq: number; maxId: number };
  /** What acked.json records (null when it is missing). */
  acked: Acked | null;
  /** The graph snapshot's watermark, when the snapshot holds changes the store does not. */
  snapshotSeq?: number;
  /** What is missing, in one sentence. */
  what: string;
  /** `what`, what was done (nothing), and how to go on. */
  message: string;
}

/**
 * Compares the store with acked.json and the graph snapshot's watermark (the snapshot of this
 * store, when there is one); undefined when nothing acknowledged is missing.
 */
export function findLoss(
  dir: string,
  store: { storeId: string; seq: number; maxId: number },
  acked: Acked | null,
  snapshot?: { storeId: string; seq: number },
): Loss | undefined {
  const snapshotSeq = snapshot && snapshot.storeId === store.storeId && snapshot.seq > store.seq ? snapshot.seq : undefined;
  const otherStore = acked !== null && acked.storeId !== store.storeId;
  const behind = acked !== null && !otherStore && (acked.seq > store.seq || acked.maxId > store.maxId);
  if (!otherStore && !behind && snapshotSeq === undefined) return undefined;
  const file = path.join(dir, 'store.sqlite');
  const has = `${file} holds changes up to seq ${store.seq} and ids up to ${store.maxId}`;
  let what: string;
  if (otherStore)
    what = `${ACKED_FILE} records the acknowledged changes of store ${acked.storeId} (up to seq ${acked.seq}, id ${acked.maxId}), but ${file} is store ${store.storeId}: the store was replaced`;
  else if (behind)
    what = `${has}, but ${ACKED_FILE} records changes up to seq ${acked.seq} and ids up to ${acked.maxId} as acknowledged: ${acked.seq - store.seq} acknowledged change(s) are missing`;
  else
    what = `${has}, but its graph snapshot was written at seq ${snapshotSeq}: ${snapshotSeq! - store.seq} committed change(s) are missing`;
  const maxId = Math.max(store.maxId, acked?.maxId ?? 0);
  const message =
    `${what}; its write-ahead log (store.sqlite-wal) was lost or the file was restored from an older copy. Nothing was changed. ` +
    `To go on with what the store holds: matvit index recover --index ${dir} --accept-loss (records the loss; ids up to ${maxId} are never handed out again, and removals among the lost changes must be done again); or restore the whole directory from a backup`;
  return { store, acked, ...(snapshotSeq !== undefined && { snapshotSeq }), what, message };
}
