// The import-direction check (`npm run check:imports`, .dependency-cruiser.cjs) on small planted
// trees: it must fail, naming the rule, on an upward import, a file cycle and a folder cycle, and
// pass on imports that point down.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';

const ROOT = path.resolve(import.meta.dirname, '..');
const DEPCRUISE = path.join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const dirs: string[] = [];
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A temp tree with the repo's config and the given files, checked as `check:imports` does. */
async function check(files: Record<string, string>): Promise<{ code: number; out: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'matvit-imports-'));
  dirs.push(dir);
  for (const f of ['.dependency-cruiser.cjs', 'tsconfig.json']) fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  const args = [DEPCRUISE, '--config', '.dependency-cruiser.cjs', '--output-type', 'err', 'src'];
  try {
    const r = await promisify(execFile)(process.execPath, args, { cwd: dir });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

const exporting = (name: string) => `export const ${name} = 1;\n`;
const importing = (from: string, name: string) => `import { ${name} } from '${from}';\nexport const use = ${name};\n`;

describe('import-direction check', () => {
  it('fails on an upward import, a file cycle and a folder cycle, naming each rule; passes on downward imports', async () => {
    const [bad, good] = await Promise.all([
      check({
        // model (layer 1) imports serve (layer 3): upward.
        'src/model/vit.ts': importing('../serve/app.ts', 'app'),
        'src/serve/app.ts': exporting('app'),
        // Two files of util import each other.
        'src/util/a.ts': importing('./b.ts', 'b') + exporting('a'),
        'src/util/b.ts': importing('./a.ts', 'a') + exporting('b'),
        // Peers eval and index (same layer) import each other through different files: a folder cycle only.
        'src/eval/run.ts': importing('../index/store.ts', 'store'),
        'src/eval/metric.ts': exporting('metric'),
        'src/index/store.ts': exporting('store'),
        'src/index/bench.ts': importing('../eval/metric.ts', 'metric'),
      }),
      check({
        'src/cli/main.ts': importing('../serve/app.ts', 'app'),
        'src/serve/app.ts': importing('../index/store.ts', 'store') + exporting('app'),
        'src/index/store.ts': importing('../model/vit.ts', 'vit') + exporting('store'),
        'src/eval/run.ts': importing('../index/store.ts', 'store'),
        'src/model/vit.ts': importing('../util/a.ts', 'a') + exporting('vit'),
        'src/util/a.ts': exporting('a'),
      }),
    ]);
    assert.notEqual(bad.code, 0, bad.out);
    assert.match(bad.out, /error upward-import-from-model: src\/model\/vit\.ts → src\/serve\/app\.ts/);
    assert.match(bad.out, /error no-file-cycle: src\/util\/(a|b)\.ts/);
    assert.match(bad.out, /error no-folder-cycle: src\/(eval|index) →/);
    assert.doesNotMatch(bad.out, /upward-import-from-(util|eval|index)/, 'peers and the cycle in util are not upward imports');
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, /no dependency violations found/);
  });
});
