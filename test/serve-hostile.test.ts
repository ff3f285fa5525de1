// The service against hostile clients (issue 14 items 2-6): deeply nested JSON in any field is a
// 400, an upload cannot rename a class for other items, stored images are served as inert raster
// types with security headers on every response, SVG uploads are refused, tokens in the query
// string never reach the logs, labels keep one range everywhere, and temp files of killed uploads
// are removed when the service opens.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import sharp from 'sharp';
import { buildIndex } from '../src/index/build.ts';
import { createApp, redactUrl } from '../src/serve/app.ts';
import { type RunningServer, startServer } from '../src/serve/server.ts';
import { type ServeFixture, call, fmnistPng, serveFixture } from './helpers/serve-fixture.ts';

const TOKEN = 'hostile-admin-token';
const auth = { authorization: `Bearer ${TOKEN}` };
let f: ServeFixture;
let s: RunningServer;
let png: Buffer;
const servers: http.Server[] = [];

const json = (path: string, body: string, headers: Record<string, string> = {}) =>
  call(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
const raw = (path: string, bytes: Buffer, headers: Record<string, string> = {}) =>
  call(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: new Uint8Array(bytes) });

/** The JSON text of `levels` nested arrays around 1, built as text (no recursion anywhere). */
const deep = (levels: number) => `${'['.repeat(levels)}1${']'.repeat(levels)}`;

before(async () => {
  f = await serveFixture(60);
  png = await fmnistPng(5000);
  s = await startServer({
    index: f.indexDir,
    port: 0,
    adminToken: TOKEN,
    config: { refreshMs: 0, latency: { runs: 1 }, load: { enabled: false } },
  });
  await s.warm;
});

after(async () => {
  for (const x of servers) x.close();
  await s?.close();
  f?.cleanup();
});

describe('deeply nested JSON (item 2)', () => {
  test('6000 and 200000 levels in any field, or as the body, are 400s naming the field', async () => {
    const image = JSON.stringify(png.toString('base64'));
    for (const levels of [6000, 200_000]) {
      const d = deep(levels);
      for (const [route, body, field, headers] of [
        ['/v1/search', `{"image": ${image}, "k": ${d}}`, 'k', {}],
        ['/v1/search', `{"image": ${image}, "ffnDims": ${d}}`, 'ffnDims', {}],
        ['/v1/search', `{"image": ${d}}`, 'image', {}],
        ['/v1/search', `{"image": ${image}, "nested": ${d}}`, 'nested', {}],
        ['/v1/search?k=3', `{"image": ${image}, "k": ${d}}`, 'k', {}],
        ['/v1/search', d, '(body)', {}],
        ['/v1/items', `{"image": ${image}, "labelName": ${d}}`, 'labelName', auth],
        ['/v1/items', `{"image": ${image}, "label": ${d}}`, 'label', auth],
      ] as const) {
        const r = await json(route, body, headers);
        assert.equal(r.status, 400, `${levels} levels in ${field} (${route}): ${JSON.stringify(r.body).slice(0, 300)}`);
        assert.equal(r.body.error.field, field);
        assert.ok(JSON.stringify(r.body).length < 2000, 'the error echoes a bounded value');
      }
    }
    assert.equal((await call(`${s.url}/healthz`)).status, 200, 'still serving');
  });
});

describe('label names come from the item (item 3)', () => {
  test('an upload naming label 3 "POISONED" renames only itself, before and after its deletion', async () => {
    const names = async () => {
      const r = await raw('/v1/search?label=3&k=50&encoder=xl', png);
      assert.equal(r.status, 200);
      return new Map(r.body.results.map((x: { id: number; labelName: string }) => [x.id, x.labelName]));
    };
    const before = await names();
    assert.ok(before.size >= 3 && [...before.values()].every((n) => n === 'Dress'), JSON.stringify([...before]));
    const img = await fmnistPng(6100);
    const add = await call(`${s.url}/v1/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ image: img.toString('base64'), label: 3, labelName: 'POISONED' }),
    });
    assert.equal(add.status, 201, JSON.stringify(add.body));
    const during = await names();
    assert.equal(during.get(add.body.id), 'POISONED');
    for (const [id, name] of during) if (id !== add.body.id) assert.equal(name, 'Dress', `item ${id}`);
    assert.equal((await call(`${s.url}/v1/items/${[...before.keys()][0]}`)).body.labelName, 'Dress');
    assert.equal((await call(`${s.url}/v1/items/${add.body.id}`, { method: 'DELETE', headers: auth })).status, 200);
    const afterwards = await names();
    assert.ok(!afterwards.has(add.body.id));
    assert.ok([...afterwards.values()].every((n) => n === 'Dress'));
  });
});

describe('safe stored images, security headers, 405, log redaction (item 4)', () => {
  const SVG = Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><script>fetch("/v1/index")</script><rect width="28" height="28" fill="#888"/></svg>',
  );

  test('every response carries CSP, nosniff and frame options', async () => {
    for (const [path, init] of [
      ['/', {}],
      ['/app.js', {}],
      ['/v1/index', {}],
      ['/v1/items/1/image', {}],
      ['/v1/items/99999', {}],
      ['/v1/search?k=0', { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) }],
      ['/v1/search', {}],
    ] as [string, RequestInit][]) {
      const r = await fetch(`${s.url}${path}`, init);
      await r.arrayBuffer();
      const csp = r.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'self'/, path);
      // 'wasm-unsafe-eval' lets the page compile WebAssembly (its query encoder), not evaluate script.
      assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'(;|$)/, `${path}: no inline or eval script`);
      assert.match(csp, /object-src 'none'/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(r.headers.get('x-frame-options'), 'DENY', path);
    }
  });

  test('an SVG upload is refused (415 naming the field), whatever Content-Type it claims', async () => {
    for (const type of ['image/svg+xml', 'image/png']) {
      const r = await call(`${s.url}/v1/items`, { method: 'POST', headers: { 'content-type': type, ...auth }, body: new Uint8Array(SVG) });
      assert.equal(r.status, 415, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'unsupported-image-type');
      assert.equal(r.body.error.field, 'image');
    }
    assert.ok(!fs.readdirSync(path.join(f.indexDir, 'uploads'), { withFileTypes: true }).some((e) => e.name.endsWith('.svg')));
  });

  test('an SVG in a folder corpus (even named .png) is served as a PNG rendering', async () => {
    const root = path.join(f.root, 'svg-corpus');
    fs.mkdirSync(path.join(root, 'a'), { recursive: true });
    fs.writeFileSync(path.join(root, 'a', 'vector.png'), SVG);
    await sharp({ create: { width: 28, height: 28, channels: 3, background: '#444' } })
      .png()
      .toFile(path.join(root, 'a', 'plain.png'));
    const indexDir = path.join(f.root, 'svg-index');
    await buildIndex({ checkpoint: f.checkpoint, modelDir: f.modelDir, data: root, out: indexDir });
    const srv = await startServer({ index: indexDir, port: 0, config: { refreshMs: 0, latency: { runs: 1 } } });
    try {
      let seen = 0;
      for (const id of [1, 2]) {
        const item = (await call(`${srv.url}/v1/items/${id}`)).body;
        const img = await fetch(`${srv.url}/v1/items/${id}/image`);
        assert.equal(img.headers.get('content-type'), 'image/png', item.path);
        const bytes = Buffer.from(await img.arrayBuffer());
        assert.equal((await sharp(bytes).metadata()).format, 'png', item.path);
        if (item.path.endsWith('vector.png')) {
          assert.ok(!bytes.includes('<script'), 'the SVG source is not sent');
          seen++;
        }
      }
      assert.equal(seen, 1);
    } finally {
      await srv.close();
    }
  });

  test('a token in the query string never reaches the request log', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const server = http.createServer(createApp({ service: s.service, adminToken: TOKEN, log }));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const secrets = ['s3cr3t-one', 's3cr3t-two', 's3cr3t-three'];
    await call(`${url}/v1/index?token=${secrets[0]}&k=3`);
    await call(`${url}/v1/items/99999?access_token=${secrets[1]}`, { method: 'DELETE' });
    await call(`${url}/v1/index?API%5FKey=${secrets[2]}&x=${TOKEN}`);
    assert.equal(lines.length, 3);
    for (const l of lines) for (const secret of [...secrets, TOKEN]) assert.ok(!l.includes(secret), l);
    assert.match(lines[0], /"url":"\/v1\/index\?token=\[redacted\]&k=3"/);
    assert.match(lines[2], /x=\[redacted\]/, 'a query value holding the admin token is redacted');
    // A short token does not mangle the rest of the URL.
    assert.equal(redactUrl('/v1/items/1?x=t&k=3&Token=abc', 't'), '/v1/items/1?x=[redacted]&k=3&Token=[redacted]');
    assert.equal(redactUrl('/v1/items/1', 't'), '/v1/items/1');
  });
});

describe('labels keep one range (item 5)', () => {
  test('2^31-1 round-trips through store, graph filter and JSON; 2^31 and 2^53-1 are 400s naming the field', async () => {
    const max = 2 ** 31 - 1;
    const img = await fmnistPng(6200);
    const add = await call(`${s.url}/v1/items?label=${max}`, {
      method: 'POST',
      headers: { 'content-type': 'image/png', ...auth },
      body: new Uint8Array(img),
    });
    assert.equal(add.status, 201, JSON.stringify(add.body));
    assert.equal((await call(`${s.url}/v1/items/${add.body.id}`)).body.label, max);
    const found = await raw(`/v1/search?label=${max}&encoder=xl&k=5`, img);
    assert.deepEqual(
      found.body.results.map((x: { id: number; label: number }) => [x.id, x.label]),
      [[add.body.id, max]],
    );
    const top = await raw('/v1/search?encoder=xl&k=1', img);
    assert.deepEqual([top.body.results[0].id, top.body.results[0].label], [add.body.id, max]);
    for (const bad of [2 ** 31, 2 ** 53 - 1, -2]) {
      const r = await call(`${s.url}/v1/items?label=${bad}`, {
        method: 'POST',
        headers: { 'content-type': 'image/png', ...auth },
        body: new Uint8Array(await fmnistPng(6201)),
      });
      assert.equal(r.status, 400, `label ${bad}`);
      assert.equal(r.body.error.field, 'label');
      assert.match(r.body.error.accepted, /-1\.\.2147483647/);
      const q = await raw(`/v1/search?label=${bad}`, png);
      assert.equal(q.status, 400, `search label ${bad}`);
      assert.equal(q.body.error.field, 'label');
    }
  });
});

describe('temp files of killed uploads (item 6)', () => {
  test('are removed when the service opens; those of live writers stay', async () => {
    // The pid of a process that has exited: its temp files can have no writer.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const uploads = path.join(f.indexDir, 'uploads');
    fs.mkdirSync(uploads, { recursive: true });
    const stale = path.join(uploads, `${'a'.repeat(64)}.png.tmp-${dead}-x1y2z3`);
    const live = path.join(uploads, `${'b'.repeat(64)}.png.tmp-${process.pid}-a1b2c3`);
    fs.writeFileSync(stale, 'partial upload');
    fs.writeFileSync(live, 'being written');
    const srv = await startServer({ index: f.indexDir, port: 0, adminToken: TOKEN, config: { refreshMs: 0, latency: { runs: 1 } } });
    try {
      assert.ok(!fs.existsSync(stale), "the killed writer's temp file is gone");
      assert.ok(fs.existsSync(live), "a live writer's temp file is kept");
    } finally {
      await srv.close();
      fs.rmSync(live, { force: true });
    }
  });
});
