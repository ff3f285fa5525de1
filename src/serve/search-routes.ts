// POST /v1/search (one query: an image, a vector or an item id) and POST /v1/search/batch (up to
// config.searchBatch.maxQueries queries of any kind, answered in order, each with its own status).
// The queries of a batch run concurrently, so the micro-batcher (batcher.ts) encodes their images
// together, per submodel.
import { type Request, Router } from 'express';
import { z } from 'zod';
import { ApiError, invalidField, methodNotAllowed, toApiError } from './errors.ts';
import type { Bodies } from './bodies.ts';
import type { BatchResponse } from './responses.ts';
import { parseOr400, searchAccepted, searchSchema } from './schemas.ts';
import type { SearchInput, SearchOptions, SearchService } from './service.ts';

export function searchRouter(service: SearchService, bodies: Bodies): Router {
  const { customWidths } = service.config.sessions;
  const { dim, fingerprint } = service.index.info().manifest;
  const schema = searchSchema(service.menu, customWidths, dim, fingerprint);
  const accepted = searchAccepted(service.menu, service.index.params.ef, customWidths, dim, fingerprint);
  const { maxQueries, maxBodyBytes } = service.config.searchBatch;

  /** One query's input and options from its image (if any) and fields; 400 unless exactly one of image, vector, id. */
  function parse(image: Buffer | undefined, fields: Record<string, unknown>): { input: SearchInput; options: SearchOptions } {
    const f = parseOr400(schema, fields, accepted);
    const given = [image && 'image', f.vector && 'vector', f.id !== undefined && 'id'].filter((x): x is string => !!x);
    if (given.length === 0) throw invalidField('image', undefined, accepted.image, 'no image, vector or id in the request');
    if (given.length > 1)
      throw invalidField(given[1], fields[given[1]] ?? '(an image)', 'one of image, vector or id', `${given[0]} is also given`);
    const input: SearchInput = image ? { kind: 'image', image } : f.vector ? { kind: 'vector', ...f.vector } : { kind: 'id', id: f.id! };
    return { input, options: f.options };
  }

  const router = Router();
  router
    .route('/v1/search')
    .post(bodies.body, async (req: Request, res) => {
      const { image, fields } = bodies.imageAndFields(req, accepted, true);
      const q = parse(image, fields);
      const r = await service.search(q.input, q.options);
      res.locals.encoder = r.encoders.map((e) => e.name).join('>') || r.policy.mode;
      res.json(r);
    })
    .all(methodNotAllowed('POST'));

  const batchBody = z.object({ queries: z.array(z.record(z.string(), z.unknown())).min(1).max(maxQueries) }).strict();
  const batchAccepted = { queries: `an array of 1..${maxQueries} search requests (JSON objects as for POST /v1/search; images as base64)` };
  router
    .route('/v1/search/batch')
    .post(bodies.json(maxBodyBytes), async (req, res) => {
      if (!req.is('application/json'))
        throw new ApiError(415, 'unsupported-media-type', 'a batch is a JSON body: {"queries": [...]}', { accepted: 'application/json' });
      const { queries } = parseOr400(batchBody, req.body ?? {}, batchAccepted);
      // Each query fails alone: its error is its answer, with the status a single search would get.
      const answers = await Promise.all(
        queries.map(async (raw) => {
          try {
            const { image, ...fields } = raw;
            const q = parse(image === undefined ? undefined : bodies.decodeImage(image), fields);
            return { status: 200 as const, ...(await service.search(q.input, q.options)) };
          } catch (e) {
            const err = toApiError(e, { maxImageBytes: service.config.maxImageBytes });
            if (err.code === 'internal') req.log.error({ err: e }, 'batch query failed');
            return { status: err.status, ...err.toJSON() };
          }
        }),
      );
      res.json({ answers } satisfies BatchResponse);
    })
    .all(methodNotAllowed('POST'));
  return router;
}
