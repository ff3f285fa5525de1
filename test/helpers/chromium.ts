// Headless Chromium for the page tests: Debian's chromium (.ci/run installs it) driven by
// playwright-core; elsewhere the tests say why they did not run.
import fs from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** node:test's `skip` option: false, or why the page tests cannot run here. */
export const skipWithoutChromium =
  !fs.existsSync(CHROMIUM) && `no chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: CHROMIUM, args: ARGS });
