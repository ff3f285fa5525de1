// tfjs-wasm on several cores (src/engine/tfjs-backend.ts loads the package's threaded build, which
// tfjs itself never uses in Node): the pool has the threads asked for, the process exits on its
// own afterwards, and results are bit-identical to one thread's.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { it } from 'node:test';
import { promisify } from 'node:util';

const child = path.join(import.meta.dirname, 'fixtures', 'tfjs-threads-child.ts');
const run = async (threads: number) => JSON.parse((await promisify(execFile)(process.execPath, ['--import', 'tsx', child, String(threads)], { timeout: 60_000, maxBuffer: 64 << 20 })).stdout);

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
