import assert from 'node:assert/strict';
import { test } from 'node:test';
import seedrandom from 'seedrandom';
import { exactKnn } from '../src/engine/knn.ts';

/** Plain-loop reference: every score in float64, sorted by (score desc, index asc). */
function referenceKnn(q: Float32Array, c: Float32Array, dim: number, k: number): { ids: number[][]; scores: number[][] } {
  const Q = q.length / dim,
    N = c.length / dim;
  const ids: number[][] = [],
    scores: number[][] = [];
  for (let i = 0; i < Q; i++) {
    const all: [number, number][] = [];
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += q[i * dim + d] * c[j * dim + d];
      all.push([s, j]);
    }
    all.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    ids.push(all.slice(0, k).map(([, j]) => j));
    scores.push(all.slice(0, k).map(([s]) => s));
  }
  return { ids, scores };
}

const randn = (n: number, rng: () => number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);

test('exactKnn equals a plain-loop k-NN across query and corpus blocks', async () => {
  const rng = seedrandom('knn');
  const dim = 16,
    Q = 37,
    N = 301,
    k = 7;
  const q = randn(Q * dim, rng),
    c = randn(N * dim, rng);
  const ref = referenceKnn(q, c, dim, k);
  for (const blocks of [{}, { queryBlock: 5, corpusBlock: 40 }, { queryBlock: 64, corpusBlock: 3 }]) {
    const r = await exactKnn(q, c, dim, k, blocks);
    for (let i = 0; i < Q; i++) {
      assert.deepEqual(Array.from(r.ids.subarray(i * k, (i + 1) * k)), ref.ids[i], `query ${i} ${JSON.stringify(blocks)}`);
      for (let j = 0; j < k; j++) assert.ok(Math.abs(r.scores[i * k + j] - ref.scores[i][j]) < 1e-5);
    }
  }
});

test('exactKnn: ties keep the lower index; a corpus smaller than k pads with -1', async () => {
  const dim = 2;
  const c = Float32Array.of(1, 0, 1, 0, 0, 1); // rows 0 and 1 tie for the query (1, 0)
  const r = await exactKnn(Float32Array.of(1, 0), c, dim, 5, { corpusBlock: 1 });
  assert.deepEqual(Array.from(r.ids), [0, 1, 2, -1, -1]);
  assert.deepEqual(Array.from(r.scores.subarray(0, 3)), [1, 1, 0]);
});
