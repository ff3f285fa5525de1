// Migrations of the LanceDB store's items table (lance-store.ts runs them at a writable open): an
// index made before payload filters gets payload_jsonb, the column lance-filter.ts reads payload fields from.
import { PAYLOAD_JSONB } from './lance-filter.ts';
import { ITEMS } from './lance-tables.ts';
import type { Columns, LanceWorker } from './lance-worker.ts';

const FILLING = `${PAYLOAD_JSONB}_filling`;

/**
 * Gives an items table made before payload_jsonb the column (a writable open calls this); returns
 * the rows it filled. The copy is written under another name and renamed in one commit at the end,
 * so a reader sees either no payload_jsonb (payload filters: FilterUnsupported) or a complete one,
 * and a killed fill resumes where it stopped.
 */
export function addPayloadJsonb(db: LanceWorker, chunk = 50_000): number {
  const columns = db.call<string[]>('columns', { name: ITEMS });
  if (columns.includes(PAYLOAD_JSONB)) return 0;
  if (!columns.includes(FILLING)) db.call('addColumns', { name: ITEMS, cols: [{ name: FILLING, type: 'json', nullable: true }] });
  const where = `payload IS NOT NULL AND ${FILLING} IS NULL`;
  const todo = db.call<number>('count', { name: ITEMS, where });
  for (let done = 0; done < todo;) {
    const c = db.call<Columns>('query', { name: ITEMS, where, select: ['id', 'payload'], limit: chunk });
    if (!c.__rows) break;
    db.call('updateColumns', { name: ITEMS, key: 'id', cols: { __rows: c.__rows, id: c.id, [FILLING]: c.payload } });
    done += c.__rows;
  }
  const left = db.call<number>('count', { name: ITEMS, where });
  if (left) throw new Error(`${ITEMS}: ${left} payloads were not copied to ${FILLING}; open the index for writing again to retry`);
  db.call('renameColumn', { name: ITEMS, from: FILLING, to: PAYLOAD_JSONB });
  return todo;
}
