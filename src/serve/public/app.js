// The search page: plain DOM, no build step. Everything the server sends is put in the page with
// textContent / attributes, never as HTML.
const $ = (sel) => document.querySelector(sel);
const state = { info: null, busy: false };

const pct = (x) => `${(100 * x).toFixed(1)}%`;
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3));

function el(tag, props = {}, children = []) {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) e.append(c);
  return e;
}

function showError(message) {
  const box = $('#error');
  box.textContent = message;
  box.hidden = !message;
}

async function loadInfo() {
  const r = await fetch('/v1/index');
  const info = await r.json();
  if (!r.ok) throw new Error(info.error?.message ?? r.statusText);
  state.info = info;
  const { counts } = info.index;
  $('#about').textContent =
    `${counts.live} images embedded by ${info.model.name} (${info.corpus.submodel}, ${fmt(info.corpus.mflops)} MFLOPs per image). ` +
    `Queries can use any smaller submodel of the same network: same metric space, less compute.`;
  const select = $('#encoder');
  for (const e of info.menu) select.append(el('option', { value: e.name, textContent: `${e.name} (${pct(e.fractionOfXl)} of XL)` }));
  select.options[0].textContent = info.cascade ? `auto (cascade ${info.cascade.stages.join(' → ')})` : 'auto';
  showCorpusSample(12);
}

/** A few corpus images to search by: random ids among those ever assigned (deleted ones hide themselves). */
function showCorpusSample(n) {
  const { live, deleted } = state.info.index.counts;
  const maxId = live + deleted;
  const ids = new Set();
  while (ids.size < Math.min(n, maxId)) ids.add(1 + Math.floor(Math.random() * maxId));
  const list = $('#corpus');
  list.replaceChildren();
  for (const id of ids) {
    const img = el('img', { src: `/v1/items/${id}/image`, alt: `corpus item ${id}`, title: `item ${id}: search by it`, loading: 'lazy' });
    const li = el('li', { className: 'corpus-item' }, [img]);
    img.addEventListener('error', () => li.remove());
    img.addEventListener('click', () => searchByItem(id));
    list.append(li);
  }
}

async function searchByItem(id) {
  const r = await fetch(`/v1/items/${id}/image`);
  if (!r.ok) return showError(`item ${id}: ${r.status}`);
  await search(await r.blob());
}

async function search(blob) {
  if (state.busy) return;
  state.busy = true;
  document.body.classList.add('busy');
  showError('');
  const q = $('#query');
  if (q.src) URL.revokeObjectURL(q.src);
  q.src = URL.createObjectURL(blob);
  q.hidden = false;
  $('#drop-text').textContent = 'Drop, paste or pick another image';
  try {
    const params = new URLSearchParams({ k: $('#k').value || '12', encoder: $('#encoder').value });
    const fd = new FormData();
    fd.append('image', blob, blob.name ?? 'query');
    const r = await fetch(`/v1/search?${params}`, { method: 'POST', body: fd });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error?.message ?? `${r.status} ${r.statusText}`);
    render(body);
  } catch (e) {
    showError(e.message);
  } finally {
    state.busy = false;
    document.body.classList.remove('busy');
  }
}

function render(body) {
  const { encoder, encoders, policy, timings, results } = body;
  $('#summary').hidden = false;
  $('#encoder-used').textContent = encoders.map((e) => e.name).join(' → ');
  const escalated = encoders.some((e) => e.escalated);
  $('#policy').textContent =
    `(${policy.mode}${escalated ? ', escalated: low confidence' : ''}${policy.loadLevel ? `, load level ${policy.loadLevel}` : ''})`;
  const spent = encoders.reduce((s, e) => s + e.mflops, 0);
  $('#compute').textContent =
    encoder.savedFraction >= 0
      ? `${fmt(spent)} MFLOPs of XL's ${fmt(encoder.xlMflops)}: ${pct(encoder.savedFraction)} of the compute saved`
      : `${fmt(spent)} MFLOPs, ${pct(-encoder.savedFraction)} more than XL alone (the cascade ran twice)`;
  $('#meter-spent').style.width = `${Math.min(100, (100 * spent) / encoder.xlMflops)}%`;
  $('#timings').textContent =
    `decode ${timings.decodeMs} ms · encode ${timings.encodeMs} ms · search ${timings.searchMs} ms · total ${timings.totalMs} ms`;
  $('#results-title').hidden = false;
  const list = $('#results');
  list.replaceChildren();
  for (const r of results) {
    const img = el('img', { src: r.imageUrl, alt: `item ${r.id}`, title: `${r.path}: search by it`, loading: 'lazy' });
    img.addEventListener('click', () => searchByItem(r.id));
    const caption = el('span', { className: 'caption' }, [
      el('span', { className: 'score', textContent: r.score.toFixed(4) }),
      el('span', { className: 'label', textContent: r.labelName ?? (r.label >= 0 ? `label ${r.label}` : '') }),
    ]);
    list.append(el('li', { className: 'result' }, [img, caption]));
  }
  if (results.length === 0) list.append(el('li', { className: 'empty', textContent: 'No items match.' }));
}

function setUpInput() {
  const drop = $('#drop');
  $('#file').addEventListener('change', (e) => {
    const file = e.target.files[0];
    if (file) search(file);
    e.target.value = '';
  });
  for (const type of ['dragenter', 'dragover']) drop.addEventListener(type, (e) => (e.preventDefault(), drop.classList.add('over')));
  for (const type of ['dragleave', 'drop']) drop.addEventListener(type, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = [...e.dataTransfer.files].find((f) => f.type.startsWith('image/'));
    if (file) search(file);
    else showError('Drop an image file.');
  });
  document.addEventListener('paste', (e) => {
    const item = [...e.clipboardData.items].find((i) => i.type.startsWith('image/'));
    if (item) search(item.getAsFile());
  });
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') $('#file').click();
  });
}

setUpInput();
loadInfo().catch((e) => showError(`Cannot load the index: ${e.message}`));
