// An index directory the server's user cannot write (issue 14 item 8): `matvit serve` (a child
// process running as another user, or over a directory made read-only when the tests do not run as
// root) starts, serves searches, answers writes with 503 `read-only` naming the directory, says why
// in its log, and writes nothing into the directory.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { spawnServe } from './helpers/serve-child.ts';
import { type ServeFixture, fmnistPng, serveFixture } from './helpers/serve-fixture.ts';

const TOKEN = 'readonly-token';
const NOBODY = 65534;
const root = process.getuid?.() === 0;
let f: ServeFixture;

before(async () => {
  f = await serveFixture(30);
  // Readable by everyone; writable by its owner only (root), or by no one when the tests are not root.
  for (const dir of [f.root, f.modelDir]) fs.chmodSync(dir, 0o755);
  fs.chmodSync(f.indexDir, root ? 0o755 : 0o555);
});

after(() => {
  if (f) fs.chmodSync(f.indexDir, 0o755);
  f?.cleanup();
});

/** Every file of the directory with its size and modification time. */
const listing = (dir: string) =>
  Object.fromEntries(
    (fs.readdirSync(dir, { recursive: true }) as string[]).sort().map((p) => {
      const st = fs.statSync(path.join(dir, p));
      return [p, `${st.size} ${st.mtimeMs}`];
    }),
  );

test('an unwritable index directory: searches work, writes answer 503 naming the directory, the log says why, nothing is written', async () => {
  const before = listing(f.indexDir);
  const user = root ? { uid: NOBODY, gid: NOBODY } : {};
  const s = await spawnServe(['--index', f.indexDir], { MATVIT_ADMIN_TOKEN: TOKEN }, user);
  try {
    await s.ready();
    assert.match(s.log(), new RegExp(`serving read-only: ${f.indexDir.replace(/[/.-]/g, '\\$&')}[^"]* not writable`), s.log());
    assert.match(s.stderr(), /writes read-only/);
    const info = await (await fetch(`${s.url}/v1/index`)).json();
    assert.equal(info.writes, 'read-only');
    assert.match(info.index.opened.readOnly, /not writable/);

    const png = await fmnistPng(5000);
    const search = await fetch(`${s.url}/v1/search?encoder=xl&k=3`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(png),
    });
    assert.equal(search.status, 200);
    assert.equal((await search.json()).results.length, 3);

    const auth = { authorization: `Bearer ${TOKEN}` };
    for (const r of [
      await fetch(`${s.url}/v1/items`, {
        method: 'POST',
        headers: { 'content-type': 'image/png', ...auth },
        body: new Uint8Array(await fmnistPng(5001)),
      }),
      await fetch(`${s.url}/v1/items/1`, { method: 'DELETE', headers: auth }),
    ]) {
      const body = await r.json();
      assert.equal(r.status, 503, JSON.stringify(body));
      assert.equal(body.error.code, 'read-only');
      assert.ok(body.error.message.includes(f.indexDir), body.error.message);
    }
    assert.equal((await fetch(`${s.url}/v1/items/1`)).status, 200, 'item 1 is still there');
  } finally {
    s.child.kill('SIGTERM');
  }
  assert.equal(await s.exit, 0, s.stderr());
  assert.deepEqual(listing(f.indexDir), before, 'nothing in the directory changed');
});
