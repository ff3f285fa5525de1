// `node --import tsx scripts/bench-queue.ts [--model DIR] [--data SPEC] [--batch N] [--workers 1,2] [--json FILE]`:
// local `index build` img/s against the queue with 1 and 2 workers plus the collector, in one run,
// and the bytes through Redis per image (src/queue/bench.ts says what is timed).
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { benchQueue } from '../src/queue/bench.ts';

const { values: o } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/matvit-fmnist' },
    data: { type: 'string', default: 'fashion-mnist:train' },
    batch: { type: 'string' },
    workers: { type: 'string', default: '1,2' },
    json: { type: 'string' },
  },
});
const r = await benchQueue({
  model: o.model,
  data: o.data,
  batch: o.batch === undefined ? undefined : Number(o.batch),
  workers: o.workers.split(',').map(Number),
  log: (line) => process.stdout.write(line + '\n'),
});
if (o.json) fs.writeFileSync(o.json, JSON.stringify(r, null, 2) + '\n');
