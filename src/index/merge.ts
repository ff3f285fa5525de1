// `matvit index merge`: shard indexes built with the same model, joined into one.
import path from 'node:path';
import { modelPathFor } from './corpus.ts';
import { readManifest } from './manifest.ts';
import { Store } from './store.ts';
import { STORE_FILE, VectorIndex } from './vector-index.ts';

export interface MergeReport {
  dir: string;
  shards: { dir: string; live: number; added: number; duplicates: number }[];
  live: number;
}

/**
 * Joins shard indexes built with the same model (fingerprint, ffnDims, dim, space) into the
 * index in `outDir`, created when absent. Items keep their source, label and added time, get
 * new ids, and a sha256 seen before (in an earlier shard, or already in outDir) is not added
 * twice; so an interrupted merge is finished by running it again.
 */
export function mergeIndexes(
  outDir: string,
  shardDirs: readonly string[],
  opts: { expectedFingerprint?: string; chunk?: number } = {},
): MergeReport {
  if (shardDirs.length === 0) throw new Error('merge: no shard given');
  const out = path.resolve(outDir);
  const shards = shardDirs.map((d) => ({ dir: d, manifest: readManifest(d) }));
  const first = shards[0].manifest;
  for (const s of shards) {
    if (path.resolve(s.dir) === out) throw new Error(`merge: shard ${s.dir} is the output directory`);
    const fp = opts.expectedFingerprint ?? first.fingerprint;
    if (s.manifest.fingerprint !== fp)
      throw new Error(
        `merge: shard ${s.dir} was built with model fingerprint ${s.manifest.fingerprint}, expected ${fp} (from ${opts.expectedFingerprint ? 'the given model' : shards[0].dir})`,
      );
    for (const k of ['ffnDims', 'dim', 'space'] as const)
      if (JSON.stringify(s.manifest[k]) !== JSON.stringify(first[k]))
        throw new Error(
          `merge: shard ${s.dir} has ${k} ${JSON.stringify(s.manifest[k])}, shard ${shards[0].dir} has ${JSON.stringify(first[k])}`,
        );
  }
  const { fingerprint, modelName, ffnDims, dim, space, M, efConstruction, ef, model } = first;
  // A new merged index records where the shards' model is (relative to it), so that `index add`
  // and `serve` find it as they do for a built index.
  const modelPath = first.modelPath && modelPathFor(outDir, path.resolve(shards[0].dir, first.modelPath));
  const index = VectorIndex.openOrCreate(outDir, {
    fingerprint,
    modelName,
    ffnDims,
    dim,
    space,
    M,
    efConstruction,
    ef,
    model,
    modelPath,
    corpus: { mergedFrom: shards.map((s) => s.manifest.corpus) },
  });
  try {
    const report: MergeReport = { dir: outDir, shards: [], live: 0 };
    for (const s of shards) {
      const src = Store.open(path.join(s.dir, STORE_FILE), { readOnly: true });
      const entry = { dir: s.dir, live: 0, added: 0, duplicates: 0 };
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
        }
      } finally {
        src.close();
      }
      report.shards.push(entry);
    }
    report.live = index.size;
    return report;
  } finally {
    index.close(); // snapshots the merged graph
  }
}
