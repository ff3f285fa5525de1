// The search service over HTTP: the real app on port 0, over a tiny random-weight model and an
// index of Fashion-MNIST test images built by the build pipeline. Every endpoint, every error
// status, auth on writes, writes during searches, micro-batching, the cascade, calibration.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import sharp from 'sharp';
import { parseDatasetSpec } from '../src/data/dataset.ts';
import { calibrate } from '../src/serve/calibrate.ts';
import { embedQueries, ownItemsSample } from '../src/serve/queries.ts';
import { buildIndex } from '../src/index/build.ts';
import { openIndex } from '../src/index/open-store.ts';
import { verifyIndex } from '../src/index/verify.ts';
import { saveCheckpoint } from '../src/model/checkpoint.ts';
import { initWeights } from '../src/model/weights.ts';
import { createApp } from '../src/serve/app.ts';
import { CASCADE_META_KEY, type Cascade } from '../src/serve/cascade.ts';
import { type RunningServer, startServer } from '../src/serve/server.ts';
import { SearchService } from '../src/serve/service.ts';
import { matvit } from './helpers/cli.ts';
import { type Reply, type ServeFixture, call, fmnistPng, serveFixture, testStore } from './helpers/serve-fixture.ts';

const TOKEN = 'test-admin-token';
const MAX_IMAGE = 64 * 1024;

let f: ServeFixture;
let s: RunningServer;
let png: Buffer; // a query that is not in the corpus
const extra: http.Server[] = [];

const raw = (path: string, bytes: Buffer, type = 'image/png', headers: Record<string, string> = {}) =>
  call(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': type, ...headers }, body: new Uint8Array(bytes) });

function form(fields: Record<string, string>, file?: { field?: string; bytes: Buffer }): FormData {
  const fd = new FormData();
  if (file) fd.append(file.field ?? 'image', new Blob([new Uint8Array(file.bytes)], { type: 'image/png' }), 'query.png');
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  return fd;
}

/** A 400 naming `field`, with the value received and what is accepted. */
function assert400(r: Reply, field: string, accepted?: RegExp): void {
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error.field, field, JSON.stringify(r.body));
  assert.match(r.body.error.message, new RegExp(`^${field.replace(/[()]/g, '\\$&')}: `));
  assert.match(r.body.error.message, /received/);
  assert.ok(r.body.error.accepted, 'the error says what is accepted');
  if (accepted) assert.match(r.body.error.accepted, accepted);
}

async function listen(app: http.RequestListener): Promise<string> {
  const server = http.createServer(app);
  extra.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  f = await serveFixture(120);
  png = await fmnistPng(5000);
  s = await startServer({
    index: f.indexDir,
    port: 0,
    adminToken: TOKEN,
    config: { maxImageBytes: MAX_IMAGE, refreshMs: 0, latency: { runs: 2 }, batch: { maxWaitMs: 10 }, load: { enabled: false } },
  });
  await s.warm;
});

after(async () => {
  for (const x of extra) x.close();
  await s?.close();
  f?.cleanup();
});

describe('search', () => {
  test('multipart, raw and JSON bodies give the same answer; results are sorted and complete', async () => {
    const a = await call(`${s.url}/v1/search?encoder=xl`, { method: 'POST', body: form({ k: '5' }, { bytes: png }) });
    const b = await raw('/v1/search?encoder=xl&k=5', png);
    const c = await call(`${s.url}/v1/search`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: png.toString('base64'), k: 5, encoder: 'xl' }),
    });
    const d = await call(`${s.url}/v1/search`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: `data:image/png;base64,${png.toString('base64')}`, k: '5', encoder: 'xl' }),
    });
    for (const r of [a, b, c, d]) assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(a.body.results.length, 5);
    for (const r of [b, c, d]) assert.deepEqual(r.body.results, a.body.results);
    const scores = a.body.results.map((x: { score: number }) => x.score);
    assert.deepEqual(
      scores,
      [...scores].sort((x, y) => y - x),
    );
    const top = a.body.results[0];
    assert.deepEqual(Object.keys(top).sort(), ['id', 'imageUrl', 'label', 'labelName', 'path', 'score']);
    assert.match(top.path, /^idx:#\d+$/);
    assert.equal(top.imageUrl, `/v1/items/${top.id}/image`);
    assert.equal(a.body.encoder.name, 'xl');
    assert.equal(a.body.encoder.savedFraction, 0);
    assert.deepEqual(Object.keys(a.body.timings).sort(), ['decodeMs', 'encodeMs', 'searchMs', 'totalMs']);
  });

  test('a corpus image (by its /image URL) finds itself first with XL', async () => {
    const img = await fetch(`${s.url}/v1/items/7/image`);
    assert.equal(img.headers.get('content-type'), 'image/png');
    const r = await raw('/v1/search?encoder=xl&k=1', Buffer.from(await img.arrayBuffer()));
    assert.equal(r.body.results[0].id, 7);
    assert.ok(r.body.results[0].score > 0.9999);
  });

  test('fixed encoders: names, menu entries, explicit widths; compute saved is reported', async () => {
    const xl = (await raw('/v1/search?encoder=xl', png)).body.encoder;
    for (const [query, name, dims] of [
      ['encoder=s', 's', [4, 4]],
      ['encoder=M', 'm', [8, 8]],
      ['encoder=mix-sl', 'mix-sl', [4, 16]],
      ['encoder=4,16', 'mix-sl', [4, 16]],
      ['ffnDims=8,16', '8,16', [8, 16]],
    ] as const) {
      const r = await raw(`/v1/search?${query}`, png);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.encoder.name, name);
      assert.deepEqual(r.body.encoder.ffnDims, dims);
      assert.deepEqual(
        r.body.encoders.map((e: { name: string }) => e.name),
        [name],
      );
      assert.equal(r.body.encoder.xlMflops, xl.mflops);
      assert.ok(Math.abs(r.body.encoder.savedFraction - (1 - r.body.encoder.mflops / xl.mflops)) < 1e-12);
      assert.ok(r.body.encoder.savedFraction > 0);
      assert.equal(r.body.policy.mode, 'fixed');
    }
    const j = await call(`${s.url}/v1/search`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: png.toString('base64'), ffnDims: [4, 4] }),
    });
    assert.equal(j.body.encoder.name, 's');
  });

  test('auto without a calibrated cascade answers with the corpus submodel', async () => {
    const r = await raw('/v1/search', png);
    assert.equal(r.body.encoder.name, 'xl');
    assert.equal(r.body.policy.mode, 'auto');
  });

  test('budget: the most accurate entry within maxMflops / maxLatencyMs', async () => {
    const menu = (await call(`${s.url}/v1/index`)).body.menu as { name: string; mflops: number; latencyMs: number }[];
    const cost = (n: string) => menu.find((e) => e.name === n)!.mflops;
    const cases: [number, string][] = [
      [cost('s'), 's'],
      [(cost('m') + cost('mix-sl')) / 2, 'm'],
      [cost('mix-sl'), 'mix-sl'],
      [cost('l') + 1e-6, 'l'],
      [1e9, 'xl'],
    ];
    for (const [max, name] of cases) {
      const r = await raw(`/v1/search?maxMflops=${max}`, png);
      assert.equal(r.body.encoder.name, name, `maxMflops ${max}`);
      assert.equal(r.body.policy.mode, 'budget');
    }
    assert.equal((await raw('/v1/search?maxLatencyMs=100000', png)).body.encoder.name, 'xl');
    assert400(await raw(`/v1/search?maxMflops=${cost('s') / 2}`, png), 'maxMflops', /at least/);
    assert400(await raw('/v1/search?maxLatencyMs=0.000001', png), 'maxLatencyMs', /ms/);
    assert400(await raw('/v1/search?encoder=xl&maxMflops=1', png), 'maxMflops', /encoder=auto/);
  });

  test('label filter and ef', async () => {
    const r = await raw('/v1/search?label=3&k=20&ef=200', png);
    assert.equal(r.status, 200);
    assert.equal(r.body.results.length, 10, 'the fixture holds 10 items labelled 3');
    assert.ok(r.body.results.every((x: { label: number; labelName: string }) => x.label === 3 && x.labelName === 'Dress'));
  });
});

describe('errors', () => {
  test('400 names the field, the value received and what is accepted', async () => {
    assert400(await raw('/v1/search?k=0', png), 'k', /1\.\.1000/);
    assert400(await raw('/v1/search?k=1001', png), 'k');
    assert400(await raw('/v1/search?k=2.5', png), 'k');
    assert400(await raw('/v1/search?k=ten', png), 'k');
    assert400(await raw('/v1/search?k=1&k=2', png), 'k');
    assert400(await raw('/v1/search?encoder=huge', png), 'encoder', /auto.*s, m, mix-sl, l, xl/);
    assert400(await raw('/v1/search?encoder=4,99', png), 'encoder', /1\.\.32/);
    assert400(await raw('/v1/search?ffnDims=4', png), 'ffnDims', /2 comma-separated/);
    assert400(await raw('/v1/search?encoder=s&ffnDims=4,4', png), 'ffnDims');
    assert400(await raw('/v1/search?ef=0', png), 'ef');
    assert400(await raw('/v1/search?label=x', png), 'label');
    assert400(await raw('/v1/search?maxMflops=-1', png), 'maxMflops');
    assert400(await raw('/v1/search?topk=3', png), 'topk', /k, encoder/);
    const both = await call(`${s.url}/v1/search?k=3`, { method: 'POST', body: form({ k: '4' }, { bytes: png }) });
    assert400(both, 'k', /one value/);
  });

  test('400 for a missing, empty or malformed image and malformed bodies', async () => {
    assert400(await call(`${s.url}/v1/search`, { method: 'POST' }), 'image', /multipart/);
    assert400(await call(`${s.url}/v1/search`, { method: 'POST', body: form({ k: '3' }) }), 'image');
    assert400(await call(`${s.url}/v1/search`, { method: 'POST', body: form({}, { field: 'file', bytes: png }) }), 'file', /field "image"/);
    assert400(await raw('/v1/search', Buffer.alloc(0)), 'image');
    const json = (body: string) => call(`${s.url}/v1/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert400(await json(JSON.stringify({ image: 'not base64!' })), 'image', /base64/);
    assert400(await json(JSON.stringify({ image: 42 })), 'image');
    assert400(await json(JSON.stringify({ k: 3 })), 'image');
    assert400(await json('[1, 2]'), '(body)');
    const bad = await json('{"image": ');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'invalid-json');
    const broken = await call(`${s.url}/v1/search`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
      body: '--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nabc',
    });
    assert.equal(broken.status, 400, JSON.stringify(broken.body));
    assert.equal(broken.body.error.code, 'invalid-form');
  });

  test('413 for an image over the limit, whichever body carries it', async () => {
    const big = Buffer.alloc(MAX_IMAGE + 1000, 7);
    for (const r of [
      await raw('/v1/search', big),
      await call(`${s.url}/v1/search`, { method: 'POST', body: form({}, { bytes: big }) }),
      await call(`${s.url}/v1/search`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ image: big.toString('base64') }),
      }),
      await call(`${s.url}/v1/search`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ image: Buffer.alloc(MAX_IMAGE * 2).toString('base64') }),
      }),
    ]) {
      assert.equal(r.status, 413, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'payload-too-large');
    }
  });

  test('415 for other media types', async () => {
    for (const type of ['text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded']) {
      const r = await raw('/v1/search', png, type);
      assert.equal(r.status, 415, type);
      assert.match(r.body.error.message, new RegExp(type.replace(/[/.+-]/g, '\\$&')));
      assert.match(r.body.error.accepted, /multipart\/form-data.*image\/\*.*application\/json/);
    }
  });

  test('422 for bytes that are not a decodable image, with the reason', async () => {
    const cases: [Buffer, string][] = [
      [Buffer.from('definitely not an image'), 'unsupported-format'],
      [png.subarray(0, Math.floor(png.length / 2)), 'truncated'],
    ];
    for (const [bytes, reason] of cases) {
      const r = await raw('/v1/search', bytes);
      assert.equal(r.status, 422, JSON.stringify(r.body));
      assert.equal(r.body.error.reason, reason);
      assert.equal(r.body.error.field, 'image');
    }
    const j = await call(`${s.url}/v1/search`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: Buffer.from('GIF89a nonsense').toString('base64') }),
    });
    assert.equal(j.status, 422);
  });

  test('404 for unknown items and routes; 405 with Allow for a known route and another method; 400 for a malformed id', async () => {
    for (const path of ['/v1/items/99999', '/v1/items/99999/image', '/v1/nothing', '/v2/search']) {
      const r = await call(`${s.url}${path}`);
      assert.equal(r.status, 404, path);
      assert.equal(r.body.error.code, 'not-found');
    }
    assert400(await call(`${s.url}/v1/items/abc`), 'id', /positive integer/);
    assert400(await call(`${s.url}/v1/items/0/image`), 'id');
    for (const [method, path, allow] of [
      ['GET', '/v1/search', 'POST'],
      ['PUT', '/v1/items/1', 'GET, DELETE, HEAD'],
      ['POST', '/v1/index', 'GET, HEAD'],
      ['DELETE', '/v1/items', 'POST'],
      ['PATCH', '/v1/items/1/image', 'GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
    ]) {
      const r = await call(`${s.url}${path}`, { method });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.get('allow'), allow, `${method} ${path}`);
      assert.equal(r.body.error.code, 'method-not-allowed');
    }
    assert.equal((await call(`${s.url}/v1/items/1`, { method: 'HEAD' })).status, 200, 'HEAD on a GET route');
  });
});

describe('read endpoints', () => {
  test('GET /v1/index: counts, model, corpus submodel, menu', async () => {
    const r = await call(`${s.url}/v1/index`);
    assert.equal(r.status, 200);
    assert.equal(r.body.index.counts.live, f.n);
    assert.equal(r.body.model.fingerprint, f.checkpoint.meta.fingerprint);
    assert.equal(r.body.corpus.submodel, 'xl');
    assert.match(r.body.corpus.spec, /fashion-mnist:test\[0:120\]/);
    assert.deepEqual(
      r.body.menu.map((e: { name: string }) => e.name),
      ['s', 'm', 'mix-sl', 'l', 'xl'],
    );
    assert.ok(r.body.menu.every((e: { latencyMs: number }) => e.latencyMs > 0));
    assert.equal(r.body.writes, 'enabled');
    assert.equal(r.body.cascade, null);
    assert.equal(r.body.policy.cascade, false);
    assert.match(r.body.policy.why, /answers with xl.*not calibrated.*matvit calibrate --index /);
  });

  test('GET /v1/items/:id and its image', async () => {
    const r = await call(`${s.url}/v1/items/3`);
    assert.equal(r.status, 200);
    assert.equal(r.body.id, 3);
    assert.equal(r.body.path, 'idx:#2');
    assert.equal(r.body.labelName, 'Trouser'); // Fashion-MNIST test labels start 9, 2, 1
    assert.match(r.body.sha256, /^[0-9a-f]{64}$/);
    const img = await fetch(`${s.url}/v1/items/3/image`);
    assert.equal(img.status, 200);
    assert.match(img.headers.get('cache-control')!, /immutable/);
    const bytes = Buffer.from(await img.arrayBuffer());
    assert.equal(bytes.subarray(1, 4).toString(), 'PNG');
  });

  test('healthz, readyz, metrics', async () => {
    assert.deepEqual((await call(`${s.url}/healthz`)).body, { status: 'ok' });
    assert.deepEqual((await call(`${s.url}/readyz`)).body, { status: 'ready' });
    const m = await call(`${s.url}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.headers.get('content-type')!, /text\/plain/);
    for (const re of [
      /matvit_http_requests_total\{route="\/v1\/search",method="POST",status="200"\} \d+/,
      /matvit_search_requests_total\{encoder="s",mode="fixed"\} \d+/,
      /matvit_search_requests_total\{encoder="custom",mode="fixed"\} \d+/,
      /matvit_search_duration_ms_bucket\{le="\d+",encoder="xl"\} \d+/,
      /matvit_encode_duration_ms_count\{encoder="m"\} \d+/,
      /matvit_batch_size_count\{encoder="xl"\} \d+/,
      /matvit_queue_depth 0/,
      /matvit_load_level 0/,
      /matvit_index_items \d+/,
      /# TYPE matvit_escalations_total counter/,
    ])
      assert.match(m.body, re);
  });

  test('the web page and its assets are served', async () => {
    const page = await fetch(`${s.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /text\/html/);
    const html = await page.text();
    for (const asset of ['app.js', 'style.css']) {
      assert.ok(html.includes(asset));
      assert.equal((await fetch(`${s.url}/${asset}`)).status, 200);
    }
  });
});

describe('writes', () => {
  const auth = { authorization: `Bearer ${TOKEN}` };

  test('403 when the server has no admin token; 401 without or with a wrong one', async () => {
    const url = await listen(createApp({ service: s.service }));
    const off = await call(`${url}/v1/items`, {
      method: 'POST',
      headers: { 'content-type': 'image/png', ...auth },
      body: new Uint8Array(png),
    });
    assert.equal(off.status, 403);
    assert.equal(off.body.error.code, 'writes-disabled');
    assert.equal((await call(`${url}/v1/items/1`, { method: 'DELETE', headers: auth })).status, 403);
    for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }] as Record<
      string,
      string
    >[]) {
      const r = await raw('/v1/items', png, 'image/png', headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.match(r.headers.get('www-authenticate')!, /^Bearer/);
      assert.equal((await call(`${s.url}/v1/items/1`, { method: 'DELETE', headers })).status, 401);
    }
    assert.equal((await call(`${s.url}/v1/items/1`)).status, 200, 'nothing was deleted');
  });

  test('request logs never hold the admin token', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const url = await listen(createApp({ service: s.service, adminToken: TOKEN, log }));
    await call(`${url}/v1/items/99999`, { method: 'DELETE', headers: auth });
    await call(`${url}/v1/items/99999`, { method: 'DELETE', headers: { authorization: 'Bearer wrong-token' } });
    assert.equal(lines.length, 2);
    assert.ok(
      lines.every((l) => !l.includes(TOKEN) && !l.includes('wrong-token')),
      lines.join('\n'),
    );
    assert.match(lines[0], /"statusCode":404/);
  });

  test('add (durable before 201), find, get, delete; deleted items never come back', async () => {
    const img = await fmnistPng(6000);
    const r = await call(`${s.url}/v1/items`, { method: 'POST', headers: auth, body: form({ label: '9' }, { bytes: img }) });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.id;
    assert.equal(r.headers.get('location'), `/v1/items/${id}`);
    // Durable: the index opened again (another connection to its store) already has it.
    const other = openIndex(f.indexDir, { mode: 'read' });
    assert.equal(other.item(id)?.label, 9);
    other.close();
    const again = await raw('/v1/items', img, 'image/png', auth);
    assert.deepEqual([again.status, again.body.id, again.body.created], [200, id, false]);
    const meta = await call(`${s.url}/v1/items/${id}`);
    assert.equal(meta.body.labelName, 'Ankle boot');
    assert.match(meta.body.path, /^upload:[0-9a-f]{64}\.png$/);
    assert.deepEqual(Buffer.from(await (await fetch(`${s.url}/v1/items/${id}/image`)).arrayBuffer()), img);
    const found = await raw('/v1/search?encoder=xl&k=1', img);
    assert.equal(found.body.results[0].id, id);
    const del = await call(`${s.url}/v1/items/${id}`, { method: 'DELETE', headers: auth });
    assert.deepEqual(del.body, { id, removed: true });
    assert.equal((await call(`${s.url}/v1/items/${id}`, { method: 'DELETE', headers: auth })).status, 404);
    assert.equal((await call(`${s.url}/v1/items/${id}`)).status, 404);
    assert.equal((await call(`${s.url}/v1/items/${id}/image`)).status, 404);
    const after = await raw('/v1/search?encoder=xl&k=50', img);
    assert.ok(after.body.results.every((x: { id: number }) => x.id !== id));
  });

  test('write validation: 400 / 413 / 415 / 422 as for search', async () => {
    const json = (body: object) =>
      call(`${s.url}/v1/items`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(body) });
    assert400(await json({ image: png.toString('base64'), label: 'shoe' }), 'label');
    assert400(await json({ image: png.toString('base64'), colour: 'red' }), 'colour', /label, labelName/);
    assert400(await json({ label: 1 }), 'image');
    assert.equal((await raw('/v1/items', Buffer.alloc(MAX_IMAGE + 1), 'image/png', auth)).status, 413);
    assert.equal((await raw('/v1/items', png, 'text/plain', auth)).status, 415);
    assert.equal((await raw('/v1/items', Buffer.from('nope'), 'image/png', auth)).status, 422);
  });

  test('searches running while items are added and removed all succeed; the index stays consistent', async () => {
    const before = s.service.index.size;
    const images = await Promise.all(Array.from({ length: 8 }, (_, i) => fmnistPng(7000 + i)));
    const queries = await Promise.all(Array.from({ length: 6 }, (_, i) => fmnistPng(8000 + i)));
    const search = (i: number) => raw(`/v1/search?encoder=${['s', 'm', 'xl', 'auto'][i % 4]}&k=20`, queries[i % queries.length]);
    const adds = images.map((img) => raw('/v1/items', img, 'image/png', auth));
    const during = Array.from({ length: 24 }, (_, i) => search(i));
    const added = await Promise.all(adds);
    for (const r of [...added, ...(await Promise.all(during))]) assert.ok(r.status === 200 || r.status === 201, JSON.stringify(r.body));
    const ids = added.map((r) => r.body.id as number);
    assert.equal(new Set(ids).size, 8);
    assert.equal(s.service.index.size, before + 8);
    // Remove while searching; once a delete has answered, no search returns that id.
    const gone = new Set<number>();
    await Promise.all([
      ...ids.map(async (id) => {
        const r = await call(`${s.url}/v1/items/${id}`, { method: 'DELETE', headers: auth });
        assert.equal(r.status, 200);
        gone.add(id);
      }),
      ...Array.from({ length: 24 }, async (_, i) => {
        const snapshot = new Set(gone);
        const r = await search(i);
        assert.equal(r.status, 200);
        for (const x of r.body.results) assert.ok(!snapshot.has(x.id), `deleted item ${x.id} returned`);
      }),
    ]);
    assert.equal(s.service.index.size, before);
    const v = verifyIndex(s.service.index, { sampleSize: 50 });
    assert.ok(v.ok, v.problems.join('; '));
  });
});

describe('micro-batching', () => {
  test('concurrent requests for one submodel share engine calls', async () => {
    // Its own service over the same corpus, with a batching wait long enough for a loaded machine.
    const { corpus, encoder } = s.service.deps;
    const service = new SearchService({ corpus, encoder, config: { refreshMs: 0, batch: { maxWaitMs: 100 }, load: { enabled: false } } });
    const url = await listen(createApp({ service }));
    const rs = await Promise.all(
      Array.from({ length: 16 }, () =>
        call(`${url}/v1/search?encoder=l`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) }),
      ),
    );
    assert.ok(rs.every((r) => r.status === 200));
    assert.ok(service.batcher.calls <= 4, `16 concurrent requests took ${service.batcher.calls} engine calls`);
    assert.equal(new Set(rs.map((r) => JSON.stringify(r.body.results))).size, 1, 'batching does not change answers');
    const m = (await call(`${url}/metrics`)).body as string;
    const count = Number(/matvit_batch_size_count\{encoder="l"\} (\d+)/.exec(m)![1]);
    const sum = Number(/matvit_batch_size_sum\{encoder="l"\} (\d+)/.exec(m)![1]);
    assert.deepEqual([count, sum], [service.batcher.calls, 16]);
  });
});

describe('cascade (auto with a stored calibration)', () => {
  /** A second service over the same corpus and encoder, reading the cascade stored in the index. */
  async function withCascade(rule: Cascade['rules'][0]): Promise<{ url: string; service: SearchService }> {
    const held = { queries: 10, recallAt10: 1, mflopsFraction: 1, escalationRate: 0 };
    const { corpus, encoder } = s.service.deps;
    const cascade: Cascade = {
      version: 1,
      k: 10,
      stages: [
        { name: 's', ffnDims: [4, 4] },
        { name: 'xl', ffnDims: [32, 32] },
      ],
      rules: [rule],
      basis: 'labels',
      tolerance: 0.005,
      queries: 'test',
      heldOut: held,
      reference: held,
      fingerprint: f.checkpoint.meta.fingerprint,
      calibratedAt: new Date().toISOString(),
    };
    corpus.index.setMeta(CASCADE_META_KEY, cascade);
    try {
      const service = new SearchService({ corpus, encoder, config: { refreshMs: 0, load: { enabled: false } } });
      service.state = 'ready';
      return { url: await listen(createApp({ service })), service };
    } finally {
      corpus.index.setMeta(CASCADE_META_KEY, null);
    }
  }

  test('escalates on low confidence, not on high; counts every encoder that ran', async () => {
    const always = await withCascade({ margin: 10 }); // margins are < 2: always fires
    const r = await call(`${always.url}/v1/search`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(png),
    });
    assert.deepEqual(
      r.body.encoders.map((e: { name: string }) => e.name),
      ['s', 'xl'],
    );
    assert.equal(r.body.encoders[0].escalated, true);
    assert.ok(r.body.encoders[0].confidence.margin >= 0);
    assert.equal(r.body.encoder.name, 'xl');
    const { mflops: sM } = r.body.encoders[0],
      { mflops: xlM } = r.body.encoders[1];
    assert.ok(
      Math.abs(r.body.encoder.savedFraction - (1 - (sM + xlM) / xlM)) < 1e-12,
      'savedFraction counts both encoders (negative here)',
    );
    const direct = await raw('/v1/search?encoder=xl', png);
    assert.deepEqual(r.body.results, direct.body.results, 'an escalated query answers exactly as XL');
    assert.match((await call(`${always.url}/metrics`)).body, /matvit_escalations_total\{from="s",to="xl"\} 1/);

    const never = await withCascade({ margin: 0 });
    const n = await call(`${never.url}/v1/search`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
    assert.deepEqual(
      n.body.encoders.map((e: { name: string }) => e.name),
      ['s'],
    );
    assert.equal(n.body.encoders[0].escalated, false);
    assert.ok(n.body.encoder.savedFraction > 0);
    assert.equal((await call(`${never.url}/v1/index`)).body.cascade.stages.join(), 's,xl');

    // With a label filter, agreement says nothing: an agreement-only cascade answers with XL.
    const agree = await withCascade({ agreement: 0.5 });
    const l = await call(`${agree.url}/v1/search?label=2`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(png),
    });
    assert.deepEqual(
      l.body.encoders.map((e: { name: string }) => e.name),
      ['xl'],
    );
  });

  test('calibration queries that are index items are searched without their own item (leave-one-out)', async () => {
    const { corpus, encoder } = s.service.deps;
    const ds = await parseDatasetSpec('fashion-mnist:test[:20]'); // the fixture's first 20 corpus items
    const shas = await Promise.all(
      Array.from({ length: 20 }, async (_, i) =>
        createHash('sha256')
          .update(await ds.bytes(i))
          .digest('hex'),
      ),
    );
    const own = corpus.index.existing(shas);
    const e = await embedQueries(corpus, encoder, ds, [s.service.menu.byName('s')!, s.service.menu.corpus], { k: 5 });
    assert.equal(e.inIndex, own.size);
    assert.ok(own.size >= 18, `${own.size} of the 20 images are items`);
    for (const run of e.runs)
      shas.forEach((sha, i) => {
        const ids = Array.from(run.ids.subarray(i * 5, (i + 1) * 5));
        assert.ok(
          ids.every((id) => id >= 0),
          `query ${i}: ${ids}`,
        );
        if (own.has(sha)) assert.ok(!ids.includes(own.get(sha)!), `query ${i} found itself (${run.entry.name})`);
      });
  });

  test("calibrate with no queries: a seeded sample of the index's own items, each searched without itself", async () => {
    const { corpus } = s.service.deps;
    const a = await ownItemsSample(corpus, 40),
      b = await ownItemsSample(corpus, 40);
    assert.equal(a.size, 40);
    assert.deepEqual(
      Array.from({ length: 40 }, (_, i) => a.item(i).ref),
      Array.from({ length: 40 }, (_, i) => b.item(i).ref),
      'seeded',
    );
    assert.equal(new Set(Array.from({ length: 40 }, (_, i) => a.item(i).ref)).size, 40);
    // `matvit calibrate --index DIR` and nothing else, as a user runs it on a new index.
    try {
      const { stdout } = await matvit('calibrate', '--index', f.indexDir);
      assert.match(stdout, /^note: 120 queries are items of the index: each was searched without its own item \(leave-one-out\)$/m);
      assert.match(
        stdout,
        /calibrated on fashion-mnist:test\[0:120\], 120 items sampled \(seed calibrate\) \(120 queries\), basis: labels/,
      );
      assert.match(stdout, /\| xl \|/);
      const stored = s.service.index.getMeta(CASCADE_META_KEY) as Cascade | null;
      if (stored) assert.match(stdout, new RegExp(`cascade: ${stored.stages.map((x) => x.name).join(' -> ')}`));
      else assert.match(stdout, /no cascade is cheaper/);
    } finally {
      s.service.index.setMeta(CASCADE_META_KEY, null);
    }
  });

  test('calibrate stores a cascade that meets its constraint on the held-out queries', async () => {
    const { corpus, encoder } = s.service.deps;
    const ds = await parseDatasetSpec('fashion-mnist:test[9000:9100]');
    const r = await calibrate(corpus, encoder, ds, { tolerance: 0.05 });
    try {
      assert.equal(r.basis, 'labels');
      assert.equal(r.inIndex, 0);
      assert.deepEqual(
        r.submodels.map((x) => x.name),
        ['s', 'm', 'mix-sl', 'l', 'xl'],
      );
      assert.equal(r.reference.queries, 100);
      if (r.cascade) {
        assert.ok(r.chosen.accuracy! >= r.reference.accuracy! - 0.05 - 1e-9);
        assert.ok(r.chosen.precisionAt10! >= r.reference.precisionAt10! - 0.05 - 1e-9);
        assert.ok(r.chosen.mflopsFraction < 1);
        assert.deepEqual(corpus.index.getMeta(CASCADE_META_KEY), JSON.parse(JSON.stringify(r.cascade)));
      } else assert.equal(corpus.index.getMeta(CASCADE_META_KEY), null);
    } finally {
      corpus.index.setMeta(CASCADE_META_KEY, null);
    }
  });
});

describe('corpus images from a folder, and model checks', () => {
  test('files are served from the corpus root only; another model is refused', async () => {
    const root = path.join(f.root, 'folder');
    const corpusDir = path.join(root, 'corpus');
    for (const [cls, n] of [
      ['boots', 3],
      ['bags', 2],
    ] as const) {
      fs.mkdirSync(path.join(corpusDir, cls), { recursive: true });
      for (let i = 0; i < n; i++) {
        const px = Buffer.from(Array.from({ length: 40 * 30 }, (_, j) => (j * (i + 3) + cls.length * 40) % 256));
        const img = sharp(px, { raw: { width: 40, height: 30, channels: 1 } });
        await (i === 0 ? img.jpeg() : img.png()).toFile(path.join(corpusDir, cls, `${i}.${i === 0 ? 'jpg' : 'png'}`));
      }
    }
    const outside = path.join(root, 'outside.png');
    fs.copyFileSync(path.join(corpusDir, 'bags', '1.png'), outside);
    const indexDir = path.join(root, 'index');
    await buildIndex({ checkpoint: f.checkpoint, modelDir: f.modelDir, data: corpusDir, out: indexDir, store: testStore() });
    fs.symlinkSync(outside, path.join(corpusDir, 'boots', 'link.png'));
    // Sources no build would record: a path leaving the root, and a symlink leading out of it.
    const index = openIndex(indexDir, { expectedFingerprint: f.checkpoint.meta.fingerprint });
    const v = Array.from({ length: 16 }, (_, i) => i + 1);
    const crafted = index.add([
      { source: '../outside.png', sha256: 'a'.repeat(64), bytes: 1, vector: v },
      { source: 'boots/link.png', sha256: 'b'.repeat(64), bytes: 1, vector: v },
      { source: outside, sha256: 'c'.repeat(64), bytes: 1, vector: v }, // absolute: what `index add` records for a file outside the root
    ]).ids as number[];
    index.close();

    const srv = await startServer({ index: indexDir, port: 0, config: { refreshMs: 0, latency: { runs: 1 } } });
    try {
      const info = (await call(`${srv.url}/v1/index`)).body;
      assert.equal(info.index.counts.live, 8);
      const jpg = await fetch(`${srv.url}/v1/items/1/image`);
      assert.equal(jpg.headers.get('content-type'), 'image/jpeg');
      const item = (await call(`${srv.url}/v1/items/1`)).body;
      assert.deepEqual(Buffer.from(await jpg.arrayBuffer()), fs.readFileSync(path.join(corpusDir, item.path)));
      for (const id of crafted.slice(0, 2)) {
        const r = await call(`${srv.url}/v1/items/${id}/image`);
        assert.equal(r.status, 404, `item ${id}`);
        assert.match(r.body.error.message, /outside the corpus root/);
      }
      assert.equal((await fetch(`${srv.url}/v1/items/${crafted[2]}/image`)).status, 200);
    } finally {
      await srv.close();
    }

    const other = path.join(root, 'other-model');
    saveCheckpoint(other, f.checkpoint.meta.model, initWeights(f.checkpoint.meta.model, 99));
    await assert.rejects(startServer({ index: indexDir, model: other, port: 0 }), /fingerprint/);
  });
});
