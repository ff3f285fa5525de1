// What the web page needs to encode a query in the browser (issue 18 item 6):
//
//   GET /v1/models/FINGERPRINT                 the model's config (preprocessing) and menu, each entry with its ONNX URL
//   GET /v1/models/FINGERPRINT/ENTRY.onnx      the ONNX graph of a menu entry (onnx-graph.ts, as the server runs it)
//   GET /vendor/onnxruntime-web@VERSION/FILE   onnxruntime-web's wasm runtime, from node_modules (no CDN)
//   GET /app.js                                the page's script, bundled from src/web (page-bundle.ts)
//
// A fingerprint names the weights and an entry its widths, so an ONNX URL always names the same
// bytes: it is served immutable, with an ETag (its sha256) and 304 on If-None-Match, and a browser
// downloads it once. The runtime's URL carries its version for the same reason.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import express, { type Router } from 'express';
import { buildOnnxModel } from '../engine/onnx-graph.ts';
import { ApiError } from './errors.ts';
import type { ServiceEntry } from './menu.ts';
import { pageBundle } from './page-bundle.ts';
import type { ModelResponse } from './responses.ts';
import type { SearchService } from './service.ts';

const require = createRequire(import.meta.url);
const ORT_DIST = path.dirname(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
const ORT_VERSION: string = JSON.parse(fs.readFileSync(path.join(ORT_DIST, '../package.json'), 'utf8')).version;
/** Where the page finds the runtime (ort.env.wasm.wasmPaths). */
export const ORT_PATH = `/vendor/onnxruntime-web@${ORT_VERSION}/`;
/** The one runtime the page loads: single-threaded SIMD wasm (threads need cross-origin isolation). */
const ORT_FILES = new Set(['ort-wasm-simd-threaded.wasm', 'ort-wasm-simd-threaded.mjs']);
const IMMUTABLE = 'public, max-age=31536000, immutable';
const gzip = promisify(zlib.gzip);
/** Bytes of ONNX graphs kept built: every menu entry of vit-s16 (37-87 MB each) fits. */
const GRAPH_CACHE_BYTES = 256 * 2 ** 20;

interface Built {
  bytes: Buffer;
  etag: string;
}

export function modelRoutes(service: SearchService): Router {
  const router = express.Router();
  const { meta, weights } = service.deps.corpus.checkpoint;
  const fingerprint = meta.fingerprint;
  // Graphs built (a build blocks the event loop: 0.4 s for the shipped model's, 1 s for vit-s16 XL's),
  // least recently used first, kept while they total at most GRAPH_CACHE_BYTES; ETags of every graph
  // built, for 304s without a rebuild.
  const graphs = new Map<string, Built>();
  const etags = new Map<string, string>();
  // The runtime gzipped once (14.2 MB of wasm -> 3.7 MB): the page's largest download.
  const gzipped = new Map<string, Promise<Buffer>>();

  const checkModel = (fp: unknown) => {
    if (fp !== fingerprint)
      throw new ApiError(404, 'unknown-model', `no model with fingerprint ${JSON.stringify(fp)}; this server has ${fingerprint}`);
  };
  const entryNamed = (name: string): ServiceEntry => {
    const entry = service.menu.byName(name);
    if (!entry)
      throw new ApiError(
        404,
        'unknown-entry',
        `model ${fingerprint} has no menu entry ${JSON.stringify(name)}; entries: ${service.menu.entries.map((e) => e.name).join(', ')}`,
      );
    return entry;
  };

  const build = (entry: ServiceEntry): Built => {
    const key = entry.ffnDims.join(',');
    let g = graphs.get(key);
    if (!g) {
      const bytes = Buffer.from(buildOnnxModel(meta.model, weights, entry.ffnDims));
      g = { bytes, etag: `"${createHash('sha256').update(bytes).digest('base64url')}"` };
      etags.set(key, g.etag);
    }
    graphs.delete(key);
    graphs.set(key, g); // the most recently used last
    let total = [...graphs.values()].reduce((n, x) => n + x.bytes.length, 0);
    for (const [k, x] of graphs) {
      if (total <= GRAPH_CACHE_BYTES || k === key) break;
      graphs.delete(k);
      total -= x.bytes.length;
    }
    return g;
  };

  router.get('/v1/models/:fingerprint', (req, res) => {
    checkModel(req.params.fingerprint);
    const body: ModelResponse = {
      fingerprint,
      // The whole config: the page preprocesses with its imageSize, channels, mean/std, cropPct, interpolation.
      config: meta.model,
      embeddingDim: service.index.info().manifest.dim,
      runtime: { name: 'onnxruntime-web', version: ORT_VERSION, wasmPaths: ORT_PATH },
      entries: service.menu.entries.map((e) => ({
        name: e.name,
        ffnDims: e.ffnDims,
        mflops: e.mflops,
        onnx: `/v1/models/${fingerprint}/${encodeURIComponent(e.name)}.onnx`,
      })),
    };
    res.json(body);
  });

  router.get('/v1/models/:fingerprint/:file', (req, res) => {
    const file = String(req.params.file);
    if (!file.endsWith('.onnx'))
      throw new ApiError(404, 'not-found', `no route GET ${req.path}; model graphs are at /v1/models/FINGERPRINT/ENTRY.onnx`);
    checkModel(req.params.fingerprint);
    const entry = entryNamed(file.slice(0, -'.onnx'.length));
    res.set({ 'Cache-Control': IMMUTABLE, 'Content-Type': 'application/octet-stream' });
    const known = etags.get(entry.ffnDims.join(','));
    if (
      known &&
      req
        .get('if-none-match')
        ?.split(/\s*,\s*/)
        .includes(known)
    ) {
      res.set('ETag', known).status(304).end();
      return;
    }
    const { bytes, etag } = build(entry);
    res.set('ETag', etag).send(bytes); // send answers 304 itself when If-None-Match matches
  });

  router.get(`${ORT_PATH}:file`, async (req, res) => {
    const file = String(req.params.file);
    if (!ORT_FILES.has(file))
      throw new ApiError(404, 'not-found', `${ORT_PATH}${file}: not served; the runtime files are ${[...ORT_FILES].join(', ')}`);
    res.set({ 'Cache-Control': IMMUTABLE, Vary: 'Accept-Encoding' });
    res.type(file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript');
    if (!req.acceptsEncodings('gzip')) return res.sendFile(path.join(ORT_DIST, file));
    let zipped = gzipped.get(file);
    if (!zipped) {
      zipped = fs.promises.readFile(path.join(ORT_DIST, file)).then((b) => gzip(b));
      gzipped.set(file, zipped);
      zipped.catch(() => gzipped.delete(file));
    }
    res.set('Content-Encoding', 'gzip').send(await zipped);
  });

  router.get('/app.js', pageBundle());
  return router;
}
