// Picks the tfjs backend at run time. @tensorflow/tfjs-node-gpu and @tensorflow/tfjs-node are
// optional peer dependencies: their install downloads libtensorflow, which works on a user's
// machine with internet (and CUDA) but not everywhere, so they are used when present. Otherwise
// wasm (single-threaded in Node, ~20 GFLOP/s), and the pure-JS cpu backend as the last resort.
import * as tf from '@tensorflow/tfjs-core';

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

/** Initializes tfjs once per process and returns the backend in use; logs it to stderr. */
export function initTfjs(requested: string = 'auto', log: (msg: string) => void = (m) => process.stderr.write(m + '\n')): Promise<string> {
  if (!(BACKENDS as readonly string[]).includes(requested))
    throw new Error(`--backend ${requested}: accepted values are ${BACKENDS.join(', ')}`);
  chosen ??= (async () => {
    const tried: string[] = [];
    for (const cand of CANDIDATES) {
      if (requested !== 'auto' && cand.backend !== requested) continue;
      try {
        await cand.load();
        if (await tf.setBackend(cand.backend)) {
          await tf.ready();
          if (cand.backend === 'wasm') shareIdentityData();
          log(`tfjs ${tf.version_core}: backend ${tf.getBackend()}`);
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
