// The search page (served as /app.js, bundled by src/serve/page-bundle.ts). Plain DOM: everything
// the server sends goes into the page as textContent or attributes, never as HTML.
//
// A query image is encoded in this browser when it can (encode.ts: the smallest menu entry, in
// WebAssembly) and searched by vector; otherwise, or when the box is unticked, it is sent to the
// server to encode. Every result offers "more like this": a search by its item id.
import { MatvitClient, type SearchResponse } from '../client/index.ts';
import { type BrowserEncoder, type BrowserEncoding, downloadedBytes, encodeInBrowser, loadBrowserEncoder } from './encode.ts';

const $ = <T extends HTMLElement = HTMLElement>(sel: string) => document.querySelector(sel) as T;

interface MenuEntry {
  name: string;
  mflops: number;
  fractionOfXl: number;
}
/** The fields of GET /v1/index the page shows (the client types the rest of the open object loosely). */
interface IndexInfo {
  index: { counts: { live: number; deleted: number } };
  model: { name: string; fingerprint: string };
  corpus: { submodel: string; mflops: number };
  menu: MenuEntry[];
  cascade: { stages: string[] } | null;
}
const state: {
  info: IndexInfo | null;
  busy: boolean;
  /** The browser encoder, or why there is none. */
  browser: Promise<BrowserEncoder> | null;
  browserError: string | null;
} = { info: null, busy: false, browser: null, browserError: null };

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3));
const kb = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> = {},
  children: (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) e.append(c);
  return e;
}

function showError(message: string): void {
  const box = $('#error');
  box.textContent = message;
  box.hidden = !message;
}

const client = new MatvitClient();

async function loadInfo(): Promise<void> {
  const info = (await client.index()) as unknown as IndexInfo;
  state.info = info;
  $('#about').textContent =
    `${info.index.counts.live} images embedded by ${info.model.name} (${info.corpus.submodel}, ${fmt(info.corpus.mflops)} MFLOPs per image). ` +
    `Queries can use any smaller submodel of the same network: same metric space, less compute.`;
  const select = $<HTMLSelectElement>('#encoder');
  for (const e of info.menu) select.append(el('option', { value: e.name, textContent: `${e.name} (${pct(e.fractionOfXl)} of XL)` }));
  select.options[0].textContent = info.cascade ? `auto (cascade ${info.cascade.stages.join(' → ')})` : 'auto';
  showCorpusSample(12);
  startBrowserEncoder(info.model.fingerprint);
}

/** Loads the browser encoder in the background; the box says what came of it. */
function startBrowserEncoder(fingerprint: string): void {
  const status = $('#browser-status');
  status.textContent = 'loading the browser encoder…';
  state.browser = loadBrowserEncoder(fingerprint);
  state.browser.then(
    (enc) => {
      status.textContent =
        `${enc.entry.name} (${fmt(enc.entry.mflops)} MFLOPs) ready in ${Math.round(enc.loadMs)} ms, ` +
        `${kb(downloadedBytes(enc.manifest.runtime.wasmPaths))} downloaded (ONNX graph and runtime; cached after the first visit)`;
      document.body.dataset.browserEncoder = 'ready';
    },
    (e: Error) => {
      state.browserError = e.message;
      status.textContent = `unavailable (${e.message}): queries are encoded on the server`;
      document.body.dataset.browserEncoder = 'unavailable';
    },
  );
}

/** A few corpus images to search by: random ids among those ever assigned (deleted ones hide themselves). */
function showCorpusSample(n: number): void {
  const { live, deleted } = state.info!.index.counts;
  const maxId = live + deleted;
  const ids = new Set<number>();
  while (ids.size < Math.min(n, maxId)) ids.add(1 + Math.floor(Math.random() * maxId));
  const list = $('#corpus');
  list.replaceChildren();
  for (const id of ids) {
    const img = el('img', { src: `/v1/items/${id}/image`, alt: `corpus item ${id}`, title: `item ${id}: search by it`, loading: 'lazy' });
    const li = el('li', { className: 'corpus-item' }, [img]);
    img.addEventListener('error', () => li.remove());
    img.addEventListener('click', () => searchByImageOf(id));
    list.append(li);
  }
}

async function searchByImageOf(id: number): Promise<void> {
  const r = await fetch(`/v1/items/${id}/image`);
  if (!r.ok) return showError(`item ${id}: ${r.status}`);
  await search(await r.blob());
}

/** Runs one search with the page busy, showing its query image (a file, or a stored item's URL) and its results or error. */
async function run(query: Blob | string, searching: () => Promise<{ body: SearchResponse; where: string }>): Promise<void> {
  if (state.busy) return;
  state.busy = true;
  document.body.classList.add('busy');
  showError('');
  const q = $<HTMLImageElement>('#query');
  if (q.src.startsWith('blob:')) URL.revokeObjectURL(q.src);
  q.src = typeof query === 'string' ? query : URL.createObjectURL(query);
  q.hidden = false;
  $('#drop-text').textContent = 'Drop, paste or pick another image';
  try {
    const { body, where } = await searching();
    render(body, where);
  } catch (e) {
    showError((e as Error).message);
  } finally {
    state.busy = false;
    document.body.classList.remove('busy');
  }
}

const k = () => Number($<HTMLInputElement>('#k').value || '12');
const searchOnServer = (blob: Blob) => client.search({ image: blob, k: k(), encoder: $<HTMLSelectElement>('#encoder').value });

/** The browser encoder when it is wanted and works; otherwise why not. */
async function browserEncoder(): Promise<BrowserEncoder | string> {
  if (!$<HTMLInputElement>('#in-browser').checked) return 'not asked';
  try {
    return await state.browser!;
  } catch (e) {
    return (e as Error).message;
  }
}

function search(blob: Blob): Promise<void> {
  return run(blob, async () => {
    const enc = await browserEncoder();
    if (typeof enc === 'string') return { body: await searchOnServer(blob), where: `encoded on the server (browser encoding ${enc})` };
    let encoded: BrowserEncoding;
    try {
      encoded = await encodeInBrowser(enc, blob);
    } catch (e) {
      // An image this browser cannot decode may still be one the server can (or it says why not).
      return {
        body: await searchOnServer(blob),
        where: `encoded on the server (the browser could not encode it: ${(e as Error).message})`,
      };
    }
    const body = await client.search({ vector: encoded.vector, model: enc.manifest.fingerprint, encoder: enc.entry.name, k: k() });
    const { decode, preprocess, run, total } = encoded.ms;
    $('#browser-timings').textContent =
      `browser: decode ${decode.toFixed(1)} ms · preprocess ${preprocess.toFixed(1)} ms · encode ${run.toFixed(1)} ms · total ${total.toFixed(1)} ms`;
    document.body.dataset.browserEncodeMs = total.toFixed(2);
    return { body, where: `encoded in this browser (${enc.entry.name})` };
  });
}

function searchById(id: number): Promise<void> {
  return run(`/v1/items/${id}/image`, async () => ({
    body: await client.search({ id, k: k() }),
    where: `item ${id}'s stored vector (nothing encoded)`,
  }));
}

function render(body: SearchResponse, where: string): void {
  const { encoder, encoders, policy, timings, results } = body;
  const inBrowser = where.startsWith('encoded in this browser');
  $('#summary').hidden = false;
  $('#encoded-where').textContent = where;
  document.body.dataset.searches = String(Number(document.body.dataset.searches ?? 0) + 1); // for tests: this answer is shown
  $('#browser-timings').hidden = !inBrowser;
  $('#encoder-used').textContent = encoders.length ? encoders.map((e) => e.name).join(' → ') : encoder.name;
  const escalated = encoders.some((e) => e.escalated);
  $('#policy').textContent =
    `(${policy.mode}${escalated ? ', escalated: low confidence' : ''}${policy.loadLevel ? `, load level ${policy.loadLevel}` : ''})`;
  const spent = inBrowser ? 0 : encoders.reduce((s, e) => s + e.mflops, 0);
  $('#compute').textContent = inBrowser
    ? `server compute saved: ${fmt(encoder.mflops)} MFLOPs of encoding (${fmt(encoder.xlMflops)} with XL): the server only searched`
    : encoder.savedFraction >= 0
      ? `${fmt(spent)} MFLOPs of XL's ${fmt(encoder.xlMflops)}: ${pct(encoder.savedFraction)} of the compute saved`
      : `${fmt(spent)} MFLOPs, ${pct(-encoder.savedFraction)} more than XL alone (the cascade ran twice)`;
  $('#meter-spent').style.width = `${Math.min(100, (100 * spent) / encoder.xlMflops)}%`;
  const server = [
    body.input === 'image' && `decode ${timings.decodeMs} ms`,
    body.input === 'image' && `encode ${timings.encodeMs} ms`,
    `search ${timings.searchMs} ms`,
    `total ${timings.totalMs} ms`,
  ].filter(Boolean);
  $('#timings').textContent = `server: ${server.join(' · ')}`;
  $('#results-title').hidden = false;
  const list = $('#results');
  list.replaceChildren();
  for (const r of results) {
    const img = el('img', { src: r.imageUrl, alt: `item ${r.id}`, title: `${r.path}: search by this image`, loading: 'lazy' });
    img.addEventListener('click', () => searchByImageOf(r.id));
    const more = el('button', {
      type: 'button',
      className: 'more',
      textContent: 'more like this',
      title: `search by item ${r.id}'s stored vector`,
    });
    more.addEventListener('click', () => searchById(r.id));
    const caption = el('span', { className: 'caption' }, [
      el('span', { className: 'score', textContent: r.score.toFixed(4) }),
      el('span', { className: 'label', textContent: r.labelName ?? (r.label >= 0 ? `label ${r.label}` : '') }),
    ]);
    list.append(el('li', { className: 'result' }, [img, caption, more]));
  }
  if (results.length === 0) list.append(el('li', { className: 'empty', textContent: 'No items match.' }));
}

function setUpInput(): void {
  const drop = $('#drop');
  const file = $<HTMLInputElement>('#file');
  file.addEventListener('change', () => {
    const f = file.files?.[0];
    if (f) void search(f);
    file.value = '';
  });
  for (const type of ['dragenter', 'dragover'])
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = [...(e.dataTransfer?.files ?? [])].find((x) => x.type.startsWith('image/'));
    if (f) void search(f);
    else showError('Drop an image file.');
  });
  document.addEventListener('paste', (e) => {
    const item = [...(e.clipboardData?.items ?? [])].find((i) => i.type.startsWith('image/'));
    const f = item?.getAsFile();
    if (f) void search(f);
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') file.click();
  });
}

setUpInput();
loadInfo().catch((e: Error) => showError(`Cannot load the index: ${e.message}`));
