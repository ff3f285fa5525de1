// Creating a LanceDB index (lance-store.ts): the items table, then the meta table with the store's
// settings and the manifest last, which marks a complete index (as open.ts's createFiles does); a
// create killed before that is finished by the next one.
import fs from 'node:fs';
import { notWritable } from '../util/writable.ts';
import { IndexError } from './errors.ts';
import { type LanceParamsInput, LanceParams as LanceParamsSchema, annSettings } from './lance-params.ts';
import { LanceIndex } from './lance-store.ts';
import { ITEMS, META, META_COLS, dropTable, isUri, itemColumns, probe, putMeta } from './lance-tables.ts';
import { LanceWorker } from './lance-worker.ts';
import { type IndexParamsInput, newManifest, parseIndexParams } from './manifest.ts';

/** Creates an empty index at `uri` (a new or empty directory, or an object-storage URI without tables). */
export function createLance(uri: string, input: IndexParamsInput, lance: LanceParamsInput = {}): LanceIndex {
  const params = parseIndexParams(input);
  const settings = LanceParamsSchema.parse(lance);
  annSettings(settings, 0, params.dim); // refuses sub-vectors that do not divide the dimension before anything is written
  if (!isUri(uri)) {
    fs.mkdirSync(uri, { recursive: true });
    const why = notWritable(uri);
    if (why) throw new IndexError('unwritable', `cannot create an index in ${uri}: ${why}`);
  }
  const db = new LanceWorker();
  try {
    const found = probe(db, uri);
    if (found === 'complete') throw new Error(`${uri} already holds an index; open it instead`);
    if (found === 'partial') {
      // A create that was killed: nothing but empty tables to remove (items are never deleted here).
      let rows = 0;
      try {
        db.call('open', { name: ITEMS });
        rows = db.call<number>('count', { name: ITEMS });
      } catch {
        // no items table, or one killed before its first commit: nothing in it
      }
      if (rows > 0) throw new Error(`${uri} holds ${rows} items but no manifest; restore it, or use another location`);
      for (const name of [ITEMS, META]) dropTable(db, uri, name);
    }
    db.call('create', { name: ITEMS, cols: itemColumns(params.dim) });
    db.call('create', { name: META, cols: META_COLS });
    const manifest = newManifest(params);
    // The manifest last: it marks a complete index (as open.ts's createFiles does).
    putMeta(db, { lance: settings, manifest });
  } finally {
    db.close();
  }
  return LanceIndex.open(uri, { expectedFingerprint: params.fingerprint });
}

/** Opens the index at `uri` if there is one (same model, ffnDims, dim and space), else creates it. */
export function openOrCreateLance(uri: string, input: IndexParamsInput, lance: LanceParamsInput = {}): LanceIndex {
  const db = new LanceWorker();
  let exists: boolean;
  try {
    exists = probe(db, uri) === 'complete';
  } finally {
    db.close();
  }
  if (!exists) return createLance(uri, input, lance);
  const want = parseIndexParams(input);
  const index = LanceIndex.open(uri, { expectedFingerprint: want.fingerprint });
  const diff = (['ffnDims', 'dim', 'space'] as const).filter((k) => JSON.stringify(index.manifest[k]) !== JSON.stringify(want[k]));
  if (diff.length) {
    index.close();
    throw new Error(`${uri} holds an index with ${diff.map((k) => `${k} ${JSON.stringify(index.manifest[k])}`).join(', ')}`);
  }
  return index;
}
