// `matvit index recover --accept-loss`: goes on with what the store holds after it lost
// acknowledged changes (acked.ts), without ever handing out an id or a change seq twice. A LanceDB
// index has no write-ahead log to lose; what it can lose is files of committed versions (lance-recover.ts).
import path from 'node:path';
import { notWritable } from '../util/writable.ts';
import { type Loss, findLoss, readAcked, writeAcked } from './acked.ts';
import { IndexError } from './errors.ts';
import { Graph } from './hnsw.ts';
import { STORE_FILE } from './open.ts';
import { type LanceRecovery, recoverLance } from './lance-recover.ts';
import { LanceIndex, holdsLance } from './lance-store.ts';
import { Store } from './store.ts';
import { VectorIndex } from './vector-index.ts';

export interface RecoverReport {
  dir: string;
  /** What was missing (undefined: nothing, and nothing was done). */
  loss?: Loss;
  /** acked.json could not be read; it was written again from the store. */
  ackedUnreadable?: string;
  /** The store after recovery: its new id, and the seq and highest id it goes on from. */
  after?: { storeId: string; seq: number; maxId: number; live: number };
  /** Set for a store with nothing of this kind to recover: why. */
  notApplicable?: string;
  /** LanceDB: the unreadable table versions found, and what was restored. */
  lance?: LanceRecovery;
}

const LANCE_ATOMIC =
  'a LanceDB index commits atomically (each commit writes a new table version, its manifest last), so a crash leaves the last committed version and there is no write-ahead log to lose; the latest version of each table reads in full: nothing to recover';

/**
 * Records the loss in the store's meta ('losses'), raises the store's change seq and id counter to
 * what was acknowledged, gives the store a new id (so the old graph snapshot is rebuilt rather
 * than loaded: it may hold the lost items), and writes acked.json and the snapshot again.
 * Refuses unless `acceptLoss`: the caller has to say that the missing changes are given up.
 */
export function recoverIndex(dir: string, opts: { acceptLoss: boolean }): RecoverReport {
  if (holdsLance(dir)) {
    const lance = recoverLance(dir, opts);
    if (!lance.restored) return { dir, notApplicable: LANCE_ATOMIC };
    LanceIndex.open(dir).close(); // opens as a writer would, and writes the manifest's counts again
    return { dir, lance };
  }
  const why = notWritable(dir, [STORE_FILE, `${STORE_FILE}-wal`, `${STORE_FILE}-shm`]);
  if (why) throw new IndexError('unwritable', `${dir} cannot be recovered: ${why}`);
  const store = Store.open(path.join(dir, STORE_FILE));
  let report: RecoverReport;
  try {
    let ackedUnreadable: string | undefined;
    let acked = null;
    try {
      acked = readAcked(dir);
    } catch (e) {
      ackedUnreadable = (e as Error).message;
    }
    const now = { storeId: store.storeId, seq: store.seq(), maxId: store.maxId() };
    const loss = findLoss(dir, now, acked, Graph.watermark(dir));
    if (!loss && !ackedUnreadable) return { dir };
    if (!opts.acceptLoss) throw new IndexError('lost-writes', `${loss?.message ?? ackedUnreadable}. Pass --accept-loss to go on`);
    const seq = Math.max(now.seq, acked?.seq ?? 0, loss?.snapshotSeq ?? 0);
    const maxId = Math.max(now.maxId, acked?.maxId ?? 0);
    const record = {
      at: new Date().toISOString(),
      store: now,
      acked,
      snapshotSeq: loss?.snapshotSeq ?? null,
      ackedUnreadable: ackedUnreadable ?? null,
    };
    const raised = store.raiseHighWater(seq, maxId, record);
    writeAcked(dir, raised);
    report = { dir, loss, ...(ackedUnreadable && { ackedUnreadable }), after: { ...raised, live: store.counts().live } };
  } finally {
    store.close();
  }
  // A writable open now finds nothing missing, rebuilds the graph (the store's id changed) and snapshots it.
  VectorIndex.open(dir).close();
  return report;
}
