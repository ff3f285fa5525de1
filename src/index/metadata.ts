// `index build --metadata FILE.jsonl`: one JSON object per line, {"path": SOURCE, "payload": {...}},
// SOURCE as the index records it (the path relative to the corpus root, or 'idx:#N'). Every line is
// checked before anything is embedded, and an error names its line.
import fs from 'node:fs';
import { z } from 'zod';
import { formatZodError } from '../util/zod-error.ts';
import { payloadText } from './store-schema.ts';

const Line = z.object({ path: z.string().min(1), payload: z.record(z.string(), z.unknown()) }).strict();

/** Payloads by source; throws naming the file and line of the first bad or repeated one. */
export function readMetadata(file: string): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((text, i) => {
    if (text.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new Error(`${where}: not JSON (${(e as Error).message})`);
    }
    const r = Line.safeParse(value);
    if (!r.success)
      throw new Error(`${where}: ${formatZodError(r.error, value, { separator: '; ' })}; expected {"path": SOURCE, "payload": {...}}`);
    payloadText(r.data.payload, `${where}: payload`);
    if (out.has(r.data.path)) throw new Error(`${where}: ${r.data.path} already has a payload on an earlier line`);
    out.set(r.data.path, r.data.payload);
  });
  return out;
}
