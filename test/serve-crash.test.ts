// Crash test of online ingestion (issue 14): `matvit serve` (a child process) is SIGKILLed 10 times
// while 8 concurrent writers POST distinct images to /v1/items (and delete some of what they added),
// and restarted each time. Afterwards the index, opened directly, must hold every acknowledged item
// (lost 0) once (duplicated 0), no item whose delete was acknowledged (resurrected 0), its image
// file for every live upload, and no temp file of a killed upload. Writes whose answer the kill cut
// off have no known outcome and are left out of lost/resurrected (they may or may not be there).
// The counts are printed as a test diagnostic.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { VectorIndex } from '../src/index/vector-index.ts';
import { sha256Hex } from '../src/util/hash.ts';
import { type ServeChild, spawnServe } from './helpers/serve-child.ts';
import { type ServeFixture, serveFixture } from './helpers/serve-fixture.ts';

const TOKEN = 'crash-token';
const KILLS = 10;
const WRITERS = 8;
const auth = { authorization: `Bearer ${TOKEN}` };
let f: ServeFixture;

before(async () => {
  f = await serveFixture(30);
});
after(() => f?.cleanup());

/** A distinct 28x28 grayscale PNG per n (seeded noise), as a client would upload it. */
const image = (n: number) => {
  const rng = seedrandom(`crash-image-${n}`);
  return sharp(Buffer.from(Array.from({ length: 28 * 28 }, () => Math.floor(rng() * 256))), { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toBuffer();
};

/** Every file under `dir` whose name marks a temp file of an atomic write (NAME.tmp-PID-...). */
const temps = (dir: string): string[] =>
  (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => /\.tmp-\d+/.test(path.basename(p)));

test(`SIGKILL x${KILLS} under ${WRITERS} concurrent writers: nothing acknowledged is lost, duplicated or resurrected`, async (t) => {
  const rng = seedrandom('crash-schedule');
  const acked = new Map<number, string>(); // id -> sha256 of a 201
  const ackedIds: number[] = [];
  const deleted = new Set<number>(); // deletes answered 200
  const unknown = new Set<number>(); // deletes sent whose answer never came
  let next = 0;
  let cut = 0; // requests whose connection the kill cut

  for (let round = 0; round < KILLS; round++) {
    const s: ServeChild = await spawnServe(['--index', f.indexDir, '--log-level', 'warn'], { MATVIT_ADMIN_TOKEN: TOKEN });
    let killed = false;
    let firstAck!: () => void;
    const started = new Promise<void>((r) => (firstAck = r));
    const writer = async () => {
      while (!killed) {
        const bytes = await image(next++);
        const sha = sha256Hex(bytes);
        let r: Response;
        try {
          r = await fetch(`${s.url}/v1/items`, {
            method: 'POST',
            headers: { 'content-type': 'image/png', ...auth },
            body: new Uint8Array(bytes),
          });
        } catch {
          cut++;
          return;
        }
        const body = await r.json().catch(() => null);
        if (r.status !== 201) {
          assert.ok(killed, `add answered ${r.status}: ${JSON.stringify(body)}`);
          return;
        }
        acked.set(body.id, sha);
        ackedIds.push(body.id);
        firstAck();
        if (rng() < 0.25) {
          try {
            const d = await fetch(`${s.url}/v1/items/${body.id}`, { method: 'DELETE', headers: auth });
            if (d.status === 200) deleted.add(body.id);
            else assert.ok(killed, `delete answered ${d.status}`);
          } catch {
            unknown.add(body.id);
            cut++;
            return;
          }
        }
      }
    };
    const writers = Array.from({ length: WRITERS }, writer);
    await started;
    await new Promise((r) => setTimeout(r, 150 + rng() * 600));
    killed = true;
    s.child.kill('SIGKILL');
    assert.equal(await s.exit, null, 'killed by the signal');
    await Promise.all(writers);
  }

  // One last start: it cleans up after the last kill; then a clean shutdown.
  const last = await spawnServe(['--index', f.indexDir, '--log-level', 'warn'], { MATVIT_ADMIN_TOKEN: TOKEN });
  await last.ready();
  last.child.kill('SIGTERM');
  assert.equal(await last.exit, 0, last.stderr());

  const index = VectorIndex.open(f.indexDir, { mode: 'read' });
  try {
    const live = new Map<number, string>();
    for (const id of index.liveMatrix().ids) live.set(id, index.item(id)!.sha256);
    const liveBySha = new Map<string, number>();
    for (const sha of live.values()) liveBySha.set(sha, (liveBySha.get(sha) ?? 0) + 1);
    const expected = [...acked.keys()].filter((id) => !deleted.has(id) && !unknown.has(id));
    const present = expected.filter((id) => live.get(id) === acked.get(id)).length;
    const lost = expected.length - present;
    const duplicated = [...liveBySha.values()].filter((n) => n > 1).length + (ackedIds.length - new Set(ackedIds).size);
    const resurrected = [...deleted].filter((id) => live.has(id)).length;
    const missingImages = [...live].filter(([id, sha]) => {
      const src = index.item(id)!.source;
      if (!src.startsWith('upload:')) return false;
      const file = path.join(f.indexDir, 'uploads', src.slice('upload:'.length));
      return !fs.existsSync(file) || sha256Hex(fs.readFileSync(file)) !== sha;
    }).length;
    const leftovers = temps(f.indexDir);
    t.diagnostic(
      `kills ${KILLS}, writers ${WRITERS}: acknowledged ${acked.size} (deletes acknowledged ${deleted.size}, outcome unknown ${unknown.size}), ` +
        `present ${present}/${expected.length}, lost ${lost}, duplicated ${duplicated}, resurrected ${resurrected}, images missing ${missingImages}, ` +
        `leftover temp files ${leftovers.length}; requests cut by the kills ${cut}; live items ${live.size} (${f.n} built + ${live.size - f.n} added)`,
    );
    assert.ok(acked.size >= KILLS * WRITERS, `${acked.size} writes acknowledged: every round wrote`);
    assert.deepEqual(
      { lost, duplicated, resurrected, missingImages, leftovers },
      { lost: 0, duplicated: 0, resurrected: 0, missingImages: 0, leftovers: [] },
    );
  } finally {
    index.close();
  }
});
