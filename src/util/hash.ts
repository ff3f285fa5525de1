// Content hashes: the sha256 that identifies an item's bytes (index build, serve uploads,
// calibration's leave-one-out), and that of a file read in pieces (graph snapshots).
import { createHash, hash } from 'node:crypto';
import fs from 'node:fs';

/** sha256 of bytes (or a string's UTF-8), as 64 lowercase hex digits. */
export const sha256Hex = (data: string | Uint8Array): string => hash('sha256', data, 'hex');

/** sha256 and size of a file, read in 1 MiB pieces so that memory does not grow with the file. */
export function hashFile(file: string): { sha256: string; bytes: number } {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  const fd = fs.openSync(file, 'r');
  let bytes = 0;
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; bytes += n) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return { sha256: h.digest('hex'), bytes };
}
