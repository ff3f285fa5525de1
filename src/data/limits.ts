// Decoding limits, apart from preprocess.ts so that the CLI's help can show them without loading sharp.

/** Default pixel limit: 100 MP, ~10k x 10k; a 24 MP camera photo passes, a 1 GB bomb does not. */
export const DEFAULT_PIXEL_LIMIT = 100_000_000;
