// zod schemas of the API's inputs. Options arrive as strings (query string, form fields) or JSON
// values; numeric fields take either, nothing looser (no "" -> 0, no [5] -> 5). A failure becomes
// one 400 naming the field, the value received and what the field accepts (ACCEPTED).
import { z } from 'zod';
import { checkFfnDims } from '../model/config.ts';
import { fieldIssues } from '../util/zod-error.ts';
import { invalidField } from './errors.ts';
import type { ServiceEntry, ServiceMenu } from './menu.ts';
import type { SearchOptions } from './service.ts';

export const MAX_K = 1000;
/** Class labels: -1 (none) to 2^31-1, the range of the index's in-memory labels (an Int32Array), so every read path agrees. */
export const LABEL_MAX = 2 ** 31 - 1;
const LABEL_RANGE = `-1..${LABEL_MAX}`;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A number, or a string that is exactly one. */
const numeric = z.union([z.number(), z.string().trim().regex(NUMBER, 'not a number').transform(Number)]);
const integer = (min: number, max = Number.MAX_SAFE_INTEGER) => numeric.pipe(z.number().int('not an integer').min(min).max(max));
const positive = numeric.pipe(z.number().positive().finite());

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

export function searchAccepted(menu: ServiceMenu, indexEf: number, customWidths = true): Record<string, string> {
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
    image: 'an image: multipart/form-data field "image", a raw image/* body, or JSON {"image": "<base64>"}',
  };
}

/**
 * Search options; encoder and ffnDims are resolved to a menu entry, or to explicit widths unless
 * `customWidths` is false (sessions.ts: each distinct width costs an engine session).
 */
export function searchSchema(menu: ServiceMenu, customWidths = true) {
  return z
    .object({
      k: integer(1, MAX_K).default(10),
      encoder: z.string().trim().min(1).optional(),
      ffnDims: widths.optional(),
      maxMflops: positive.optional(),
      maxLatencyMs: positive.optional(),
      ef: integer(1, 10000).optional(),
      label: integer(-1, LABEL_MAX).optional(),
    })
    .strict()
    .transform((o, ctx): SearchOptions => {
      let encoder: 'auto' | ServiceEntry = 'auto';
      const fail = (path: string, message: string) => {
        ctx.addIssue({ code: 'custom', path: [path], message });
        return z.NEVER;
      };
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
        if (named !== undefined && named !== 'auto')
          return fail('ffnDims', `give encoder or ffnDims, not both (encoder is "${o.encoder}")`);
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
      return { k: o.k, encoder, maxMflops: o.maxMflops, maxLatencyMs: o.maxLatencyMs, ef: o.ef, label: o.label };
    });
}

export const ADD_ACCEPTED: Record<string, string> = {
  label: `an integer class label in ${LABEL_RANGE}, -1 for none (default -1)`,
  labelName: 'a string of at most 200 characters',
  image: 'an image: multipart/form-data field "image", a raw image/* body, or JSON {"image": "<base64>"}',
};

export const addSchema = z.object({ label: integer(-1, LABEL_MAX).optional(), labelName: z.string().max(200).optional() }).strict();

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

/** safeParse -> the parsed value, or the 400 ApiError of the first issue (naming the field). */
export function parseOr400<S extends z.ZodType>(schema: S, raw: Record<string, unknown>, accepted: Record<string, string>): z.output<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = fieldIssues(r.error, raw, true)[0];
  const field = String(issue.path[0] ?? '');
  if (issue.unknownKey) throw invalidField(field, issue.received, `the fields ${Object.keys(accepted).join(', ')}`, 'unknown field');
  throw invalidField(field, issue.received, accepted[field] ?? 'see GET /v1/index', issue.message);
}
