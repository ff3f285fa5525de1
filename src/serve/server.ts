// Listening and shutting down: what `matvit serve`, `npm run demo` and `bench serve` run. The app
// (app.ts) and the service (service.ts) are built here from an index directory.
//
// Graceful shutdown (SIGTERM, SIGINT): /readyz turns 503 at once, the listener stops accepting,
// requests in flight finish (writes are durable in the store before they answer), idle
// keep-alive connections are closed, and after the last request the index is snapshotted and
// closed. Connections still busy after shutdownTimeoutMs are cut.
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { type EngineName, type EngineOptions, createEncoder } from '../engine/encoder.ts';
import { openCorpus } from '../index/corpus.ts';
import type { OpenReport } from '../index/vector-index.ts';
import { notWritable } from '../util/writable.ts';
import { createApp } from './app.ts';
import type { ServeConfigInput } from './config.ts';
import { UPLOADS_DIR } from './images.ts';
import { SearchService } from './service.ts';

export interface ServerOptions {
  index: string;
  /** Model directory; default: the manifest's modelPath. Another fingerprint is refused. */
  model?: string;
  port?: number;
  host?: string;
  engine?: EngineName;
  engineOptions?: EngineOptions;
  config?: ServeConfigInput;
  adminToken?: string;
  log?: Logger;
  /** Open the index read-only (a replica: it searches and picks up the writer's commits every config.refreshMs). */
  readOnly?: boolean;
  /** LanceDB store: bound on this process's ANN index cache (index/open.ts OpenOptions). */
  indexCacheMB?: number;
  /** Install SIGTERM/SIGINT handlers that shut down and exit (the CLI; not tests). */
  handleSignals?: boolean;
}

export interface RunningServer {
  url: string;
  service: SearchService;
  server: http.Server;
  /** Resolves when warm-up is done (/readyz 200). */
  warm: Promise<void>;
  /** Graceful shutdown (see the header); idempotent. */
  close(): Promise<void>;
}

/**
 * Logs what opening the index found and did (index/types.ts's open report): why it is read-only,
 * damage it still has, and what it repaired, rebuilt or cleaned up (a snapshot it could not use...).
 */
function logOpened(log: Logger, dir: string, o: OpenReport): void {
  const at = { index: path.resolve(dir) };
  if (o.readOnlyReason)
    log.warn(
      { ...at, problem: o.readOnlyReason },
      `serving read-only: ${o.readOnlyReason}; POST and DELETE /v1/items answer 503 until that is fixed and the server restarted`,
    );
  for (const d of o.damage) log.error(at, `index damage: ${d}`);
  for (const w of o.warnings) log.warn(at, `index: ${w}`);
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.log ?? pino({ level: 'silent' });
  // 'auto': read-only, with the reason, when this user cannot write the directory or its store.
  const corpus = openCorpus(opts.index, { model: opts.model, mode: opts.readOnly ? 'read' : 'auto', indexCacheMB: opts.indexCacheMB });
  const uploads = path.join(opts.index, UPLOADS_DIR);
  const opened = { ...corpus.index.opened };
  const uploadsProblem = fs.existsSync(uploads) ? notWritable(uploads) : undefined;
  opened.readOnlyReason ??= uploadsProblem && `${uploadsProblem}: writes are disabled`;
  logOpened(log, opts.index, opened);
  const readOnly = opened.readOnlyReason;
  let service: SearchService;
  try {
    // Off the event loop: onnxruntime-node's run() blocks its thread for the whole batch, during
    // which an in-process server could not accept, decode, search or answer /healthz.
    const encoder = await createEncoder(opts.engine ?? 'onnx', corpus.checkpoint.meta.model, corpus.checkpoint.weights, {
      offThread: true,
      ...opts.engineOptions,
    });
    service = new SearchService({ corpus, encoder, config: opts.config, log, readOnly });
  } catch (e) {
    corpus.index.close({ snapshot: false });
    throw e;
  }
  const app = createApp({ service, adminToken: opts.adminToken, log });
  const server = http.createServer(app);
  // Keep-alive connections would otherwise hold shutdown for their idle timeout.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, opts.host ?? '127.0.0.1', () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
  // Listening before warm-up: /healthz answers at once, /readyz once the encoders are warm.
  const warm = service.warm().catch((e) => {
    log.error({ err: e }, 'warm-up failed');
    throw e;
  });
  warm.catch(() => {});

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      log.info('shutting down: finishing requests in flight');
      if (service.state !== 'closed') service.state = 'draining';
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const cut = setTimeout(() => {
        log.warn(`requests still running after ${service.config.shutdownTimeoutMs} ms: closing their connections`);
        server.closeAllConnections();
      }, service.config.shutdownTimeoutMs);
      cut.unref();
      await stopped;
      clearTimeout(cut);
      await warm.catch(() => {});
      await service.close();
      log.info('index closed; bye');
    })());

  if (opts.handleSignals) {
    const onSignal = (signal: string) => {
      log.info({ signal }, 'signal received');
      close().then(
        () => process.exit(0),
        (e) => {
          log.error({ err: e }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  return { url, service, server, warm, close };
}
