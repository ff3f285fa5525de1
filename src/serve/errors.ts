// The one error type of the service. Everything a client can get wrong becomes an ApiError with an
// HTTP status and a stable machine-readable code; `toApiError` maps the errors thrown by the
// libraries underneath (body parsers, multer, sharp via DecodeError) onto it, so the single error
// middleware never answers 500 for bad input. Anything it cannot map is a bug: 500, logged.
import type { RequestHandler } from 'express';
import multer from 'multer';
import { DecodeError } from '../data/preprocess.ts';
import { bounded, preview } from '../util/zod-error.ts';

export interface ApiErrorDetails {
  /** The request field at fault (query string, form or JSON field). */
  field?: string;
  /** The value received for it, as sent. */
  received?: unknown;
  /** What the field accepts, in words. */
  accepted?: string;
  /** For 422: DecodeError's reason (truncated, unsupported-format, ...). */
  reason?: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: ApiErrorDetails = {},
    /** Extra response headers (WWW-Authenticate, Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toJSON() {
    return { error: { status: this.status, code: this.code, message: this.message, ...this.details } };
  }
}

/** A field's value that does not fit: 400 naming the field, the value (bounded: it may be hostile) and what is accepted. */
export function invalidField(field: string, received: unknown, accepted: string, why?: string): ApiError {
  return new ApiError(400, 'invalid-field', `${field}: ${why ? `${why}; ` : ''}received ${preview(received)}; accepted: ${accepted}`, {
    field,
    received: bounded(received),
    accepted,
  });
}

/** 413: an image (or a body carrying one) over the limit. */
export function payloadTooLarge(maxImageBytes: number): ApiError {
  return new ApiError(
    413,
    'payload-too-large',
    `the image is larger than the limit of ${maxImageBytes} bytes (matvit serve --max-image-mb)`,
    { accepted: `images up to ${maxImageBytes} bytes` },
  );
}

const MULTER_MESSAGES: Record<string, string> = {
  LIMIT_PART_COUNT: 'too many parts in the form',
  LIMIT_FILE_COUNT: 'more than one file in the form; send one image in field "image"',
  LIMIT_FIELD_KEY: 'a field name is too long',
  LIMIT_FIELD_VALUE: 'a field value is too long',
  LIMIT_FIELD_COUNT: 'too many fields in the form',
};

/** The ApiError for anything thrown while handling a request (see the header). */
export function toApiError(err: unknown, limits: { maxImageBytes: number }): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof DecodeError)
    return new ApiError(422, 'undecodable-image', `image: cannot be decoded (${err.reason}): ${err.message}`, {
      field: 'image',
      reason: err.reason,
    });
  const tooLarge = () => payloadTooLarge(limits.maxImageBytes);
  if (err instanceof multer.MulterError) {
    if (err.code === 'LIMIT_FILE_SIZE') return tooLarge();
    if (err.code === 'LIMIT_UNEXPECTED_FILE')
      return invalidField(err.field ?? '(file)', '(a file)', 'the image as a file in field "image"', 'unexpected file field');
    return new ApiError(400, 'invalid-form', `multipart form: ${MULTER_MESSAGES[err.code] ?? err.message}`);
  }
  // body-parser (express.json, express.raw) reports http-errors with a 4xx `status` (and
  // mostly a `type`): a corrupt gzip body, a bad charset, an aborted upload...
  const e = err as { type?: string; status?: number; message?: string };
  if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.type === 'entity.too.large' || e.status === 413) return tooLarge();
    if (e.type === 'entity.parse.failed') return new ApiError(400, 'invalid-json', `the body is not valid JSON: ${e.message}`);
    if (e.status === 415)
      return new ApiError(
        415,
        'unsupported-media-type',
        `${e.message}; accepted: utf-8 JSON, image/*, multipart/form-data, with Content-Encoding identity, gzip, deflate or br`,
      );
    return new ApiError(e.status, 'bad-request', `the body cannot be read: ${e.message ?? e.type}`);
  }
  // busboy (inside multer) reports malformed multipart bodies as plain Errors, before any handler ran.
  if (err instanceof Error && /multipart|boundary|unexpected end of form|malformed part header/i.test(err.message))
    return new ApiError(400, 'invalid-form', `multipart form: ${err.message}`);
  return new ApiError(500, 'internal', 'internal error (logged)');
}

/** 405 for a known path asked with another method, naming the methods it has (Allow). */
export const methodNotAllowed =
  (...methods: string[]): RequestHandler =>
  (req) => {
    const allow = [...methods, ...(methods.includes('GET') ? ['HEAD'] : [])].join(', ');
    throw new ApiError(
      405,
      'method-not-allowed',
      `${req.method} is not allowed on ${req.path}; allowed: ${allow}`,
      { accepted: allow },
      { Allow: allow },
    );
  };
