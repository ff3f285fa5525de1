// GET /openapi.json against a standard OpenAPI 3.1 validator (@seriousme/openapi-schema-validator),
// then every operation it documents called on the real app (port 0): the status must be one the
// document lists for it, and a JSON body must parse with the zod schema its $ref names (the schemas
// the document was rendered from, looked up by id). The reference page at /docs/ is served locally.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { z } from 'zod';
import { MatvitClient } from '../src/client/index.ts';
import { type RunningServer, startServer } from '../src/serve/server.ts';
import { type ServeFixture, call, fmnistPng, serveFixture } from './helpers/serve-fixture.ts';

const TOKEN = 'openapi-test-token';
let f: ServeFixture;
let s: RunningServer;
let doc: any; // eslint-disable-line @typescript-eslint/no-explicit-any

before(async () => {
  f = await serveFixture(40);
  s = await startServer({
    index: f.indexDir,
    port: 0,
    adminToken: TOKEN,
    config: { refreshMs: 0, latency: { runs: 1 }, load: { enabled: false } },
  });
  await s.warm;
  doc = await new MatvitClient(s.url).openapi();
});

after(async () => {
  await s?.close();
  f?.cleanup();
});

test('the document is valid OpenAPI 3.1', async () => {
  assert.equal(doc.openapi, '3.1.0');
  const v = new Validator();
  const r = await v.validate(structuredClone(doc));
  assert.equal(r.valid, true, JSON.stringify(r.errors, null, 1)?.slice(0, 3000));
});

test('every documented operation answers with a documented status and a body of the documented schema', async () => {
  const png = (await fmnistPng(7000)).toString('base64');
  const fingerprint = (await call(`${s.url}/v1/index`)).body.model.fingerprint;
  const json = (method: string, body: unknown, auth = false): RequestInit => ({
    method,
    headers: { 'content-type': 'application/json', ...(auth && { authorization: `Bearer ${TOKEN}` }) },
    body: JSON.stringify(body),
  });
  // How to call each operation: a good request, and a bad one where the route takes input.
  const calls: Record<string, [path: string, init?: RequestInit][]> = {
    search: [
      ['/v1/search', json('POST', { image: png, k: 3, filter: { label: { in: [1, 2] } }, withPayload: true })],
      ['/v1/search', json('POST', { id: 2, k: 3, offset: 1 })],
      ['/v1/search', json('POST', { vector: Array(16).fill(0.25), model: fingerprint, encoder: 's' })],
      ['/v1/search', json('POST', { id: 9999 })],
    ],
    searchBatch: [
      ['/v1/search/batch', json('POST', { queries: [{ id: 1 }, { id: 1, filter: {} }] })],
      ['/v1/search/batch', json('POST', { queries: [] })],
    ],
    index: [['/v1/index']],
    addItem: [
      ['/v1/items', json('POST', { image: png, label: 1, payload: { a: 1 } }, true)],
      ['/v1/items', json('POST', { image: png }, true)],
      ['/v1/items', json('POST', { image: png })],
    ],
    item: [['/v1/items/3'], ['/v1/items/0']],
    removeItem: [
      ['/v1/items/4', { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } }],
      ['/v1/items/4', { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } }],
    ],
    itemImage: [['/v1/items/3/image'], ['/v1/items/99999/image']],
    model: [[`/v1/models/${fingerprint}`], ['/v1/models/not-this-model']],
    modelGraph: [[`/v1/models/${fingerprint}/s.onnx`], [`/v1/models/${fingerprint}/no-such-entry.onnx`], ['/v1/models/x/s.onnx']],
    health: [['/healthz']],
    ready: [['/readyz']],
    metrics: [['/metrics']],
    openapi: [['/openapi.json']],
  };
  type Op = { operationId: string; responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> };
  const documented = Object.entries(doc.paths).flatMap(([p, item]) =>
    Object.entries(item as Record<string, Op>).map(([method, op]) => ({ p, method, op })),
  );
  assert.deepEqual(documented.map((d) => d.op.operationId).sort(), Object.keys(calls).sort(), 'the test calls every documented operation');
  for (const { p, method, op } of documented) {
    for (const [url, init] of calls[op.operationId]) {
      assert.equal((init?.method ?? 'GET').toLowerCase(), method, `${op.operationId}: the test calls ${p} with its documented method`);
      const r = await fetch(`${s.url}${url}`, init);
      const response = op.responses[String(r.status)];
      assert.ok(response, `${method.toUpperCase()} ${url}: ${r.status} is not documented (${Object.keys(op.responses)})`);
      const type = r.headers.get('content-type') ?? '';
      const [mediaType, content] = Object.entries(response.content ?? {})[0];
      assert.ok(type.startsWith(mediaType.replace('/*', '/')), `${url}: ${type} is not ${mediaType}`);
      const ref = content.schema.$ref;
      if (!ref) continue;
      const id = ref.split('/').pop()!;
      const schema = (z.globalRegistry as unknown as { _idmap: Map<string, z.ZodType> })._idmap.get(id);
      assert.ok(schema, `${ref} names a registered schema`);
      const body = await r.json();
      const parsed = schema!.safeParse(body);
      assert.ok(parsed.success, `${method.toUpperCase()} ${url} ${r.status}: ${parsed.error?.message}`);
    }
  }
});

test('the reference page and its assets are served from this server', async () => {
  const page = await call(`${s.url}/docs/`);
  assert.equal(page.status, 200);
  for (const asset of ['swagger-ui.css', 'swagger-ui-bundle.js', 'init.js']) {
    assert.ok((page.body as string).includes(asset), asset);
    const r = await fetch(`${s.url}/docs/${asset}`);
    assert.equal(r.status, 200, asset);
    await r.arrayBuffer();
  }
  assert.match(page.headers.get('content-security-policy')!, /script-src 'self'/);
  assert.equal((await fetch(`${s.url}/docs`, { redirect: 'manual' })).status, 301);
});
