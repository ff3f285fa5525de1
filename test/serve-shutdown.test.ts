// Graceful shutdown of `matvit serve` (a child process): SIGTERM while searches and a write are in
// flight; they all complete, the write is durable, no new connection is accepted, the index is
// snapshotted on the way out and the process exits 0.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { VectorIndex } from '../src/index/vector-index.ts';
import { spawnServe } from './helpers/serve-child.ts';
import { type ServeFixture, fmnistPng, serveFixture } from './helpers/serve-fixture.ts';

const TOKEN = 'shutdown-token';
let f: ServeFixture;

before(async () => {
  f = await serveFixture(60);
});
after(() => f?.cleanup());

/** A request on a fresh connection (no pooled keep-alive socket): resolves with the status or the connection error code. */
function freshRequest(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.request(`${url}/healthz`, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.end();
  });
}

test('SIGTERM: requests in flight finish, the write is persisted, the process exits 0', async () => {
  // A long batching wait keeps the requests in flight when the signal arrives.
  const { child, url, exit, stderr, ready } = await spawnServe(['--index', f.indexDir, '--max-wait-ms', '600', '--log-level', 'warn'], {
    MATVIT_ADMIN_TOKEN: TOKEN,
  });
  await ready();

  const query = await fmnistPng(4000);
  const added = await fmnistPng(4001);
  const post = (path: string, body: Buffer, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: new Uint8Array(body) }).then(
      async (r) => ({ status: r.status, body: await r.json(), at: performance.now() }),
    );
  const inFlight = [
    ...['s', 'm', 'xl', 'auto', 's'].map((e) => post(`/v1/search?encoder=${e}`, query)),
    post('/v1/items', added, { authorization: `Bearer ${TOKEN}` }),
  ];
  await new Promise((r) => setTimeout(r, 200));
  const killedAt = performance.now();
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await freshRequest(url), 'ECONNREFUSED', 'no new connections while draining');

  const done = await Promise.all(inFlight);
  for (const r of done) assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
  assert.ok(
    done.every((r) => r.at > killedAt),
    'they were still in flight at SIGTERM',
  );
  assert.equal(done[5].status, 201);
  assert.equal(await exit, 0, stderr());

  const index = VectorIndex.open(f.indexDir, { mode: 'read' });
  try {
    const sha = createHash('sha256').update(added).digest('hex');
    assert.equal(index.existing([sha]).get(sha), done[5].body.id, 'the write is in the store');
    const info = index.info();
    assert.equal(info.counts.live, f.n + 1);
    assert.equal(info.snapshot?.behind, 0, 'the graph snapshot was written at shutdown');
    assert.equal(info.opened.rebuilt, false);
  } finally {
    index.close();
  }
});
