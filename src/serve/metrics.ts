// Prometheus metrics of one service instance, on its own registry (several apps can live in one
// process, as in the tests). Encoder labels are menu names; explicit widths a client invents are
// all labelled "custom", so clients cannot grow the label set without bound.
import client from 'prom-client';

const MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new client.Registry();
  if (opts.defaultMetrics) client.collectDefaultMetrics({ register: registry, prefix: 'matvit_' });
  const registers = [registry];
  return {
    registry,
    httpRequests: new client.Counter({
      name: 'matvit_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    searches: new client.Counter({
      name: 'matvit_search_requests_total',
      help: 'Searches by the encoder that answered and the policy mode',
      labelNames: ['encoder', 'mode'],
      registers,
    }),
    searchLatency: new client.Histogram({
      name: 'matvit_search_duration_ms',
      help: 'Search request latency (decode + encode(s) + search), by the encoder that answered',
      labelNames: ['encoder'],
      buckets: MS_BUCKETS,
      registers,
    }),
    encodeLatency: new client.Histogram({
      name: 'matvit_encode_duration_ms',
      help: 'Per-query encode time including the batching wait, by encoder',
      labelNames: ['encoder'],
      buckets: MS_BUCKETS,
      registers,
    }),
    encoderRuns: new client.Counter({
      name: 'matvit_encoder_runs_total',
      help: 'Query encodes by encoder (a cascaded query counts each encoder that ran)',
      labelNames: ['encoder'],
      registers,
    }),
    queryMflops: new client.Counter({
      name: 'matvit_query_mflops_total',
      help: 'MFLOPs spent encoding queries (every encoder that ran)',
      registers,
    }),
    escalations: new client.Counter({
      name: 'matvit_escalations_total',
      help: 'Cascade escalations',
      labelNames: ['from', 'to'],
      registers,
    }),
    batchSize: new client.Histogram({
      name: 'matvit_batch_size',
      help: 'Images per engine call',
      labelNames: ['encoder'],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    }),
    engineLatency: new client.Histogram({
      name: 'matvit_engine_call_duration_ms',
      help: 'Engine time per batched call',
      labelNames: ['encoder'],
      buckets: MS_BUCKETS,
      registers,
    }),
    queueDepth: new client.Gauge({ name: 'matvit_queue_depth', help: 'Images waiting for the engine', registers }),
    loadLevel: new client.Gauge({
      name: 'matvit_load_level',
      help: 'Steps `auto` has taken down the encoder ladder because of load (0 = none)',
      registers,
    }),
    items: new client.Gauge({ name: 'matvit_index_items', help: 'Live items in the index', registers }),
    customSessions: new client.Gauge({
      name: 'matvit_custom_sessions',
      help: 'Engine sessions held for FFN widths outside the menu (bounded by sessions.customSessions)',
      registers,
    }),
    sessionEvictions: new client.Counter({
      name: 'matvit_session_evictions_total',
      help: 'Engine sessions of custom widths released to stay within sessions.customSessions',
      registers,
    }),
    writes: new client.Counter({
      name: 'matvit_index_writes_total',
      help: 'Items added or removed through the API',
      labelNames: ['op'],
      registers,
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
