// The `matvit` command line: one thin file per command; all the work is in src/.
import { Command, CommanderError } from 'commander';
import { UsageError } from './common.ts';
import { benchEncodeCommand, embedCommand, exportOnnxCommand } from './encode.ts';
import { datasetCommand } from './dataset.ts';
import { evalCommand } from './eval.ts';
import { benchIndexCommand, indexCommand } from './index-cmd.ts';
import { importCommand } from './import.ts';
import { infoCommand } from './info.ts';
import { initCommand } from './init.ts';
import { mixnmatchCommand } from './mixnmatch.ts';
import { reportCommand } from './report.ts';
import { benchTrainCommand, trainCommand } from './train.ts';

const program = new Command('matvit')
  .description('Elastic image retrieval with MatViT: one nested ViT, many query encoders, one metric space.')
  .showHelpAfterError()
  .exitOverride();

const bench = new Command('bench').description('benchmarks that print figures measured in one run');
for (const cmd of [benchEncodeCommand, benchTrainCommand, benchIndexCommand]) bench.addCommand(cmd.exitOverride());
for (const cmd of [initCommand, importCommand, infoCommand, embedCommand, exportOnnxCommand, trainCommand, evalCommand, mixnmatchCommand, reportCommand, datasetCommand, indexCommand, bench]) program.addCommand(cmd.exitOverride());

(await import('./serve.ts')).addServeCommands(program, bench); // serve, calibrate, bench serve

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  process.stderr.write(`error: ${(e as Error).message}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
}
