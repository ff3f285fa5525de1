// zod schemas of the API's inputs. Options arrive as strings (query string, form fields) or JSON
// values; numeric fields take either, nothing looser (no "" -> 0, no [5] -> 5). A failure becomes
// one 400 naming the field, the value received and what the field accepts (ACCEPTED).
import { z } from 'zod';
import { Filter, compileFilter } from '../index/filter.ts';
import { MAX_PAYLOAD_BYTES } from '../index/store-schema.ts';
import { checkFfnDims } from '../model/config.ts';
import { fieldIssues, fieldPath } from '../util/zod-error.ts';
import { invalidField } from './errors.ts';
import type { ServiceEntry, ServiceMenu } from './menu.ts';
import type { SearchOptions } from './service.ts';

export const MAX_K = 1000;
/** How far |vector| may be from 1: a float32 unit vector computed anywhere is within 1e-5 of it. */
export const NORM_TOLERANCE = 1e-3;
/** Class labels: -1 (none) to 2^31-1, the range of the index's in-memory labels (an Int32Array), so every read path agrees. */
export const LABEL_MAX = 2 ** 31 - 1;
const LABEL_RANGE = `-1..${LABEL_MAX}`;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A number, or a string that is exactly one. */
const numeric = z.union([z.number(), z.string().trim().regex(NUMBER, 'not a number').transform(Number)]);
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) => numeric.pipe(z.number().int('not an integer').min(min).max(max));
const positive = numeric.pipe(z.number().positive().finite());
const boolean = z.union([z.boolean(), z.enum(['true', 'false']).transform((s) => s === 'true')]);
/** A JSON value, or its JSON text (query strings and form fields carry only text). */
const jsonOrText = <S extends z.ZodType>(schema: S) =>
  z.union([
    z
      .string()
      .transform((s, ctx) => {
        try {
          return JSON.parse(s) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'not valid JSON' });
          return z.NEVER;
        }
      })
      .pipe(schema),
    schema,
  ]);

/** A payload: a JSON object of at most MAX_PAYLOAD_BYTES (the store checks again). */
export const Payload = z
  .record(z.string(), z.unknown())
  .refine((p) => Buffer.byteLength(JSON.stringify(p)) <= MAX_PAYLOAD_BYTES, `larger than ${MAX_PAYLOAD_BYTES} bytes of JSON`);

/** A query vector: JSON numbers, or base64 of little-endian float32 (4 bytes per entry). */
const vectorInput = z.union([
  z.array(z.number()).max(65536),
  z
    .string()
    .max(65536 * 6)
    .refine((s) => /^[A-Za-z0-9+/]*={0,2}$/.test(s) && s.length % 4 === 0, 'not valid base64')
    .transform((s, ctx) => {
      const b = Buffer.from(s, 'base64');
      if (b.length % 4 !== 0) {
        ctx.addIssue({ code: 'custom', message: `${b.length} bytes: not whole float32 entries (4 bytes each)` });
        return z.NEVER;
      }
      const out = new Float32Array(b.length / 4);
      for (let i = 0; i < out.length; i++) out[i] = b.readFloatLE(i * 4);
      return Array.from(out);
    }),
]);

/** Why `v` is not a unit vector of `dim` finite entries, or undefined when it is. */
function vectorProblem(v: readonly number[], dim: number): string | undefined {
  if (v.length !== dim) return `${v.length} entries; the model's embeddings have ${dim}`;
  let s = 0;
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) return `entry ${i} is ${v[i]}: entries must be finite`;
    s += v[i] * v[i];
  }
  const norm = Math.sqrt(s);
  if (Math.abs(norm - 1) > NORM_TOLERANCE) return `its norm is ${norm.toPrecision(6)}; expected a unit vector (within ${NORM_TOLERANCE})`;
}

/** Widths as a JSON array or comma-separated. */
const widths = z
  .union([z.array(numeric), z.string().transform((s) => s.split(',').map((p) => Number(p.trim())))])
  .pipe(z.array(z.number().int('not an integer')));

/** Image bytes from base64 (a data: URL prefix is allowed, as browsers produce them). */
export const base64Image = z
  .string()
  .transform((s) => s.replace(/^data:[^;,]*;base64,/, '').replace(/\s+/g, ''))
  .refine((s) => s.length > 0, 'empty')
  .refine((s) => /^[A-Za-z0-9+/_-]*={0,2}$/.test(s) && s.length % 4 !== 1, 'not valid base64')
  .transform((s) => Buffer.from(s, 'base64'));

export function searchAccepted(
  menu: ServiceMenu,
  indexEf: number,
  customWidths: boolean,
  dim: number,
  fingerprint: string,
): Record<string, string> {
  const c = menu.config;
  const names = menu.entries.map((e) => e.name).join(', ');
  const widthsText = customWidths
    ? `${c.depth} comma-separated FFN widths, one per layer, each an integer in 1..${c.mlpDim}`
    : `the FFN widths of a menu entry (${menu.entries.map((e) => e.ffnDims.join(',')).join('; ')}): other widths are disabled on this server`;
  return {
    k: `an integer in 1..${MAX_K} (default 10)`,
    encoder: `auto (default), ${names}, or ${widthsText}`,
    ffnDims: widthsText + ' (or a JSON array)',
    maxMflops: `a positive number of MFLOPs per query (the encoders cost ${menu.entries.map((e) => `${e.name} ${e.mflops.toFixed(2)}`).join(', ')})`,
    maxLatencyMs: 'a positive number of milliseconds (batch-1 encode latency measured on this machine at startup)',
    ef: `an integer in 1..10000 (default: the index's ef, ${indexEf})`,
    label: `an integer class label in ${LABEL_RANGE} (-1: unlabelled items)`,
    filter:
      'a filter object (or its JSON text): {"label": 3}, {"label": {"in": [1, 2]}}, {"payload.NAME": {"gte": 1, "lt": 5}}, {"and": [...]} (docs/search-api.md)',
    scoreThreshold: 'a number: only results scoring at least this',
    offset: `an integer in 0..${MAX_K - 1}: results to skip (paging); k + offset at most ${MAX_K}`,
    withPayload: "true or false (default): return each result's payload",
    vector: `${dim} float32 entries of unit norm: a JSON array or base64 of little-endian float32, with model and encoder`,
    model: `the fingerprint of this server's model (${fingerprint}), required with vector`,
    id: 'a positive integer item id: search with its stored vector, itself excluded',
    image: 'an image: multipart/form-data field "image", a raw image/* body, or JSON {"image": "<base64>"}',
  };
}

/** What a search request asks for besides an image: a vector (with the entry that made it) or an item id, and the options. */
export interface SearchFields {
  options: SearchOptions;
  vector?: { vector: Float32Array; entry: ServiceEntry };
  id?: number;
}

/** The search fields as sent (query string, form or JSON), before they are resolved: what OpenAPI describes. */
export const SearchFieldsSchema = z
  .object({
    k: integer(1, MAX_K).default(10),
    encoder: z.string().trim().min(1).optional(),
    ffnDims: widths.optional(),
    maxMflops: positive.optional(),
    maxLatencyMs: positive.optional(),
    ef: integer(1, 10000).optional(),
    label: integer(-1, LABEL_MAX).optional(),
    filter: jsonOrText(Filter).optional(),
    scoreThreshold: numeric.pipe(z.number().finite()).optional(),
    offset: integer(0, MAX_K - 1).default(0),
    withPayload: boolean.default(false),
    vector: vectorInput.optional(),
    model: z.string().optional(),
    id: integer(1).optional(),
  })
  .strict();

/** POST /v1/search as JSON, and each query of a batch: the fields and, for an image, its base64. */
export const SearchRequest = SearchFieldsSchema.extend({
  image: z.string().optional().describe('the image file, base64 (a data: URL is allowed)'),
}).meta({
  id: 'SearchRequest',
  description: 'exactly one of image, vector or id; the other fields are options',
});
export const BatchRequest = z
  .object({ queries: z.array(SearchRequest).min(1) })
  .strict()
  .meta({ id: 'BatchRequest' });

/**
 * Search fields, resolved: encoder and ffnDims to a menu entry, or to explicit widths unless
 * `customWidths` is false (sessions.ts: each distinct width costs an engine session); a vector
 * checked against the model (fingerprint, dim, unit norm).
 */
export function searchSchema(menu: ServiceMenu, customWidths: boolean, dim: number, fingerprint: string) {
  return SearchFieldsSchema.transform((o, ctx): SearchFields => {
    let encoder: 'auto' | ServiceEntry = 'auto';
    const fail = (path: string, message: string) => {
      ctx.addIssue({ code: 'custom', path: [path], message });
      return z.NEVER;
    };
    for (const key of ['maxMflops', 'maxLatencyMs'] as const)
      if (o[key] !== undefined && (o.vector !== undefined || o.id !== undefined))
        return fail(key, 'only with an image: a vector or an item is not encoded here');
    const named = o.encoder?.toLowerCase();
    const widths = (dims: number[]) => {
      const entry = menu.forFfnDims(checkFfnDims(menu.config, dims));
      if (entry.origin === 'request' && !customWidths)
        throw new Error(
          `widths outside the menu are disabled on this server (matvit serve --no-custom-widths); the menu: ${menu.entries.map((e) => `${e.name} = ${e.ffnDims.join(',')}`).join('; ')}`,
        );
      return entry;
    };
    if (o.ffnDims !== undefined) {
      if (named !== undefined && named !== 'auto') return fail('ffnDims', `give encoder or ffnDims, not both (encoder is "${o.encoder}")`);
      try {
        encoder = widths(o.ffnDims);
      } catch (e) {
        return fail('ffnDims', (e as Error).message);
      }
    } else if (named !== undefined && named !== 'auto') {
      const entry = menu.byName(o.encoder!) ?? menu.byName(named);
      if (entry) encoder = entry;
      else if (named.includes(',')) {
        const dims = named.split(',').map((p) => Number(p.trim()));
        try {
          encoder = widths(dims);
        } catch (e) {
          return fail('encoder', (e as Error).message);
        }
      } else return fail('encoder', 'not an encoder of this model');
    }
    if (o.filter !== undefined)
      try {
        compileFilter(o.filter); // its limits on size and depth
      } catch (e) {
        return fail('filter', (e as Error).message.replace(/^filter: /, ''));
      }
    if (o.k + o.offset > MAX_K) return fail('offset', `k + offset is ${o.k + o.offset}, more than ${MAX_K}`);
    const options: SearchOptions = {
      k: o.k,
      encoder,
      maxMflops: o.maxMflops,
      maxLatencyMs: o.maxLatencyMs,
      ef: o.ef,
      label: o.label,
      filter: o.filter,
      scoreThreshold: o.scoreThreshold,
      offset: o.offset,
      withPayload: o.withPayload,
    };
    if (o.vector === undefined && o.model !== undefined) return fail('model', 'only with vector');
    if (o.vector === undefined) return { options, id: o.id };
    if (o.id !== undefined) return fail('id', 'give one of image, vector or id');
    if (o.model === undefined) return fail('model', 'required with vector: the fingerprint of the model that made it (GET /v1/index)');
    if (o.model !== fingerprint) return fail('model', `the vector was made by another model; this server's is ${fingerprint}`);
    const problem = vectorProblem(o.vector, dim);
    if (problem) return fail('vector', problem);
    if (encoder === 'auto') return fail('encoder', 'required with vector: the menu entry (or widths) that made it');
    return { options, vector: { vector: Float32Array.from(o.vector), entry: encoder } };
  });
}

export const ADD_ACCEPTED: Record<string, string> = {
  label: `an integer class label in ${LABEL_RANGE}, -1 for none (default -1)`,
  labelName: 'a string of at most 200 characters',
  payload: `a JSON object (or its JSON text) of at most ${MAX_PAYLOAD_BYTES} bytes, stored with the item`,
  image: 'an image: multipart/form-data field "image", a raw image/* body, or JSON {"image": "<base64>"}',
};

export const addSchema = z
  .object({ label: integer(-1, LABEL_MAX).optional(), labelName: z.string().max(200).optional(), payload: jsonOrText(Payload).optional() })
  .strict();
export const AddRequest = addSchema.extend({ image: z.string().describe('the image file, base64') }).meta({ id: 'AddRequest' });

export const idSchema = z
  .object({
    id: z
      .string()
      .regex(/^\d{1,15}$/, 'not a positive integer')
      .transform(Number)
      .pipe(z.number().int().positive()),
  })
  .strict();
export const ID_ACCEPTED = { id: 'a positive integer item id' };

/**
 * A union's failure as the failure of the branch that got furthest (the deepest path; a type
 * mismatch at the union itself last): {"filter": {"label": {}}} is about filter.label, not about
 * filter being neither JSON text nor an object.
 */
function unionBranch(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return issue;
  const branches = issue.errors.filter((b) => b.length > 0).map((b) => unionBranch({ ...b[0], path: [...issue.path, ...b[0].path] }));
  const rank = (i: z.core.$ZodIssue) => i.path.length * 2 + (i.code === 'invalid_type' ? 0 : 1);
  return branches.sort((a, b) => rank(b) - rank(a))[0] ?? issue;
}

/** safeParse -> the parsed value, or the 400 ApiError of the first issue (naming the field). */
export function parseOr400<S extends z.ZodType>(schema: S, raw: Record<string, unknown>, accepted: Record<string, string>): z.output<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = fieldIssues(new z.ZodError(r.error.issues.map(unionBranch)), raw)[0];
  const field = String(issue.path[0] ?? '');
  if (issue.unknownKey && issue.path.length === 1)
    throw invalidField(field, issue.received, `the fields ${Object.keys(accepted).join(', ')}`, 'unknown field');
  // Inside a structured field (a filter), the message names the path within it.
  const why = issue.path.length > 1 ? `at ${fieldPath(issue.path)}: ${issue.message}` : issue.message;
  throw invalidField(field, issue.received, accepted[field] ?? 'see GET /v1/index', why);
}
