// Fault injection: each way an index's files can be damaged or made unwritable, done to a copy of
// one tiny index (100 Fashion-MNIST images, a random 2-layer model), and what `matvit index verify`,
// `matvit index info` and `matvit serve` (child processes, as a user runs them) each do: exit
// codes and messages. Read-only commands must leave the evidence as they found it.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { type ServeFixture, fmnistPng, serveFixture } from './helpers/serve-fixture.ts';

const BIN = path.resolve(import.meta.dirname, '../bin/matvit.js');
const ACK_CHILD = path.resolve(import.meta.dirname, 'fixtures/index-ack-child.ts');
const N = 100;
let f: ServeFixture;

before(async () => {
  f = await serveFixture(N);
  fs.chmodSync(f.root, 0o755); // mkdtemp's 0700 would keep the unprivileged user of the read-only test out
  // The image serve is asked to add: a Fashion-MNIST test image that is not in the corpus.
  fs.writeFileSync(path.join(f.root, 'query.png'), await fmnistPng(N + 1));
});
after(() => f?.cleanup());

/** A fresh copy of the fixture's index, next to the model (the manifest's modelPath is relative). */
function copy(name: string): string {
  const dir = path.join(f.root, name);
  fs.cpSync(f.indexDir, dir, { recursive: true });
  return dir;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs as another user (uid, gid) when `as` is given: setpriv, as root can. */
const command = (args: string[], as?: number): [string, string[]] =>
  as === undefined
    ? [process.execPath, [BIN, ...args]]
    : ['setpriv', [`--reuid=${as}`, `--regid=${as}`, '--clear-groups', process.execPath, BIN, ...args]];

function collect(child: ChildProcess): Promise<Run> {
  return new Promise((resolve, reject) => {
    let stdout = '',
      stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const matvit = (args: string[], as?: number) => collect(spawn(...command(args, as), { stdio: ['ignore', 'pipe', 'pipe'] }));

interface Served extends Run {
  /** Whether it got as far as listening. */
  listened: boolean;
  /** GET /v1/index while it listened. */
  index?: { counts: { live: number } };
  /** POST /v1/items while it listened (writes enabled by the token). */
  write?: { status: number; body: { error?: { code: string; message: string } } };
}

/**
 * `matvit serve` on `dir`: either it exits on its own (refused), or it listens; then its index
 * info and a write are asked for, and it is stopped with SIGTERM.
 */
async function serve(dir: string, as?: number): Promise<Served> {
  const child = spawn(...command(['serve', '--index', dir, '--port', '0', '--log-level', 'warn'], as), {
    env: { ...process.env, MATVIT_ADMIN_TOKEN: 'faults' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const done = collect(child);
  let stderr = '';
  const url = await new Promise<string | null>((resolve) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    done.then(() => resolve(null));
  });
  if (url === null) return { ...(await done), listened: false };
  try {
    const index = (await (await fetch(`${url}/v1/index`)).json()).index;
    const r = await fetch(`${url}/v1/items`, {
      method: 'POST',
      headers: { authorization: 'Bearer faults', 'content-type': 'image/png' },
      body: new Uint8Array(fs.readFileSync(path.join(f.root, 'query.png'))),
    });
    const write = { status: r.status, body: await r.json() };
    child.kill('SIGTERM');
    return { ...(await done), listened: true, index, write };
  } catch (e) {
    child.kill('SIGTERM');
    await done;
    throw e;
  }
}

/**
 * sha256 of each file in `dir`, which read-only commands must leave as they are. Not evidence:
 * SQLite's -shm (shared memory, rebuilt from the write-ahead log by any connection) and an empty
 * -wal (a reader of a database in WAL mode creates one).
 */
function evidence(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir).sort()) {
    const bytes = fs.readFileSync(path.join(dir, f));
    if (!f.endsWith('-shm') && !(f.endsWith('-wal') && bytes.length === 0)) out[f] = createHash('sha256').update(bytes).digest('hex');
  }
  return out;
}

/** verify and info, which must not change a file. */
async function inspect(dir: string, as?: number): Promise<{ verify: Run; info: Run }> {
  const before = evidence(dir);
  const verify = await matvit(['index', 'verify', '--index', dir], as);
  const info = await matvit(['index', 'info', '--index', dir], as);
  assert.deepEqual(evidence(dir), before, 'verify and info leave every file as it was');
  return { verify, info };
}

const ms = String.raw`\d+ ms`;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('graph snapshot', () => {
  const faults: [string, (dir: string) => void, RegExp][] = [
    [
      'truncated',
      (dir) => fs.truncateSync(path.join(dir, 'graph.bin'), fs.statSync(path.join(dir, 'graph.bin')).size >> 1),
      /corrupt \(graph\.bin has \d+ bytes, the sidecar says \d+ \(truncated or replaced\)\)/,
    ],
    ['deleted', (dir) => fs.rmSync(path.join(dir, 'graph.bin')), /missing \(graph\.bin is missing\)/],
    [
      'corrupted',
      (dir) => {
        const file = path.join(dir, 'graph.bin');
        const b = fs.readFileSync(file);
        for (let i = b.length >> 1; i < (b.length >> 1) + 16; i++) b[i] ^= 0xff;
        fs.writeFileSync(file, b);
      },
      /corrupt \(graph\.bin sha256 [0-9a-f]{64} does not match the sidecar's [0-9a-f]{64}\)/,
    ],
  ];
  for (const [name, damage, what] of faults)
    test(`${name}: verify fails naming it, info shows it, serve rebuilds it and says so`, async () => {
      const dir = copy(`snapshot-${name}`);
      damage(dir);
      const { verify, info } = await inspect(dir);
      assert.equal(verify.code, 1, verify.stderr);
      assert.match(verify.stdout, /: NOT OK\n/);
      const found = new RegExp(
        String.raw`graph snapshot ${what.source}: rebuilt the graph from the ${N} live stored vectors in ${ms} in memory \(read-only: the files are left as they are\)`,
      );
      assert.match(verify.stdout, new RegExp(`  problem: ${found.source}`));
      assert.match(verify.stdout, new RegExp(`recall@10 1\\.0000 at ef 128 over ${N} queries`), 'the in-memory graph is whole');
      assert.equal(info.code, 0, info.stderr);
      assert.match(info.stdout, new RegExp(`  damage: ${found.source}`));

      const s = await serve(dir);
      assert.ok(s.listened, s.stderr);
      assert.equal(s.index?.counts.live, N);
      // The log (pino, on stdout) says what opening found and did.
      assert.match(
        s.stdout,
        new RegExp(
          String.raw`"index: graph snapshot ${what.source}: rebuilt the graph from the ${N} live stored vectors in ${ms} and wrote a new snapshot"`,
        ),
        'serve logs what it found and did',
      );
      assert.equal(s.code, 0, s.stderr);
      const again = await matvit(['index', 'verify', '--index', dir]);
      assert.equal(again.code, 0, `repaired by serve: ${again.stdout}`);
    });
});

/** The b-tree page of an SQLite index of the store (not page 1: the header), overwritten with 0xff. */
function damagePage(dir: string): number {
  const file = path.join(dir, 'store.sqlite');
  const db = new Database(file, { readonly: true });
  const page = (db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'items_live_source'").get() as { rootpage: number }).rootpage;
  const size = db.pragma('page_size', { simple: true }) as number;
  db.close();
  assert.ok(page > 1);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(16, 0xff), 0, 16, (page - 1) * size);
  fs.closeSync(fd);
  return page;
}

/**
 * One stored vector's bytes changed in the file, below SQLite: the low byte of its third float
 * (a change of about 1e-8, which no comparison with the graph's copy can see). The vector's bytes
 * may also sit in a free page; the copy whose change SQLite reads back is the live one.
 */
function damageVector(dir: string, id: number): void {
  const file = path.join(dir, 'store.sqlite');
  const read = () => {
    const db = new Database(file, { readonly: true });
    const v = (db.prepare('SELECT vector FROM items WHERE id = ?').get(id) as { vector: Buffer }).vector;
    db.close();
    return v;
  };
  const v = read();
  const bytes = fs.readFileSync(file);
  for (let at = bytes.indexOf(v); at >= 0; at = bytes.indexOf(v, at + 1)) {
    bytes[at + 8] ^= 0x01;
    fs.writeFileSync(file, bytes);
    if (!read().equals(v)) return;
    bytes[at + 8] ^= 0x01;
    fs.writeFileSync(file, bytes);
  }
  assert.fail(`the bytes of vector ${id} are not in ${file}`);
}

describe('store', () => {
  test('a damaged SQLite page: verify and info name the file and what SQLite reports; serve refuses to start', async () => {
    const dir = copy('sqlite-page');
    const page = damagePage(dir);
    const file = path.join(dir, 'store.sqlite');
    const report = new RegExp(
      escape(
        `${file} is damaged: SQLite's quick_check reports Tree ${page} page ${page}: btreeInitPage() returns error code 11. Restore the index directory from a backup, or build the index again`,
      ),
    );
    const { verify, info } = await inspect(dir);
    assert.equal(verify.code, 1);
    assert.match(verify.stdout, /SQLite quick_check: 1 fault\(s\)/);
    assert.match(verify.stdout, new RegExp(`  problem: ${report.source}`));
    const full = await matvit(['index', 'verify', '--full', '--index', dir]);
    assert.equal(full.code, 1);
    assert.match(full.stdout, new RegExp(escape(`${file} is damaged: SQLite's integrity_check reports`)));
    assert.equal(info.code, 0);
    assert.match(info.stdout, new RegExp(`  damage: ${report.source}`));
    const s = await serve(dir);
    assert.equal(s.listened, false);
    assert.equal(s.code, 1);
    assert.match(s.stderr, new RegExp(`error: ${report.source}`));
  });

  test('a changed stored vector: verify finds it by its checksum; serve answers from the intact graph copy', async () => {
    const dir = copy('vector-bytes');
    damageVector(dir, 7);
    const { verify, info } = await inspect(dir);
    assert.equal(verify.code, 1);
    assert.match(verify.stdout, /SQLite quick_check: ok/, 'SQLite does not check the bytes inside a blob');
    assert.match(verify.stdout, /vector checksums: 99 match, 1 do not/);
    assert.match(
      verify.stdout,
      new RegExp(
        escape(
          `  problem: 1 stored vector(s) of ${dir}/store.sqlite do not match their checksum (ids 7): their bytes changed outside SQLite.`,
        ),
      ),
    );
    assert.doesNotMatch(verify.stdout, /graph points differ/, 'a change this small is invisible to the sampled comparison with the graph');
    assert.equal(info.code, 0);
    const s = await serve(dir);
    assert.ok(s.listened, s.stderr);
    assert.equal(s.index?.counts.live, N);
    assert.equal(s.code, 0);
    // A rebuild reads every vector: compact reports the bad one (and exits 1).
    const compact = await matvit(['index', 'compact', '--index', dir]);
    assert.equal(compact.code, 1);
    assert.match(compact.stdout, /damage: 1 stored vector\(s\) of .* do not match their checksum \(ids 7\)/);
  });
});

describe('write-ahead log', () => {
  test('deleted after acknowledged writes: detected by verify, info and serve, which refuses; recover keeps ids monotonic', async () => {
    const dir = copy('lost-wal');
    // 3 acknowledged batches of 5 items, then SIGKILL: the log is never checkpointed into store.sqlite.
    const child = spawn(process.execPath, ['--import', 'tsx', ACK_CHILD, dir, '16', '3', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const done = collect(child);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('"done":true')) resolve();
      });
      done.then((r) => reject(new Error(`the writer exited first: ${r.stderr}`)));
    });
    child.kill('SIGKILL');
    await done;
    const acked = out
      .trim()
      .split('\n')
      .slice(0, 3)
      .flatMap((l) => JSON.parse(l).ids as number[]);
    assert.deepEqual(
      acked,
      Array.from({ length: 15 }, (_, i) => N + 1 + i),
    );
    assert.ok(fs.statSync(path.join(dir, 'store.sqlite-wal')).size > 0, 'the acknowledged writes are in the log');
    fs.rmSync(path.join(dir, 'store.sqlite-wal'));

    const what = `${dir}/store.sqlite holds changes up to seq ${N} and ids up to ${N}, but acked.json records changes up to seq ${N + 15} and ids up to ${N + 15} as acknowledged: 15 acknowledged change(s) are missing`;
    const how = `matvit index recover --index ${dir} --accept-loss`;
    const before = evidence(dir);
    const { verify, info } = await inspect(dir);
    assert.equal(verify.code, 1);
    assert.match(verify.stdout, new RegExp(escape(`  problem: ${what}`)));
    assert.ok(verify.stdout.includes(how));
    assert.equal(info.code, 0);
    assert.match(info.stdout, new RegExp(`items: ${N} live`));
    assert.match(info.stdout, new RegExp(escape(`  damage: ${what}`)));
    const s = await serve(dir);
    assert.equal(s.listened, false);
    assert.equal(s.code, 1);
    assert.ok(s.stderr.includes(`error: ${what}`), s.stderr);
    assert.ok(s.stderr.includes(how));
    assert.deepEqual(evidence(dir), before, 'serve rewrote nothing: the store, acked.json, the manifest and the snapshot are the evidence');

    const refused = await matvit(['index', 'recover', '--index', dir]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Pass --accept-loss to go on/);
    const recovered = await matvit(['index', 'recover', '--index', dir, '--accept-loss']);
    assert.equal(recovered.code, 0, recovered.stderr);
    assert.ok(recovered.stdout.includes(`recovered from the loss: ${what}`));
    assert.match(recovered.stdout, new RegExp(`goes on from seq ${N + 15} and id ${N + 15} with ${N} live items`));
    const ok = await matvit(['index', 'verify', '--index', dir]);
    assert.equal(ok.code, 0, ok.stdout);
    // The next item gets a new id, never one of the lost ones.
    const next = await collect(
      spawn(process.execPath, ['--import', 'tsx', ACK_CHILD, dir, '16', '1', '1', 'close'], { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    assert.deepEqual(JSON.parse(next.stdout.split('\n')[0]).ids, [N + 16], next.stderr);
  });
});

describe('read-only directory', () => {
  const uid = process.getuid?.();
  // Root writes anywhere: the unprivileged user runs the commands (setpriv, util-linux); a user
  // without root is unprivileged already, and the directory is made read-only for it.
  const setpriv =
    uid === 0 &&
    (() => {
      try {
        execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
  const as = setpriv ? 65534 : undefined;
  const reason = uid === 0 && !setpriv ? 'running as root without setpriv: no unprivileged user to run as' : undefined;
  if (reason) console.log(`# skipped read-only directory tests: ${reason}`);

  test(
    'verify and info work, writes are refused naming the directory and permission, serve serves read-only',
    { skip: reason },
    async (t) => {
      const dir = copy('read-only');
      // Root-owned 755 is not writable by the unprivileged user; a user of its own needs 555.
      if (as === undefined) {
        fs.chmodSync(dir, 0o555);
        t.after(() => fs.chmodSync(dir, 0o755));
      }
      // A temp file of a killed writer: a read-only open must leave it (and not trip on it).
      fs.writeFileSync(path.join(dir, 'graph.bin.tmp-999999-left'), 'partial');
      const runAs = as ?? uid!;
      const { verify, info } = await inspect(dir, as);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.equal(info.code, 0, info.stderr);
      assert.match(info.stdout, /opened: snapshot loaded/);
      const compact = await matvit(['index', 'compact', '--index', dir], as);
      assert.equal(compact.code, 1);
      assert.match(
        compact.stderr,
        new RegExp(
          escape(
            `error: ${dir} cannot be opened for writing: ${dir} is not writable by this process (mode ${as === undefined ? '555' : '755'}, owner uid ${fs.statSync(dir).uid}, this process runs as uid ${runAs}): EACCES.`,
          ),
        ),
      );
      const s = await serve(dir, as);
      assert.ok(s.listened, s.stderr);
      assert.equal(s.index?.counts.live, N);
      assert.equal(s.write?.status, 503, JSON.stringify(s.write));
      assert.equal(s.write?.body.error?.code, 'read-only');
      assert.equal(s.code, 0, s.stderr);
      assert.ok(fs.existsSync(path.join(dir, 'graph.bin.tmp-999999-left')));
    },
  );

  test(
    "a writable open's temp cleanup reports a file it cannot delete instead of throwing",
    { skip: reason ?? (as === undefined ? 'needs root to make a file the test user cannot delete' : undefined) },
    async () => {
      // A sticky, world-writable directory: the unprivileged user may write in it but not delete root's files.
      const dir = path.join(f.root, 'sticky');
      fs.mkdirSync(dir);
      fs.chmodSync(dir, 0o1777);
      fs.writeFileSync(path.join(dir, 'graph.bin.tmp-999999-left'), 'partial');
      const script = `import { removeStaleTemps } from ${JSON.stringify(path.resolve(import.meta.dirname, '../src/util/durable.ts'))};
      const failed = []; const removed = removeStaleTemps(${JSON.stringify(dir)}, (f, why) => failed.push([f, why]));
      console.log(JSON.stringify({ removed, failed }));`;
      const r = await collect(
        spawn(
          'setpriv',
          [`--reuid=${as}`, `--regid=${as}`, '--clear-groups', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        ),
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { removed: [], failed: [['graph.bin.tmp-999999-left', 'EPERM']] });
    },
  );
});
