// An index together with the model that embedded it: the one way every command and the service
// open a corpus for queries or additions, so that metric spaces never mix.
import fs from 'node:fs';
import path from 'node:path';
import { type Checkpoint, loadCheckpoint } from '../model/checkpoint.ts';
import type { OpenMode } from './open.ts';
import { openIndex } from './open-store.ts';
import type { IndexStore } from './store-api.ts';
import { readManifest } from './manifest.ts';

export interface Corpus {
  index: IndexStore;
  checkpoint: Checkpoint;
  modelDir: string;
}

/** The model directory of an index: `override` if given, else the manifest's modelPath (relative to the index). */
export function modelDirOf(indexDir: string, override?: string): string {
  if (override) return override;
  const m = readManifest(indexDir);
  if (!m.modelPath)
    throw new Error(`${indexDir}: the manifest records no modelPath; pass --model DIR (a checkpoint with fingerprint ${m.fingerprint})`);
  const dir = path.resolve(indexDir, m.modelPath);
  if (!fs.existsSync(path.join(dir, 'config.json')))
    throw new Error(
      `${indexDir}: its model is not at ${dir} (the manifest's modelPath "${m.modelPath}", relative to the index); ` +
        `move the index and its model together (the path is relative, so both moved keep it valid), or pass --model DIR (the checkpoint with fingerprint ${m.fingerprint})`,
    );
  return dir;
}

/** Stored modelPath for a model directory: relative to the index when both live in one tree. */
export const modelPathFor = (indexDir: string, modelDir: string) => path.relative(path.resolve(indexDir), path.resolve(modelDir));

/**
 * Loads the model and opens the index, refusing a model of another fingerprint (the error names
 * both). The caller closes `index`.
 */
export function openCorpus(indexDir: string, opts: { model?: string; mode?: OpenMode; indexCacheMB?: number } = {}): Corpus {
  const modelDir = modelDirOf(indexDir, opts.model);
  const checkpoint = loadCheckpoint(modelDir);
  const index = openIndex(indexDir, { expectedFingerprint: checkpoint.meta.fingerprint, mode: opts.mode, indexCacheMB: opts.indexCacheMB });
  return { index, checkpoint, modelDir };
}
