// Image folders. Two layouts:
// - classes (ImageNet / torchvision ImageFolder / timm): root/<split>/<class>/<image>, or
//   root/<class>/<image> when given the split folder itself. Class index = position of the class
//   folder name in code-point order (torchvision's sorted()); images are found recursively inside
//   each class folder. Files directly in root are not part of any class and are ignored.
// - files: every image under root, recursively, label -1 (a retrieval corpus without classes).
// Only paths are listed (sorted, relative, '/'-separated); bytes are read when an item is loaded,
// so a corpus of a million files costs a list of strings. Names starting with '.' are skipped:
// hidden folders and macOS '._x.jpg' resource forks, which carry image extensions but no image.
import fs from 'node:fs/promises';
import path from 'node:path';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif'];
export const isImageFile = (name: string) => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());

/** Split names and their synonyms, as timm's dataset factory searches them (first existing wins). */
export const SPLIT_SYNONYMS: Record<string, string[]> = {
  train: ['train', 'training'],
  val: ['val', 'valid', 'validation', 'eval', 'evaluation'],
  test: ['test'],
};
const synonymsOf = (split: string) => Object.values(SPLIT_SYNONYMS).find((s) => s.includes(split)) ?? [split];

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Visible subfolders and files of a directory, following symlinks; sorted by name. */
async function entries(dir: string): Promise<{ dirs: string[]; files: string[] }> {
  const dirs: string[] = [];
  const files: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const st = e.isSymbolicLink() ? await fs.stat(path.join(dir, e.name)).catch(() => undefined) : e;
    if (st?.isDirectory()) dirs.push(e.name);
    else if (st?.isFile()) files.push(e.name);
  }
  return { dirs: dirs.sort(byCodePoint), files: files.sort(byCodePoint) };
}

async function isDir(p: string): Promise<boolean> {
  return (await fs.stat(p).catch(() => undefined))?.isDirectory() ?? false;
}

/** Sorted relative paths ('/'-separated) of every image file under root. */
export async function listImages(root: string): Promise<string[]> {
  if (!(await isDir(root))) throw new Error(`${root} is not a folder`);
  const out: string[] = [];
  const seen = new Set<string>(); // real paths of visited folders: a symlink loop is walked once
  const visit = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel);
    const real = await fs.realpath(abs);
    if (seen.has(real)) return;
    seen.add(real);
    const { dirs, files } = await entries(abs);
    for (const f of files) if (isImageFile(f)) out.push(rel ? `${rel}/${f}` : f);
    for (const d of dirs) await visit(rel ? `${rel}/${d}` : d);
  };
  await visit('');
  return out.sort(byCodePoint);
}

/**
 * The folder of `split` under root: root/<split>, else the first existing synonym (val ->
 * validation, ...), else root itself when root is already named as that split.
 */
export async function resolveSplit(root: string, split: string): Promise<string> {
  for (const name of [split, ...synonymsOf(split)]) if (await isDir(path.join(root, name))) return path.join(root, name);
  if (synonymsOf(split).includes(path.basename(path.resolve(root)))) return root;
  const { dirs } = await entries(root);
  throw new Error(
    `split "${split}": no folder ${synonymsOf(split).join(' / ')} in ${root}; its folders are: ${dirs.join(', ') || '(none)'}`,
  );
}

export interface ClassFolder {
  classNames: string[];
  /** relative to root, grouped by class in class order, sorted within a class */
  files: { path: string; label: number }[];
}

/** Reads root/<class>/<image> (see the header). */
export async function readClassFolder(root: string): Promise<ClassFolder> {
  if (!(await isDir(root))) throw new Error(`${root} is not a folder`);
  const { dirs, files } = await entries(root);
  const splitNames = Object.values(SPLIT_SYNONYMS).flat();
  if (dirs.length > 0 && dirs.every((d) => splitNames.includes(d)))
    throw new Error(`${root} holds split folders (${dirs.join(', ')}), not class folders: give a split, e.g. ${path.join(root, dirs[0])}`);
  if (dirs.length === 0) {
    const images = files.filter(isImageFile).length;
    throw new Error(
      `${root} has no class folders (root/<class>/<image>)${images ? `, only ${images} images at its top level: for a folder without classes use files:${root}` : ''}`,
    );
  }
  const out: ClassFolder['files'] = [];
  for (const [label, name] of dirs.entries())
    for (const p of await listImages(path.join(root, name))) out.push({ path: `${name}/${p}`, label });
  return { classNames: dirs, files: out };
}
