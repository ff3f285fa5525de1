// A search filter (filter.ts) as a WHERE condition of the LanceDB store's items table, so that LanceDB
// applies it before the vector search (its default prefilter) with the SQLite store's semantics.
//
// Payload fields are read from payload_jsonb (the payload as Lance's JSONB, lance-tables.ts) with
// Lance's json_extract, which returns the value at a JSONPath as JSON text
// (https://github.com/lancedb/lance/blob/main/docs/src/guide/json.md). That text carries the type,
// which keeps types strict without a CASE (Lance's SQL planner has none):
//   - a string matches only its own JSON text, which is JSON.stringify's (tested for every non-surrogate
//     code point of the Basic Multilingual Plane in test/lance-filter.test.ts);
//   - true/false match only the texts 'true'/'false';
//   - a number matches TRY_CAST(text AS DOUBLE), which is NULL for a string (quoted), a boolean, null, an array or an object.
// A missing field gives NULL, and NULL is false in a WHERE (the grammar has no NOT).
// Client values reach the SQL only as literals: strings quoted with their ' doubled (standard SQL, no
// backslash escapes in DataFusion's parser), numbers as JS writes them (finite, zod checked), field names
// matched by filter.ts's FIELD pattern (letters, digits, _).
import { type Filter, type RangeOp, type Scalar, filterCondition } from './filter.ts';
import { lit } from './lance-tables.ts';

export const PAYLOAD_JSONB = 'payload_jsonb';

const INT32 = 2 ** 31;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A string as Lance's JSONB holds it: a lone UTF-16 surrogate (not Unicode, but JSON.stringify writes
 * it as an escape like \ud800) is kept as the six characters of its escape. So is that escape text
 * itself: the one place where two different payload strings read the same in this store.
 */
const asStored = (s: string) => s.replace(LONE_SURROGATE, (c) => `\\u${c.charCodeAt(0).toString(16)}`);

/** Whether a filter reads payload fields (an items table made before payload_jsonb cannot evaluate those). */
export const readsPayload = (f: Filter): boolean =>
  Object.entries(f).some(([k, m]) => (k === 'and' ? (m as Filter[]).some(readsPayload) : k.startsWith('payload.')));

/** The WHERE condition of a parsed filter on the LanceDB items table; throws past filter.ts's limits. */
export function lanceFilter(f: Filter): string {
  const text = (field: string) => `json_extract(${PAYLOAD_JSONB}, '$.${field.slice('payload.'.length)}')`;
  const number = (field: string) => `TRY_CAST(${text(field)} AS DOUBLE)`;
  const oneOf = (field: string, xs: readonly Scalar[]): string => {
    const nums = [...new Set(xs.filter((x) => typeof x === 'number'))];
    // label is an int32 column, and LanceDB refuses a literal it cannot convert to one: other numbers match no label anyway.
    if (field === 'label') {
      const ints = nums.filter((x) => Number.isInteger(x) && x >= -INT32 && x < INT32);
      return ints.length ? `label IN (${ints.join(', ')})` : 'FALSE';
    }
    const texts = [
      ...new Set(xs.filter((x) => typeof x !== 'number').map((x) => lit(JSON.stringify(typeof x === 'string' ? asStored(x) : x)))),
    ];
    const parts: string[] = [];
    if (nums.length) parts.push(`${number(field)} IN (${nums.map(String).join(', ')})`);
    if (texts.length) parts.push(`${text(field)} IN (${texts.join(', ')})`);
    return `(${parts.join(' OR ')})`;
  };
  const range = (field: string, op: RangeOp, x: number): string =>
    field === 'label' ? `CAST(label AS DOUBLE) ${op} ${x}` : `${number(field)} ${op} ${x}`;
  return filterCondition(f, { oneOf, range });
}

/** A filter this index cannot evaluate (serve answers 501 naming `filter`). */
export class FilterUnsupported extends Error {
  override name = 'FilterUnsupported';
}
