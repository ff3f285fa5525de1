// zod schemas of the API's answers: the service's result types are inferred from them, the OpenAPI
// document (openapi.ts) renders them, and the typed client (src/client) reads its types from them.
import { z } from 'zod';
import { ModelConfig } from '../model/config.ts';

export const SearchResult = z
  .object({
    id: z.number().int(),
    score: z.number(),
    label: z.number().int(),
    labelName: z.string().nullable(),
    /** The item's source: path relative to the corpus root, 'idx:#N', or 'upload:NAME'. */
    path: z.string(),
    imageUrl: z.string(),
    payload: z.record(z.string(), z.unknown()).nullable().optional().describe('the item payload, with withPayload=true'),
  })
  .meta({ id: 'SearchResult' });
export type SearchResult = z.infer<typeof SearchResult>;

const Confidence = z.object({ margin: z.number(), agreement: z.number() });

export const EncoderRun = z.object({
  name: z.string(),
  ffnDims: z.array(z.number().int()),
  mflops: z.number(),
  encodeMs: z.number(),
  searchMs: z.number(),
  /** For a stage that could escalate: its neighbours' confidence, and whether it did. */
  confidence: Confidence.optional(),
  escalated: z.boolean().optional(),
});
export type EncoderRun = z.infer<typeof EncoderRun>;

export const SearchResponse = z
  .object({
    /** What was searched: an image encoded here, a vector encoded by the client, or an item's stored vector. */
    input: z.enum(['image', 'vector', 'id']),
    results: z.array(SearchResult),
    /** The encoder whose embedding was searched; savedFraction: the share of an XL encode the server did not spend. */
    encoder: z.object({
      name: z.string(),
      ffnDims: z.array(z.number().int()),
      mflops: z.number(),
      xlMflops: z.number(),
      savedFraction: z.number(),
    }),
    /** The encoders this server ran (none for vector and id). */
    encoders: z.array(EncoderRun),
    policy: z.object({ mode: z.enum(['fixed', 'budget', 'auto', 'client', 'stored']), loadLevel: z.number(), why: z.string() }),
    timings: z.object({ decodeMs: z.number(), encodeMs: z.number(), searchMs: z.number(), totalMs: z.number() }),
  })
  .meta({ id: 'SearchResponse' });
export type SearchResponse = z.infer<typeof SearchResponse>;

export const ApiErrorBody = z
  .object({
    error: z.object({
      status: z.number().int(),
      code: z.string(),
      message: z.string(),
      field: z.string().optional(),
      received: z.unknown().optional(),
      accepted: z.string().optional(),
      reason: z.string().optional(),
    }),
  })
  .meta({ id: 'Error' });
export type ApiErrorBody = z.infer<typeof ApiErrorBody>;

/** One answer of a batch: a search response with status 200, or an error with its status. */
export const BatchAnswer = z.union([SearchResponse.extend({ status: z.literal(200) }), ApiErrorBody.extend({ status: z.number().int() })]);
export const BatchResponse = z.object({ answers: z.array(BatchAnswer) }).meta({ id: 'BatchResponse' });
export type BatchResponse = z.infer<typeof BatchResponse>;

export const ItemResponse = z
  .object({
    id: z.number().int(),
    path: z.string(),
    label: z.number().int(),
    labelName: z.string().nullable(),
    sha256: z.string(),
    bytes: z.number().int(),
    addedAt: z.string(),
    payload: z.record(z.string(), z.unknown()).nullable(),
    imageUrl: z.string(),
  })
  .meta({ id: 'Item' });
export type ItemResponse = z.infer<typeof ItemResponse>;

export const AddResponse = z.object({ id: z.number().int(), created: z.boolean(), url: z.string() });
export const RemoveResponse = z.object({ id: z.number().int(), removed: z.literal(true) });
export const HealthResponse = z.object({ status: z.literal('ok') });
export const ReadyResponse = z.object({ status: z.enum(['warming', 'ready', 'draining', 'closed']) });
/** GET /v1/index: counts, model, menu, policy (an open object: it grows with the service). */
export const IndexResponse = z
  .object({
    state: z.string(),
    index: z.object({ counts: z.object({ live: z.number(), deleted: z.number() }), dim: z.number().int() }).passthrough(),
    model: z.object({ name: z.string(), fingerprint: z.string() }).passthrough(),
    menu: z.array(z.object({ name: z.string(), ffnDims: z.array(z.number().int()) }).passthrough()),
    writes: z.enum(['enabled', 'disabled', 'read-only']),
    limits: z.object({ maxImageBytes: z.number(), maxK: z.number(), maxBatchQueries: z.number(), maxPayloadBytes: z.number() }),
  })
  .passthrough();

/** GET /v1/models/FINGERPRINT: what a browser needs to encode queries itself (model-routes.ts). */
export const ModelResponse = z
  .object({
    fingerprint: z.string(),
    /** The whole model config: the client preprocesses with its imageSize, channels, mean/std, cropPct, interpolation. */
    config: ModelConfig,
    embeddingDim: z.number().int(),
    runtime: z.object({ name: z.literal('onnxruntime-web'), version: z.string(), wasmPaths: z.string() }),
    entries: z.array(z.object({ name: z.string(), ffnDims: z.array(z.number().int()), mflops: z.number(), onnx: z.string() })),
  })
  .meta({ id: 'ModelInfo' });
export type ModelResponse = z.infer<typeof ModelResponse>;
