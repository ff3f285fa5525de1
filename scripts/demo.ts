// `npm run demo [-- --model DIR --index DIR --port N --host ADDR]`: builds the demo index once
// (the bundled Fashion-MNIST t10k images, embedded by the shipped model's XL) and serves it with
// the search page. Re-running reuses the index: the build skips every image already indexed.
// When Fashion-MNIST's train split is installed, `auto`'s cascade is calibrated once on its last
// 5k images (never in the demo index) and stored with the index, so the page shows compute saved.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { parseDatasetSpec } from '../src/data/dataset.ts';
import { createEncoder } from '../src/engine/encoder.ts';
import { calibrate } from '../src/serve/calibrate.ts';
import { phaseBar } from '../src/cli/progress.ts';
import { buildIndex } from '../src/index/build.ts';
import { openCorpus } from '../src/index/corpus.ts';
import { CASCADE_META_KEY } from '../src/serve/cascade.ts';
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
const bar = phaseBar();
const summary = await buildIndex({
  checkpoint,
  modelDir: o.model,
  data: 'fashion-mnist:test',
  out: o.index,
  onProgress: (p) => bar.update('indexing fashion-mnist:test', p.processed, p.total),
});
bar.stop();
process.stderr.write(`index ${o.index}: ${summary.live} images (${summary.added} added now, ${summary.alreadyIndexed} already there)\n`);

const corpus = openCorpus(o.index, { model: o.model });
try {
  if (corpus.index.getMeta(CASCADE_META_KEY) == null) {
    // none stored (undefined), or cleared (null)
    const heldOut = await parseDatasetSpec('fashion-mnist:train[55000:]').catch(() => undefined);
    if (!heldOut)
      process.stderr.write('no Fashion-MNIST train split installed: auto is not calibrated (it answers with XL unless load is high)\n');
    else {
      const encoder = await createEncoder('onnx', corpus.checkpoint.meta.model, corpus.checkpoint.weights, { offThread: true });
      const cal = phaseBar();
      let r;
      try {
        // 0.002: below the 0.5 pt target, since a cascade picked at the edge on 5k images can miss it on others.
        r = await calibrate(corpus, encoder, heldOut, {
          tolerance: 0.002,
          onProgress: (done, total) => cal.update('calibrating auto on fashion-mnist:train[55000:]', done, total, 'queries'),
        });
      } finally {
        cal.stop();
        await encoder.dispose();
      }
      process.stderr.write(
        r.cascade
          ? `auto: ${r.cascade.stages.map((x) => x.name).join(' -> ')} at ${r.chosen.mflopsFraction.toFixed(3)} of XL's MFLOPs on the held-out images\n`
          : 'auto: no cascade cheaper than XL within tolerance\n',
      );
    }
  }
} finally {
  corpus.index.close();
}

const server = await startServer({
  index: o.index,
  model: o.model,
  port: Number(o.port),
  host: o.host,
  log: pino({ level: 'warn' }),
  handleSignals: true,
});
process.stderr.write(`MatViT image search: open ${server.url}/ (Ctrl-C to stop)\n`);
