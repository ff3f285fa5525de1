// The live items matching a search filter, kept per filter while the index does not change: the
// store evaluates a filter by reading every item's payload, so repeated filters (facets) pay it once.
import type { Filter } from './filter.ts';

export interface Matches {
  /** Matching live ids, ascending. */
  ids: Int32Array;
  /** bits[id] = 1 for a matching id. */
  bits: Uint8Array;
}

export class MatchCache {
  /** A Map iterates in insertion order: the first key is the least recently used. */
  private readonly entries = new Map<string, Matches & { seq: number }>();

  constructor(private readonly size: number) {}

  /** The matches of `filter` as of the index state `seq`, from `evaluate` when not kept for that state. */
  get(filter: Filter, seq: number, evaluate: () => Int32Array): Matches {
    const key = JSON.stringify(filter);
    const hit = this.entries.get(key);
    this.entries.delete(key);
    if (hit && hit.seq === seq) return (this.entries.set(key, hit), hit);
    const ids = evaluate();
    const bits = new Uint8Array(ids.length ? ids[ids.length - 1] + 1 : 0);
    for (const id of ids) bits[id] = 1;
    const m = { seq, ids, bits };
    this.entries.set(key, m);
    if (this.entries.size > this.size) this.entries.delete(this.entries.keys().next().value!);
    return m;
  }
}
