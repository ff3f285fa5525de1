// The search filter: a small JSON grammar over an item's label and its payload (store-schema.ts),
// validated by zod and compiled to one SQL condition on the items table, so that the store, which
// holds the payloads, evaluates it (docs/search-api.md has the grammar with examples).
//
//   filter    := { FIELD: match, ..., "and": [filter, ...] }      every key must hold (at least one key)
//   FIELD     := "label" | "payload.NAME[.NAME...]"               NAME: letters, digits, _ (not first digit)
//   match     := scalar | { "eq": scalar } | { "in": [scalar, ...] } | { "gt"|"gte"|"lt"|"lte": number, ... }
//   scalar    := string | number | boolean
//
// Types are strict: {"payload.price": 1} matches the number 1, not the string "1" nor true, and
// ranges match numbers only; a field that is absent matches nothing.
import { z } from 'zod';

const MAX_IN = 1000;
const MAX_DEPTH = 8;
const MAX_CONDITIONS = 64;
const MAX_VALUES = 4096;
const FIELD = /^(label|payload(\.[A-Za-z_][A-Za-z0-9_]{0,63}){1,8})$/;

const scalar = z.union([z.string().max(1000), z.number().finite(), z.boolean()]);
export const FilterMatch = z.union(
  [
    scalar,
    z
      .object({
        eq: scalar.optional(),
        in: z.array(scalar).min(1).max(MAX_IN).optional(),
        gt: z.number().finite().optional(),
        gte: z.number().finite().optional(),
        lt: z.number().finite().optional(),
        lte: z.number().finite().optional(),
      })
      .strict()
      .refine((m) => Object.keys(m).length > 0, 'an empty condition: give eq, in, gt, gte, lt or lte'),
  ],
  { error: 'expected a string, number or boolean, or an object of eq, in, gt, gte, lt, lte' },
);
export type FilterMatch = z.infer<typeof FilterMatch>;

export type Filter = { and?: Filter[] } & { [field: string]: FilterMatch | Filter[] | undefined };

/** Recursive through the getter (zod 4's way, which z.toJSONSchema renders as a $ref). */
export const Filter: z.ZodType<Filter> = z
  .object({
    get and() {
      return z.array(Filter).min(1).max(MAX_CONDITIONS).optional();
    },
  })
  .catchall(FilterMatch)
  .superRefine((o, ctx) => {
    const keys = Object.keys(o);
    if (keys.length === 0) ctx.addIssue({ code: 'custom', message: 'an empty filter: give label, payload.NAME or and' });
    for (const k of keys)
      if (k !== 'and' && !FIELD.test(k))
        ctx.addIssue({
          code: 'custom',
          path: [k],
          message: 'not a field: label, payload.NAME[.NAME...] (NAME: letters, digits, _) or and',
        });
  })
  .meta({ id: 'Filter', propertyNames: { pattern: `^and$|${FIELD.source}` } }) as unknown as z.ZodType<Filter>;

/** A filter as SQL over the items table: `where` binds `params` positionally. */
export interface CompiledFilter {
  where: string;
  params: (string | number)[];
}

export type Scalar = string | number | boolean;
export type RangeOp = '>' | '>=' | '<' | '<=';

/** How a store writes the conditions of a filter in its SQL: a field equal to one of the scalars, a field within a numeric bound. */
export interface FilterDialect {
  oneOf(field: string, xs: readonly Scalar[]): string;
  range(field: string, op: RangeOp, x: number): string;
}

const OPS = { gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/** The SQL condition of a parsed filter in a store's dialect: every key's condition ANDed; throws past the limits on depth, conditions and values. */
export function filterCondition(f: Filter, d: FilterDialect): string {
  let conditions = 0,
    values = 0;
  const oneOf = (field: string, xs: readonly Scalar[]) => ((values += xs.length), d.oneOf(field, xs));
  const walk = (node: Filter, depth: number): string => {
    if (depth > MAX_DEPTH) throw new Error(`filter: nested deeper than ${MAX_DEPTH} levels of "and"`);
    const parts: string[] = [];
    for (const [key, m] of Object.entries(node)) {
      if (m === undefined) continue;
      if (++conditions > MAX_CONDITIONS) throw new Error(`filter: more than ${MAX_CONDITIONS} conditions`);
      if (key === 'and') {
        parts.push(...(m as Filter[]).map((f) => walk(f, depth + 1)));
        continue;
      }
      const match = m as FilterMatch;
      if (typeof match !== 'object') {
        parts.push(oneOf(key, [match]));
        continue;
      }
      if (match.eq !== undefined) parts.push(oneOf(key, [match.eq]));
      if (match.in !== undefined) parts.push(oneOf(key, match.in));
      for (const [op, sql] of Object.entries(OPS)) {
        const x = match[op as keyof typeof OPS];
        if (x !== undefined) parts.push((values++, d.range(key, sql, x)));
      }
    }
    return `(${parts.join(' AND ')})`;
  };
  const where = walk(f, 0);
  if (values > MAX_VALUES) throw new Error(`filter: more than ${MAX_VALUES} values in all`);
  return where;
}

/**
 * The SQLite condition of a parsed filter. Payload fields are read with json_extract and typed with
 * json_type (SQLite's JSON1: https://sqlite.org/json1.html), so that booleans, numbers and strings
 * never match each other; `label` is the indexed column.
 */
export function compileFilter(f: Filter): CompiledFilter {
  const params: (string | number)[] = [];
  const json = (field: string) => `'$.${field.slice('payload.'.length)}'`;
  /** `field` is one of `xs` (scalars, compared with their own JSON type): flat IN lists, as SQLite limits expression depth. */
  const oneOf = (field: string, xs: readonly Scalar[]): string => {
    const nums = xs.filter((x) => typeof x === 'number');
    const strs = xs.filter((x) => typeof x === 'string');
    const bools = [...new Set(xs.filter((x) => typeof x === 'boolean'))];
    const list = (vs: (string | number)[]) => (params.push(...vs), vs.map(() => '?').join(', '));
    if (field === 'label') return nums.length ? `label IN (${list(nums)})` : '0'; // labels are integers: nothing else matches
    const p = json(field);
    const parts: string[] = [];
    if (nums.length) parts.push(`(json_type(payload, ${p}) IN ('integer', 'real') AND json_extract(payload, ${p}) IN (${list(nums)}))`);
    if (strs.length) parts.push(`(json_type(payload, ${p}) = 'text' AND json_extract(payload, ${p}) IN (${list(strs)}))`);
    if (bools.length) parts.push(`json_type(payload, ${p}) IN (${bools.map((b) => `'${b}'`).join(', ')})`);
    return `(${parts.join(' OR ')})`;
  };
  const range = (field: string, op: RangeOp, x: number): string => {
    params.push(x);
    if (field === 'label') return `label ${op} ?`;
    const p = json(field);
    return `(json_type(payload, ${p}) IN ('integer', 'real') AND json_extract(payload, ${p}) ${op} ?)`;
  };
  return { where: filterCondition(f, { oneOf, range }), params };
}
