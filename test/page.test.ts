// The web page in headless Chromium (Debian's chromium driven by playwright-core): upload an image,
// the results grid appears with scores and the encoder used; choosing an encoder shows the compute
// saved against XL; clicking a result searches by it; "more like this" searches by its item id;
// nothing the page does is refused by the CSP. (Encoding in the browser: browser-encode.test.ts.)
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from './helpers/chromium.ts';
import { type RunningServer, startServer } from '../src/serve/server.ts';
import { type ServeFixture, fmnistPng, serveFixture } from './helpers/serve-fixture.ts';

const skip = skipWithoutChromium;

let f: ServeFixture;
let s: RunningServer;
let browser: Browser;

before(async () => {
  f = await serveFixture(60);
  s = await startServer({ index: f.indexDir, port: 0, config: { refreshMs: 0, latency: { runs: 1 } } });
  await s.warm;
  if (!skip) browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await s?.close();
  f?.cleanup();
});

test('upload an image: results grid, encoder used, compute saved; click a result to search by it', { skip }, async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // The server's Content-Security-Policy must allow everything the page does (Chromium logs each refusal).
  page.on('console', (m) => m.type() === 'error' && /Content Security Policy/i.test(m.text()) && errors.push(m.text()));
  await page.goto(s.url);
  await page.waitForFunction(() => document.querySelectorAll('#encoder option').length > 1);
  assert.match((await page.textContent('#about')) ?? '', /60 images embedded by tiny-serve/);
  await page.waitForSelector('#corpus img');
  await page.uncheck('#in-browser'); // these searches are encoded on the server

  await page.setInputFiles('#file', { name: 'query.png', mimeType: 'image/png', buffer: await fmnistPng(3000) });
  await page.waitForSelector('#results .result');
  assert.equal(await page.locator('#results .result').count(), 12);
  assert.equal(await page.textContent('#encoder-used'), 'xl');
  assert.match((await page.textContent('#encoded-where')) ?? '', /^encoded on the server/);
  assert.match((await page.textContent('#policy')) ?? '', /auto/);
  assert.match((await page.locator('#results .score').first().textContent()) ?? '', /^\d\.\d{4}$/);
  assert.ok(await page.isVisible('#query'));

  await page.selectOption('#encoder', 's');
  await page.fill('#k', '5');
  const answered = page.waitForResponse((r) => r.url().includes('/v1/search'));
  await page.setInputFiles('#file', { name: 'query.png', mimeType: 'image/png', buffer: await fmnistPng(3001) });
  await answered;
  await page.waitForFunction(() => document.querySelector('#encoder-used')?.textContent === 's');
  assert.equal(await page.locator('#results .result').count(), 5);
  assert.match((await page.textContent('#compute')) ?? '', /of the compute saved/);

  // Clicking a result searches by that corpus image: with XL (the corpus encoder) it comes back first.
  await page.selectOption('#encoder', 'xl');
  const firstSrc = await page.locator('#results .result img').nth(2).getAttribute('src');
  const again = page.waitForResponse((r) => r.url().includes('/v1/search'));
  await page.locator('#results .result img').nth(2).click();
  await again;
  await page.waitForFunction((src) => document.querySelector('#results .result img')?.getAttribute('src') === src, firstSrc);

  // "More like this" searches by the item's stored vector: no image is sent, the item itself is left out.
  const id = Number(/\/v1\/items\/(\d+)\/image/.exec(firstSrc ?? '')?.[1]);
  const sent = page.waitForRequest((r) => r.url().endsWith('/v1/search'));
  await page.locator('#results .result .more').first().click();
  assert.deepEqual((await sent).postDataJSON(), { id, k: 5 });
  await page.waitForFunction(
    (t) => document.querySelector('#encoded-where')?.textContent === t,
    `item ${id}'s stored vector (nothing encoded)`,
  );
  const srcs = await page.locator('#results .result img').evaluateAll((imgs) => imgs.map((i) => i.getAttribute('src')));
  assert.equal(srcs.length, 5);
  assert.ok(!srcs.includes(firstSrc), `item ${id} is not among its own neighbours`);
  assert.equal(await page.getAttribute('#query', 'src'), `/v1/items/${id}/image`); // the query shown is the item
  assert.equal(errors.length, 0, errors.join('\n'));
  await page.close();
});

test("an undecodable upload shows the server's error", { skip }, async () => {
  const page = await browser.newPage();
  await page.goto(s.url);
  await page.waitForFunction(() => document.querySelectorAll('#encoder option').length > 1);
  await page.setInputFiles('#file', { name: 'broken.png', mimeType: 'image/png', buffer: Buffer.from('not a png') });
  await page.waitForSelector('#error:not([hidden])');
  assert.match((await page.textContent('#error')) ?? '', /cannot be decoded/);
  await page.close();
});
