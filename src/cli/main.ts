// The `matvit` command line: one thin file per command; all the work is in src/. The command files
// import only commander, zod and the option schemas; each action imports the modules that do its
// work when it runs, so `matvit --help` loads no engine, image codec or chart library.
import { Command, CommanderError } from 'commander';
import { UsageError } from './common.ts';
import { benchEncodeCommand, embedCommand, exportOnnxCommand } from './encode.ts';
import { datasetCommand } from './dataset.ts';
import { evalCommand } from './eval.ts';
import { indexCommand } from './index-cmd.ts';
import { benchFilterCommand } from './bench-filter.ts';
import { benchIndexCommand } from './index-maintain.ts';
import { importCommand } from './import.ts';
import { infoCommand } from './info.ts';
import { matformerizeCommand } from './matformerize.ts';
import { initCommand } from './init.ts';
import { mixnmatchCommand } from './mixnmatch.ts';
import { reportCommand } from './report.ts';
import { benchServeCommand, calibrateCommand, serveCommand } from './serve.ts';
import { benchTrainCommand, trainCommand } from './train.ts';

const program = new Command('matvit').description(
  'Elastic image retrieval with MatViT: one nested ViT, many query encoders, one metric space.',
);
const bench = new Command('bench').description('benchmarks that print figures measured in one run');
for (const cmd of [benchEncodeCommand, benchTrainCommand, benchIndexCommand, benchFilterCommand, benchServeCommand]) bench.addCommand(cmd);
const commands = [
  initCommand,
  importCommand,
  infoCommand,
  embedCommand,
  exportOnnxCommand,
  trainCommand,
  evalCommand,
  mixnmatchCommand,
  matformerizeCommand,
  reportCommand,
  datasetCommand,
  indexCommand,
  serveCommand,
  calibrateCommand,
  bench,
];
for (const cmd of commands) program.addCommand(cmd);

/** Every command throws instead of exiting (handled below) and answers a typo with a suggestion and a pointer to --help. */
function configure(cmd: Command): void {
  cmd
    .exitOverride()
    .showSuggestionAfterError(true)
    .showHelpAfterError(`(run \`${[...ancestry(cmd), '--help'].join(' ')}\` for usage)`);
  cmd.commands.forEach(configure);
}
const ancestry = (cmd: Command): string[] => (cmd.parent ? [...ancestry(cmd.parent), cmd.name()] : [cmd.name()]);
configure(program);

// `matvit ... | head` closes stdout early: stop quietly, as Unix tools do.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
  process.exit(0);
});

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  process.stderr.write(`error: ${(e as Error).message}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
}
