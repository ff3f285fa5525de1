// LanceDB's Node API is asynchronous; the index interface (store-api.ts) is synchronous, as
// better-sqlite3 and hnswlib are, and every caller (build pipeline, serve, verify) relies on that.
// So LanceDB runs in a worker thread and the JS thread waits for each reply with Atomics.wait,
// then takes it with receiveMessageOnPort: the pattern of Node's own docs for a synchronous call
// into a worker (https://nodejs.org/api/worker_threads.html#workerreceivemessageonportport).
// A call returns only once LanceDB's promise has settled: a write is acknowledged after its commit.
// The worker is plain JS evaluated from this string (as engine/onnx-worker.ts's), so it needs no
// TypeScript loader; it holds the connection and the open tables, and knows nothing of items.
import { createRequire } from 'node:module';
import { MessageChannel, type MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';

const WORKER = `
const { workerData } = require('node:worker_threads');
const lancedb = require(workerData.lancedb);
const arrow = require(workerData.arrow);
const { port, flag } = workerData;
const state = new Int32Array(flag);
let db = null;
const tables = new Map();

const TYPES = {
  int64: () => new arrow.Int64(), int32: () => new arrow.Int32(), utf8: () => new arrow.Utf8(),
  vector: (dim) => new arrow.FixedSizeList(dim, new arrow.Field('item', new arrow.Float32(), true)),
};
// A json column is written as Arrow's JSON extension type (text), which Lance stores as JSONB for its json_* SQL functions
// (https://github.com/lancedb/lance/blob/main/docs/src/guide/json.md), and reports as LargeBinary tagged lance.json in the table's schema.
const jsonField = (name, nullable) => new arrow.Field(name, new arrow.Utf8(), nullable, new Map([['ARROW:extension:name', 'arrow.json'], ['ARROW:extension:metadata', '']]));
const schemaOf = (cols) => new arrow.Schema(cols.map((c) => (c.type === 'json' ? jsonField(c.name, c.nullable) : new arrow.Field(c.name, TYPES[c.type](c.dim), c.nullable))));

// Columnar rows (plain arrays, one flat Float32Array per vector column) -> an Arrow table of the schema.
function toArrow(tableSchema, cols) {
  const n = cols.__rows;
  const schema = new arrow.Schema(tableSchema.fields.map((f) => (f.metadata.get('ARROW:extension:name') === 'lance.json' ? jsonField(f.name, f.nullable) : f)));
  const children = schema.fields.map((f) => {
    const v = cols[f.name];
    if (arrow.DataType.isFixedSizeList(f.type)) {
      const child = arrow.makeData({ type: new arrow.Float32(), length: v.length, data: v });
      return arrow.makeData({ type: f.type, length: n, nullCount: 0, child });
    }
    if (arrow.DataType.isInt(f.type)) {
      const nulls = new Uint8Array(Math.ceil(n / 8));
      let nullCount = 0;
      v.forEach((x, i) => (x === null ? nullCount++ : (nulls[i >> 3] |= 1 << (i & 7))));
      const data = f.type.bitWidth === 64 ? BigInt64Array.from(v, (x) => BigInt(x ?? 0)) : Int32Array.from(v, (x) => x ?? 0);
      return arrow.makeData({ type: f.type, length: n, nullCount, nullBitmap: nullCount ? nulls : undefined, data });
    }
    return arrow.vectorFromArray(v, f.type).data[0];
  });
  const data = arrow.makeData({ type: new arrow.Struct(schema.fields), length: n, nullCount: 0, children });
  return new arrow.Table(schema, [new arrow.RecordBatch(schema, data)]);
}

// An Arrow result -> columns: numbers for integers, strings, one flat Float32Array per vector column.
function fromArrow(t) {
  const out = { __rows: t.numRows };
  for (const f of t.schema.fields) {
    const col = t.getChild(f.name);
    if (arrow.DataType.isFixedSizeList(f.type)) {
      const flat = new Float32Array(t.numRows * f.type.listSize);
      let at = 0;
      for (const d of col.data) {
        const vals = d.children[0].values.subarray(d.offset * f.type.listSize, (d.offset + d.length) * f.type.listSize);
        flat.set(vals, at);
        at += vals.length;
      }
      out[f.name] = flat;
    } else out[f.name] = Array.from(col.toArray(), (x) => (typeof x === 'bigint' ? Number(x) : x)).map((x, i) => (col.isValid(i) ? x : null));
  }
  return out;
}

const table = (name) => {
  const t = tables.get(name);
  if (!t) throw new Error('table ' + name + ' is not open');
  return t;
};

const ops = {
  async connect({ uri }) {
    const mb = workerData.indexCacheMB;
    // The session's index cache holds the ANN partitions searched so far; LanceDB's default bound is 6 GB.
    const session = mb === undefined ? undefined : new lancedb.Session(BigInt(Math.round(mb * 2 ** 20)), undefined);
    db = await lancedb.connect(uri, session ? { session } : {});
    return db.tableNames();
  },
  async open({ name }) { tables.set(name, await db.openTable(name)); return null; },
  async drop({ name }) { tables.delete(name); await db.dropTable(name); return null; },
  async create({ name, cols }) { tables.set(name, await db.createEmptyTable(name, schemaOf(cols), { mode: 'create' })); return null; },
  async append({ name, cols }) {
    const t = table(name);
    const r = await t.add(toArrow(await t.schema(), cols));
    return { version: r.version };
  },
  async upsert({ name, key, cols }) {
    const t = table(name);
    const r = await t.mergeInsert(key).whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(toArrow(await t.schema(), cols));
    return { version: r.version };
  },
  async update({ name, where, valuesSql }) { const r = await table(name).update({ where, valuesSql }); return { updated: r.rowsUpdated, version: r.version }; },
  async remove({ name, where }) { await table(name).delete(where); return null; },
  async columns({ name }) { return (await table(name).schema()).fields.map((f) => f.name); },
  async addColumns({ name, cols }) { await table(name).addColumns(schemaOf(cols)); return null; },
  async renameColumn({ name, from, to }) { await table(name).alterColumns([{ path: from, rename: to }]); return null; },
  // Sets the given columns of the rows whose key matches (a merge-insert of those columns only). Not through the key's
  // B-tree: that path refuses a json column given as text ("expected Utf8 got LargeBinary", LanceDB 0.31.0).
  async updateColumns({ name, key, cols }) {
    const t = table(name);
    const schema = await t.schema();
    await t.mergeInsert(key).whenMatchedUpdateAll().useIndex(false).execute(toArrow(new arrow.Schema(schema.fields.filter((f) => f.name in cols)), cols));
    return null;
  },
  async query({ name, where, select, limit }) {
    let q = table(name).query();
    if (where) q = q.where(where);
    if (select) q = q.select(select);
    if (limit !== undefined) q = q.limit(limit);
    return fromArrow(await q.toArrow());
  },
  async search({ name, vector, k, where, select, distance, nprobes, widen, refine, exact }) {
    let q = table(name).vectorSearch(vector).distanceType(distance).limit(k).select(select);
    if (where) q = q.where(where);
    if (exact) q = q.bypassVectorIndex();
    else {
      // widen: nprobes partitions at least, more (maximum 0: up to all) while fewer than k rows passed the filter.
      if (nprobes) q = widen ? q.maximumNprobes(0).minimumNprobes(nprobes) : q.nprobes(nprobes);
      if (refine) q = q.refineFactor(refine);
    }
    return fromArrow(await q.toArrow());
  },
  async count({ name, where }) { return table(name).countRows(where); },
  async version({ name }) { return table(name).version(); },
  async checkoutLatest({ name }) { await table(name).checkoutLatest(); return table(name).version(); },
  async versions({ name }) { return (await table(name).listVersions()).map((v) => v.version); },
  async checkout({ name, version }) { await table(name).checkout(version); return null; },
  async restore({ name }) { await table(name).restore(); return table(name).version(); },
  async indices({ name }) {
    const t = table(name);
    const list = await t.listIndices();
    return Promise.all(list.map(async (i) => ({ name: i.name, type: i.indexType, columns: i.columns, stats: await t.indexStats(i.name) })));
  },
  async createIndex({ name, column, kind, options, replace }) {
    const cfg = kind === 'ivfPq' ? lancedb.Index.ivfPq(options) : kind === 'ivfHnswSq' ? lancedb.Index.hnswSq(options) : lancedb.Index.btree();
    await table(name).createIndex(column, { config: cfg, replace });
    return null;
  },
  async optimize({ name, olderThanMs }) {
    const r = await table(name).optimize({ cleanupOlderThan: new Date(Date.now() - olderThanMs) });
    return { compacted: r.compaction, pruned: r.prune };
  },
  async stats({ name }) { return table(name).stats(); },
  async close() { for (const t of tables.values()) t.close(); tables.clear(); db?.close(); db = null; return null; },
};

port.on('message', async ({ op, args }) => {
  let reply;
  try {
    reply = { value: await ops[op](args) };
  } catch (e) {
    reply = { error: String(e && e.message ? e.message : e) };
  }
  port.postMessage(reply);
  Atomics.store(state, 0, 1);
  Atomics.notify(state, 0);
});
`;

/** Columns as the worker takes and gives them: `__rows` rows, numbers/strings/nulls per column, vector columns flat. */
export type Columns = { __rows: number } & Record<string, unknown>;

export interface ColumnSpec {
  name: string;
  type: 'int64' | 'int32' | 'utf8' | 'vector' | 'json';
  nullable: boolean;
  dim?: number;
}

/** A LanceDB connection in a worker thread, called synchronously (see the file header). */
export class LanceWorker {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private closed = false;

  constructor(opts: { indexCacheMB?: number } = {}) {
    // LanceDB's Rust side logs warnings to stderr (deprecations, "creating a new dataset"): only errors,
    // unless the user asks (https://lancedb.github.io/lancedb/troubleshooting/); set before it loads.
    process.env.LANCEDB_LOG ??= 'error';
    process.env.LANCE_INCLUDE_VECTOR_CENTROIDS ??= 'false';
    const require = createRequire(import.meta.url);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER, {
      eval: true,
      // Plain JS: not the parent's --import tsx (a worker inherits execArgv), which cost ~5 MB of RSS.
      execArgv: [],
      workerData: {
        indexCacheMB: opts.indexCacheMB,
        lancedb: require.resolve('@lancedb/lancedb'),
        arrow: require.resolve('apache-arrow'),
        port: port2,
        flag: this.flag.buffer,
      },
      transferList: [port2],
    });
    this.worker.unref();
  }

  /** Runs one operation of the worker and returns its result; throws the worker's error with the operation named. */
  call<T>(op: string, args: Record<string, unknown> = {}): T {
    if (this.closed) throw new Error(`LanceDB: ${op} after close`);
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage({ op, args });
    // A worker that died never sets the flag: the wait is bounded, so a caller gets an error rather than a hang.
    if (Atomics.wait(this.flag, 0, 0, 30 * 60_000) === 'timed-out') throw new Error(`LanceDB: ${op} did not answer in 30 min`);
    const m = receiveMessageOnPort(this.port)?.message as { value?: T; error?: string } | undefined;
    if (!m) throw new Error(`LanceDB: ${op}: no reply from the worker`);
    if (m.error !== undefined) throw new Error(`LanceDB ${op}: ${m.error}`);
    return m.value as T;
  }

  close(): void {
    if (this.closed) return;
    try {
      this.call('close');
    } finally {
      this.closed = true;
      this.port.close();
      void this.worker.terminate();
    }
  }
}
