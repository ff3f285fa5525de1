// The importers' readers against files written by NumPy, Python's msgpack and Pillow
// (test/fixtures/write_arrays.py), and the position-embedding resampling against Pillow and the
// tests' plain-loop float64 reference (test/fixtures/import-reference.ts).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parseNpy, readNpz } from '../src/import/arrays.ts';
import { readFlaxMsgpack } from '../src/import/flax-msgpack.ts';
import { resampleGrid, resamplePosEmbed } from '../src/import/resample.ts';
import { referenceResample } from './fixtures/import-reference.ts';
import { readSourceJson, runFixture, tempDir } from './fixtures/python.ts';

const dir = tempDir({ after });
runFixture('write_arrays.py', dir);
const expected = readSourceJson(path.join(dir, 'arrays.json'));

function assertArrays(got: Record<string, { shape: number[]; data: Float32Array }>, names: string[], what: string) {
  for (const name of names) {
    const want = expected[name];
    assert.ok(got[name], `${what}: ${name} missing (got ${Object.keys(got).join(', ')})`);
    assert.deepEqual(got[name].shape, want.shape, `${what}: ${name} shape`);
    // float32 and float16 values are exact in float32; float64 ones are rounded to float32.
    got[name].data.forEach((v, i) => assert.equal(v, Math.fround(want.data[i]), `${what}: ${name}[${i}]`));
  }
}

describe('readNpz', () => {
  const names = ['f32', 'f64', 'f16', 'fortran', 'scalar', 'block/nested/kernel'];
  for (const file of ['arrays.npz', 'arrays-deflate.npz'])
    test(`${file}: every float array (Fortran order, float64, float16, 0-d) as NumPy wrote it; the int64 step left out`, () => {
      const got = readNpz(fs.readFileSync(path.join(dir, file)), file);
      assertArrays(got, names, file);
      assert.deepEqual(Object.keys(got).sort(), [...names].sort());
    });

  test('bad input: errors name the file and what is wrong', () => {
    assert.throws(() => readNpz(Buffer.from('not a zip'), 'x.npz'), /x\.npz: not a valid \.npz \(zip\) file/);
    const npy = Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from([0x40, 0x00])]);
    const header = (descr: string, shape: string) => {
      const h = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`.padEnd(63) + '\n';
      return Buffer.concat([Buffer.from('\x93NUMPY\x01\x00', 'latin1'), Buffer.from([h.length, 0]), Buffer.from(h, 'latin1')]);
    };
    assert.throws(
      () => parseNpy(Buffer.concat([header('<c8', '(2,)'), Buffer.alloc(16)]), 'a'),
      /a: not a valid \.npy array: dtype '<c8' is not a little-endian float type/,
    );
    assert.throws(() => parseNpy(Buffer.concat([header('<f4', '(2, 3)'), Buffer.alloc(8)]), 'b'), /b: 8 bytes of float32 for 6 values/);
    assert.throws(() => parseNpy(npy, 'c'), /c: not a valid \.npy array: header length 64 exceeds the file/);
    assert.equal(parseNpy(Buffer.concat([header('<i8', '()'), Buffer.alloc(8)]), 'd'), undefined);
  });
});

describe('readFlaxMsgpack', () => {
  test('ext type 1 arrays (float32, float16, bfloat16) by their path; the ext type 3 int scalar left out', () => {
    const got = readFlaxMsgpack(fs.readFileSync(path.join(dir, 'arrays.msgpack')), 'arrays.msgpack');
    assertArrays(got, ['tree/f32', 'tree/f16', 'tree/bf16'], 'msgpack');
    assert.deepEqual(Object.keys(got).sort(), ['tree/bf16', 'tree/f16', 'tree/f32']);
  });

  test('bad input: errors name the file and what is wrong', () => {
    assert.throws(() => readFlaxMsgpack(Buffer.from([0xc1]), 'm'), /m: not a valid msgpack file/);
    assert.throws(() => readFlaxMsgpack(Buffer.from([0x93, 1, 2, 3]), 'n'), /n: the msgpack document is not a map of parameters/);
  });
});

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('position-embedding resampling', () => {
  const cases: { size: number; newSize: number; grid: number[]; resized: number[] }[] = JSON.parse(
    fs.readFileSync(path.join(dir, 'resample.json'), 'utf8'),
  );

  for (const c of cases) {
    const kind = c.newSize > c.size ? 'up' : c.newSize < c.size ? 'down' : 'same size';
    test(`${c.size}x${c.size} -> ${c.newSize}x${c.newSize} (${kind}): Pillow and the plain-loop reference agree with resampleGrid`, () => {
      const got = resampleGrid(Float32Array.from(c.grid), [c.size, c.size], [c.newSize, c.newSize], 1);
      const pillow = maxDiff(got, c.resized);
      const reference = maxDiff(got, referenceResample(c.grid, c.size, c.newSize));
      assert.ok(pillow < 2e-6, `vs Pillow: max |diff| ${pillow.toExponential(2)}`);
      assert.ok(reference < 2e-6, `vs the reference: max |diff| ${reference.toExponential(2)}`);
      if (c.size === c.newSize) assert.deepEqual(Array.from(got), Array.from(Float32Array.from(c.grid)));
    });
  }

  test('channels resample independently, and pos_embed keeps its prefix rows', () => {
    const D = 3;
    const [n, m, prefix] = [4, 6, 2];
    const data = Float32Array.from({ length: (prefix + n * n) * D }, (_, i) => Math.sin(i * 1.7));
    const out = resamplePosEmbed({ shape: [1, prefix + n * n, D], data }, prefix, [n, n], [m, m]);
    assert.deepEqual(out.shape, [1, prefix + m * m, D]);
    assert.deepEqual(Array.from(out.data.subarray(0, prefix * D)), Array.from(data.subarray(0, prefix * D)));
    for (let d = 0; d < D; d++) {
      const channel = Array.from({ length: n * n }, (_, k) => data[(prefix + k) * D + d]);
      const want = referenceResample(channel, n, m);
      const got = Array.from({ length: m * m }, (_, k) => out.data[(prefix + k) * D + d]);
      assert.ok(maxDiff(got, want) < 2e-6, `channel ${d}`);
    }
    assert.throws(
      () => resamplePosEmbed({ shape: [1, 17, D], data: new Float32Array(17 * D) }, 0, [4, 4], [5, 5]),
      /pos_embed \[1,17,3\] is not \[1, 0 \+ 4x4, D\]/,
    );
  });
});
