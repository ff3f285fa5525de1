// Query encoding in the browser (issue 18 item 6): the ONNX graph of the model's smallest menu
// entry (GET /v1/models/FINGERPRINT/ENTRY.onnx, the graph the server itself runs) in
// onnxruntime-web's wasm backend, on the image preprocessed as the server does it (preprocess.ts).
// The result is a unit vector in the corpus' metric space, searched by POST /v1/search {vector}.
import * as ort from 'onnxruntime-web/wasm';
import type { ModelConfig } from '../model/config.ts';
import { modelInput } from './preprocess.ts';

/** GET /v1/models/FINGERPRINT (src/serve/model-routes.ts). */
export interface ModelManifest {
  fingerprint: string;
  config: ModelConfig;
  runtime: { name: string; version: string; wasmPaths: string };
  entries: { name: string; ffnDims: number[]; mflops: number; onnx: string }[];
}

export interface BrowserEncoder {
  manifest: ModelManifest;
  entry: ModelManifest['entries'][number];
  session: ort.InferenceSession;
  /** Time to download (or read from the cache) and compile the graph, ms. */
  loadMs: number;
}

export interface BrowserEncoding {
  vector: Float32Array;
  /** decode: the image to pixels; preprocess: to the model input; run: the graph. */
  ms: { decode: number; preprocess: number; run: number; total: number };
}

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status} ${r.statusText}`);
  return (await r.json()) as T;
}

/** Loads the smallest menu entry of the model `fingerprint`; throws (with why) where the browser cannot run it. */
export async function loadBrowserEncoder(fingerprint: string): Promise<BrowserEncoder> {
  if (typeof WebAssembly !== 'object') throw new Error('this browser has no WebAssembly');
  const t0 = performance.now();
  const manifest = await getJson<ModelManifest>(`/v1/models/${fingerprint}`);
  const entry = manifest.entries[0]; // cheapest first
  ort.env.wasm.wasmPaths = manifest.runtime.wasmPaths;
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation (SharedArrayBuffer)
  ort.env.wasm.proxy = false;
  const r = await fetch(entry.onnx);
  if (!r.ok) throw new Error(`${entry.onnx}: ${r.status} ${r.statusText}`);
  const session = await ort.InferenceSession.create(new Uint8Array(await r.arrayBuffer()), { executionProviders: ['wasm'] });
  return { manifest, entry, session, loadMs: performance.now() - t0 };
}

/** The format sharp would read in the file (its shrink-on-load differs by format). */
async function sniff(blob: Blob): Promise<string | undefined> {
  const b = new Uint8Array(await blob.slice(0, 12).arrayBuffer());
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  return undefined;
}

/** The image's pixels as the server decodes them: EXIF orientation applied, alpha flattened onto white, sRGB. */
async function decode(blob: Blob): Promise<{ rgba: Uint8ClampedArray; width: number; height: number }> {
  const bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image', colorSpaceConversion: 'default' });
  try {
    const { width, height } = bitmap;
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
    if (!ctx) throw new Error('no 2d canvas');
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, width, height);
    ctx.drawImage(bitmap, 0, 0);
    return { rgba: ctx.getImageData(0, 0, width, height).data, width, height };
  } finally {
    bitmap.close();
  }
}

export async function encodeInBrowser(enc: BrowserEncoder, blob: Blob): Promise<BrowserEncoding> {
  const c = enc.manifest.config;
  const t0 = performance.now();
  const [{ rgba, width, height }, format] = await Promise.all([decode(blob), sniff(blob)]);
  const t1 = performance.now();
  const input = modelInput(rgba, width, height, c, format);
  const t2 = performance.now();
  const out = await enc.session.run({ pixels: new ort.Tensor('float32', input, [1, c.channels, c.imageSize, c.imageSize]) });
  const t3 = performance.now();
  return { vector: out.embedding.data as Float32Array, ms: { decode: t1 - t0, preprocess: t2 - t1, run: t3 - t2, total: t3 - t0 } };
}

/** Bytes the browser fetched over the network for the encoder (ONNX graph, runtime); 0 for what came from its cache. */
export function downloadedBytes(runtimePath: string): number {
  return (performance.getEntriesByType('resource') as PerformanceResourceTiming[])
    .filter((e) => e.name.includes('/v1/models/') || e.name.includes(runtimePath))
    .reduce((s, e) => s + e.transferSize, 0);
}
