// `npm run demo [-- --model DIR --index DIR --port N --host ADDR]`: builds the demo index once
// (the bundled Fashion-MNIST t10k images, embedded by the shipped model's XL) and serves it with
// the search page. Re-running reuses the index: the build skips every image already indexed.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { pino } from 'pino';
import { buildIndex } from '../src/index/build.ts';
import { loadCheckpoint } from '../src/model/checkpoint.ts';
import { startServer } from '../src/serve/server.ts';

const { values: o } = parseArgs({
  options: {
    model: { type: 'string', default: process.env.MATVIT_DEMO_MODEL ?? 'models/matvit-fmnist' },
    index: { type: 'string', default: 'indexes/demo-fmnist-t10k' },
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

if (!fs.existsSync(path.join(o.model, 'config.json'))) {
  process.stderr.write(
    `The demo needs a MatViT checkpoint at ${o.model}, and there is none (the shipped one is models/matvit-fmnist).\n` +
      `Run: npm run demo -- --model DIR   (or set MATVIT_DEMO_MODEL=DIR)\n`,
  );
  process.exit(1);
}

const checkpoint = loadCheckpoint(o.model);
const bar = new cliProgress.SingleBar(
  { format: 'indexing fashion-mnist:test [{bar}] {value}/{total} | {rate} img/s | {eta_formatted} left', stream: process.stderr },
  cliProgress.Presets.shades_classic,
);
let started = false;
const summary = await buildIndex({
  checkpoint, modelDir: o.model, data: 'fashion-mnist:test', out: o.index,
  onProgress: (p) => {
    if (!started) (bar.start(p.total, 0, { rate: '0' }), (started = true));
    bar.update(p.processed, { rate: (p.processed / Math.max(p.elapsedMs / 1000, 1e-3)).toFixed(0) });
  },
});
if (started) bar.stop();
process.stderr.write(`index ${o.index}: ${summary.live} images (${summary.added} added now, ${summary.alreadyIndexed} already there)\n`);

const server = await startServer({ index: o.index, model: o.model, port: Number(o.port), host: o.host, log: pino({ level: 'warn' }), handleSignals: true });
process.stderr.write(`MatViT image search: open ${server.url}/ (Ctrl-C to stop)\n`);
