// GET /openapi.json: the API described in OpenAPI 3.1, its schemas rendered by zod's own
// z.toJSONSchema from the schemas that validate requests (schemas.ts) and type answers
// (responses.ts), so there is no second description to drift; and GET /docs/, an API reference
// page (Swagger UI, served from node_modules/swagger-ui-dist: no CDN).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import express, { Router } from 'express';
import { z } from 'zod';
import { methodNotAllowed } from './errors.ts';
import { AddResponse, HealthResponse, IndexResponse, ReadyResponse, RemoveResponse } from './responses.ts';
import { ADD_ACCEPTED, searchAccepted } from './schemas.ts';
import type { SearchService } from './service.ts';

// Registered by id like the others (schemas.ts and responses.ts give theirs where they are defined).
for (const [schema, id] of [
  [AddResponse, 'AddResponse'],
  [RemoveResponse, 'RemoveResponse'],
  [HealthResponse, 'Health'],
  [ReadyResponse, 'Ready'],
  [IndexResponse, 'IndexInfo'],
] as const)
  if (!z.globalRegistry.has(schema)) z.globalRegistry.add(schema, { id });

const SWAGGER_DIR = createRequire(import.meta.url)('swagger-ui-dist').getAbsoluteFSPath() as string;
const DOCS_DIR = fileURLToPath(new URL('./docs/', import.meta.url));

const ref = (id: string) => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string, description: string) => ({ description, content: { 'application/json': { schema: ref(id) } } });
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [String(s), json('Error', ERROR_TEXT[s] ?? 'an error')]));
const ERROR_TEXT: Record<number, string> = {
  400: 'a field is invalid: error.field names it, error.accepted says what it takes',
  401: 'no or a wrong bearer token',
  403: 'writes are disabled on this server',
  404: 'no such item (or route)',
  413: 'the image or body is over the limit',
  415: 'the Content-Type is not accepted',
  422: 'the image cannot be decoded',
  429: 'over the per-client rate limit',
  501: 'a payload filter on a LanceDB index made before payload filters (no payload_jsonb column)',
  503: 'warming, overloaded, read-only or shutting down (Retry-After)',
};
const fingerprintParam = { name: 'fingerprint', in: 'path', required: true, schema: { type: 'string' } };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'integer', minimum: 1 } };
const imageBodies = (jsonId: string) => ({
  'application/json': { schema: ref(jsonId) },
  'multipart/form-data': {
    schema: {
      type: 'object',
      properties: { image: { type: 'string', contentMediaType: 'application/octet-stream' } },
      additionalProperties: { type: 'string' },
    },
    encoding: { image: { contentType: 'image/*' } },
  },
  'image/*': { schema: { type: 'string', contentMediaType: 'image/*' } },
});

/** The document for this server (its limits and menu are in the descriptions). */
export function openApiDocument(service: SearchService): Record<string, unknown> {
  const { dim, fingerprint, ef } = service.index.info().manifest;
  const accepted = searchAccepted(service.menu, ef, service.config.sessions.customWidths, dim, fingerprint);
  const rendered = z.toJSONSchema(z.globalRegistry, {
    target: 'draft-2020-12',
    io: 'input',
    uri: (id) => `#/components/schemas/${id}`,
    unrepresentable: 'any',
  });
  const schemas: Record<string, Record<string, unknown>> = {};
  // Components are referenced by #/components/schemas/ID: each one's own $schema and $id go.
  for (const [id, s] of Object.entries(rendered.schemas))
    schemas[id] = Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$schema' && k !== '$id'));
  // Each field's words, the same the 400s use.
  for (const [id, words] of [
    ['SearchRequest', accepted],
    ['AddRequest', ADD_ACCEPTED],
  ] as const) {
    const props = schemas[id].properties as Record<string, Record<string, unknown>>;
    for (const [field, text] of Object.entries(words)) if (props[field]) props[field].description = text;
  }
  const limits = `at most ${service.config.searchBatch.maxQueries} queries, ${service.config.searchBatch.maxBodyBytes} bytes of JSON`;
  return {
    openapi: '3.1.0',
    info: {
      title: 'MatViT retrieval',
      version: '1',
      description: `Image search over one index of ${service.model.name} (${fingerprint}): by image, by vector (encoded by a client with a submodel of the same model) or by item. The filter grammar: docs/search-api.md.`,
    },
    paths: {
      '/v1/search': {
        post: {
          operationId: 'search',
          summary: 'search by image, vector or item id, with filters, a score threshold and paging',
          requestBody: { required: true, content: imageBodies('SearchRequest') },
          responses: { 200: json('SearchResponse', 'the results, best first'), ...errors(400, 404, 413, 415, 422, 429, 501, 503) },
        },
      },
      '/v1/search/batch': {
        post: {
          operationId: 'searchBatch',
          summary: `several searches in one request (${limits}), answered in order, each with its own status`,
          requestBody: { required: true, content: { 'application/json': { schema: ref('BatchRequest') } } },
          responses: { 200: json('BatchResponse', 'one answer per query, in order'), ...errors(400, 413, 415, 429) },
        },
      },
      '/v1/index': {
        get: {
          operationId: 'index',
          summary: 'the index, model, menu, policy and limits',
          responses: { 200: json('IndexInfo', 'the service'), ...errors(429) },
        },
      },
      '/v1/items': {
        post: {
          operationId: 'addItem',
          summary: 'add an image (with a label and a payload), embedded by the corpus submodel',
          security: [{ bearer: [] }],
          requestBody: { required: true, content: imageBodies('AddRequest') },
          responses: {
            200: json('AddResponse', 'the image was already indexed: its item'),
            201: json('AddResponse', 'added'),
            ...errors(400, 401, 403, 413, 415, 422, 429, 503),
          },
        },
      },
      '/v1/items/{id}': {
        get: {
          operationId: 'item',
          summary: "an item's metadata and payload",
          parameters: [idParam],
          responses: { 200: json('Item', 'the item'), ...errors(400, 404, 429) },
        },
        delete: {
          operationId: 'removeItem',
          summary: 'remove an item',
          security: [{ bearer: [] }],
          parameters: [idParam],
          responses: { 200: json('RemoveResponse', 'removed'), ...errors(400, 401, 403, 404, 429, 503) },
        },
      },
      '/v1/items/{id}/image': {
        get: {
          operationId: 'itemImage',
          summary: "an item's stored image",
          parameters: [idParam],
          responses: {
            200: { description: 'the image', content: { 'image/*': { schema: { type: 'string', contentMediaType: 'image/*' } } } },
            ...errors(400, 404, 429),
          },
        },
      },
      '/v1/models/{fingerprint}': {
        get: {
          operationId: 'model',
          summary: "the model's config (preprocessing), embedding size, menu with each entry's ONNX URL, and the browser runtime",
          parameters: [fingerprintParam],
          responses: { 200: json('ModelInfo', 'the model'), ...errors(404, 429) },
        },
      },
      '/v1/models/{fingerprint}/{entry}.onnx': {
        get: {
          operationId: 'modelGraph',
          summary: 'the ONNX graph of a menu entry (immutable: ETag, 304 on If-None-Match), for encoding queries in the browser',
          parameters: [fingerprintParam, { name: 'entry', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            200: {
              description: 'ONNX model bytes',
              content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } },
            },
            304: { description: 'not modified (If-None-Match matched the ETag)' },
            ...errors(404, 429),
          },
        },
      },
      '/healthz': { get: { operationId: 'health', summary: 'liveness', responses: { 200: json('Health', 'alive') } } },
      '/readyz': {
        get: { operationId: 'ready', summary: 'readiness', responses: { 200: json('Ready', 'ready'), 503: json('Ready', 'not ready') } },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          summary: 'Prometheus metrics',
          responses: { 200: { description: 'text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      '/openapi.json': {
        get: {
          operationId: 'openapi',
          summary: 'this document',
          responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } } },
        },
      },
    },
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'MATVIT_ADMIN_TOKEN' } } },
  };
}

/** GET /openapi.json and the reference page at /docs/. */
export function openApiRouter(service: SearchService): Router {
  const doc = openApiDocument(service);
  const router = Router();
  router
    .route('/openapi.json')
    .get((_req, res) => {
      res.json(doc);
    })
    .all(methodNotAllowed('GET'));
  // serve-static redirects /docs to /docs/ (the page's relative asset URLs need the slash).
  router.use('/docs', express.static(DOCS_DIR, { index: 'index.html' }), express.static(SWAGGER_DIR, { index: false }));
  return router;
}
