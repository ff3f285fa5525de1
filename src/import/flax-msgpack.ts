// Flax msgpack checkpoints (flax.serialization.to_bytes / msgpack_serialize): a msgpack map of
// nested maps whose array leaves are ext type 1 with a msgpack payload [shape, dtype name, raw
// C-order bytes] (ext type 3 is a NumPy scalar in the same form). Arrays over 2^30 bytes are
// stored as {__msgpack_chunked_array__: true, shape: {"0": d0, ...}, chunks: {"0": flat, ...}};
// lists and tuples are maps keyed "0", "1", ... (https://github.com/google/flax, flax/serialization.py).
import { ExtensionCodec, decode } from '@msgpack/msgpack';
import { type ArrayMap, floatsFromBytes } from './arrays.ts';

/** An array leaf as stored: converted to float32 only when it is a parameter. */
class RawArray {
  constructor(
    readonly shape: number[],
    readonly dtype: string,
    readonly bytes: Uint8Array,
  ) {}
}

const codec = new ExtensionCodec();
const rawArray = (data: Uint8Array) => {
  const [shape, dtype, bytes] = decode(data) as [number[], string | Uint8Array, Uint8Array];
  return new RawArray([...shape], typeof dtype === 'string' ? dtype : new TextDecoder().decode(dtype), bytes);
};
codec.register({ type: 1, encode: () => null, decode: rawArray }); // ndarray
codec.register({ type: 3, encode: () => null, decode: rawArray }); // NumPy scalar

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof RawArray) && !ArrayBuffer.isView(v);
const FLOATS = new Set(['float32', 'float64', 'float16', 'bfloat16']);

/** A chunked array's map -> one array of its shape (the chunks are the flat array in order). */
function unchunk(m: Record<string, unknown>, what: string): RawArray {
  const fail = (why: string): never => {
    throw new Error(`${what}: invalid chunked array: ${why}`);
  };
  const shapeMap = isMap(m.shape) ? m.shape : fail('no shape map');
  const chunkMap = isMap(m.chunks) ? m.chunks : fail('no chunks map');
  const shape = Object.keys(shapeMap).map((_, i) =>
    typeof shapeMap[String(i)] === 'number' ? (shapeMap[String(i)] as number) : fail(`shape entry "${i}"`),
  );
  const chunks = Object.keys(chunkMap).map((_, i) =>
    chunkMap[String(i)] instanceof RawArray ? (chunkMap[String(i)] as RawArray) : fail(`chunk "${i}" is missing or not an array`),
  );
  if (chunks.length === 0) fail('no chunks');
  const dtype = chunks[0].dtype;
  if (chunks.some((c) => c.dtype !== dtype)) fail(`chunks of different dtypes (${[...new Set(chunks.map((c) => c.dtype))].join(', ')})`);
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.bytes.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    bytes.set(c.bytes, at);
    at += c.bytes.byteLength;
  }
  return new RawArray(shape, dtype, bytes);
}

/**
 * Decodes a flax msgpack checkpoint into its float arrays, named by their '/'-joined path
 * ("params/Transformer/encoder_norm/scale"). Non-float leaves (step counters, RNG keys) and
 * non-array values are left out.
 */
export function readFlaxMsgpack(buf: Uint8Array, what: string): ArrayMap {
  let tree: unknown;
  try {
    tree = decode(buf, { extensionCodec: codec });
  } catch (e) {
    throw new Error(`${what}: not a valid msgpack file: ${(e as Error).message}`);
  }
  if (!isMap(tree)) throw new Error(`${what}: the msgpack document is not a map of parameters`);
  const out: ArrayMap = {};
  const walk = (node: unknown, path: string) => {
    if (isMap(node) && node.__msgpack_chunked_array__ === true) node = unchunk(node, `${what}: ${path}`);
    if (node instanceof RawArray) {
      if (!FLOATS.has(node.dtype)) return;
      const count = node.shape.reduce((a, b) => a * b, 1);
      out[path] = { shape: node.shape, data: floatsFromBytes(node.bytes, node.dtype, count, `${what}: ${path}`) };
    } else if (isMap(node)) for (const [k, v] of Object.entries(node)) walk(v, path ? `${path}/${k}` : k);
  };
  walk(tree, '');
  if (Object.keys(out).length === 0) throw new Error(`${what}: the msgpack file holds no float arrays`);
  return out;
}
