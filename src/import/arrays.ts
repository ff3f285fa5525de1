// Foreign arrays -> float32 host tensors. NumPy's .npy/.npz and flax's msgpack both store an array as
// (shape, dtype, raw C- or Fortran-order bytes); this file turns one such array into a HostTensor,
// converting float64, float16 and bfloat16 to float32 and naming the array in every error.
import { unzipSync } from 'fflate';
import type { HostTensor } from '../model/weights.ts';

export type ArrayMap = Record<string, HostTensor>;

const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** IEEE half -> float */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/**
 * Raw little-endian bytes of a float dtype (NumPy's names: float32, float64, float16, and JAX's
 * bfloat16, the top half of a float32) -> Float32Array in the same element order.
 */
export function floatsFromBytes(bytes: Uint8Array, dtype: string, count: number, what: string): Float32Array {
  const itemsize = { float32: 4, float64: 8, float16: 2, bfloat16: 2 }[dtype];
  if (itemsize === undefined)
    throw new Error(`${what}: dtype ${dtype} is not a float type (accepted: float32, float64, float16, bfloat16)`);
  if (bytes.byteLength !== count * itemsize)
    throw new Error(`${what}: ${bytes.byteLength} bytes of ${dtype} for ${count} values (expected ${count * itemsize})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (dtype === 'float32')
    new Uint8Array(out.buffer).set(bytes); // aligned copy
  else if (dtype === 'float64') for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
  else if (dtype === 'float16') for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
  else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  }
  return out;
}

/** Column-major (Fortran order) data -> row-major, same shape. */
function fortranToC(data: Float32Array, shape: readonly number[]): Float32Array {
  if (shape.length < 2) return data;
  const out = new Float32Array(data.length);
  const idx = new Array<number>(shape.length).fill(0);
  for (let c = 0; c < data.length; c++) {
    let f = 0;
    for (let k = shape.length - 1; k >= 0; k--) f = f * shape[k] + idx[k];
    out[c] = data[f];
    for (let k = shape.length - 1; k >= 0 && ++idx[k] === shape[k]; k--) idx[k] = 0;
  }
  return out;
}

// NumPy's type strings of the little-endian float dtypes.
const NPY_DTYPES: Record<string, string> = { '<f4': 'float32', '<f8': 'float64', '<f2': 'float16' };

/**
 * One .npy file (format versions 1-3, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
 * magic "\x93NUMPY", version, header length, a Python dict literal {'descr', 'fortran_order', 'shape'}, data.
 * Integer and boolean arrays (step counters) are not parameters: undefined.
 */
export function parseNpy(buf: Uint8Array, what: string): HostTensor | undefined {
  const fail = (why: string): never => {
    throw new Error(`${what}: not a valid .npy array: ${why}`);
  };
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (buf.length < 10 || magic.some((b, i) => buf[i] !== b)) fail('missing the \\x93NUMPY magic');
  const major = buf[6];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const [len, start] =
    major === 1
      ? [view.getUint16(8, true), 10]
      : major === 2 || major === 3
        ? [view.getUint32(8, true), 12]
        : fail(`format version ${major}`);
  if (start + len > buf.length) fail(`header length ${len} exceeds the file`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(buf.subarray(start, start + len));
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1] ?? fail(`no 'descr' in header ${header.trim()}`);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1] ?? fail(`no 'fortran_order' in header ${header.trim()}`);
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1] ?? fail(`no 'shape' in header ${header.trim()}`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) fail(`shape (${shapeText})`);
  if (/^[<>|=][iub]\d+$/.test(descr)) return undefined;
  const dtype = NPY_DTYPES[descr];
  if (!dtype) fail(`dtype '${descr}' is not a little-endian float type (accepted: ${Object.keys(NPY_DTYPES).join(', ')})`);
  const count = product(shape);
  const data = floatsFromBytes(buf.subarray(start + len), dtype, count, what);
  return { shape, data: fortran === 'True' ? fortranToC(data, shape) : data };
}

/** An .npz file (a zip of name.npy entries, as numpy.savez and savez_compressed write) -> arrays by name. */
export function readNpz(buf: Uint8Array, what: string): ArrayMap {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(buf);
  } catch (e) {
    throw new Error(`${what}: not a valid .npz (zip) file: ${(e as Error).message}`);
  }
  const out: ArrayMap = {};
  for (const [entry, bytes] of Object.entries(files)) {
    if (!entry.endsWith('.npy')) continue;
    const name = entry.slice(0, -4);
    const t = parseNpy(bytes, `${what}: ${name}`);
    if (t) out[name] = t;
  }
  if (Object.keys(out).length === 0) throw new Error(`${what}: the .npz file holds no float .npy arrays`);
  return out;
}
