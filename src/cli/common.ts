// Shared plumbing of the CLI commands: options declared from their zod schema (the help shows the
// schema's default; commander gets none, so the schema's is the only one) and validated by it, with
// errors that name the flag.
import fs from 'node:fs';
import path from 'node:path';
import { Option } from 'commander';
import { z } from 'zod';
import { type ModelConfig, parseSubmodel, granularityDims, submodelName } from '../model/config.ts';
import { formatZodError } from '../util/zod-error.ts';
import { notWritable } from '../util/writable.ts';

export class UsageError extends Error {}

const flagName = (key: PropertyKey) => `--${String(key).replace(/[A-Z]/g, (m) => '-' + m.toLowerCase())}`;
const shown = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));

/**
 * A commander option for a field of `schema` (the field is the flag's attribute name, or `key`): its
 * help ends with the schema's default, or "(required)" when the field has none. Required options are
 * left to the schema, so that commander reports a misspelt flag (`--modle`) as unknown first.
 */
export function flag(schema: z.ZodObject, flags: string, description: string, key?: string): Option {
  const option = new Option(flags, description);
  const field = schema.shape[key ?? option.attributeName()] as z.ZodType | undefined;
  if (!field) throw new Error(`${flags}: the options schema has no field ${key ?? option.attributeName()}`);
  if (option.negate || !(option.required || option.optional)) return option; // a switch: its default needs no words
  const r = field.safeParse(undefined);
  if (!r.success) option.description += ' (required)';
  else if (r.data !== undefined && !(Array.isArray(r.data) && r.data.length === 0)) option.description += ` (default ${shown(r.data)})`;
  return option;
}

/** Parses commander's options with a zod schema; an error names the flag, the value and what is accepted. */
export function parseOptions<S extends z.ZodType>(schema: S, raw: Record<string, unknown>): z.infer<S> {
  if (schema instanceof z.ZodObject) {
    const missing = Object.entries(schema.shape as Record<string, z.ZodType>).filter(
      ([k, f]) => raw[k] === undefined && !f.safeParse(undefined).success,
    );
    if (missing.length)
      throw new UsageError(
        `required option${missing.length > 1 ? 's' : ''} ${missing.map(([k]) => flagName(k)).join(', ')} not given (see --help)`,
      );
  }
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  throw new UsageError(formatZodError(r.error, raw, { name: (p) => (p.length ? flagName(p[0]) : 'options'), topLevel: true }));
}

/** A --model directory: it must hold a checkpoint; the error says which path and what belongs there. */
export const modelDir = z
  .string()
  .min(1)
  .superRefine((dir, ctx) => {
    const why = !fs.existsSync(dir)
      ? 'no such directory'
      : !fs.existsSync(path.join(dir, 'config.json'))
        ? 'not a checkpoint (it holds no config.json)'
        : undefined;
    if (why)
      ctx.addIssue({
        code: 'custom',
        message: `${path.resolve(dir)}: ${why}; give a checkpoint directory written by matvit init, train or import (e.g. models/matvit-fmnist)`,
      });
  });

/**
 * A file a command writes at its end (--json, --csv, --out): its folder is created and checked when
 * the options are parsed, so that a long evaluation does not end in ENOENT or EACCES.
 */
export const outputFile = z
  .string()
  .min(1)
  .superRefine((file, ctx) => {
    const dir = path.dirname(path.resolve(file));
    let why: string | undefined;
    try {
      fs.mkdirSync(dir, { recursive: true });
      why = notWritable(dir, [path.basename(file)]);
    } catch (e) {
      why = `cannot create ${dir}: ${(e as Error).message}`;
    }
    if (why) ctx.addIssue({ code: 'custom', message: why });
  });

/** Comma-separated list -> string[] */
export const csv = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** --granularity / --ffn-dims -> checked ffnDims and a display name. Default: xl. */
export function submodelOption(c: ModelConfig, o: { granularity?: string; ffnDims?: string }): { name: string; ffnDims: number[] } {
  if (o.granularity && o.ffnDims) throw new UsageError('--granularity and --ffn-dims: give one, not both');
  let ffnDims: number[];
  try {
    ffnDims = o.ffnDims ? parseSubmodel(c, o.ffnDims) : o.granularity ? parseSubmodel(c, o.granularity) : granularityDims(c, 'xl');
  } catch (e) {
    throw new UsageError(`${o.ffnDims ? '--ffn-dims' : '--granularity'}: ${(e as Error).message}`);
  }
  return { name: submodelName(c, ffnDims), ffnDims };
}

export const printJson = (v: unknown) => process.stdout.write(JSON.stringify(v, null, 2) + '\n');
