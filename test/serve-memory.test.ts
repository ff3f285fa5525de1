// Memory stays bounded whatever FFN widths clients ask for (issue 14 item 1): `matvit serve` (a child
// process) over an index of the shipped model gets 500 searches with distinct ffnDims. Each distinct
// width needs an ONNX Runtime session holding a copy of the weights; the server keeps menu entries
// plus `--custom-sessions` others. The bound is derived, not chosen: the per-session RSS cost is
// measured here (in this process, with the same engine), and after warm-up the server may not grow
// by more than (custom sessions + 1 being built) times that cost, plus what as many searches with a
// menu encoder grow it (V8 collects a request's garbage lazily), plus the garbage a new session
// leaves: its graph's bytes (built on the main thread, sent to the engine's worker) are external
// memory, which V8 lets grow by kExternalAllocationSoftLimit (64 MB, include/v8-internal.h in
// https://github.com/v8/v8) in each of the two isolates before it collects. Unbounded, the server
// would grow by (requests after warm-up) times the session cost. Figures: a test diagnostic.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OnnxEncoder } from '../src/engine/onnx.ts';
import { buildIndex } from '../src/index/build.ts';
import { loadCheckpoint } from '../src/model/checkpoint.ts';
import { type ServeChild, spawnServe } from './helpers/serve-child.ts';
import { fmnistPng } from './helpers/serve-fixture.ts';

const MODEL = fileURLToPath(new URL('../models/matvit-fmnist', import.meta.url));
const CUSTOM = 4;
const WARMUP = 100;
const TOTAL = 500;
/** V8's kExternalAllocationSoftLimit, in MB (see the header). */
const V8_EXTERNAL_SOFT_LIMIT = 64;

let root: string;
let server: ServeChild | undefined;

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-serve-memory-'));
  await buildIndex({ checkpoint: loadCheckpoint(MODEL), modelDir: MODEL, data: 'fashion-mnist:test[:100]', out: path.join(root, 'index') });
});

after(() => {
  server?.child.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

/** Distinct width vectors: the first layer's width 1 + (37 i mod 512) differs for every i < 512. */
function widths(i: number, depth: number, mlpDim: number): number[] {
  return Array.from({ length: depth }, (_, l) => 1 + ((i * 37 + l * 101) % mlpDim));
}

/** RSS added per ORT session of a distinct width: `n` sessions built after a first one (ORT's own start-up). */
async function perSessionMb(n: number): Promise<number> {
  const ck = loadCheckpoint(MODEL);
  const c = ck.meta.model;
  const enc = await OnnxEncoder.create(c, ck.weights, { threads: 1 });
  const input = new Float32Array(c.channels * c.imageSize * c.imageSize);
  try {
    await enc.encode(input, widths(1000, c.depth, c.mlpDim));
    const r0 = rssMb(process.pid);
    for (let i = 0; i < n; i++) await enc.encode(input, widths(WARMUP + i * 40, c.depth, c.mlpDim));
    return (rssMb(process.pid) - r0) / n;
  } finally {
    await enc.dispose();
  }
}

test(`${TOTAL} searches with distinct ffnDims: the server's RSS stays bounded`, async (t) => {
  const per = await perSessionMb(10);
  assert.ok(per > 0.5, `a session of the shipped model costs ${per.toFixed(2)} MB: the measurement saw it`);

  server = await spawnServe([
    '--index',
    path.join(root, 'index'),
    '--threads',
    '1',
    '--custom-sessions',
    String(CUSTOM),
    '--log-level',
    'warn',
  ]);
  await server.ready();
  const { url } = server;
  const pid = server.child.pid!;
  const { depth, mlpDim } = (await (await fetch(`${url}/v1/index`)).json()).model;
  const png = await fmnistPng(4321);
  /** Search i: distinct widths, or the menu's m (the control) when i < 0. */
  const search = async (i: number) => {
    const q = i < 0 ? 'encoder=m' : `ffnDims=${widths(i, depth, mlpDim).join(',')}`;
    const r = await fetch(`${url}/v1/search?${q}&k=3`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: new Uint8Array(png),
    });
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    if (i >= 0) assert.equal(body.encoder.ffnDims.join(), widths(i, depth, mlpDim).join());
  };
  /** Runs searches from..to-1, sampling RSS every 10; the largest growth over `base` seen. */
  const phase = async (from: number, to: number, base: number) => {
    let peak = base;
    for (let i = from; i < to; i++) {
      await search(i);
      if ((i - from + 1) % 10 === 0) peak = Math.max(peak, rssMb(pid));
    }
    return Math.max(peak, rssMb(pid)) - base;
  };

  const start = rssMb(pid);
  await phase(0, WARMUP, start);
  const warm = rssMb(pid);
  const control = await phase(-(TOTAL - WARMUP), 0, warm);
  const before = rssMb(pid);
  const growth = await phase(WARMUP, TOTAL, before);
  const end = rssMb(pid);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const held = Number(/^matvit_custom_sessions (\d+)/m.exec(metrics)![1]);
  const evicted = Number(/^matvit_session_evictions_total (\d+)/m.exec(metrics)![1]);
  const bound = control + (CUSTOM + 1) * per + 2 * V8_EXTERNAL_SOFT_LIMIT;
  t.diagnostic(
    `per session ${per.toFixed(2)} MB; server RSS: ready ${start.toFixed(0)} MB, after ${WARMUP} distinct widths ${warm.toFixed(0)} MB, ` +
      `+${control.toFixed(1)} MB over ${TOTAL - WARMUP} searches with m (control), then +${growth.toFixed(1)} MB over ${TOTAL - WARMUP} more distinct widths ` +
      `(bound ${bound.toFixed(1)} MB = control + ${CUSTOM}+1 sessions + 2 x ${V8_EXTERNAL_SOFT_LIMIT} MB of V8 external garbage; unbounded ~${((TOTAL - WARMUP) * per).toFixed(0)} MB), end ${end.toFixed(0)} MB; ` +
      `sessions held ${held}, released ${evicted}`,
  );
  assert.equal(held, CUSTOM);
  assert.equal(evicted, TOTAL - CUSTOM);
  assert.ok(
    growth < bound,
    `RSS grew ${growth.toFixed(1)} MB over ${TOTAL - WARMUP} distinct widths after warm-up; bound ${bound.toFixed(1)} MB`,
  );
});
