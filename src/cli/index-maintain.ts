// `matvit index info|verify|recover|merge` and `matvit bench index`: the commands that read, check,
// repair and combine indexes (src/index/verify.ts, recover.ts, merge.ts, bench.ts); the writing ones
// are in index-cmd.ts.
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { submodelName } from '../model/config.ts';
import { UsageError, csv, flag, parseOptions, printJson } from './common.ts';
import { markdownTable } from '../util/format.ts';
import { IndexOnly, LanceFlags, NewIndex, count, lanceParamsOf, newIndexAt, withLanceFlags, withNewIndex } from './index-flags.ts';

// ---- info --------------------------------------------------------------------------------------

export const infoCommand = new Command('info')
  .description(
    "an index's model, parameters, counts, labels, graph snapshot and files, and what opening it found (opens read-only; `index verify` checks it all)",
  )
  .addOption(flag(IndexOnly, '--index <dir>', 'index directory'))
  .addOption(flag(IndexOnly, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(IndexOnly, raw);
    const [{ openIndex }, { corpusOf }] = await Promise.all([import('../index/open-store.ts'), import('../index/file-list.ts')]);
    const index = openIndex(o.index, { mode: 'read' });
    try {
      const i = index.info();
      const runs = index.getMeta('runs');
      if (o.json) return void printJson({ ...i, runs });
      const m = i.manifest;
      const out = (line: string) => process.stdout.write(line + '\n');
      out(`index ${o.index}`);
      out(`  model ${m.modelName}, fingerprint ${m.fingerprint}${m.modelPath ? `, at ${path.resolve(o.index, m.modelPath)}` : ''}`);
      out(
        `  corpus submodel ${m.model ? submodelName(m.model, m.ffnDims) : m.ffnDims.join(',')} (ffnDims ${m.ffnDims.join(',')}), ${m.dim}-d, space ${m.space}; HNSW M ${m.M}, efConstruction ${m.efConstruction}, ef ${m.ef}`,
      );
      const described = (c: Record<string, unknown>) => `${c.spec}${c.shard ? ` (shard ${c.shard})` : ''}`;
      const merged = m.corpus.mergedFrom as Record<string, unknown>[] | undefined;
      out(`  corpus ${merged ? `merged from ${merged.map(described).join(', ')}` : described(m.corpus)}`);
      out(`  items: ${i.counts.live} live, ${i.counts.deleted} removed; store seq ${i.storeSeq}`);
      const names = corpusOf(o.index).classNames;
      const labels = Object.entries(i.labels).map(([k, n]) => `${k === '-1' ? 'no label' : (names[Number(k)] ?? k)}: ${n}`);
      if (labels.length) out(`  labels: ${labels.join(', ')}`);
      const st = i.store;
      if (st?.ann !== undefined)
        out(
          `  store: LanceDB version ${st.version}; ${st.ann ? `ANN ${st.ann.type} over ${st.ann.indexedRows} rows, ${st.ann.unindexedRows} not yet indexed` : 'no ANN index yet: exact search'}`,
        );
      else out(`  graph: ${i.graph.points} points (${i.graph.deletedSlots} removed), capacity ${i.graph.capacity}`);
      out(
        i.snapshot
          ? `  snapshot: seq ${i.snapshot.seq} (${i.snapshot.behind} changes behind the store), ${i.snapshot.bytes} bytes, written ${i.snapshot.writtenAt}`
          : '  snapshot: none usable',
      );
      out(
        `  opened: snapshot ${i.opened.snapshot}${i.opened.reason ? ` (${i.opened.reason})` : ''}${i.opened.rebuilt ? ', graph rebuilt in memory' : ''}, replayed +${i.opened.replayed.added} -${i.opened.replayed.deleted}, ${i.opened.ms} ms`,
      );
      for (const d of i.opened.damage) out(`  damage: ${d}`);
      for (const w of i.opened.warnings) out(`  warning: ${w}`);
      out(
        `  files: ${Object.entries(i.files)
          .map(([f, b]) => `${f} ${b}`)
          .join(', ')}`,
      );
      const last = Array.isArray(runs) ? (runs.at(-1) as Record<string, unknown> | undefined) : undefined;
      if (last) out(`  last build/add (${(runs as unknown[]).length} recorded): ${JSON.stringify(last)}`);
    } finally {
      index.close();
    }
  });

// ---- verify ------------------------------------------------------------------------------------

const VerifyOptions = z.object({
  index: z.string().min(1),
  sample: count(1).default(200),
  minRecall: z.coerce.number().min(0, 'expected a number in 0..1').max(1, 'expected a number in 0..1').optional(),
  full: z.boolean().default(false),
  json: z.boolean().default(false),
});

export const verifyCommand = new Command('verify')
  .description(
    "check the index (opens read-only): what opening finds (lost acknowledged writes, a missing or damaged graph snapshot), SQLite's check of the store, every stored vector against its checksum, manifest, store and graph agreeing, and recall@10 of the graph against exact search; exit code 1 when not ok",
  )
  .addOption(flag(VerifyOptions, '--index <dir>', 'index directory'))
  .addOption(flag(VerifyOptions, '--sample <n>', 'stored vectors used as queries for recall@10'))
  .addOption(flag(VerifyOptions, '--min-recall <r>', 'also fail when recall@10 is below r'))
  .addOption(flag(VerifyOptions, '--full', "SQLite's integrity_check (every index against its table; slower) instead of quick_check"))
  .addOption(flag(VerifyOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(VerifyOptions, raw);
    const { verifyDir } = await import('../index/verify.ts');
    const r = verifyDir(o.index, { sampleSize: o.sample, minRecall: o.minRecall, full: o.full });
    if (o.json) printJson(r);
    else {
      const out: string[] = [`${o.index}: ${r.ok ? 'ok' : 'NOT OK'}`];
      if (r.integrity)
        out.push(`  SQLite ${r.integrity.check}: ${r.integrity.faults.length ? `${r.integrity.faults.length} fault(s)` : 'ok'}`);
      if (r.vectors)
        out.push(
          `  vector checksums: ${r.vectors.checked} match, ${r.vectors.bad.length} do not${r.vectors.unchecked ? `, ${r.vectors.unchecked} have none yet` : ''}`,
        );
      const c = r.counts;
      if (c)
        out.push(
          `  manifest live ${c.manifest.live}, removed ${c.manifest.deleted} (as of seq ${c.manifest.seq}); store live ${c.store.live}, removed ${c.store.deleted}; graph ${c.graphPoints} points, ${c.graphLive} live`,
        );
      const q = r.recall;
      if (q)
        out.push(
          `  recall@${q.k} ${q.recallAt10.toFixed(4)} at ef ${q.ef} over ${q.queries} queries; graph ${q.graphQps} queries/s, exact search ${q.exactMs} ms for all`,
        );
      out.push(...r.problems.map((p) => `  problem: ${p}`), ...r.notes.map((n) => `  note: ${n}`));
      process.stdout.write(out.join('\n') + '\n');
    }
    if (!r.ok) process.exitCode = 1;
  });

// ---- recover -----------------------------------------------------------------------------------

const RecoverOptions = z.object({ index: z.string().min(1), acceptLoss: z.boolean().default(false), json: z.boolean().default(false) });

export const recoverCommand = new Command('recover')
  .description(
    'after a loss of acknowledged writes (a lost write-ahead log): go on with what the store holds, recording the loss; ids are never handed out twice (sqlite; a lance index commits atomically: nothing to recover)',
  )
  .addOption(flag(RecoverOptions, '--index <dir>', 'index directory'))
  .addOption(flag(RecoverOptions, '--accept-loss', 'give up the missing changes (without it, only says what is missing)'))
  .addOption(flag(RecoverOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(RecoverOptions, raw);
    const { recoverIndex } = await import('../index/recover.ts');
    const r = recoverIndex(o.index, { acceptLoss: o.acceptLoss });
    if (o.json) return void printJson(r);
    if (r.notApplicable) return void process.stdout.write(`${o.index}: ${r.notApplicable}\n`);
    const restored = r.lance?.restored;
    if (restored)
      return void process.stdout.write(
        `${o.index}: restored the latest readable versions (${r.lance!.damage.map((d) => `${d.table} ${d.readable}, ${d.lostRows} rows lost`).join('; ')}) as ${Object.entries(
          restored.versions,
        )
          .map(([t, v]) => `${t} version ${v}`)
          .join(', ')}\n` +
          `  the index goes on from seq ${restored.seq} and id ${restored.maxId} with ${restored.live} live items; the loss is recorded in its meta key 'losses'\n`,
      );
    if (!r.after) return void process.stdout.write(`${o.index}: nothing to recover: the store holds every acknowledged change\n`);
    process.stdout.write(
      `${o.index}: recovered from the loss: ${r.loss?.what ?? r.ackedUnreadable}\n` +
        `  the store (new id ${r.after.storeId}) goes on from seq ${r.after.seq} and id ${r.after.maxId} with ${r.after.live} live items; the loss is recorded in its meta key 'losses'\n`,
    );
  });

// ---- merge -------------------------------------------------------------------------------------

const MergeOptions = z.object({ out: z.string().min(1).optional(), ...NewIndex, json: z.boolean().default(false) });

export const mergeCommand = withNewIndex(
  new Command('merge')
    .description(
      'join shard indexes built with the same model into one (new ids; content seen twice is kept once); re-running finishes an interrupted merge. Shards and the merged index may be of either store',
    )
    .addOption(flag(MergeOptions, '--out <dir>', 'the merged index (created, or continued)')),
  MergeOptions,
  '--out',
)
  .addOption(flag(MergeOptions, '--json', 'print JSON'))
  .argument('<shards...>', 'shard indexes: directories, or LanceDB URIs')
  .action(async (shards: string[], raw) => {
    const o = parseOptions(MergeOptions, raw);
    const out = newIndexAt(o, o.out, '--out');
    const { mergeIndexes } = await import('../index/merge.ts');
    const r = mergeIndexes(out, shards, { store: o.store, lance: lanceParamsOf(o) });
    if (o.json) return void printJson(r);
    process.stdout.write(
      markdownTable(
        ['shard', 'live', 'added', 'duplicates'],
        r.shards.map((s) => [s.dir, s.live, s.added, s.duplicates]),
      ) + `\n${r.dir}: ${r.live} live items\n`,
    );
  });

// ---- bench index (under `matvit bench`) ------------------------------------------------------------

const intList = (v: string, ctx: z.RefinementCtx) => {
  const list = csv(v).map(Number);
  if (list.length > 0 && list.every((x) => Number.isInteger(x) && x >= 1)) return list;
  ctx.addIssue({ code: 'custom', message: 'expected a comma-separated list of positive integers' });
  return z.NEVER;
};

const BenchIndexOptions = z.object({
  index: z.string().min(1).optional(),
  synthetic: count(100).optional(),
  dim: count(8).default(128),
  queries: count(1).default(500),
  stores: z.string().default('sqlite,lance'),
  dir: z.string().min(1).default('bench-index-synthetic'),
  keep: z.boolean().default(false),
  ...LanceFlags,
  indexCacheMb: z.coerce.number().positive().optional(),
  efConstruction: z.string().default('200,100,64,48').transform(intList),
  ef: z.string().transform(intList).optional(),
  sample: count(1).default(500),
  json: z.boolean().default(false),
});

export const benchIndexCommand = withLanceFlags(new Command('index'))
  .description(
    "insertion time per item, recall@10 and search time per query for several efConstruction (and ef), on the index's own vectors; a lance index: recall@10 and time per query of its own search for several nprobes",
  )
  .addOption(flag(BenchIndexOptions, '--index <dir>', 'index directory (read only)'))
  .addOption(flag(BenchIndexOptions, '--ef-construction <list>', 'build breadths to compare (sqlite)'))
  .addOption(flag(BenchIndexOptions, '--ef <list>', "search breadths (default: the index's ef); lance: nprobes (default: the index's)"))
  .addOption(flag(BenchIndexOptions, '--sample <n>', 'stored items used as queries for recall@10'))
  .addOption(
    flag(
      BenchIndexOptions,
      '--synthetic <n>',
      'instead of --index: build both stores from n synthetic vectors (a seeded Gaussian mixture) and compare build time, recall@10, latency p50/p99 and the serving process RSS',
    ),
  )
  .addOption(flag(BenchIndexOptions, '--dim <d>', '--synthetic: vector dimension'))
  .addOption(flag(BenchIndexOptions, '--queries <n>', '--synthetic: held-out queries'))
  .addOption(flag(BenchIndexOptions, '--stores <list>', '--synthetic: stores to build (sqlite, lance)'))
  .addOption(flag(BenchIndexOptions, '--dir <dir>', '--synthetic: where the indexes are built'))
  .addOption(flag(BenchIndexOptions, '--keep', '--synthetic: keep the built indexes'))
  .addOption(
    flag(BenchIndexOptions, '--index-cache-mb <mb>', "--synthetic: the LanceDB serving process's index cache bound (serve's flag)"),
  )
  .addOption(flag(BenchIndexOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(BenchIndexOptions, raw);
    if ((o.index === undefined) === (o.synthetic === undefined)) throw new UsageError('give one of --index DIR or --synthetic N');
    if (o.synthetic !== undefined) return benchSyntheticAction({ ...o, synthetic: o.synthetic });
    const [{ openIndex }, { benchIndex, benchStoreSearch }] = await Promise.all([
      import('../index/open-store.ts'),
      import('../index/bench.ts'),
    ]);
    const index = openIndex(o.index!, { mode: 'read' });
    try {
      if (index.kind === 'lance') {
        const r = await benchStoreSearch(index, { efs: o.ef, sample: o.sample });
        if (o.json) return void printJson(r);
        return void process.stdout.write(
          `${o.index}: LanceDB, ${r.items} items, ${r.dim}-d; recall@10 of its search over ${r.queries} items against exact search\n` +
            markdownTable(
              ['nprobes', 'recall@10', 'us/query'],
              r.search.map((q) => [q.ef, q.recallAt10.toFixed(4), q.usPerQuery.toFixed(0)]),
            ) +
            '\n',
        );
      }
      const r = await benchIndex(index, o.efConstruction, { efs: o.ef, sample: o.sample });
      if (o.json) return void printJson(r);
      process.stdout.write(
        `${o.index}: ${r.items} items, ${r.dim}-d, M ${r.M}; recall@10 over ${r.queries} items against exact search; on this thread\n` +
          markdownTable(
            ['efConstruction', 'insert s', 'us/item', 'ef', 'recall@10', 'us/query'],
            r.rows.flatMap((x) =>
              x.search.map((q) => [
                x.efConstruction,
                x.insertSeconds.toFixed(1),
                x.usPerItem.toFixed(0),
                q.ef,
                q.recallAt10.toFixed(4),
                q.usPerQuery.toFixed(0),
              ]),
            ),
          ) +
          '\n',
      );
    } finally {
      index.close();
    }
  });

async function benchSyntheticAction(o: z.infer<typeof BenchIndexOptions> & { synthetic: number }): Promise<void> {
  const { benchSynthetic } = await import('../index/bench-synthetic.ts');
  const stores = csv(o.stores);
  for (const s of stores) if (s !== 'sqlite' && s !== 'lance') throw new UsageError(`--stores: ${s}: expected sqlite or lance`);
  const r = await benchSynthetic({
    n: o.synthetic,
    dim: o.dim,
    queries: o.queries,
    dir: o.dir,
    stores: stores as ('sqlite' | 'lance')[],
    keep: o.keep,
    lance: lanceParamsOf(o),
    indexCacheMB: o.indexCacheMb,
    onProgress: o.json ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  if (o.json) return void printJson(r);
  process.stdout.write(
    `${r.n} synthetic ${r.dim}-d unit vectors (seeded Gaussian mixture); ${r.queries} held-out queries; recall@10 against a plain exact scan; latency and RSS in a read-only serving child process\n` +
      markdownTable(
        ['store', 'build s', 'disk MB', 'recall@10', 'p50 ms', 'p99 ms', 'open ms', 'RSS MB', 'peak RSS MB', 'RSS before open MB'],
        r.stores.map((s) => [
          s.store,
          s.buildSeconds.toFixed(1),
          s.diskMB.toFixed(0),
          s.recallAt10.toFixed(4),
          s.p50Ms.toFixed(2),
          s.p99Ms.toFixed(2),
          s.openMs.toFixed(0),
          s.rssMB.toFixed(0),
          s.peakRssMB.toFixed(0),
          s.baseRssMB.toFixed(0),
        ]),
      ) +
      '\n' +
      rssRatio(r.stores),
  );
}

/** The LanceDB store's serving RSS as a fraction of the SQLite store's, whole and above what the process held before opening the index. */
function rssRatio(stores: { store: string; rssMB: number; baseRssMB: number }[]): string {
  const [sqlite, lance] = ['sqlite', 'lance'].map((k) => stores.find((s) => s.store === k));
  if (!sqlite || !lance) return '';
  const above = (s: typeof lance) => s.rssMB - s.baseRssMB;
  return `lance RSS / sqlite RSS: ${(lance.rssMB / sqlite.rssMB).toFixed(3)} (above the RSS before open: ${(above(lance) / above(sqlite)).toFixed(3)})\n`;
}
