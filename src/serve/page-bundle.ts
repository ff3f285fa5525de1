// The web page's script: src/web/main.ts bundled by esbuild on the first request (~0.5 s), kept in
// memory and served as /app.js. Bundling lets the page share code with the server (the preprocessing
// geometry of data/preprocess.ts, the typed API client) instead of keeping a second copy.
//
// The shared files also import Node-only modules (sharp, node:*) for their server-side functions.
// They are marked side-effect free, so esbuild drops them when the page uses none of their
// exports; the build fails when one is left in the bundle (the page would then not load).
import { fileURLToPath } from 'node:url';
import esbuild from 'esbuild';
import type { RequestHandler } from 'express';

const ENTRY = fileURLToPath(new URL('../web/main.ts', import.meta.url));
const SERVER_ONLY = /^(sharp|node:.*|onnxruntime-node)$/;

/** Bundles the page script: one minified ES module. */
export async function bundlePage(): Promise<string> {
  const r = await esbuild.build({
    entryPoints: [ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    metafile: true,
    logLevel: 'silent',
    plugins: [
      {
        name: 'server-only',
        setup(b) {
          b.onResolve({ filter: SERVER_ONLY }, (a) => ({ path: a.path, external: true, sideEffects: false }));
        },
      },
    ],
  });
  const left = Object.values(r.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path));
  if (left.length) throw new Error(`the page bundle still imports ${left.join(', ')}: src/web uses a server-only export`);
  return r.outputFiles[0].text;
}

let built: Promise<string> | undefined;

/** GET /app.js: the bundle, built on the first request and kept for the process (a build error answers 500, is logged, and is retried next time). */
export function pageBundle(): RequestHandler {
  return async (_req, res) => {
    built ??= bundlePage();
    built.catch(() => (built = undefined));
    res
      .type('application/javascript')
      .set('Cache-Control', 'no-cache')
      .send(await built);
  };
}
