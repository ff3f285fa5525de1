// The HTTP API, built by `createApp` and started elsewhere (server.ts): tests run it on port 0.
//
//   POST   /v1/search              image (multipart field "image" | raw image/* | JSON base64), vector or id + options
//   POST   /v1/search/batch        several searches, answered in order (search-routes.ts)
//   GET    /v1/index               counts, model, corpus submodel, menu, cascade, policy
//   GET    /openapi.json, /docs/   the OpenAPI 3.1 document and its reference page (openapi.ts)
//   GET    /v1/items/:id           an item's metadata and payload
//   GET    /v1/items/:id/image     the stored corpus image (looked up by id only)
//   POST   /v1/items               add an image (Bearer admin token; only when one is configured)
//   DELETE /v1/items/:id           remove an item (idem)
//   GET    /healthz, /readyz, /metrics; GET / the web page
//
// Validation replaces the request's fields with the parsed values (bodies.ts reads the three body
// kinds). Every error is an ApiError (errors.ts) answered by the one error middleware at the end.
import { createHash, timingSafeEqual } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import cors from 'cors';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import helmet from 'helmet';
import { pino, type Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import { MAX_PAYLOAD_BYTES } from '../index/store-schema.ts';
import { createBodies } from './bodies.ts';
import { ApiError, methodNotAllowed, toApiError } from './errors.ts';
import type { ItemResponse } from './responses.ts';
import { modelRoutes } from './model-routes.ts';
import { ADD_ACCEPTED, ID_ACCEPTED, MAX_K, addSchema, idSchema, parseOr400 } from './schemas.ts';
import { openApiRouter } from './openapi.ts';
import { searchRouter } from './search-routes.ts';
import type { SearchService } from './service.ts';

export interface AppDeps {
  service: SearchService;
  /** Enables POST/DELETE /v1/items for requests bearing it; without one, writes answer 403. */
  adminToken?: string;
  /** Request logs; silent when absent (tests). */
  log?: Logger;
}

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

/** Query parameters whose values are credentials: never logged, whatever their value. */
const SECRET_PARAM = /token|key|secret|passw|auth|session/i;

/** The URL as logged: the values of credential-like query parameters, and of any holding the admin token, replaced. */
export function redactUrl(url: string, adminToken?: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s.replace(/\+/g, ' '));
    } catch {
      return s;
    }
  };
  const params = url
    .slice(q + 1)
    .split('&')
    .map((p) => {
      const eq = p.indexOf('=');
      const [key, value] = eq < 0 ? [p, ''] : [p.slice(0, eq), p.slice(eq + 1)];
      return SECRET_PARAM.test(decode(key)) || (adminToken && decode(value).includes(adminToken)) ? `${key}=[redacted]` : p;
    });
  return `${url.slice(0, q)}?${params.join('&')}`;
}

/**
 * Security headers on every response (helmet): a CSP that allows the page in public/ (its own
 * script and stylesheet, blob: previews of the query image) and nothing else, no framing, nosniff.
 * No HSTS: the service speaks plain HTTP, and HSTS is for the TLS proxy in front of it to decide.
 */
const securityHeaders = (crossOrigin: boolean) =>
  helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'", "'wasm-unsafe-eval'"], // the page's query encoder is WebAssembly (model-routes.ts)
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'blob:', 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    strictTransportSecurity: false,
    // With --cors, other origins may also embed the item images (<img> loads are not CORS requests).
    crossOriginResourcePolicy: { policy: crossOrigin ? 'cross-origin' : 'same-origin' },
  });

/** Equal tokens, compared in constant time (the digests have equal length whatever the inputs). */
function tokenEquals(given: string, expected: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(given), h(expected));
}

export function createApp(deps: AppDeps): express.Express {
  const { service } = deps;
  const log = deps.log ?? pino({ level: 'silent' });
  const limits = { maxImageBytes: service.config.maxImageBytes };
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple'); // no nested objects from a[b]=c: every option is a string or a list
  const { cors: origins, rateLimit: rate } = service.config;
  app.use(securityHeaders(origins.length > 0));

  app.use(
    pinoHttp({
      logger: log,
      autoLogging: { ignore: (req) => ['/healthz', '/readyz', '/metrics'].includes(req.url ?? '') },
      // 503 is a state the service reports (overloaded, warming, read-only, shutting down), not a failure of its own.
      customLogLevel: (_req, res, err) => (res.statusCode === 503 ? 'warn' : err || res.statusCode >= 500 ? 'error' : 'info'),
      customProps: (_req, res) => ({ encoder: (res as Response).locals?.encoder }),
      // Lean request records: never the Authorization header, nor a token sent in the query string.
      serializers: {
        req: (r: { id: unknown; method: string; url: string; remoteAddress: string; headers: Record<string, string> }) => ({
          id: r.id,
          method: r.method,
          url: redactUrl(r.url, deps.adminToken),
          remoteAddress: r.remoteAddress,
          contentType: r.headers['content-type'],
          contentLength: r.headers['content-length'],
        }),
        res: (r: { statusCode: number }) => ({ statusCode: r.statusCode }),
        // pino-http's own "failed with status code N" carries no information in its stack; errors of the service are logged with theirs below.
        err: (e: Error) => (/^failed with status code \d+$/.test(e.message) ? { message: e.message } : pino.stdSerializers.err(e)),
      },
    }),
  );
  app.use((req, res, next) => {
    // While draining, answer and hang up: a keep-alive connection must not outlive the shutdown.
    if (service.state === 'draining') res.set('Connection', 'close');
    res.on('finish', () => {
      const route = req.route ? `${req.baseUrl}${req.route.path}` : res.statusCode === 404 ? 'unmatched' : 'static';
      service.metrics.httpRequests.inc({ route, method: req.method, status: String(res.statusCode) });
    });
    next();
  });

  // Browsers on these origins may call the API (preflights answered here, before any route).
  if (origins.length)
    app.use(
      cors({
        origin: origins.includes('*') ? '*' : origins,
        methods: ['GET', 'HEAD', 'POST', 'DELETE'],
        allowedHeaders: ['Content-Type', 'Authorization'],
        maxAge: 600,
      }),
    );
  if (rate)
    app.use(
      rateLimit({
        windowMs: rate.windowMs,
        limit: rate.limit,
        standardHeaders: 'draft-8',
        legacyHeaders: false,
        skip: (req) => ['/healthz', '/readyz', '/metrics'].includes(req.path),
        handler: (_req, _res, next, o) =>
          next(
            new ApiError(
              429,
              'rate-limited',
              `more than ${o.limit} requests in ${o.windowMs / 1000} s from this client; retry later`,
              {},
              { 'Retry-After': String(Math.ceil(o.windowMs / 1000)) },
            ),
          ),
      }),
    );

  const bodies = createBodies(limits);
  const { body } = bodies;
  const addInput: RequestHandler = (req, _res, next) => {
    const { image, fields } = bodies.imageAndFields(req, ADD_ACCEPTED);
    req.body = { image, meta: parseOr400(addSchema, fields, ADD_ACCEPTED) };
    next();
  };
  const idInput: RequestHandler = (req, _res, next) => {
    const { id } = parseOr400(idSchema, { ...req.params }, ID_ACCEPTED);
    Object.defineProperty(req, 'params', { value: { id }, enumerable: true });
    next();
  };
  const itemId = (req: Request) => (req.params as unknown as { id: number }).id;

  const admin: RequestHandler = (req, _res, next) => {
    if (!deps.adminToken)
      throw new ApiError(
        403,
        'writes-disabled',
        'writes are disabled on this server; start it with MATVIT_ADMIN_TOKEN set to enable POST and DELETE /v1/items',
      );
    const m = /^Bearer[ ]+(\S+)[ ]*$/i.exec(req.get('authorization') ?? '');
    const challenge = (error?: string) => ({ 'WWW-Authenticate': `Bearer realm="matvit"${error ? `, error="${error}"` : ''}` });
    if (!m) throw new ApiError(401, 'unauthorized', 'writes need the header Authorization: Bearer <admin token>', {}, challenge());
    if (!tokenEquals(m[1], deps.adminToken))
      throw new ApiError(401, 'unauthorized', 'the bearer token is not the admin token', {}, challenge('invalid_token'));
    service.assertWritable(); // before the body is read
    next();
  };

  // ---- routes (each path answers its other methods with 405 and Allow) ---------------------------
  app.use(searchRouter(service, bodies));
  app.use(openApiRouter(service));

  app
    .route('/v1/index')
    .get((_req, res) => {
      const writes = service.readOnly ? 'read-only' : deps.adminToken ? 'enabled' : 'disabled';
      const { maxQueries: maxBatchQueries } = service.config.searchBatch;
      res.json({
        ...service.info(),
        writes,
        limits: { maxImageBytes: limits.maxImageBytes, maxK: MAX_K, maxBatchQueries, maxPayloadBytes: MAX_PAYLOAD_BYTES },
      });
    })
    .all(methodNotAllowed('GET'));

  app
    .route('/v1/items')
    .post(admin, body, addInput, async (req, res) => {
      const r = await service.add(req.body.image, req.body.meta);
      res
        .status(r.created ? 201 : 200)
        .location(`/v1/items/${r.id}`)
        .json({ ...r, url: `/v1/items/${r.id}` });
    })
    .all(methodNotAllowed('POST'));

  app
    .route('/v1/items/:id')
    .get(idInput, (req, res) => {
      const item = service.item(itemId(req));
      const { id, source, label, sha256, bytes, addedAt, payload } = item;
      res.json({
        id,
        path: source,
        label,
        labelName: service.labelNameOf(item),
        sha256,
        bytes,
        addedAt,
        payload,
        imageUrl: `/v1/items/${id}/image`,
      } satisfies ItemResponse);
    })
    .delete(admin, idInput, (req, res) => {
      res.json(service.remove(itemId(req)));
    })
    .all(methodNotAllowed('GET', 'DELETE'));

  app
    .route('/v1/items/:id/image')
    .get(idInput, async (req, res) => {
      const img = await service.image(itemId(req));
      // Ids are never reused and an item's content never changes: the image can be cached for good.
      res.set({ 'Content-Type': img.contentType, 'Cache-Control': 'public, max-age=31536000, immutable' }).send(img.bytes);
    })
    .all(methodNotAllowed('GET'));

  app
    .route('/healthz')
    .get((_req, res) => {
      res.json({ status: 'ok' });
    })
    .all(methodNotAllowed('GET'));

  app
    .route('/readyz')
    .get((_req, res) => {
      res.status(service.state === 'ready' ? 200 : 503).json({ status: service.state });
    })
    .all(methodNotAllowed('GET'));

  app
    .route('/metrics')
    .get(async (_req, res) => {
      res.type(service.metrics.registry.contentType).send(await service.scrape());
    })
    .all(methodNotAllowed('GET'));

  app.use(modelRoutes(service)); // the ONNX graphs, runtime and page script of in-browser encoding
  app.use(express.static(PUBLIC_DIR, { index: 'index.html', maxAge: 0 }));

  app.use((req) => {
    throw new ApiError(
      404,
      'not-found',
      `no route ${req.method} ${req.path}; the API: POST /v1/search, POST /v1/search/batch, GET /v1/index, GET /openapi.json (reference: /docs/), GET /v1/items/:id, GET /v1/items/:id/image, POST /v1/items, DELETE /v1/items/:id, GET /healthz, /readyz, /metrics`,
    );
  });

  // The one error middleware.
  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err); // express ends the connection
    const e = toApiError(err, limits);
    if (e.status >= 500 && e.code === 'internal') req.log.error({ err }, 'request failed');
    res.set(e.headers).status(e.status).json(e.toJSON());
  });

  return app;
}
