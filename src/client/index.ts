// A typed client of the HTTP API (app.ts), for the web page and the tests. Its types come from the
// zod schemas the server validates with and answers by (serve/schemas.ts, serve/responses.ts),
// imported as types only, so the client carries no server code and runs in a browser as in Node.
import type { z } from 'zod';
import type { Filter } from '../index/filter.ts';
import type {
  AddResponse,
  ApiErrorBody,
  BatchResponse,
  IndexResponse,
  ItemResponse,
  RemoveResponse,
  SearchResponse,
} from '../serve/responses.ts';
import type { SearchFieldsSchema } from '../serve/schemas.ts';
import type { serviceInfo } from '../serve/service-info.ts';

export type { Filter, SearchResponse, BatchResponse, ItemResponse };
export type SearchResult = SearchResponse['results'][number];
/** GET /v1/index: the documented fields (IndexResponse) with the exact types of what the service returns (service-info.ts). */
export type IndexInfo = z.infer<typeof IndexResponse> & ReturnType<typeof serviceInfo>;
/** The options of a search as the server reads them (serve/schemas.ts's SearchFieldsSchema). */
export type SearchFields = Omit<z.input<typeof SearchFieldsSchema>, 'vector' | 'id' | 'model'>;

/** One query: an image (bytes), a vector made by a submodel of the server's model, or an item id. */
export type SearchQuery = SearchFields &
  ({ image: Uint8Array | Blob } | { vector: Float32Array | readonly number[]; model: string; encoder: string } | { id: number });

/** A 4xx/5xx answer: the server's error object (status, code, message, field, received, accepted). */
export class MatvitApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field?: string;
  constructor(readonly body: ApiErrorBody) {
    super(body.error.message);
    this.name = 'MatvitApiError';
    this.status = body.error.status;
    this.code = body.error.code;
    this.field = body.error.field;
  }
}

/** Little-endian float32 as base64 (the wire form of a vector: 4/3 bytes per byte, not ~10 per JSON number). */
export function vectorToBase64(v: Float32Array | readonly number[]): string {
  const f = Float32Array.from(v);
  const bytes = new Uint8Array(f.buffer);
  const view = new DataView(f.buffer);
  for (let i = 0; i < f.length; i++) view.setFloat32(i * 4, f[i], true); // little-endian whatever the host
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function imageBase64(image: Uint8Array | Blob): Promise<string> {
  const bytes = image instanceof Uint8Array ? image : new Uint8Array(await image.arrayBuffer());
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** A query as the JSON object the server reads (images and vectors as base64). */
async function wire(q: SearchQuery): Promise<Record<string, unknown>> {
  if ('image' in q) return { ...q, image: await imageBase64(q.image) };
  if ('vector' in q) return { ...q, vector: vectorToBase64(q.vector) };
  return { ...q };
}

export interface ClientOptions {
  /** Sent as Authorization: Bearer on writes (POST and DELETE /v1/items). */
  adminToken?: string;
  fetch?: typeof fetch;
}

export class MatvitClient {
  private readonly fetch: typeof fetch;

  /** `baseUrl`: the server's origin ('' in a page served by it). */
  constructor(
    readonly baseUrl = '',
    private readonly opts: ClientOptions = {},
  ) {
    this.fetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private async request<T>(path: string, init: RequestInit = {}): Promise<T> {
    const r = await this.fetch(`${this.baseUrl}${path}`, init);
    const body = (await r.json().catch(() => undefined)) as unknown;
    if (!r.ok) {
      const err = body as ApiErrorBody | undefined;
      throw new MatvitApiError(err?.error ? err : { error: { status: r.status, code: 'http', message: `HTTP ${r.status} from ${path}` } });
    }
    return body as T;
  }

  private json(method: string, body: unknown, auth = false): RequestInit {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (auth && this.opts.adminToken) headers.authorization = `Bearer ${this.opts.adminToken}`;
    return { method, headers, body: JSON.stringify(body) };
  }

  search(q: SearchQuery): Promise<SearchResponse> {
    return wire(q).then((body) => this.request<SearchResponse>('/v1/search', this.json('POST', body)));
  }

  /** Up to the server's limits.maxBatchQueries queries, answered in order; a failed query's answer is its error (status >= 400). */
  async searchBatch(queries: readonly SearchQuery[]): Promise<BatchResponse> {
    return this.request<BatchResponse>('/v1/search/batch', this.json('POST', { queries: await Promise.all(queries.map(wire)) }));
  }

  index(): Promise<IndexInfo> {
    return this.request('/v1/index');
  }

  item(id: number): Promise<ItemResponse> {
    return this.request(`/v1/items/${id}`);
  }

  async addItem(
    image: Uint8Array | Blob,
    meta: { label?: number; labelName?: string; payload?: Record<string, unknown> } = {},
  ): Promise<z.infer<typeof AddResponse>> {
    return this.request('/v1/items', this.json('POST', { image: await imageBase64(image), ...meta }, true));
  }

  removeItem(id: number): Promise<z.infer<typeof RemoveResponse>> {
    const headers: Record<string, string> = this.opts.adminToken ? { authorization: `Bearer ${this.opts.adminToken}` } : {};
    return this.request(`/v1/items/${id}`, { method: 'DELETE', headers });
  }

  openapi(): Promise<Record<string, unknown>> {
    return this.request('/openapi.json');
  }
}
