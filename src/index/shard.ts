// Sharded builds (`index build --shard i/n`): which items of a corpus go into which shard.
import { hash } from 'node:crypto';

/** One of n disjoint parts of a corpus; `index` is 1-based (as jest's and playwright's --shard i/n). */
export interface Shard {
  index: number;
  count: number;
}

/** Parses "i/n" (1 <= i <= n); the error names the value and the accepted form. */
export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const [index, count] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(index >= 1 && index <= count)) throw new Error(`shard "${s}": expected i/n with 1 <= i <= n (shard i of n, 1-based), e.g. 1/4`);
  return { index, count };
}

/**
 * The shard (0-based) of an item: by a hash of its source, not its position, so the split is the
 * same on every machine, stays put when the corpus grows, and a slice of a dataset splits like
 * the whole. The shards of one n are disjoint and together hold the whole corpus.
 */
export const shardOf = (source: string, count: number): number => hash('sha256', source, 'buffer').readUInt32BE(0) % count;
