// `matvit bench filter`: filtered recall@k and latency per route (src/index/filter-bench.ts).
import { Command } from 'commander';
import { z } from 'zod';
import { Filter } from '../index/filter.ts';
import { markdownTable } from '../util/format.ts';
// Only light modules at the top: `matvit --help` loads every command's file (test/cli.test.ts).
import { ROUTES } from '../index/types.ts';
import { UsageError, csv, flag, parseOptions, printJson } from './common.ts';
import { count } from './index-flags.ts';

const BenchFilterOptions = z.object({
  index: z.string().min(1),
  filter: z.array(z.string()).min(1),
  sample: count(1).default(200),
  k: count(1).default(10),
  ef: count(1).optional(),
  routes: z
    .string()
    .default(ROUTES.join(','))
    .pipe(
      z
        .string()
        .transform((v) => csv(v))
        .pipe(z.array(z.enum(ROUTES)).min(1)),
    ),
  json: z.boolean().default(false),
});

const collect = (v: string, prev: string[] = []) => [...prev, v];

export const benchFilterCommand = new Command('filter')
  .description('filtered search (auto, graph walk, exact scan) against exact filtered search: recall@k and latency per filter')
  .addOption(flag(BenchFilterOptions, '--index <dir>', 'index directory (opened read-only)'))
  .requiredOption('--filter <json>', 'a search filter (docs/search-api.md); repeat for several', collect)
  .addOption(flag(BenchFilterOptions, '--sample <n>', 'stored items used as queries'))
  .addOption(flag(BenchFilterOptions, '--k <n>', 'neighbours per query'))
  .addOption(flag(BenchFilterOptions, '--ef <n>', "graph search breadth (default: the index's ef); lance: nprobes (default: the index's)"))
  .addOption(flag(BenchFilterOptions, '--routes <list>', `routes to measure: ${ROUTES.join(', ')} (lance: auto only)`))
  .addOption(flag(BenchFilterOptions, '--json', 'print JSON'))
  .action(async (raw) => {
    const o = parseOptions(BenchFilterOptions, raw);
    const filters = o.filter.map((text, i) => {
      const r = Filter.safeParse(JSON.parse(text));
      if (!r.success) throw new Error(`--filter #${i + 1}: ${r.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
      return r.data;
    });
    const [{ openIndex }, { benchFilters }] = await Promise.all([import('../index/open-store.ts'), import('../index/filter-bench.ts')]);
    const index = openIndex(o.index, { mode: 'read' });
    try {
      // LanceDB has one route (its prefiltered search) and searches nprobes partitions (info's graph.ef), not an ef.
      const lance = index.kind === 'lance';
      const routes = lance ? o.routes.filter((x) => x === 'auto') : o.routes;
      if (routes.length === 0) throw new UsageError(`--routes ${o.routes.join(',')}: a lance index has one route, auto`);
      const ef = o.ef ?? (lance ? index.info().graph.ef : undefined);
      const r = await benchFilters(index, filters, { sample: o.sample, k: o.k, ef, routes });
      if (o.json) return void printJson(r);
      process.stdout.write(`${o.index}: ${r.items} items, ${r.queries} queries, recall@${r.k} against exact filtered search, ef ${r.ef}\n`);
      const rows = r.rows.flatMap((row) =>
        row.routes.map((x) => [
          JSON.stringify(row.filter),
          `${(100 * row.fraction).toFixed(2)}% (${row.matching})`,
          x.route,
          x.recall.toFixed(4),
          x.msMean.toFixed(3),
          x.msP95.toFixed(3),
        ]),
      );
      process.stdout.write(markdownTable(['filter', 'kept', 'route', `recall@${r.k}`, 'ms/query mean', 'p95'], rows) + '\n');
    } finally {
      index.close();
    }
  });
