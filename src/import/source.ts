// What every importer hands to importCheckpoint: the model config the source defines and its
// weights under timm's names in timm's (PyTorch) layout, the on-disk format of this project's
// checkpoints (src/model/checkpoint.ts), so one check and one conversion serve every source.
import type { ModelConfigInput } from '../model/config.ts';
import type { WeightMap } from '../model/weights.ts';

export const SOURCE_FORMATS = ['timm', 'big_vision', 'scenic'] as const;
export type SourceFormat = (typeof SOURCE_FORMATS)[number];

export interface SourceModel {
  format: SourceFormat;
  config: ModelConfigInput;
  /** timm names, timm layouts: linear [out, in], patch conv [D, C, P, P]. */
  tensors: WeightMap;
  /** The files read and their sha256 (for the provenance). */
  files: { path: string; sha256: string }[];
  /** timm's architecture name, or a description of what the shapes said. */
  architecture: string;
  /** What the import decided beyond a plain copy (printed, and kept in the provenance). */
  notes: string[];
}
