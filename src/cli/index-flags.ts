// Option parsers shared by the `matvit index` commands.
import { z } from 'zod';
import { UsageError } from './common.ts';

export const count = (min: number) => {
  const error = `expected an integer >= ${min}`;
  return z.coerce.number({ error }).int(error).min(min, error);
};
/** `--flag value` parsed by `parse` (loaded with the action); its error names the flag and the value. */
export function parsedFlag<T>(name: string, value: string, parse: (v: string) => T): T {
  try {
    return parse(value);
  } catch (e) {
    throw new UsageError(`${name}: ${(e as Error).message} (received ${JSON.stringify(value)})`);
  }
}

/** The options of the commands that take only an index (and --json). */
export const IndexOnly = z.object({ index: z.string().min(1), json: z.boolean().default(false) });
