// `matvit index recover` on a LanceDB index (recover.ts). A LanceDB commit writes its data files,
// then a new manifest version naming them (https://docs.rs/lance-table/8.0.0/src/lance_table/io/commit.rs.html),
// so a crash never leaves a half-written version and there is no log to lose. What can happen is that
// files a committed version names go missing later: a partial copy or restore of the directory, a
// machine that lost files it had not flushed to disk, an object-store lifecycle rule. Then no read of
// that version works and the index cannot be opened. This finds, per table, the latest version whose
// rows all read; with acceptLoss it restores that version (LanceDB's restore: a new version equal to
// it), records the loss in the meta key 'losses', and raises the meta key 'state' (the lower bound
// LanceIndex takes its next id and change seq from) above anything the lost versions could have handed out.
import { IndexError } from './errors.ts';
import { ITEMS, META, getMeta, probe, putMeta } from './lance-tables.ts';
import { type Columns, LanceWorker } from './lance-worker.ts';

/** A table whose latest version cannot be read, and the latest one that can. */
export interface LanceDamage {
  table: string;
  latest: number;
  /** The latest version whose rows all read (null: none). */
  readable: number | null;
  /** LanceDB's error reading the latest version. */
  error: string;
  /** Rows the readable version has fewer than the latest (items: items added since). */
  lostRows: number;
}

export interface LanceRecovery {
  damage: LanceDamage[];
  /** After restoring: the table versions written, and the id and change seq the index goes on from. */
  restored?: { versions: Record<string, number>; seq: number; maxId: number; live: number };
}

/**
 * Reads every row of the checked-out version of `name`: of items, the id and seq columns, which are in
 * every fragment's data file (the vectors beside them are not held in memory; a column a migration
 * added later has files of its own, which this does not read).
 */
function readAll(db: LanceWorker, name: string): Columns {
  return db.call<Columns>('query', { name, select: name === ITEMS ? ['id', 'seq', 'deleted_seq'] : undefined });
}

function damageOf(db: LanceWorker, name: string): LanceDamage | null {
  db.call('open', { name });
  const latest = db.call<number>('version', { name });
  let error: string;
  try {
    readAll(db, name);
    return null;
  } catch (e) {
    error = (e as Error).message;
  }
  // The row count comes from the manifest, which names the missing files but does not need them.
  const rowsAtLatest = db.call<number>('count', { name });
  const versions = db.call<number[]>('versions', { name }).filter((v) => v < latest);
  for (const v of versions.sort((a, b) => b - a)) {
    db.call('checkout', { name, version: v });
    try {
      readAll(db, name);
      return { table: name, latest, readable: v, error, lostRows: rowsAtLatest - db.call<number>('count', { name }) };
    } catch {
      // this version names a missing file too
    }
  }
  return { table: name, latest, readable: null, error, lostRows: rowsAtLatest };
}

const describe = (d: LanceDamage) =>
  `table ${d.table}: version ${d.latest} cannot be read (${d.error.slice(0, 300)}); ` +
  (d.readable === null ? 'no earlier version can be read either' : `version ${d.readable} can, ${d.lostRows} rows fewer`);

/** Finds unreadable table versions at `uri`; with acceptLoss restores the latest readable ones (see the header). */
export function recoverLance(uri: string, opts: { acceptLoss: boolean }): LanceRecovery {
  const db = new LanceWorker();
  try {
    if (probe(db, uri) === 'none') throw new Error(`${uri} is not a MatViT LanceDB index (no ${META} / ${ITEMS} tables)`);
    const damage = [META, ITEMS].map((name) => damageOf(db, name)).filter((d): d is LanceDamage => d !== null);
    if (damage.length === 0) return { damage };
    const what = damage.map(describe).join('; ');
    const lost = damage.find((d) => d.readable === null);
    if (lost) throw new IndexError('corrupt', `${uri}: ${what}: restore the index from a backup`);
    if (!opts.acceptLoss)
      throw new IndexError('lost-writes', `${uri}: ${what}. Nothing was changed. Pass --accept-loss to go on from the readable versions`);
    const versions: Record<string, number> = {};
    for (const d of damage) versions[d.table] = db.call<number>('restore', { name: d.table }); // restores the version damageOf checked out
    const c = readAll(db, ITEMS);
    let maxId = 0,
      seq = 0,
      live = 0;
    for (let i = 0; i < c.__rows; i++) {
      maxId = Math.max(maxId, (c.id as number[])[i]);
      seq = Math.max(seq, (c.seq as number[])[i], (c.deleted_seq as (number | null)[])[i] ?? 0);
      if ((c.deleted_seq as (number | null)[])[i] === null) live++;
    }
    // Each lost item row had its own id and seq, and each lost commit (an add or a remove) at most one seq more.
    const items = damage.find((d) => d.table === ITEMS);
    const known = (getMeta(db, ['state']).state as { seq: number; maxId: number } | undefined) ?? { seq: 0, maxId: 0 };
    const lostCommits = items ? items.latest - items.readable! : 0;
    maxId = Math.max(known.maxId, maxId + (items?.lostRows ?? 0));
    seq = Math.max(known.seq, seq + (items?.lostRows ?? 0) + lostCommits);
    const losses = (getMeta(db, ['losses']).losses as unknown[] | undefined) ?? [];
    putMeta(db, { state: { seq, maxId }, losses: [...losses, { at: new Date().toISOString(), damage, restored: versions, seq, maxId }] });
    return { damage, restored: { versions, seq, maxId, live } };
  } finally {
    db.close();
  }
}
