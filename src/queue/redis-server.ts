// A private redis-server (Debian's `redis-server`) in a temp directory on a free loopback port: what
// the queue's test and `scripts/bench-queue.ts` run against, so that neither needs a Redis set up
// beforehand nor touches one. Append-only file on, RDB snapshots off: every write is logged (fsync
// once a second, Redis's default), as a production queue would be configured.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:PORT/NAME */
  url: (name: string) => string;
  dir: string;
  child: ChildProcess;
  /** Stops the server and removes its directory. */
  stop: () => Promise<void>;
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });

export async function startRedisServer(bin = 'redis-server'): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-redis-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--daemonize', 'no'];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('error', (e) => reject(new Error(`${bin}: ${e.message} (Debian: apt-get install redis-server)`)));
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) resolve();
      });
      void exited.then(() => reject(new Error(`${bin} exited before it was ready:\n${out}`)));
    });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port,
    dir,
    child,
    url: (name) => `redis://127.0.0.1:${port}/${name}`,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
