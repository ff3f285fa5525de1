// One corpus item from the dataset to the model's input: the step every indexer shares (the local
// pipeline, pipeline.ts, and the queue's encode workers, src/queue/worker.ts).
import type { Dataset, DatasetItem } from '../data/dataset.ts';
import { type DecodeOptions, preprocessImage, preprocessPixels } from '../data/preprocess.ts';
import type { ModelConfig } from '../model/config.ts';
import { sha256Hex } from '../util/hash.ts';

/** What the index records as an item's source: the path relative to the corpus root, or the IDX ref. */
export const sourceOf = (item: DatasetItem): string => item.path ?? item.ref;

/** An item's content (read once: hashed and decoded from the same buffer) and its sha256; an unreadable file throws DecodeError. */
export async function readItem(ds: Dataset, i: number): Promise<{ bytes: Buffer; sha256: string }> {
  const bytes = await ds.bytes(i);
  return { bytes, sha256: sha256Hex(bytes) };
}

/** The model input of an item's bytes (IDX pixels go straight to normalization); a file that cannot be used throws DecodeError. */
export const decodeItem = (ds: Dataset, bytes: Buffer, cfg: ModelConfig, decode: DecodeOptions): Promise<Float32Array> =>
  ds.pixels ? preprocessPixels(bytes, ds.pixels, cfg) : preprocessImage(bytes, cfg, decode);
