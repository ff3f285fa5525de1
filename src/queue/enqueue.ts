// `matvit index enqueue`: lists a corpus, hashes every item, and adds one encode job per slice of
// `batch` dataset positions, with the items the index does not hold yet. Item i is in slice
// floor(i / batch) whatever is already indexed, and the job id is a hash of the spec, the batch
// size, the slice number and the slice's content hashes: enqueueing the same corpus again adds no
// job (BullMQ ignores an add whose id exists), and a slice whose items are all indexed adds none.
// Of several items with the same content the first in dataset order is kept, as `index build` does,
// so that both index the same items.
import path from 'node:path';
import { Queue } from 'bullmq';
import { type Dataset, DEFAULT_CONCURRENCY, parseDatasetSpec } from '../data/dataset.ts';
import { forEachLimited } from '../data/pool.ts';
import { DecodeError } from '../data/preprocess.ts';
import { readItem, sourceOf } from '../index/item-input.ts';
import { isUri } from '../index/lance-tables.ts';
import { type Manifest, readManifest } from '../index/manifest.ts';
import { STORE_FILE } from '../index/open.ts';
import { openIndex, storeKindAt } from '../index/open-store.ts';
import { Store } from '../index/store.ts';
import { sha256Hex } from '../util/hash.ts';
import { type EncodeItem, type EncodeJob, jobOptions } from './jobs.ts';
import {
  PREFIX,
  type QueueAddress,
  type QueueMeta,
  QueueSettings,
  type QueueSettings as Settings,
  Redis,
  connection,
  keys,
  queueNames,
} from './redis.ts';

export interface EnqueueOptions {
  address: QueueAddress;
  data: string;
  /** An existing index: a directory, or a LanceDB URI (index enqueue --model creates it first). */
  index: string;
  /** Items per job (default: index/pipeline.ts's defaultBatch for the model's input). */
  batch: number;
  settings?: Partial<Settings>;
  onProgress?: (hashed: number, total: number) => void;
}

export interface EnqueueSummary {
  queue: string;
  data: string;
  items: number;
  jobs: { added: number; existing: number };
  /** Items in the jobs this run added. */
  enqueued: number;
  alreadyIndexed: number;
  duplicates: number;
  seconds: number;
}

/** The settings stored with the queue: the first enqueue's, unless this one gives others. */
/** What enqueue reads of the index: its manifest, live count and which contents it holds. */
interface Lookup {
  manifest: Manifest;
  live: number;
  has(sha256s: readonly string[]): Set<string>;
  close(): void;
}

/** A SQLite index through its store alone (opening the index would load its whole HNSW graph); a LanceDB one through openIndex. */
function lookup(dir: string): Lookup {
  if (storeKindAt(dir) === 'sqlite') {
    const store = Store.open(path.join(dir, STORE_FILE), { readOnly: true });
    return {
      manifest: readManifest(dir),
      live: store.counts().live,
      has: (shas) => new Set(store.findSha256(shas).keys()),
      close: () => store.close(),
    };
  }
  const index = openIndex(dir, { mode: 'read' });
  return {
    manifest: index.info().manifest,
    live: index.size,
    has: (shas) => new Set(index.existing(shas).keys()),
    close: () => index.close(),
  };
}

async function writeMeta(redis: Redis, o: EnqueueOptions, m: Manifest): Promise<QueueMeta> {
  const key = keys(o.address.name).meta;
  const old = await redis.get(key);
  const prev = old === null ? undefined : (JSON.parse(old) as QueueMeta);
  if (prev && (prev.fingerprint !== m.fingerprint || prev.ffnDims.join() !== m.ffnDims.join()))
    throw new Error(
      `${o.address.url} is the queue of an index of model ${prev.modelName} (fingerprint ${prev.fingerprint}, ffnDims ${prev.ffnDims.join(',')}); ${o.index} is of ${m.modelName} (fingerprint ${m.fingerprint}, ffnDims ${m.ffnDims.join(',')}). Use another queue name`,
    );
  const meta: QueueMeta = {
    version: 1,
    index: isUri(o.index) ? o.index : path.resolve(o.index),
    fingerprint: m.fingerprint,
    modelName: m.modelName,
    ffnDims: m.ffnDims,
    dim: m.dim,
    settings: QueueSettings.parse({ ...prev?.settings, ...o.settings }),
  };
  await redis.set(key, JSON.stringify(meta));
  return meta;
}

/** The content hashes of items start..end-1 ('' when one cannot be read: the worker that takes it reports why). */
async function hashSlice(ds: Dataset, start: number, end: number): Promise<string[]> {
  const shas = new Array<string>(end - start);
  await forEachLimited(end - start, DEFAULT_CONCURRENCY, async (k) => {
    try {
      shas[k] = (await readItem(ds, start + k)).sha256;
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      shas[k] = '';
    }
  });
  return shas;
}

export async function enqueue(o: EnqueueOptions): Promise<EnqueueSummary> {
  const t0 = performance.now();
  if (!(Number.isInteger(o.batch) && o.batch >= 1)) throw new Error(`batch = ${o.batch}: expected an integer >= 1`);
  const ds = await parseDatasetSpec(o.data);
  // Slice by slice, each job added as soon as its items are hashed: workers start while the rest is read.
  const index = lookup(o.index);
  const redis = new Redis(connection(o.address, undefined, 3));
  const queue = new Queue(queueNames(o.address.name).encode, { connection: connection(o.address, undefined, 3), prefix: PREFIX });
  try {
    const meta = await writeMeta(redis, o, index.manifest);
    const live = index.live;
    const s: EnqueueSummary = {
      queue: o.address.url,
      data: ds.spec,
      items: ds.size,
      jobs: { added: 0, existing: 0 },
      enqueued: 0,
      alreadyIndexed: 0,
      duplicates: 0,
      seconds: 0,
    };
    const seen = new Set<string>();
    for (let start = 0, k = 0; start < ds.size; start += o.batch, k++) {
      const end = Math.min(start + o.batch, ds.size);
      const shas = await hashSlice(ds, start, end);
      const indexed = index.has(shas.filter(Boolean));
      const items: EncodeItem[] = [];
      shas.forEach((sha256, j) => {
        if (sha256 && indexed.has(sha256)) s.alreadyIndexed++;
        else if (sha256 && seen.has(sha256)) s.duplicates++;
        else items.push({ i: start + j, source: sourceOf(ds.item(start + j)), sha256 });
        if (sha256) seen.add(sha256);
      });
      o.onProgress?.(end, ds.size);
      if (items.length === 0) continue;
      const id = 'b' + sha256Hex(Buffer.from([ds.spec, o.batch, k, ...shas].join('\n'))).slice(0, 40);
      if (await queue.getJob(id)) {
        s.jobs.existing++;
        continue;
      }
      const job: EncodeJob = { spec: ds.spec, items };
      await queue.add('encode', job, jobOptions(meta.settings, 'encode', id));
      s.jobs.added++;
      s.enqueued += items.length;
    }
    const p = keys(o.address.name).progress;
    // `base`: the index's live items at the first enqueue, so that status counts this queue's commits.
    await redis.multi().hincrby(p, 'enqueued', s.enqueued).hsetnx(p, 'base', live).exec();
    s.seconds = (performance.now() - t0) / 1000;
    return s;
  } finally {
    index.close();
    await queue.close();
    redis.disconnect();
  }
}
