// Defaults of the embedding pipeline's options (pipeline.ts), apart from it so that the CLI's help
// can show them without loading the pipeline (sharp, the engines).

/** Snapshot the graph every this many committed batches. */
export const DEFAULT_SNAPSHOT_EVERY = 50;
