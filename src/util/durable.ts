// File durability, in one place for checkpoints, manifests, snapshots and metrics: files written
// from memory go through writeFileAtomic; the graph snapshot, which hnswlib writes itself (by file
// name), through fsyncFile + renameDurable. A rename is atomic, but only durable once the directory
// is fsynced too.
import fs from 'node:fs';
import path from 'node:path';

/** A temp name next to `file`, unique per call, so concurrent writers never share one. */
export function tempPath(file: string): string {
  return `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Opens `p` with `flags`, fsyncs and closes it. */
function fsyncPath(p: string, flags: string): void {
  const fd = fs.openSync(p, flags);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsyncs a directory so that a rename or a new file inside it survives a power loss. */
export const fsyncDir = (dir: string): void => fsyncPath(dir, 'r');

/** fsyncs a file written by someone else (hnswlib), before it is renamed into place. */
export const fsyncFile = (file: string): void => fsyncPath(file, 'r+');

/** Writes a file and fsyncs it, so a rename after it never exposes a partial file. */
export function writeFileSynced(file: string, data: string | Uint8Array): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** temp file + fsync + rename + fsync of the directory: readers see the old file or the new one. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = tempPath(file);
  writeFileSynced(tmp, data);
  renameDurable(tmp, file);
}

/** rename, then fsync of the directory so that the rename survives a power loss. */
export function renameDurable(from: string, to: string): void {
  fs.renameSync(from, to);
  fsyncDir(path.dirname(to));
}

/**
 * Deletes temp files (`NAME.tmp-PID...`) left in `dir` by writers that were killed mid-write, and
 * returns their names. Those of live processes stay: another process may be writing a snapshot
 * right now. One that cannot be deleted (a read-only directory) is passed to `failed`, never thrown.
 */
export function removeStaleTemps(dir: string, failed?: (file: string, reason: string) => void): string[] {
  const removed: string[] = [];
  for (const f of fs.readdirSync(dir)) {
    const pid = Number(/\.tmp-(\d+)/.exec(f)?.[1]);
    if (!pid || pidAlive(pid)) continue;
    try {
      fs.unlinkSync(path.join(dir, f)); // not rmSync: it reports a refused unlink as ENOTDIR
      removed.push(f);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') failed?.(f, code ?? (e as Error).message);
    }
  }
  return removed;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: only checks that the process exists
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}
