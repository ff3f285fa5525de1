// `matvit serve` as a child process, the way an operator runs it: for the tests that kill it, signal
// it or read its memory from /proc.
import { type ChildProcess, spawn } from 'node:child_process';
import { BIN } from './cli.ts';

export interface ServeChild {
  child: ChildProcess;
  url: string;
  /** Resolves with the exit code (null when killed by a signal). */
  exit: Promise<number | null>;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Its log (pino writes to stdout) so far. */
  log(): string;
  /** Polls /readyz until it answers 200 (encoders warm). */
  ready(timeoutMs?: number): Promise<void>;
}

/**
 * Starts `matvit serve --port 0 ARGS...` (as another user when `user` is given: the tests must run
 * as root) and resolves once it listens (its first stderr line names the URL).
 */
export async function spawnServe(
  args: string[],
  env: Record<string, string> = {},
  user: { uid?: number; gid?: number } = {},
): Promise<ServeChild> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...user,
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '',
    log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    exit.then((code) => reject(new Error(`matvit serve exited ${code} before listening:\n${stderr}`)));
  });
  const ready = async (timeoutMs = 30_000) => {
    for (const t0 = performance.now(); (await fetch(`${url}/readyz`)).status !== 200;) {
      if (performance.now() - t0 > timeoutMs) throw new Error(`not ready within ${timeoutMs} ms:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return { child, url, exit, stderr: () => stderr, log: () => log, ready };
}
