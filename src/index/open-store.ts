// Opening an index by what its location holds: a LanceDB index (an object-storage URI, or a
// directory with the items table: lance-store.ts) or the SQLite + HNSW one (vector-index.ts).
import fs from 'node:fs';
import path from 'node:path';
import { openOrCreateLance } from './lance-create.ts';
import { isUri } from './lance-tables.ts';
import type { LanceParamsInput } from './lance-params.ts';
import { LanceIndex, holdsLance } from './lance-store.ts';
import type { IndexParamsInput } from './manifest.ts';
import { type OpenOptions, STORE_FILE } from './open.ts';
import type { IndexStore, StoreKind } from './store-api.ts';
import { VectorIndex } from './vector-index.ts';

export const storeKindAt = (dirOrUri: string): StoreKind => (holdsLance(dirOrUri) ? 'lance' : 'sqlite');

export function openIndex(dirOrUri: string, opts: OpenOptions = {}): IndexStore {
  return storeKindAt(dirOrUri) === 'lance' ? LanceIndex.open(dirOrUri, opts) : VectorIndex.open(dirOrUri, opts);
}

/** What a resumable build calls: the store of an existing index is what it holds; a new one is `kind`. */
export function openOrCreateIndex(dirOrUri: string, input: IndexParamsInput, kind: StoreKind, lance?: LanceParamsInput): IndexStore {
  // Else a LanceDB index would be created beside the SQLite one, its manifest.json overwritten.
  if (kind === 'lance' && !isUri(dirOrUri) && !holdsLance(dirOrUri) && fs.existsSync(path.join(dirOrUri, STORE_FILE)))
    throw new Error(`${dirOrUri} holds a SQLite index (${STORE_FILE}): continue it without --store lance, or give another location`);
  return kind === 'lance' || holdsLance(dirOrUri) ? openOrCreateLance(dirOrUri, input, lance) : VectorIndex.openOrCreate(dirOrUri, input);
}
