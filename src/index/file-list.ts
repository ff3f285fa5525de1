// What `matvit index add` and `index remove --path` read: files and folders given on the command
// line, named as the index names them (relative to the corpus root that `index build` recorded).
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Dataset } from '../data/dataset.ts';
import { listImages } from '../data/folder.ts';
import { DecodeError, type DecodeOptions, preprocessImage } from '../data/preprocess.ts';
import { readManifest } from './manifest.ts';

/**
 * The source an index records for a file: its path relative to the corpus root when it is inside
 * it (as `index build` records it), else its absolute path.
 */
export function sourceForFile(file: string, root: string | undefined): string {
  const abs = path.resolve(file);
  if (root) {
    const rel = path.relative(root, abs);
    if (rel && !rel.startsWith('..') && !path.isAbsolute(rel)) return rel.split(path.sep).join('/');
  }
  return abs;
}

/** The corpus root and class names a manifest records (index build writes them). */
export function corpusOf(indexDir: string): { root?: string; classNames: string[] } {
  const c = readManifest(indexDir).corpus as {
    root?: unknown;
    classNames?: unknown;
    mergedFrom?: { root?: unknown; classNames?: unknown }[];
  };
  // A merged index: its shards' corpus (they share one, or the first one's is as good as any).
  const src = c.mergedFrom?.[0] ?? c;
  return {
    root: typeof src.root === 'string' ? src.root : undefined,
    classNames: Array.isArray(src.classNames) ? src.classNames.map(String) : [],
  };
}

/**
 * A dataset of the files given, folders walked recursively. Sources follow sourceForFile; a file
 * in a class folder of the corpus root (root/<class>/...) gets that class's label.
 */
export async function fileListDataset(
  paths: readonly string[],
  corpus: { root?: string; classNames: string[] },
  decode: DecodeOptions = {},
): Promise<Dataset> {
  const files: string[] = [];
  for (const p of paths) {
    const st = await fs.stat(p).catch(() => undefined);
    if (st?.isDirectory()) files.push(...(await listImages(p)).map((f) => path.resolve(p, f)));
    else if (st?.isFile())
      files.push(path.resolve(p)); // named explicitly: tried whatever its extension
    else throw new Error(`${p}: no such file or folder`);
  }
  const unique = [...new Set(files)];
  const items = unique.map((abs) => {
    const source = sourceForFile(abs, corpus.root);
    const label = path.isAbsolute(source) || !source.includes('/') ? -1 : corpus.classNames.indexOf(source.split('/')[0]);
    return { abs, source, label };
  });
  const check = (i: number) => {
    if (!(Number.isInteger(i) && i >= 0 && i < items.length)) throw new RangeError(`item ${i} is outside 0..${items.length - 1}`);
  };
  const ds: Dataset = {
    spec: `files ${paths.join(' ')}`,
    size: items.length,
    classNames: corpus.classNames,
    item(i) {
      check(i);
      return { index: i, label: items[i].label, path: items[i].source, ref: items[i].source };
    },
    async bytes(i) {
      check(i);
      try {
        return await fs.readFile(items[i].abs);
      } catch (err) {
        throw new DecodeError('unreadable', (err as Error).message);
      }
    },
    async load(i, c) {
      return preprocessImage(await ds.bytes(i), c, decode);
    },
  };
  return ds;
}

/** Sources to remove for what the user typed: an existing file maps as `index add` recorded it; anything else is taken as a stored source. */
export function sourcesToRemove(indexDir: string, paths: readonly string[]): string[] {
  const { root } = corpusOf(indexDir);
  return paths.map((p) => {
    try {
      return fsSync.statSync(p).isFile() ? sourceForFile(p, root) : p;
    } catch {
      return p;
    }
  });
}
