// Running the real CLI (bin/matvit.js) from tests, as a user would.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

export const BIN = path.resolve(import.meta.dirname, '../../bin/matvit.js');
const run = promisify(execFile);

/** `matvit ARGS...`: resolves with stdout/stderr, rejects (with code and stderr) on a non-zero exit. */
export const matvit = (...args: string[]) => run(process.execPath, [BIN, ...args], { maxBuffer: 64 << 20 });

/** `matvit ARGS...` that must fail: its exit code and stderr. */
export async function fails(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await matvit(...args);
  } catch (e) {
    return e as { code: number; stderr: string };
  }
  throw new Error(`matvit ${args.join(' ')} succeeded`);
}
