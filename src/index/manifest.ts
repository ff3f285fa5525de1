// manifest.json: what an index directory holds and how it was made. Written last at creation
// (an index exists once its manifest does), replaced atomically afterwards.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { z } from 'zod';
import { ModelConfig } from '../model/config.ts';
import { writeFileAtomic } from '../util/durable.ts';
import { formatZodError } from '../util/zod-error.ts';

export const MANIFEST_FILE = 'manifest.json';

/** 'ip' scores dot products with the stored unit vectors; 'cosine' also normalizes the query. */
export const Space = z.enum(['ip', 'cosine']);
export type Space = z.infer<typeof Space>;

/** What a caller chooses when creating an index; defaults only here. */
export const IndexParams = z
  .object({
    /** The corpus model's weights fingerprint (checkpoint config.json): queries must come from it. */
    fingerprint: z.string().regex(/^[0-9a-f]{64}$/, 'expected the 64 hex digits of a model fingerprint'),
    modelName: z.string().min(1),
    /** The submodel that embedded the corpus (one FFN width per layer; XL by default upstream). */
    ffnDims: z.array(z.number().int().positive()).min(1),
    dim: z.number().int().positive(),
    space: Space.default('ip'),
    /** hnswlib: links per node. */
    M: z.number().int().min(2).max(128).default(16),
    /**
     * hnswlib: build breadth. 64 (pgvector's default), not hnswlib's 200: on a small model the
     * insertion costs as much CPU as encoding (build.ts), and a wider search (ef) makes up for it.
     * `matvit bench index --index indexes/fmnist-train --ef 64,128` (the shipped model's 60k x
     * 128-d corpus, M 16; recall@10 at ef 64 / 128): efConstruction 200: 162 us/item, 0.9998 /
     * 1.0000; 100: 94, 0.9994 / 0.9996; 64: 73, 0.9988 / 0.9996; 48: 59, 0.9980 / 0.9994.
     */
    efConstruction: z.number().int().positive().default(64),
    /**
     * Search breadth. 128 with efConstruction 64: the narrower build needs a wider search on hard
     * data (index-store.test.ts's 5k random 64-d unit vectors fall below recall@10 0.99 at ef 64);
     * `matvit bench index --ef 64,128` prints what the width costs per query on a real index.
     */
    ef: z.number().int().positive().default(128),
    /** The resolved model config, when the caller has it (style: saved with every index). */
    model: ModelConfig.optional(),
    /**
     * Where the model checkpoint is, relative to the index directory (or absolute): what `serve
     * --index DIR` loads. Its fingerprint must equal `fingerprint`; `--model` may point elsewhere.
     */
    modelPath: z.string().min(1).optional(),
    /** Free-form description of the corpus (data spec, root, shard), for `index info`. */
    corpus: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type IndexParams = z.infer<typeof IndexParams>;
export type IndexParamsInput = z.input<typeof IndexParams>;

/** Parses index parameters; the error names each bad field, the value received and what is accepted. */
export function parseIndexParams(input: unknown): IndexParams {
  const r = IndexParams.safeParse(input);
  if (r.success) return r.data;
  throw new Error(`index parameters: ${formatZodError(r.error, input, { separator: '; ' })}`);
}

export const Manifest = z
  .object({
    format: z.literal('matvit-index'),
    version: z.literal(1),
    ...IndexParams.shape,
    /** Item counts as of store seq `seq` (refreshed at every snapshot and close). */
    counts: z
      .object({ live: z.number().int().nonnegative(), deleted: z.number().int().nonnegative(), seq: z.number().int().nonnegative() })
      .strict(),
    /** Of the last writer: the graph file format belongs to the hnswlib version. */
    versions: z.object({ package: z.string(), hnswlibNode: z.string(), betterSqlite3: z.string() }).strict(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .strict();
export type Manifest = z.infer<typeof Manifest>;

const require = createRequire(import.meta.url);
const versionOf = (pkgJson: string) => (require(pkgJson) as { version: string }).version;

export function softwareVersions(): Manifest['versions'] {
  return {
    package: versionOf('../../package.json'),
    hnswlibNode: versionOf('hnswlib-node/package.json'),
    betterSqlite3: versionOf('better-sqlite3/package.json'),
  };
}

/** The manifest of a new, empty index with these parameters (either store). */
export function newManifest(params: IndexParams): Manifest {
  const now = new Date().toISOString();
  return {
    format: 'matvit-index',
    version: 1,
    ...params,
    counts: { live: 0, deleted: 0, seq: 0 },
    versions: softwareVersions(),
    createdAt: now,
    updatedAt: now,
  };
}

export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // existsSync would call a file this process may not read "missing" too.
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new Error(`${dir} is not a MatViT index: ${file} is missing`);
    throw new Error(`${file} cannot be read by this process (uid ${process.getuid?.() ?? '?'}): ${code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  const parsed = Manifest.safeParse(json);
  if (!parsed.success) throw new Error(`${file}: ${formatZodError(parsed.error, json, { separator: '; ' })}`);
  return parsed.data;
}

export function writeManifest(dir: string, m: Manifest): void {
  writeFileAtomic(path.join(dir, MANIFEST_FILE), JSON.stringify(Manifest.parse(m), null, 2) + '\n');
}
