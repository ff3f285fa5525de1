// Whether this process can write where it is about to: asked up front, so that a read-only
// directory is reported as such instead of as whatever the first failing write says (an ENOENT
// on a temp file that could not be created, or SQLite's "attempt to write a readonly database").
import fs from 'node:fs';
import path from 'node:path';

const describe = (p: string, code: string | undefined): string => {
  if (code === 'EROFS') return `${p} is on a read-only file system`;
  let mode = '';
  try {
    const st = fs.statSync(p);
    mode = ` (mode ${(st.mode & 0o777).toString(8)}, owner uid ${st.uid}, this process runs as uid ${process.getuid?.() ?? '?'})`;
  } catch {
    // stat failing too says no more than the access error
  }
  return `${p} is not writable by this process${mode}: ${code ?? 'no write permission'}`;
};

/**
 * Why this process cannot create, replace and delete files in `dir` or write to those of `files`
 * (names in `dir`) that exist; undefined when it can.
 */
export function notWritable(dir: string, files: readonly string[] = []): string | undefined {
  const checks: [string, number][] = [
    [dir, fs.constants.W_OK | fs.constants.X_OK],
    ...files.map((f): [string, number] => [path.join(dir, f), fs.constants.W_OK]),
  ];
  for (const [p, mode] of checks) {
    try {
      fs.accessSync(p, mode);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && p !== dir) continue; // created when needed, in the directory checked first
      return describe(p, code);
    }
  }
  return undefined;
}
