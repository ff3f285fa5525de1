// The one formatter of zod errors (API 400s, CLI flags, files read from disk): each issue names its
// field, zod's message and the value received. Values are shown through `bounded`, which cuts
// depth, entries and string length without recursing past its limits, so a hostile value (thousands
// of nested arrays, a megabyte string, a cycle) can neither overflow the stack nor flood a log.
import type { z } from 'zod';

export interface Limits {
  /** Containers nested deeper than this are shown as '[...]' / '{...}'. */
  depth: number;
  /** Entries shown per array or object. */
  entries: number;
  /** Characters shown per string. */
  chars: number;
}

const LIMITS: Limits = { depth: 3, entries: 10, chars: 120 };

/** A JSON-safe copy of `v` cut to `limits` (never deeper than limits.depth calls). */
export function bounded(v: unknown, limits: Limits = LIMITS, depth = 0): unknown {
  if (typeof v === 'string') return v.length > limits.chars ? `${v.slice(0, limits.chars)}... (${v.length} chars)` : v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (v === null || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return `${v}n`;
  if (v === undefined || typeof v === 'function' || typeof v === 'symbol') return String(v);
  if (Buffer.isBuffer(v) || ArrayBuffer.isView(v)) return `(${(v as ArrayBufferView).byteLength} bytes)`;
  const isArray = Array.isArray(v);
  if (depth >= limits.depth) return isArray ? '[...]' : '{...}';
  if (isArray) {
    const out = v.slice(0, limits.entries).map((x) => bounded(x, limits, depth + 1));
    if (v.length > limits.entries) out.push(`... (${v.length} entries)`);
    return out;
  }
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const key in v as object) {
    if (!Object.hasOwn(v as object, key)) continue;
    if (n++ === limits.entries) {
      out['...'] = `(more than ${limits.entries} keys)`;
      break;
    }
    out[bounded(key, limits, limits.depth) as string] = bounded((v as Record<string, unknown>)[key], limits, depth + 1);
  }
  return out;
}

/** JSON text of the bounded value; 'nothing' for undefined. */
export const preview = (v: unknown, limits: Limits = LIMITS): string => (v === undefined ? 'nothing' : JSON.stringify(bounded(v, limits)));

/** The value at `path` inside `input`; undefined where the path leaves it. */
export function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let o = input;
  for (const k of path) {
    if (o === null || typeof o !== 'object' || !Object.hasOwn(o, k)) return undefined;
    o = (o as Record<PropertyKey, unknown>)[k];
  }
  return o;
}

/** 'rows[2].exact.top1'; '(top level)' for the empty path. */
export const fieldPath = (path: readonly PropertyKey[]): string =>
  path.map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i ? '.' : ''}${String(k)}`)).join('') || '(top level)';

export interface FieldIssue {
  path: PropertyKey[];
  message: string;
  /** The value found at `path` in the input (undefined when absent). */
  received: unknown;
  /** An unrecognized key of a strict object (one issue per key). */
  unknownKey: boolean;
}

/**
 * The issues of `error` against `input`, an unknown-keys issue split into one per key. With
 * `topLevel`, each is reported at its top-level field (CLI flags and API fields are flat).
 */
export function fieldIssues(error: z.ZodError, input: unknown, topLevel = false): FieldIssue[] {
  return error.issues.flatMap((i): FieldIssue[] => {
    const at = (p: PropertyKey[]) => (topLevel ? p.slice(0, 1) : p);
    if (i.code === 'unrecognized_keys')
      return i.keys.map((k) => ({
        path: at([...i.path, k]),
        message: 'unknown field',
        received: valueAt(input, at([...i.path, k])),
        unknownKey: true,
      }));
    const path = at(i.path as PropertyKey[]);
    return [{ path, message: i.message, received: valueAt(input, path), unknownKey: false }];
  });
}

export interface FormatOptions {
  /** How a field is named (default: fieldPath), e.g. '--max-batch' for a CLI flag. */
  name?: (path: PropertyKey[]) => string;
  /** Report each issue at its top-level field (see fieldIssues). */
  topLevel?: boolean;
  /** Between issues (default a newline). */
  separator?: string;
  limits?: Limits;
}

/** One line per issue: "<field>: <message> (received <value>)"; the value part only when one was given. */
export function formatZodError(error: z.ZodError, input: unknown, opts: FormatOptions = {}): string {
  const name = opts.name ?? fieldPath;
  return fieldIssues(error, input, opts.topLevel)
    .map((i) => `${name(i.path)}: ${i.message}${i.received === undefined ? '' : ` (received ${preview(i.received, opts.limits)})`}`)
    .join(opts.separator ?? '\n');
}
