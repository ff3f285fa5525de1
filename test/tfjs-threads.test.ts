// tfjs-wasm on several cores (src/engine/tfjs-backend.ts loads the package's threaded build, which
// tfjs itself never uses in Node): the pool has the threads asked for, the process exits on its
// own afterwards, and results are bit-identical to one thread's; when the threaded build cannot
// load, tfjs's own single-threaded one runs instead.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';
import { version_core } from '@tensorflow/tfjs-core';

const child = path.join(import.meta.dirname, 'fixtures', 'tfjs-threads-child.ts');
const run = async (threads: number, env: NodeJS.ProcessEnv = process.env) =>
  JSON.parse(
    (
      await promisify(execFile)(process.execPath, ['--import', 'tsx', child, String(threads)], {
        timeout: 60_000,
        maxBuffer: 64 << 20,
        env,
      })
    ).stdout,
  );

it('runs the wasm backend on the threads asked for, with the same forward pass and gradient as one thread', async () => {
  const [one, two] = [await run(1), await run(2)];
  assert.equal(one.threads, 1);
  assert.equal(two.threads, 2, two.log.join('\n'));
  assert.match(two.log.join('\n'), /backend wasm, 2 thread/);
  assert.equal(one.logits.length, 16 * 10);
  assert.deepEqual(two.logits, one.logits);
  assert.deepEqual(two.grad, one.grad);
  assert.ok(one.grad.some((g: number) => g !== 0));
});

it('falls back to the single-threaded build, with a message, when the threaded one cannot load', async () => {
  // A folder where the worker script has to be written makes the threaded loader fail.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-threads-'));
  fs.mkdirSync(path.join(tmp, `tfjs-backend-wasm-${version_core}-threaded-simd.worker.cjs`));
  try {
    const [one, fallback] = [await run(1), await run(2, { ...process.env, TMPDIR: tmp })];
    assert.equal(fallback.threads, 1);
    assert.match(fallback.log.join('\n'), /threaded build failed \(EISDIR.*single-threaded/);
    assert.deepEqual(fallback.logits, one.logits);
  } finally {
    fs.rmSync(tmp, { recursive: true });
  }
});
