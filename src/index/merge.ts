// `matvit index merge`: shard indexes built with the same model, joined into one. Shards and the
// output may be of either store (SQLite + HNSW or LanceDB): shards are read, and the output written,
// through the IndexStore interface (open-store.ts).
import path from 'node:path';
import { isUri } from './lance-tables.ts';
import type { LanceParamsInput } from './lance-params.ts';
import { modelPathFor } from './corpus.ts';
import { type Manifest, readManifest } from './manifest.ts';
import { openIndex, openOrCreateIndex, storeKindAt } from './open-store.ts';
import { DEFAULT_SNAPSHOT_EVERY } from './pipeline-defaults.ts';
import type { StoreKind } from './store-api.ts';

export interface MergeReport {
  dir: string;
  shards: { dir: string; live: number; added: number; duplicates: number }[];
  live: number;
}

export interface MergeOptions {
  expectedFingerprint?: string;
  chunk?: number;
  /** The store of a new output index (an existing one stays what it is). */
  store?: StoreKind;
  /** LanceDB settings of a new Lance output (lance-params.ts). */
  lance?: LanceParamsInput;
}

/** A location as compared for "the shard is the output" (URIs as given, directories resolved). */
const where = (dirOrUri: string) => (isUri(dirOrUri) ? dirOrUri.replace(/\/+$/, '') : path.resolve(dirOrUri));

/**
 * Joins shard indexes built with the same model (fingerprint, ffnDims, dim, space) into the
 * index at `out`, created when absent. Items keep their source, label, payload and added time, get
 * new ids, and a sha256 seen before (in an earlier shard, or already in `out`) is not added
 * twice; so an interrupted merge is finished by running it again.
 */
export function mergeIndexes(out: string, shardDirs: readonly string[], opts: MergeOptions = {}): MergeReport {
  if (shardDirs.length === 0) throw new Error('merge: no shard given');
  for (const d of shardDirs) if (where(d) === where(out)) throw new Error(`merge: shard ${d} is the output index`);
  const shards = shardDirs.map((dir) => ({ dir, manifest: manifestAt(dir) }));
  checkCompatible(shards, opts.expectedFingerprint);
  return mergeInto(out, shards, opts);
}

/** A shard's manifest: a SQLite index's from its file (opening it loads its whole graph), a LanceDB index's from its meta table. */
function manifestAt(dirOrUri: string): Manifest {
  if (storeKindAt(dirOrUri) === 'sqlite') return readManifest(dirOrUri);
  const index = openIndex(dirOrUri, { mode: 'read' });
  try {
    return index.info().manifest;
  } finally {
    index.close();
  }
}

function checkCompatible(shards: { dir: string; manifest: Manifest }[], expectedFingerprint?: string): void {
  const first = shards[0].manifest;
  for (const s of shards) {
    const fp = expectedFingerprint ?? first.fingerprint;
    if (s.manifest.fingerprint !== fp)
      throw new Error(
        `merge: shard ${s.dir} was built with model fingerprint ${s.manifest.fingerprint}, expected ${fp} (from ${expectedFingerprint ? 'the given model' : shards[0].dir})`,
      );
    for (const k of ['ffnDims', 'dim', 'space'] as const)
      if (JSON.stringify(s.manifest[k]) !== JSON.stringify(first[k]))
        throw new Error(
          `merge: shard ${s.dir} has ${k} ${JSON.stringify(s.manifest[k])}, shard ${shards[0].dir} has ${JSON.stringify(first[k])}`,
        );
  }
}

function mergeInto(out: string, shards: { dir: string; manifest: Manifest }[], opts: MergeOptions): MergeReport {
  const first = shards[0].manifest;
  const { fingerprint, modelName, ffnDims, dim, space, M, efConstruction, ef, model } = first;
  // A new merged index records where the shards' model is (relative to it), so that `index add`
  // and `serve` find it as they do for a built index (a model path is only known for a local shard and output).
  const modelPath =
    first.modelPath && !isUri(shards[0].dir) && !isUri(out) ? modelPathFor(out, path.resolve(shards[0].dir, first.modelPath)) : undefined;
  const corpus = { mergedFrom: shards.map((s) => s.manifest.corpus) };
  const params = { fingerprint, modelName, ffnDims, dim, space, M, efConstruction, ef, model, modelPath, corpus };
  const index = openOrCreateIndex(out, params, opts.store ?? 'sqlite', opts.lance);
  try {
    const report: MergeReport = { dir: out, shards: [], live: 0 };
    let batches = 0;
    for (const s of shards) {
      const entry = { dir: s.dir, live: 0, added: 0, duplicates: 0 };
      // One shard open at a time: a SQLite shard holds its graph in memory while open.
      const src = openIndex(s.dir, { mode: 'read' });
      try {
        for (const items of src.liveItems(opts.chunk)) {
          const r = index.add(
            items.map(({ source, label, labelName, sha256, bytes, addedAt, vector, payload }) => ({
              source,
              payload,
              label,
              labelName,
              sha256,
              bytes,
              addedAt,
              vector,
            })),
          );
          entry.live += items.length;
          entry.duplicates += r.duplicates.length;
          entry.added += items.length - r.duplicates.length;
          // As a build does: the graph snapshot, or LanceDB's key and ANN indexes, kept up as the index grows.
          if (++batches % DEFAULT_SNAPSHOT_EVERY === 0) index.snapshot();
        }
      } finally {
        src.close();
      }
      report.shards.push(entry);
    }
    index.snapshot();
    report.live = index.size;
    return report;
  } finally {
    index.close({ snapshot: false });
  }
}
