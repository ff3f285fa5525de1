// Request bodies: the three ways an image comes (multipart field "image", a raw image/* body, JSON
// base64) and the option fields that come with it, in the query string, the form or the JSON.
import { isDeepStrictEqual } from 'node:util';
import express, { type Request, type RequestHandler } from 'express';
import multer from 'multer';
import { preview } from '../util/zod-error.ts';
import { ApiError, invalidField, payloadTooLarge } from './errors.ts';
import { base64Image } from './schemas.ts';

const ACCEPTED_TYPES = 'multipart/form-data (image in field "image"), image/* (the raw image), application/json ({"image": "<base64>"})';

export interface Bodies {
  /** Parses whichever of the three body kinds came; 415 for any other. */
  body: RequestHandler;
  /** A JSON body of up to `bytes` (the batch route's). */
  json(bytes: number): RequestHandler;
  /** The image bytes (required unless `optional`) and the other fields, whichever body kind carried them. */
  imageAndFields(req: Request, accepted: Record<string, string>, optional?: boolean): { image?: Buffer; fields: Record<string, unknown> };
  /** An image sent as base64 in a JSON field, checked against the size limit. */
  decodeImage(encoded: unknown): Buffer;
}

export function createBodies(limits: { maxImageBytes: number }): Bodies {
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: {
      fileSize: limits.maxImageBytes,
      files: 1,
      fields: 24,
      parts: 28,
      fieldSize: Math.ceil((limits.maxImageBytes * 4) / 3) + 1024,
    },
  }).single('image');
  const raw = express.raw({ type: 'image/*', limit: limits.maxImageBytes });
  const json = express.json({ limit: Math.ceil((limits.maxImageBytes * 4) / 3) + 64 * 1024 });

  const body: RequestHandler = (req, res, next) => {
    if (req.is('multipart/form-data')) return upload(req, res, next);
    if (req.is('image/*')) return raw(req, res, next);
    if (req.is('application/json')) return json(req, res, next);
    // No body at all (type-is counts "Content-Length: 0" as a body): reported as a missing image.
    if (
      req.is('*/*') === null ||
      (!req.get('content-type') && ['0', undefined].includes(req.get('content-length')) && !req.get('transfer-encoding'))
    )
      return next();
    next(
      new ApiError(
        415,
        'unsupported-media-type',
        `Content-Type ${JSON.stringify(req.get('content-type') ?? '')} is not accepted; accepted: ${ACCEPTED_TYPES}`,
        { received: req.get('content-type'), accepted: ACCEPTED_TYPES },
      ),
    );
  };

  function decodeImage(encoded: unknown): Buffer {
    const r = base64Image.safeParse(encoded);
    if (!r.success) throw invalidField('image', encoded, 'a base64 string (optionally a data: URL)', r.error.issues[0].message);
    if (r.data.length === 0) throw invalidField('image', '(0 bytes)', 'a non-empty image', 'the image is empty');
    if (r.data.length > limits.maxImageBytes) throw payloadTooLarge(limits.maxImageBytes); // a base64 image decodes to this size only now
    return r.data;
  }

  function imageAndFields(req: Request, accepted: Record<string, string>, optional = false) {
    let image: Buffer | undefined;
    let fields: Record<string, unknown> = {};
    if (Buffer.isBuffer(req.body))
      image = req.body; // raw image/*
    else if (req.body && typeof req.body === 'object' && !Array.isArray(req.body)) {
      const { image: encoded, ...rest } = req.body as Record<string, unknown>;
      fields = rest;
      if (req.file) image = req.file.buffer;
      else if (encoded !== undefined) image = decodeImage(encoded);
    } else if (req.body !== undefined) throw invalidField('(body)', req.body, 'a JSON object');
    if ((!image && !optional) || image?.length === 0)
      throw invalidField(
        'image',
        image ? '(0 bytes)' : undefined,
        accepted.image,
        image ? 'the image is empty' : 'no image in the request',
      );
    if (image && image.length > limits.maxImageBytes) throw payloadTooLarge(limits.maxImageBytes);
    // Options may come in the query string, the form or the JSON body, but one value per field.
    const merged: Record<string, unknown> = { ...req.query };
    for (const [key, value] of Object.entries(fields)) {
      if (key in merged && !isDeepStrictEqual(merged[key], value))
        throw invalidField(
          key,
          value,
          'one value, in either the query string or the body',
          `also given as ${preview(merged[key])} in the query string`,
        );
      merged[key] = value;
    }
    return { image, fields: merged };
  }

  return { body, json: (bytes) => express.json({ limit: bytes }), imageAndFields, decodeImage };
}
