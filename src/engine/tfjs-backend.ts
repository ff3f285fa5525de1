// Picks the tfjs backend at run time. @tensorflow/tfjs-node-gpu and @tensorflow/tfjs-node are
// optional peer dependencies: their install downloads libtensorflow, which works on a user's
// machine with internet (and CUDA) but not everywhere, so they are used when present. Otherwise
// wasm, on every core (see useThreadedWasm), and the pure-JS cpu backend as the last resort.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

const require = createRequire(import.meta.url); // tfjs-wasm's Emscripten outputs are CommonJS
export const BACKENDS = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
type Candidate = { backend: string; load: () => Promise<unknown> };

// Module names in variables: TypeScript must not try to resolve packages that may be absent.
const optional = (name: string) => () => import(name);
const CANDIDATES: Candidate[] = [
  { backend: 'tensorflow', load: optional('@tensorflow/tfjs-node-gpu') },
  { backend: 'tensorflow', load: optional('@tensorflow/tfjs-node') },
  { backend: 'wasm', load: () => import('@tensorflow/tfjs-backend-wasm') },
  { backend: 'cpu', load: () => import('@tensorflow/tfjs-backend-cpu') },
];

let chosen: Promise<string> | undefined;

/**
 * Initializes tfjs once per process and returns the backend in use; `log` (default: stderr) gets
 * the backend line. `threads` (default: every core) sizes the wasm backend's thread pool; the first
 * call decides.
 */
export function initTfjs(
  requested: string = 'auto',
  {
    log = (m) => process.stderr.write(m + '\n'),
    threads = os.availableParallelism(),
  }: { log?: (msg: string) => void; threads?: number } = {},
): Promise<string> {
  if (!(BACKENDS as readonly string[]).includes(requested))
    throw new Error(`--backend ${requested}: accepted values are ${BACKENDS.join(', ')}`);
  chosen ??= (async () => {
    const tried: string[] = [];
    for (const cand of CANDIDATES) {
      if (requested !== 'auto' && cand.backend !== requested) continue;
      try {
        await cand.load();
        if (cand.backend === 'wasm') await useThreadedWasm(threads, log);
        if (await tf.setBackend(cand.backend)) {
          await tf.ready();
          if (cand.backend === 'wasm') shareIdentityData();
          log(`tfjs ${tf.version_core}: backend ${backendLabel(tf.getBackend(), await wasmThreads())}`);
          return tf.getBackend();
        }
        tried.push(`${cand.backend}: setBackend failed`);
      } catch (e) {
        tried.push(`${cand.backend}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    throw new Error(`no tfjs backend for "${requested}" could start:\n  ${tried.join('\n  ')}`);
  })();
  return chosen;
}

/** "wasm, 2 thread(s)", or the backend's name alone when it has no thread pool. */
export const backendLabel = (backend: string, threads?: number) => `${backend}${threads ? `, ${threads} thread(s)` : ''}`;

/** The size of tfjs-wasm's thread pool when it is the backend in use (other backends: undefined). */
export async function wasmThreads(): Promise<number | undefined> {
  return tf.getBackend() === 'wasm' ? (await import('@tensorflow/tfjs-backend-wasm')).getThreadsCount() : undefined;
}

/**
 * tfjs-wasm's Identity kernel copies its input. The engine runs it for every tensor a gradient needs
 * (it clones what it saves for the backward pass), so under a gradient tape a training step copied
 * ~270 activations. Tensors are immutable (a Variable's assign rebinds its data, it never writes
 * into it), so the copy can share the data with a reference count, as tfjs-backend-cpu's Identity does.
 */
function shareIdentityData(): void {
  tf.unregisterKernel(tf.Identity, 'wasm');
  tf.registerKernel({
    kernelName: tf.Identity,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = inputs.x as tf.TensorInfo;
      (backend as unknown as { incRef(d: tf.DataId): void }).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  });
}

/**
 * Runs tfjs-wasm on `threads` cores. The package ships a threaded SIMD build (XNNPACK on a pthread
 * pool) but never loads it in Node (tfjs issue 3830: its loader hands Emscripten browser Blob URLs),
 * and it sizes the pool as logical cores / 2 (it assumes hyperthreads): on 2 cores, 1 thread. So the
 * 'wasm' backend's factory is replaced by one that loads that build with plain file paths: the
 * worker script (shipped as a string) is written once to the temp folder, and the core count the
 * module sees is 2 * threads. Kernels and their results are the same as the single-threaded
 * build's (every output element is still computed by one thread, in the same order); products and
 * convolutions run ~2x faster on 2 cores. Any failure falls back to tfjs's own loader.
 */
async function useThreadedWasm(threads: number, log: (msg: string) => void): Promise<void> {
  if (threads <= 1) return;
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const original = tf.findBackendFactory('wasm');
  if (!original) return;
  const dir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
  const load = async () => {
    const factory = require(path.join(dir, 'tfjs-backend-wasm-threaded-simd.js')) as (config: object) => Promise<EmscriptenModule>;
    const binary = path.join(dir, 'tfjs-backend-wasm-threaded-simd.wasm');
    const worker = workerScript(dir); // once: Emscripten locates it for each of its pool's workers
    const module = await factory({
      locateFile: (file: string) => (file.endsWith('.worker.js') ? worker : path.join(dir, file)),
      mainScriptUrlOrBlob: path.join(dir, 'tfjs-backend-wasm-threaded-simd.js'), // what each worker evaluates
      instantiateWasm: (imports: { env: Record<string, unknown> }, receive: (i: WebAssembly.Instance, m: WebAssembly.Module) => void) => {
        imports.env.emscripten_num_logical_cores = () => 2 * threads;
        const compiled = new WebAssembly.Module(fs.readFileSync(binary));
        receive(new WebAssembly.Instance(compiled, imports as WebAssembly.Imports), compiled);
        return {};
      },
    });
    // The bridge tfjs's own loader sets up (backend_wasm.ts, init()).
    module.tfjs = {
      init: module.cwrap('init', null, []),
      initWithThreadsCount: module.cwrap('init_with_threads_count', null, ['number']),
      getThreadsCount: module.cwrap('get_threads_count', 'number', []),
      registerTensor: module.cwrap('register_tensor', null, ['number', 'number', 'number']),
      disposeData: module.cwrap('dispose_data', null, ['number']),
      dispose: module.cwrap('dispose', null, []),
    };
    wasm.setThreadsCount(threads);
    const backend = new wasm.BackendWasm(module as unknown as ConstructorParameters<typeof wasm.BackendWasm>[0]);
    // Emscripten keeps a running pthread's worker referenced, so the pool's threads (started just
    // now, idle between kernels) would keep the process alive after its work is done.
    for (const worker of module.PThread.runningWorkers) worker.unref();
    return backend;
  };
  tf.removeBackend('wasm');
  tf.registerBackend(
    'wasm',
    async () => {
      try {
        return await load();
      } catch (e) {
        log(`tfjs-wasm: threaded build failed (${(e as Error).message}); single-threaded`);
        return original();
      }
    },
    2,
  );
}

type EmscriptenModule = {
  cwrap: (name: string, ret: string | null, args: string[]) => unknown;
  PThread: { runningWorkers: { unref(): void }[] };
  tfjs?: unknown;
};

/** The threaded build's worker script as a file (the package ships it as a string export). */
function workerScript(dir: string): string {
  const { wasmWorkerContents } = require(path.join(dir, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  // The export holds the script with its string literals' "\n" turned into raw newlines (tfjs's
  // loader escapes them again before use).
  const code = wasmWorkerContents.replace(/\n/g, '\\n');
  const file = path.join(os.tmpdir(), `tfjs-backend-wasm-${tf.version_core}-threaded-simd.worker.cjs`);
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== code) {
    const tmp = `${file}.${process.pid}`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, file); // atomic: concurrent processes never see a partial script
  }
  return file;
}
