// The HNSW graph (hnswlib-node 3.0.0) and its snapshot on disk: graph.bin + graph.json.
//
// The graph is derived data: labels are store ids, vectors are the store's unit vectors. Facts
// about hnswlib-node this file is built around, from its source (src/addon.cc of
// https://github.com/yoshoku/hnswlib-node, v3.0.0) and hnswlib's (hnswlib/hnswalg.h of
// https://github.com/nmslib/hnswlib):
// - only the sync readIndexSync/writeIndexSync are used: the async ones are Napi::AsyncWorkers,
//   run on the libuv pool and race with any other call on the same index; sync calls are
//   serialized by the JS thread;
// - the file stores neither space, dimension nor ef, and hnswlib's loadIndex trusts the sizes it
//   reads, so a truncated or corrupt file can crash the process inside readIndex (e.g.
//   https://github.com/nmslib/hnswlib/issues/295, https://github.com/nmslib/hnswlib/pull/677):
//   graph.bin is only read after its sha256 and size match the sidecar, and the sidecar records
//   what the file does not (space, dim, M, the store watermark);
// - ef is reset to 10 on load (loadIndex sets ef_ = 10), so it is set again after every load;
// - searchKnn throws if k > maxElements; the filter callback is called from C++ without a catch
//   (CustomFilterFunctor), so a callback that throws must not reach it.
import fs from 'node:fs';
import path from 'node:path';
import hnswlib, { type HierarchicalNSW } from 'hnswlib-node';
import { z } from 'zod';
import { fsyncFile, renameDurable, tempPath, writeFileAtomic } from '../util/durable.ts';
import { hashFile } from '../util/hash.ts';
import { Space, softwareVersions } from './manifest.ts';

export const GRAPH_FILE = 'graph.bin';
export const SIDECAR_FILE = 'graph.json';

export interface GraphParams {
  space: Space;
  dim: number;
  M: number;
  efConstruction: number;
  ef: number;
}

/** Capacity grows by this factor when full: amortized O(1) inserts, at most 50% slack. */
const GROWTH = 1.5;
const MIN_CAPACITY = 1024;
/** Fixed so that building the same items in the same order gives the same graph. */
const RANDOM_SEED = 100;

export class Graph {
  private constructor(
    private readonly h: HierarchicalNSW,
    readonly params: GraphParams,
  ) {
    h.setEf(params.ef);
  }

  static create(params: GraphParams, capacity: number): Graph {
    const h = new hnswlib.HierarchicalNSW(params.space, params.dim);
    h.initIndex({
      maxElements: Math.max(MIN_CAPACITY, Math.ceil(capacity)),
      m: params.M,
      efConstruction: params.efConstruction,
      randomSeed: RANDOM_SEED,
    });
    return new Graph(h, params);
  }

  /** Loads a graph file whose integrity the caller has checked (see readSnapshot). */
  private static load(file: string, params: GraphParams): Graph {
    const h = new hnswlib.HierarchicalNSW(params.space, params.dim);
    h.readIndexSync(file);
    return new Graph(h, params); // sets ef again: the file does not keep it
  }

  /** Slots in use, including items marked deleted (hnswlib keeps their slots). */
  get count(): number {
    return this.h.getCurrentCount();
  }

  get capacity(): number {
    return this.h.getMaxElements();
  }

  /** Adds (or, for an id already present, updates) points; vectors is flat [ids.length, dim]. */
  add(ids: readonly number[], vectors: Float32Array): void {
    const d = this.params.dim;
    const needed = this.count + ids.length;
    if (needed > this.capacity) this.h.resizeIndex(Math.max(needed, Math.ceil(this.capacity * GROWTH)));
    for (let i = 0; i < ids.length; i++) this.h.addPoint(Array.from(vectors.subarray(i * d, (i + 1) * d)), ids[i]);
  }

  /** Marks an id deleted: it keeps its slot (and routes searches) but is never returned. */
  markDeleted(id: number): void {
    this.h.markDelete(id);
  }

  /**
   * k nearest neighbours by graph search, best first, with score = 1 - hnswlib distance (dot
   * product for 'ip', cosine similarity for 'cosine'). The caller keeps k within the live count.
   * `allow` is called from native code: it is wrapped so that it can never throw there.
   */
  search(query: Float32Array, k: number, ef: number, allow?: (id: number) => boolean): { ids: number[]; scores: number[] } {
    if (k < 1) return { ids: [], scores: [] };
    const kk = Math.min(k, this.capacity); // searchKnn throws above maxElements
    const filter =
      allow &&
      ((id: number) => {
        try {
          return allow(id) === true;
        } catch {
          return false;
        }
      });
    if (ef !== this.params.ef) this.h.setEf(ef);
    try {
      const r = this.h.searchKnn(Array.from(query), kk, filter);
      return { ids: r.neighbors, scores: r.distances.map((d) => 1 - d) };
    } finally {
      if (ef !== this.params.ef) this.h.setEf(this.params.ef);
    }
  }

  /** Every label in the graph, deleted ones included. */
  ids(): number[] {
    return this.h.getIdsList();
  }

  /** The graph's copy of a live point, or undefined when the id is absent or marked deleted. */
  point(id: number): number[] | undefined {
    try {
      return this.h.getPoint(id);
    } catch {
      return undefined;
    }
  }

  /**
   * Saves the graph as graph.bin with its sidecar graph.json. Order, so that a kill at any point
   * leaves a loadable pair: (1) the graph goes to a temp file, fsynced and hashed; (2) the sidecar
   * is replaced atomically, naming the new file and, as `previous`, the graph.bin still in place;
   * (3) the temp file is renamed over graph.bin. Killed between (2) and (3), the old graph.bin
   * matches `previous` and is loaded with its own, older watermark; the store replays the rest.
   */
  saveSnapshot(dir: string, storeId: string, seq: number, previous: GraphFile | null): GraphFile {
    const file = path.join(dir, GRAPH_FILE);
    const tmp = tempPath(file);
    try {
      this.h.writeIndexSync(tmp);
      const current: GraphFile = {
        seq,
        ...hashFile(tmp),
        count: this.count,
        hnswlibNode: softwareVersions().hnswlibNode,
        writtenAt: new Date().toISOString(),
      };
      const { space, dim, M, efConstruction } = this.params;
      const sidecar: Sidecar = { format: 'matvit-graph', version: 1, storeId, space, dim, M, efConstruction, graph: current, previous };
      fsyncFile(tmp);
      writeFileAtomic(path.join(dir, SIDECAR_FILE), JSON.stringify(sidecar, null, 2) + '\n');
      renameDurable(tmp, file);
      return current;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  /** The sidecar's store id and the newest watermark it names, read without graph.bin; undefined when unreadable. */
  static watermark(dir: string): { storeId: string; seq: number } | undefined {
    try {
      const sidecar = Sidecar.parse(JSON.parse(fs.readFileSync(path.join(dir, SIDECAR_FILE), 'utf8')));
      return { storeId: sidecar.storeId, seq: sidecar.graph.seq };
    } catch {
      return undefined;
    }
  }

  /**
   * Loads the snapshot in `dir` if it is usable for this store as of `storeSeq`; otherwise says
   * why not. Never passes a file to hnswlib unless its size and sha256 match the sidecar.
   */
  static readSnapshot(
    dir: string,
    params: GraphParams,
    store: { storeId: string; seq: number },
  ): { graph: Graph; file: GraphFile } | { problem: SnapshotProblem; reason: string } {
    const file = path.join(dir, GRAPH_FILE);
    const sideFile = path.join(dir, SIDECAR_FILE);
    if (!fs.existsSync(sideFile) || !fs.existsSync(file))
      return { problem: 'missing', reason: `${fs.existsSync(file) ? SIDECAR_FILE : GRAPH_FILE} is missing` };
    let sidecar: Sidecar;
    try {
      sidecar = Sidecar.parse(JSON.parse(fs.readFileSync(sideFile, 'utf8')));
    } catch (e) {
      return { problem: 'corrupt', reason: `${SIDECAR_FILE} is unreadable: ${(e as Error).message.split('\n')[0]}` };
    }
    const expected = { storeId: store.storeId, space: params.space, dim: params.dim, M: params.M, efConstruction: params.efConstruction };
    for (const [key, want] of Object.entries(expected)) {
      const got = sidecar[key as keyof typeof expected];
      if (got !== want) return { problem: 'stale', reason: `snapshot ${key} is ${got}, the index's is ${want}` };
    }
    const actual = hashFile(file);
    const entry = [sidecar.graph, sidecar.previous].find((g) => g && g.sha256 === actual.sha256 && g.bytes === actual.bytes);
    if (!entry) {
      const g = sidecar.graph;
      return {
        problem: 'corrupt',
        reason:
          actual.bytes !== g.bytes
            ? `${GRAPH_FILE} has ${actual.bytes} bytes, the sidecar says ${g.bytes} (truncated or replaced)`
            : `${GRAPH_FILE} sha256 ${actual.sha256} does not match the sidecar's ${g.sha256}`,
      };
    }
    const hnswlibNode = softwareVersions().hnswlibNode;
    if (entry.hnswlibNode !== hnswlibNode)
      return { problem: 'stale', reason: `${GRAPH_FILE} was written by hnswlib-node ${entry.hnswlibNode}, this is ${hnswlibNode}` };
    if (entry.seq > store.seq)
      return { problem: 'ahead', reason: `snapshot holds changes up to seq ${entry.seq}, the store only up to ${store.seq}` };
    let graph: Graph;
    try {
      graph = Graph.load(file, params);
    } catch (e) {
      return { problem: 'corrupt', reason: `hnswlib could not read ${GRAPH_FILE}: ${(e as Error).message}` };
    }
    if (graph.count !== entry.count)
      return { problem: 'corrupt', reason: `${GRAPH_FILE} holds ${graph.count} points, the sidecar says ${entry.count}` };
    return { graph, file: entry };
  }
}

/** ahead: the snapshot holds changes the store does not, which only a store that lost commits can show (acked.ts). */
export type SnapshotProblem = 'missing' | 'corrupt' | 'stale' | 'ahead';

/** One graph file: the last store change it reflects (its watermark), checksum, size, points. */
export const GraphFile = z
  .object({
    seq: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    bytes: z.number().int().nonnegative(),
    count: z.number().int().nonnegative(),
    /** The file format is hnswlib's: another version's file is rebuilt rather than trusted. */
    hnswlibNode: z.string(),
    writtenAt: z.iso.datetime(),
  })
  .strict();
export type GraphFile = z.infer<typeof GraphFile>;

/** graph.json: what graph.bin holds and what hnswlib does not store in it. */
export const Sidecar = z
  .object({
    format: z.literal('matvit-graph'),
    version: z.literal(1),
    /** The store the graph was built from (a copy restored from elsewhere has another id). */
    storeId: z.string(),
    space: Space,
    dim: z.number().int().positive(),
    M: z.number().int().positive(),
    efConstruction: z.number().int().positive(),
    graph: GraphFile,
    /** The graph.bin this one replaces: still valid if the process died before the rename. */
    previous: GraphFile.nullable(),
  })
  .strict();
export type Sidecar = z.infer<typeof Sidecar>;
