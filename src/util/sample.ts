// A seeded sample without replacement, so reruns measure on the same items (index verify, bench index).
import seedrandom from 'seedrandom';

/** The first `n` items of a seeded Fisher-Yates shuffle of a copy of `items`. */
export function seededSample<T>(items: readonly T[], n: number, seed: string): T[] {
  const rng = seedrandom(seed);
  const a = [...items];
  const m = Math.min(n, a.length);
  for (let i = 0; i < m; i++) {
    const j = i + Math.floor(rng() * (a.length - i));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, m);
}
