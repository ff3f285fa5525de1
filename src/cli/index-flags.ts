// Option parsers shared by the `matvit index` commands.
import type { Command } from 'commander';
import { z } from 'zod';
import { LanceParams, type LanceParamsInput } from '../index/lance-params.ts';
import { UsageError, flag } from './common.ts';

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

/** The LanceDB settings of a new index (index/lance-params.ts): derived or defaulted there when not given. */
export const LanceFlags = {
  ann: LanceParams.shape.ann.optional(),
  annMinRows: count(256).optional(),
  partitions: count(1).optional(),
  subVectors: count(1).optional(),
  nprobes: count(1).optional(),
  refineFactor: count(1).optional(),
};

/** Flags of the commands that create an index: which store, and where a LanceDB one goes. */
export const NewIndex = {
  store: z.enum(['sqlite', 'lance']).default('sqlite'),
  uri: z.string().min(1).optional(),
  ...LanceFlags,
};

/** The LanceFlags' values as LanceDB settings. */
export const lanceParamsOf = ({ ann, annMinRows, partitions, subVectors, nprobes, refineFactor }: LanceParamsInput): LanceParamsInput => ({
  ann,
  annMinRows,
  partitions,
  subVectors,
  nprobes,
  refineFactor,
});

/** The LanceFlags' help, on `cmd`. */
export const withLanceFlags = (cmd: Command) =>
  cmd
    .addOption(flag(LanceParams, '--ann <type>', 'lance: the ANN index built past --ann-min-rows items'))
    .addOption(flag(LanceParams, '--ann-min-rows <n>', 'lance: items before an ANN index is built (below: exact search)'))
    .addOption(flag(LanceParams, '--partitions <n>', 'lance: IVF partitions (default: one per ~4096 items, at least 16)'))
    .addOption(flag(LanceParams, '--sub-vectors <n>', 'lance: PQ sub-vectors, dividing the dimension (default: dimension / 8)'))
    .addOption(flag(LanceParams, '--nprobes <n>', 'lance: partitions searched per query (default: 8% of them, at least 20)'))
    .addOption(flag(LanceParams, '--refine-factor <n>', 'lance: candidates re-ranked by their full vectors, as a multiple of k'));

/** NewIndex's help, on `cmd` (whose schema holds NewIndex). */
export const withNewIndex = (cmd: Command, O: z.ZodObject, dirFlag: string) =>
  withLanceFlags(
    cmd
      .addOption(
        flag(O, '--store <kind>', 'store of a new index: sqlite (SQLite + in-memory HNSW) or lance (LanceDB on disk or object storage)'),
      )
      .addOption(flag(O, '--uri <path-or-uri>', `lance: where the index goes, a directory or s3:// gs:// az:// (instead of ${dirFlag})`)),
  );

/** The index location given by `dirFlag` (its value `dir`) or by --store lance --uri; refuses both, neither, or --uri without lance. */
export function newIndexAt(o: { store: 'sqlite' | 'lance'; uri?: string }, dir: string | undefined, dirFlag: string): string {
  if (o.uri !== undefined && o.store !== 'lance')
    throw new UsageError(`--uri is for --store lance (a sqlite index is a directory: ${dirFlag})`);
  if ((o.uri === undefined) === (dir === undefined)) throw new UsageError(`give one of ${dirFlag} DIR or --store lance --uri PATH_OR_URI`);
  return (o.uri ?? dir)!;
}
