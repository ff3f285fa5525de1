// The one function used from vega-statistics (it ships no types).
declare module 'vega-statistics' {
  /** The inverse of the standard normal CDF (mean 0, stdev 1 unless given). */
  export function quantileNormal(p: number, mean?: number, stdev?: number): number;
}
