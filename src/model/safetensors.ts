// The safetensors file format (float32 only): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}, then the raw
// little-endian data. No npm library for it is kept up; the format is small enough to read here.
import type { HostTensor } from './weights.ts';

export function encodeSafetensors(tensors: Record<string, HostTensor>, metadata: Record<string, string> = {}): Buffer {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const n of names) {
    const bytes = tensors[n].data.byteLength;
    header[n] = { dtype: 'F32', shape: tensors[n].shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // keep the data 8-byte aligned
  const head = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + head.length + offset);
  out.writeBigUInt64LE(BigInt(head.length), 0);
  head.copy(out, 8);
  let pos = 8 + head.length;
  for (const n of names) {
    const d = tensors[n].data;
    Buffer.from(d.buffer, d.byteOffset, d.byteLength).copy(out, pos);
    pos += d.byteLength;
  }
  return out;
}

export function decodeSafetensors(
  buf: Buffer,
  source = 'safetensors',
): { tensors: Record<string, HostTensor>; metadata: Record<string, string> } {
  const fail = (why: string): never => {
    throw new Error(`${source}: not a valid safetensors file: ${why}`);
  };
  if (buf.length < 8) fail(`${buf.length} bytes, shorter than the 8-byte header length`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) fail(`header length ${n} exceeds the file (${buf.length} bytes)`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  } catch (e) {
    return fail(`header is not JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + n;
  const tensors: Record<string, HostTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = info as unknown as Record<string, string>;
      continue;
    }
    if (info.dtype !== 'F32') fail(`${name} has dtype ${info.dtype}; only F32 is supported`);
    const [b, e] = info.data_offsets;
    const count = info.shape.reduce((x, y) => x * y, 1);
    if (e - b !== count * 4 || dataStart + e > buf.length)
      fail(`${name}: offsets [${b}, ${e}] do not fit shape [${info.shape}] in the file`);
    // Copy into a fresh, aligned buffer: the data section need not be 4-byte aligned in `buf`.
    const data = new Float32Array(count);
    Buffer.from(data.buffer).set(buf.subarray(dataStart + b, dataStart + e));
    tensors[name] = { shape: info.shape, data };
  }
  return { tensors, metadata };
}
