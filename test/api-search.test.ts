// Search API parity (issue 18): the real app on port 0 over the tiny served corpus, its items
// carrying payloads from the build (index build --metadata's path). Each input kind (image, vector
// as JSON and base64, id), each filter form, score threshold, paging, payloads, batch with mixed
// good and bad queries, CORS and the rate limit, and each error. Expected neighbours come from a
// plain loop over the stored vectors and payloads in this file, never from the search code.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MatvitClient, MatvitApiError, vectorToBase64, type SearchQuery } from '../src/client/index.ts';
import * as lancedb from '@lancedb/lancedb';
import { buildIndex } from '../src/index/build.ts';
import { readMetadata } from '../src/index/metadata.ts';
import { openIndex } from '../src/index/open-store.ts';
import { Store } from '../src/index/store.ts';
import { type RunningServer, startServer } from '../src/serve/server.ts';
import { type Reply, type ServeFixture, call, fmnistPng, serveFixture } from './helpers/serve-fixture.ts';

const N = 120;
const TOKEN = 'api-test-token';
const COLORS = ['red', 'green', 'blue'];
/** Item payloads by the build's position i (sources idx:#i): none for every 7th. */
const payloadOf = (i: number): Record<string, unknown> | undefined =>
  i % 7 === 0 ? undefined : { price: (i % 10) + 0.5, color: COLORS[i % 3], sale: i % 2 === 0, dims: { w: i % 4 } };

let f: ServeFixture;
let s: RunningServer;
let client: MatvitClient;
let fingerprint: string;
/** The build's payloads by source (index build --metadata), for a second index of the same corpus. */
let payloads: ReadonlyMap<string, Record<string, unknown>>;
/** The stored corpus: id -> unit vector, label, payload (read from the store, not through the service). */
const items = new Map<number, { vector: Float32Array; label: number; payload: Record<string, unknown> | null }>();

const post = (p: string, body: unknown, headers: Record<string, string> = {}) =>
  call(`${s.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

function assert400(r: Reply, field: string, message?: RegExp): void {
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error.field, field, JSON.stringify(r.body));
  assert.match(r.body.error.message, new RegExp(`^${field}: `));
  if (message) assert.match(r.body.error.message, message);
}

type It = { label: number; payload: Record<string, unknown> | null };

/** Plain-loop reference: ids of the top k by dot product among items passing `keep`, best first. */
function reference(
  q: Float32Array,
  k: number,
  keep: (it: It) => boolean = () => true,
  corpus: ReadonlyMap<number, It & { vector: Float32Array }> = items,
) {
  const scored: { id: number; score: number }[] = [];
  for (const [id, it] of corpus) {
    if (!keep(it)) continue;
    let d = 0;
    for (let j = 0; j < q.length; j++) d += q[j] * it.vector[j];
    scored.push({ id, score: d });
  }
  return scored.sort((a, b) => b.score - a.score || a.id - b.id).slice(0, k);
}

const ids = (r: Reply) => r.body.results.map((x: { id: number }) => x.id);

const p = (it: It) => it.payload ?? {};
/** Each filter form with its plain-JS meaning (the reference). */
const FILTER_CASES: [Record<string, unknown>, (it: It) => boolean][] = [
  [{ label: 3 }, (it) => it.label === 3],
  [{ label: { in: [1, 2] } }, (it) => it.label === 1 || it.label === 2],
  [{ label: { gte: 5, lt: 8 } }, (it) => it.label >= 5 && it.label < 8],
  [{ 'payload.color': 'red' }, (it) => p(it).color === 'red'],
  [{ 'payload.color': { in: ['green', 'blue'] } }, (it) => ['green', 'blue'].includes(p(it).color as string)],
  [
    { 'payload.price': { gt: 2, lte: 6.5 } },
    (it) => typeof p(it).price === 'number' && (p(it).price as number) > 2 && (p(it).price as number) <= 6.5,
  ],
  [{ 'payload.sale': true }, (it) => p(it).sale === true],
  [{ 'payload.dims.w': { eq: 2 } }, (it) => (p(it).dims as { w?: number } | undefined)?.w === 2],
  [{ 'payload.price': '1.5' }, () => false], // a string never matches a number
  [
    { and: [{ 'payload.sale': false }, { label: { in: [0, 6, 9] } }], 'payload.color': 'blue' },
    (it) => p(it).sale === false && [0, 6, 9].includes(it.label) && p(it).color === 'blue',
  ],
];

before(async () => {
  const meta = path.join(process.env.TMPDIR ?? '/tmp', `matvit-api-meta-${process.pid}.jsonl`);
  const lines = Array.from({ length: N }, (_, i) => payloadOf(i) && JSON.stringify({ path: `idx:#${i}`, payload: payloadOf(i) }));
  fs.writeFileSync(meta, lines.filter(Boolean).join('\n') + '\n');
  try {
    payloads = readMetadata(meta);
    f = await serveFixture(N, payloads);
  } finally {
    fs.rmSync(meta, { force: true });
  }
  const store = Store.open(path.join(f.indexDir, 'store.sqlite'), { readOnly: true });
  try {
    for (const chunk of store.liveItems())
      for (const it of chunk) items.set(it.id, { vector: it.vector, label: it.label, payload: it.payload });
  } finally {
    store.close();
  }
  s = await startServer({
    index: f.indexDir,
    port: 0,
    adminToken: TOKEN,
    config: {
      refreshMs: 0,
      latency: { runs: 2 },
      batch: { maxWaitMs: 50 },
      load: { enabled: false },
      searchBatch: { maxQueries: 8 },
      cors: ['https://app.example'],
    },
  });
  await s.warm;
  client = new MatvitClient(s.url, { adminToken: TOKEN });
  fingerprint = (await client.index()).model.fingerprint;
});

after(async () => {
  await s?.close();
  f?.cleanup();
});

describe('inputs', () => {
  test('the build stored each source its payload (--metadata)', () => {
    const store = Store.open(path.join(f.indexDir, 'store.sqlite'), { readOnly: true });
    try {
      for (const chunk of store.liveItems())
        for (const it of chunk) assert.deepEqual(it.payload, payloadOf(Number(it.source.slice('idx:#'.length))) ?? null, it.source);
    } finally {
      store.close();
    }
  });

  test('vector (JSON and base64) and id give the plain-loop neighbours; id leaves itself out', async () => {
    for (const id of [1, 17, 64]) {
      const v = items.get(id)!.vector;
      const want = reference(v, 10).map((h) => h.id);
      const asJson = await post('/v1/search', { vector: Array.from(v), model: fingerprint, encoder: 'xl' });
      assert.equal(asJson.status, 200, JSON.stringify(asJson.body));
      assert.deepEqual(ids(asJson), want);
      assert.equal(asJson.body.input, 'vector');
      assert.deepEqual(asJson.body.encoders, [], 'nothing encoded on the server');
      assert.equal(asJson.body.encoder.savedFraction, 1);
      const asBase64 = await client.search({ vector: v, model: fingerprint, encoder: 'xl' });
      assert.deepEqual(
        asBase64.results.map((x) => x.id),
        want,
      );
      const byId = await client.search({ id });
      assert.equal(byId.input, 'id');
      assert.deepEqual(
        byId.results.map((x) => x.id),
        reference(v, 11)
          .map((h) => h.id)
          .filter((x) => x !== id)
          .slice(0, 10),
      );
    }
  });

  test('an image is still searched as before, and results agree with searching its embedding', async () => {
    const png = await fmnistPng(5000);
    const r = await client.search({ image: png, encoder: 'xl', k: 5 });
    assert.equal(r.input, 'image');
    assert.equal(r.encoders.length, 1);
    assert.equal(r.results.length, 5);
  });

  test('vector errors: another model, no model, wrong length, NaN, not unit norm, no encoder; 400 naming the field', async () => {
    const v = Array.from(items.get(3)!.vector);
    assert400(await post('/v1/search', { vector: v, model: 'f'.repeat(64), encoder: 'xl' }), 'model', /another model/);
    assert400(await post('/v1/search', { vector: v, encoder: 'xl' }), 'model', /required/);
    assert400(
      await post('/v1/search', { vector: v.slice(1), model: fingerprint, encoder: 'xl' }),
      'vector',
      /entries; the model's embeddings have/,
    );
    const nan = Float32Array.from(v);
    nan[2] = NaN;
    assert400(await post('/v1/search', { vector: vectorToBase64(nan), model: fingerprint, encoder: 'xl' }), 'vector', /entry 2 is NaN/);
    assert400(await post('/v1/search', { vector: v.map((x) => x * 2), model: fingerprint, encoder: 'xl' }), 'vector', /norm is 2/);
    assert400(await post('/v1/search', { vector: v, model: fingerprint }), 'encoder', /required with vector/);
    assert400(await post('/v1/search', { vector: 'abc', model: fingerprint, encoder: 'xl' }), 'vector', /base64/);
    assert400(await post('/v1/search', { vector: v, model: fingerprint, encoder: 'xl', id: 3 }), 'id', /one of image, vector or id/);
    assert400(await post('/v1/search', { id: 3, maxMflops: 5 }), 'maxMflops', /only with an image/);
    assert400(await post('/v1/search', {}), 'image', /no image, vector or id/);
  });

  test('id errors: unknown and deleted ids are 404 naming id; a malformed one is 400', async () => {
    const unknown = await post('/v1/search', { id: 99999 });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.field, 'id');
    assert400(await post('/v1/search', { id: 0 }), 'id');
    const added = await client.addItem(await fmnistPng(5001));
    await client.removeItem(added.id);
    const deleted = await post('/v1/search', { id: added.id });
    assert.equal(deleted.status, 404);
    assert.match(deleted.body.error.message, /was deleted/);
  });
});

describe('options', () => {
  const q = () => items.get(10)!.vector;
  const byVector = (extra: Record<string, unknown>): SearchQuery => ({ vector: q(), model: fingerprint, encoder: 'xl', ...extra });

  test('each filter form gives the plain-loop neighbours among the matching items', async () => {
    for (const [filter, keep] of FILTER_CASES) {
      const want = reference(q(), 10, keep).map((h) => h.id);
      const r = await client.search(byVector({ filter }));
      assert.deepEqual(
        r.results.map((x) => x.id),
        want,
        JSON.stringify(filter),
      );
      // The same filter as JSON text in the query string, with an image in a multipart form.
      const fd = new FormData();
      fd.append('image', new Blob([new Uint8Array(await fmnistPng(10))], { type: 'image/png' }), 'q.png');
      const form = await call(`${s.url}/v1/search?filter=${encodeURIComponent(JSON.stringify(filter))}&encoder=xl`, {
        method: 'POST',
        body: fd,
      });
      assert.equal(form.status, 200, JSON.stringify(form.body));
      for (const x of form.body.results) assert.ok(keep(items.get(x.id)!), `${JSON.stringify(filter)}: item ${x.id} does not match`);
    }
  });

  test('malformed filters: 400 naming filter and the path inside it', async () => {
    const bad: [unknown, RegExp][] = [
      [{}, /empty filter/],
      [{ colour: 'red' }, /at filter\.colour: not a field/],
      [{ label: {} }, /at filter\.label: an empty condition/],
      [{ 'payload.price': { gte: 'a' } }, /at filter\.payload\.price/],
      [{ and: [{ label: { foo: 1 } }] }, /at filter\.and\[0\]\.label/],
      [{ 'payload.a-b': 1 }, /not a field/],
      ['{"label": ', /not valid JSON/],
      [[1, 2], /filter/],
      [{ label: { in: Array.from({ length: 1001 }, (_, i) => i) } }, /filter\.label/],
    ];
    for (const [filter, message] of bad) assert400(await post('/v1/search', { id: 1, filter }), 'filter', message);
    let deep: Record<string, unknown> = { label: 1 };
    for (let i = 0; i < 10; i++) deep = { and: [deep] };
    assert400(await post('/v1/search', { id: 1, filter: deep }), 'filter', /deeper than/);
  });

  test('scoreThreshold keeps the hits scoring at least it; offset pages through the same ranking', async () => {
    const all = reference(q(), 30);
    const t = all[12].score;
    const r = await client.search(byVector({ k: 30, scoreThreshold: t }));
    assert.deepEqual(
      r.results.map((x) => x.id),
      all.filter((h) => h.score >= t).map((h) => h.id),
    );
    assert.ok(r.results.every((x) => x.score >= t));
    const pages = [];
    for (const offset of [0, 7, 14, 21]) pages.push(...(await client.search(byVector({ k: 7, offset }))).results.map((x) => x.id));
    assert.deepEqual(
      pages,
      all.slice(0, 28).map((h) => h.id),
    );
    assert400(await post('/v1/search', { id: 1, k: 10, offset: 995 }), 'offset', /k \+ offset/);
    assert400(await post('/v1/search', { id: 1, scoreThreshold: 'high' }), 'scoreThreshold');
  });

  test('withPayload returns each result its stored payload (null when none)', async () => {
    const r = await client.search(byVector({ k: 20, withPayload: true }));
    for (const x of r.results) assert.deepEqual(x.payload, items.get(x.id)!.payload);
    const plain = await client.search(byVector({ k: 3 }));
    assert.ok(plain.results.every((x) => !('payload' in x)));
  });
});

describe('payloads', () => {
  test('POST /v1/items stores the payload with the item (JSON and multipart), GET returns it, the store keeps it', async () => {
    const payload = { sku: 'A-17', price: 12.5, tags: ['x', 'y'], nested: { ok: true } };
    const added = await client.addItem(await fmnistPng(5002), { label: 4, payload });
    assert.equal(added.created, true);
    assert.deepEqual((await client.item(added.id)).payload, payload);
    const fd = new FormData();
    fd.append('image', new Blob([new Uint8Array(await fmnistPng(5003))], { type: 'image/png' }), 'a.png');
    fd.append('payload', JSON.stringify({ from: 'form' }));
    const viaForm = await call(`${s.url}/v1/items`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: fd });
    assert.equal(viaForm.status, 201, JSON.stringify(viaForm.body));
    assert.deepEqual((await client.item(viaForm.body.id)).payload, { from: 'form' });
    // Durable with the item: a separate read-only connection sees it.
    const store = Store.open(path.join(f.indexDir, 'store.sqlite'), { readOnly: true });
    try {
      assert.deepEqual(store.get(added.id)!.payload, payload);
    } finally {
      store.close();
    }
    // Filterable at once.
    const r = await client.search({ id: 1, filter: { 'payload.sku': 'A-17' }, withPayload: true });
    assert.deepEqual(
      r.results.map((x) => x.id),
      [added.id],
    );
  });

  test('payload errors: not an object, too large; 400 naming payload', async () => {
    const img = (await fmnistPng(5004)).toString('base64');
    const auth = { authorization: `Bearer ${TOKEN}` };
    assert400(await post('/v1/items', { image: img, payload: [1, 2] }, auth), 'payload');
    assert400(await post('/v1/items', { image: img, payload: 'text' }, auth), 'payload', /not valid JSON/);
    assert400(await post('/v1/items', { image: img, payload: { big: 'x'.repeat(5000) } }, auth), 'payload', /larger than 4096 bytes/);
  });

  test('index build --metadata: a bad line is refused naming its line', () => {
    const file = path.join(f.root, 'bad.jsonl');
    const cases: [string, RegExp][] = [
      ['{"path": "a.png", "payload": {}}\n{"path": "b.png"}\n', /bad\.jsonl:2: payload/],
      ['{"path": "a.png", "payload": {}}\nnot json\n', /bad\.jsonl:2: not JSON/],
      ['{"path": "a.png", "payload": {}}\n{"path": "a.png", "payload": {}}\n', /bad\.jsonl:2: a\.png already has a payload/],
      [`{"path": "a.png", "payload": {"x": "${'y'.repeat(5000)}"}}\n`, /bad\.jsonl:1: payload: \d+ bytes of JSON, the limit is 4096/],
    ];
    for (const [text, message] of cases) {
      fs.writeFileSync(file, text);
      assert.throws(() => readMetadata(file), message);
    }
  });
});

describe('batch', () => {
  test('mixed good and bad queries are answered in order, each with its own status; good ones equal single searches', async () => {
    const v = items.get(20)!.vector;
    const images = await Promise.all([5010, 5011, 5012].map((i) => fmnistPng(i)));
    const queries: SearchQuery[] = [
      { image: images[0], encoder: 's', k: 3 },
      { vector: v, model: fingerprint, encoder: 'xl', k: 4 },
      { id: 5, k: 2, filter: { label: items.get(5)!.label } },
      { id: 5, filter: { nope: 1 } },
      { id: 987654 },
      { vector: v, model: 'wrong', encoder: 'xl' },
      { image: images[1], encoder: 's', k: 3 },
      { image: images[2], encoder: 's', k: 3 },
    ];
    const metric = async () => {
      const text = (await call(`${s.url}/metrics`)).body as string;
      const m = /matvit_batch_size_count\{encoder="s"\} (\d+)/.exec(text);
      return m ? Number(m[1]) : 0;
    };
    const before = await metric();
    const r = await client.searchBatch(queries);
    const calls = (await metric()) - before;
    assert.deepEqual(
      r.answers.map((a) => a.status),
      [200, 200, 200, 400, 404, 400, 200, 200],
    );
    assert.ok(calls < 3, `the three s images were encoded in ${calls} engine calls (micro-batched: fewer than 3)`);
    const errs = r.answers.filter((a) => a.status !== 200) as { error: { field?: string } }[];
    assert.deepEqual(
      errs.map((e) => e.error.field),
      ['filter', 'id', 'model'],
    );
    for (const i of [0, 1, 2, 6]) {
      const single = await client.search(queries[i]);
      assert.deepEqual(
        (r.answers[i] as { results: { id: number }[] }).results.map((x) => x.id),
        single.results.map((x) => x.id),
        `query ${i}`,
      );
    }
  });

  test('batch limits: 400 naming queries past the configured maximum or when empty; 415 for a non-JSON body', async () => {
    assert400(await post('/v1/search/batch', { queries: Array.from({ length: 9 }, () => ({ id: 1 })) }), 'queries');
    assert400(await post('/v1/search/batch', { queries: [] }), 'queries');
    assert400(await post('/v1/search/batch', { queries: [{ id: 1 }], query: [] }), 'query', /unknown field/);
    const form = await call(`${s.url}/v1/search/batch`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(form.status, 415);
    await assert.rejects(client.searchBatch([]), (e: unknown) => e instanceof MatvitApiError && e.field === 'queries');
  });
});

describe('stores', () => {
  test('the LanceDB store evaluates every filter form inside LanceDB: the plain-loop neighbours, paging, threshold, payloads', async (t) => {
    const uri = path.join(f.root, 'lance');
    await buildIndex({
      checkpoint: f.checkpoint,
      modelDir: f.modelDir,
      data: `fashion-mnist:test[:${N}]`,
      out: uri,
      store: 'lance',
      payloads,
    });
    const corpus = new Map<number, It & { vector: Float32Array }>();
    const read = openIndex(uri, { mode: 'read' });
    try {
      assert.equal(read.kind, 'lance');
      const m = read.liveMatrix();
      const dim = read.params.dim;
      m.ids.forEach((id, i) =>
        corpus.set(id, { label: m.labels[i], payload: read.item(id)!.payload, vector: m.vectors.slice(i * dim, (i + 1) * dim) }),
      );
    } finally {
      read.close();
    }
    const lance = await startServer({ index: uri, port: 0, config: { refreshMs: 0, latency: { runs: 1 } } });
    t.after(() => lance.close());
    const lc = new MatvitClient(lance.url);
    const q = corpus.get(10)!.vector;
    for (const [filter, keep] of FILTER_CASES) {
      const r = await lc.search({ vector: q, model: fingerprint, encoder: 'xl', filter });
      assert.deepEqual(
        r.results.map((x) => x.id),
        reference(q, 10, keep, corpus).map((h) => h.id),
        JSON.stringify(filter),
      );
    }
    // offset, scoreThreshold (between two scores: LanceDB computes them in float32) and withPayload with a filter
    const [filter, keep] = FILTER_CASES[4];
    const ranked = reference(q, 12, keep, corpus);
    const page = await lc.search({
      vector: q,
      model: fingerprint,
      encoder: 'xl',
      filter,
      k: 5,
      offset: 3,
      withPayload: true,
      scoreThreshold: (ranked[6].score + ranked[7].score) / 2,
    });
    assert.deepEqual(
      page.results.map((x) => [x.id, x.payload]),
      ranked.slice(3, 7).map((h) => [h.id, corpus.get(h.id)!.payload]),
    );
  });

  test('a payload filter on a LanceDB index made before payload_jsonb: 501 naming filter from a read-only server, answered once a writable one opened it', async () => {
    const uri = path.join(f.root, 'lance-old');
    await buildIndex({
      checkpoint: f.checkpoint,
      modelDir: f.modelDir,
      data: 'fashion-mnist:test[:20]',
      out: uri,
      store: 'lance',
      payloads,
    });
    const db = await lancedb.connect(uri);
    const table = await db.openTable('items');
    await table.dropColumns(['payload_jsonb']);
    table.close();
    db.close();
    const search = (url: string, filter: unknown) =>
      call(`${url}/v1/search`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: 1, filter }),
      });
    const config = { refreshMs: 0, latency: { runs: 1 } };
    const replica = await startServer({ index: uri, port: 0, readOnly: true, config });
    try {
      const r = await search(replica.url, { 'payload.color': 'red' });
      assert.equal(r.status, 501, JSON.stringify(r.body));
      assert.equal(r.body.error.field, 'filter');
      assert.match(r.body.error.message, /before payload filters/);
      assert.equal((await search(replica.url, { label: { gte: 0 } })).status, 200, 'label filters still run');
    } finally {
      await replica.close();
    }
    const writer = await startServer({ index: uri, port: 0, config }); // its open adds payload_jsonb
    try {
      const r = await search(writer.url, { 'payload.color': 'red' });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const red = new Set(Array.from({ length: 20 }, (_, i) => i).flatMap((i) => (payloadOf(i)?.color === 'red' ? [`idx:#${i}`] : [])));
      assert.deepEqual(r.body.results.map((x: { path: string }) => x.path).sort(), [...red].sort());
    } finally {
      await writer.close();
    }
  });
});

describe('public deployments', () => {
  test('--cors: preflights from a listed origin are allowed, others get no CORS headers', async () => {
    const pre = (origin: string) =>
      fetch(`${s.url}/v1/search`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
    const ok = await pre('https://app.example');
    assert.equal(ok.status, 204);
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example');
    const other = await pre('https://evil.example');
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    const r = await fetch(`${s.url}/v1/index`, { headers: { origin: 'https://app.example' } });
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example');
  });

  test('rate limit: 429 with Retry-After past the limit per client; health checks are exempt', async (t) => {
    const limited = await startServer({
      index: f.indexDir,
      port: 0,
      readOnly: true,
      config: { refreshMs: 0, latency: { runs: 1 }, rateLimit: { limit: 3, windowMs: 60_000 } },
    });
    t.after(() => limited.close());
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await call(`${limited.url}/v1/items/1`)).status);
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    const r = await call(`${limited.url}/v1/items/1`);
    assert.equal(r.body.error.code, 'rate-limited');
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    assert.equal((await call(`${limited.url}/healthz`)).status, 200);
  });
});
