// recall@k of neighbour lists against reference lists: how evaluation, calibration, `index verify`
// and `bench index` all measure a search against exact search (or a cheaper encoder against XL).

/** Neighbour lists of Q queries: [Q, k] ids (or corpus rows), best first, -1 pads short lists. */
export interface Neighbours {
  k: number;
  ids: Int32Array;
}

export function checkK(nn: Neighbours, k: number): void {
  if (!Number.isInteger(k) || k < 1 || k > nn.k)
    throw new Error(`k = ${k}: expected an integer in 1..${nn.k} (the lists hold ${nn.k} neighbours)`);
}

/** Neighbour lists from one array of ids per query, padded with -1 to k. */
export function neighbours(lists: readonly (readonly number[])[], k: number): Neighbours {
  const ids = new Int32Array(lists.length * k).fill(-1);
  lists.forEach((l, q) => l.slice(0, k).forEach((id, j) => (ids[q * k + j] = id)));
  return { k, ids };
}

/**
 * recall@k's terms, one per query [Q]: |top-k(nn) ∩ top-k(reference)| / |top-k(reference)|. The
 * denominator is k unless the reference holds fewer items; a query with an empty reference list counts 1.
 */
export function recallPerQuery(nn: Neighbours, reference: Neighbours, k = Math.min(nn.k, reference.k)): Float64Array {
  checkK(nn, k);
  checkK(reference, k);
  const Q = nn.ids.length / nn.k;
  if (reference.ids.length / reference.k !== Q)
    throw new Error(`recall: ${Q} neighbour lists but ${reference.ids.length / reference.k} reference lists`);
  const out = new Float64Array(Q);
  for (let q = 0; q < Q; q++) {
    const want = new Set<number>();
    for (let j = 0; j < k; j++) if (reference.ids[q * reference.k + j] >= 0) want.add(reference.ids[q * reference.k + j]);
    let hits = 0;
    for (let j = 0; j < k; j++) if (want.has(nn.ids[q * nn.k + j])) hits++;
    out[q] = want.size ? hits / want.size : 1;
  }
  return out;
}

/** recall@k: the mean of recallPerQuery over queries (0 without queries). */
export function recallAt(nn: Neighbours, reference: Neighbours, k = Math.min(nn.k, reference.k)): number {
  const per = recallPerQuery(nn, reference, k);
  return per.length ? per.reduce((a, b) => a + b, 0) / per.length : 0;
}
