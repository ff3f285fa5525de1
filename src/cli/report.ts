// `matvit report`: reads the JSON results of eval classify, eval retrieval and mixnmatch, writes
// DIR/README.md and its SVG charts. The page itself is built by src/eval/report.ts.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { renderSvg } from '../eval/plot.ts';
import { UsageError, flag, parseOptions } from './common.ts';

const Options = z
  .object({
    in: z.array(z.string().min(1)).min(1),
    out: z.string().min(1),
    title: z.string().trim().min(1).default('MatViT results'),
  })
  .strict();

/** An argument as a POSIX shell reads it back: quoted unless it holds only safe characters. */
const shellWord = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`);

function readJson(file: string): unknown {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--in: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not JSON: ${(e as Error).message}`);
  }
}

export const reportCommand = new Command('report')
  .description(
    'one Markdown page (DIR/README.md) with SVG charts from the JSON results of `eval classify --json`, `eval retrieval --json` and `mixnmatch --out`',
  )
  .addOption(flag(Options, '--in <files...>', 'result JSON files (kind classify, retrieval or mixnmatch)'))
  .addOption(flag(Options, '--out <dir>', 'directory for README.md and the charts'))
  .addOption(flag(Options, '--title <text>', 'page title'))
  .action(async (raw) => {
    const o = parseOptions(Options, raw);
    const [{ buildReport }, { parseResult }] = await Promise.all([import('../eval/report.ts'), import('../eval/result-files.ts')]);
    const twice = o.in.find((f, i) => o.in.findIndex((g) => path.resolve(g) === path.resolve(f)) !== i);
    if (twice !== undefined) throw new UsageError(`--in: ${twice} is given twice`);
    // Links are relative to the page, so the directory can move with its inputs and the bytes do
    // not depend on where the command ran.
    const inputs = o.in.map((file) => ({
      file: path.relative(o.out, file).split(path.sep).join('/'),
      result: parseResult(file, readJson(file)),
    }));
    const report = buildReport(inputs, { title: o.title, command: process.argv.slice(2).map(shellWord).join(' ') });
    fs.mkdirSync(o.out, { recursive: true });
    for (const c of report.charts) fs.writeFileSync(path.join(o.out, c.file), await renderSvg(c.spec));
    const page = path.join(o.out, 'README.md');
    fs.writeFileSync(page, report.markdown);
    process.stdout.write(`wrote ${page} and ${report.charts.length} charts (${report.charts.map((c) => c.file).join(', ')})\n`);
  });
