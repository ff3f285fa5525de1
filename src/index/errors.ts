// What is wrong with an index, by kind, so that each caller picks its own exit code or HTTP status.

/**
 * unwritable: a write was asked for where this process cannot write; corrupt: a file of the index
 * is damaged; lost-writes: the store no longer holds changes the index acknowledged.
 */
export type IndexErrorCode = 'unwritable' | 'corrupt' | 'lost-writes';

export class IndexError extends Error {
  constructor(
    readonly code: IndexErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'IndexError';
  }
}

/** SQLite's result codes for a damaged file (https://www.sqlite.org/rescode.html#corrupt). */
const isCorruption = (e: unknown) => /^SQLITE_(CORRUPT|NOTADB)/.test(String((e as { code?: unknown })?.code));

/** An SQLite error saying that `file` is damaged, as an IndexError naming the file and what to do; other errors as they are. */
export function corruptionError(file: string, e: unknown): unknown {
  if (!isCorruption(e)) return e;
  return new IndexError(
    'corrupt',
    `${file} is damaged (SQLite: ${(e as Error).message}). \`matvit index verify --full\` lists what SQLite finds; restore the index directory from a backup, or build the index again`,
  );
}

const some = (ids: readonly number[]) => ids.slice(0, 5).join(', ') + (ids.length > 5 ? ', ...' : '');

/** Stored vectors that fail their checksum (store-schema.ts), and what to do about them. */
export function badVectorsMessage(file: string, ids: readonly number[]): string {
  return `${ids.length} stored vector(s) of ${file} do not match their checksum (ids ${some(ids)}): their bytes changed outside SQLite. Remove those items (matvit index remove --id ...) and add their images again, or restore the index directory from a backup`;
}

/**
 * A read-only open that failed because SQLite could not create the -shm file beside a leftover
 * write-ahead log (a writer was killed, and this process cannot write the directory), said so.
 */
export function readOnlyWalError(file: string, e: unknown): Error | undefined {
  if (!/^SQLITE_(READONLY|CANTOPEN)/.test(String((e as { code?: unknown })?.code))) return undefined;
  return new Error(
    `${file} cannot be opened read-only here: its write-ahead log ${file}-wal is left from a writer that did not close, and SQLite needs to create ${file}-shm beside it, which this process may not (${(e as Error).message}). Have a user who can write the directory open the index once (e.g. matvit index compact), then read it`,
  );
}
