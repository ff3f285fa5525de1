// The one zod-error formatter (src/util/zod-error.ts): field names, messages, values received, and
// bounded output on hostile values (deep nesting, cycles, huge strings, many keys).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { bounded, fieldIssues, formatZodError, preview } from '../src/util/zod-error.ts';

/** [[[...]]] nested `levels` deep, built without recursion. */
function nested(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

test('bounded: deep nesting, cycles, long strings, many entries and odd values stay small', () => {
  assert.throws(() => JSON.stringify(nested(200_000)), RangeError, 'the hostile value does overflow JSON.stringify');
  assert.equal(preview(nested(200_000)), '[[["[...]"]]]');
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  assert.equal(preview(cycle), '{"a":1,"self":{"a":1,"self":{"a":1,"self":"{...}"}}}');
  const long = 'x'.repeat(1_000_000);
  assert.equal(bounded(long), `${'x'.repeat(120)}... (1000000 chars)`);
  const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i]));
  assert.deepEqual(Object.keys(bounded(many) as object), [...Array.from({ length: 10 }, (_, i) => `k${i}`), '...']);
  assert.deepEqual(bounded(Array.from({ length: 50 }, (_, i) => i)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, '... (50 entries)']);
  assert.deepEqual(bounded([NaN, Infinity, 10n, undefined, Buffer.alloc(7)]), ['NaN', 'Infinity', '10n', 'undefined', '(7 bytes)']);
  assert.equal(preview(undefined), 'nothing');
});

test('formatZodError: one line per issue, named fields, values received; unknown keys one by one', () => {
  const schema = z.object({ k: z.number().int(), name: z.string(), inner: z.object({ w: z.array(z.number()) }).strict() }).strict();
  const input = { k: 2.5, name: 'ok', inner: { w: [1, 'two'], extra: true }, colour: 'red' };
  const r = schema.safeParse(input);
  assert.ok(!r.success);
  const lines = formatZodError(r.error, input).split('\n').sort();
  assert.deepEqual(lines, [
    'colour: unknown field (received "red")',
    'inner.extra: unknown field (received true)',
    'inner.w[1]: Invalid input: expected number, received string (received "two")',
    'k: Invalid input: expected int, received number (received 2.5)',
  ]);
  // topLevel: reported at the top-level field (CLI flags, API fields), with that field's whole value.
  const top = fieldIssues(r.error, input, true).find((i) => i.path[0] === 'inner' && !i.unknownKey)!;
  assert.deepEqual(top.path, ['inner']);
  assert.deepEqual(top.received, input.inner);
  const named = formatZodError(r.error, input, { name: (p) => `--${String(p[0])}`, topLevel: true, separator: '; ' });
  assert.match(named, /--k: .*\(received 2\.5\)/);
  assert.match(named, /; /);
  // A missing field has no value to show.
  const missing = z.object({ a: z.string() }).safeParse({});
  assert.equal(formatZodError(missing.error!, {}), 'a: Invalid input: expected string, received undefined');
});

test('formatZodError on a hostile value does not overflow', () => {
  const input = { k: nested(100_000) };
  const r = z.object({ k: z.number() }).safeParse(input);
  assert.equal(formatZodError(r.error!, input), 'k: Invalid input: expected number, received array (received [[["[...]"]]])');
});
