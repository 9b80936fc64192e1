// What every browser script shares (console.mjs, call.mjs): the system Chromium launched through
// playwright-core with a fake microphone and the flags WebRTC on loopback needs, the console page
// opened at the URL given, one scenario run on it, and what the page shows written to a JSON
// file for the Rust test (tests/browser/main.rs) to assert on. A scenario that throws is written
// as `failure`; the browser is always closed and its profile removed.
//
// Arguments: `node <script> MODE URL OUT [EXTRA...]`. playwright-core comes from
// $RELAY_PLAYWRIGHT/node_modules; Chromium from $RELAY_CHROMIUM.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Every wait in a scenario is bounded by this (ms); the Rust side bounds the whole run too.
export const WAIT = 10000;

const require = createRequire(join(process.env.RELAY_PLAYWRIGHT, 'node_modules', 'noop.js'));
const { chromium } = require('playwright-core');

// Chromium's own line for a fetch answered with an HTTP error: expected in scenarios that are
// refused on purpose, an error everywhere else.
const FAILED_LOAD = /^Failed to load resource: the server responded with a status of (\d+)/;

// Runs `scenario(page, ctx)` on the console page. `options`: `viewport`, `fakeAudio(dir)` (a
// file for the fake microphone to loop, written into the profile directory, or null), and
// `refusals` (Chromium's "Failed to load resource" lines are then collected as `failedLoads`, by
// status, instead of as console errors).
export async function drive(options, scenario) {
  const [mode, url, out, ...extra] = process.argv.slice(2);
  const result = { mode, steps: [], consoleErrors: [], pageErrors: [], failedLoads: [] };
  const ctx = { mode, url, extra, result, step: (name) => result.steps.push(name) };
  const profile = mkdtempSync(join(tmpdir(), 'relay-chromium-'));
  let context;
  try {
    const audio = options.fakeAudio ? options.fakeAudio(profile) : null;
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.RELAY_CHROMIUM || '/usr/bin/chromium',
      headless: true,
      timeout: WAIT,
      viewport: options.viewport || { width: 1280, height: 900 },
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--use-fake-device-for-media-stream',
        '--use-fake-ui-for-media-stream',
        // WebRTC with the fake upstream's peer, which listens on 127.0.0.1 only: loopback
        // candidates allowed, and plain addresses rather than mDNS names offered.
        '--allow-loopback-in-peer-connection',
        '--disable-features=WebRtcHideLocalIpsWithMdns',
        ...(audio ? [`--use-file-for-fake-audio-capture=${audio}`] : []),
      ],
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(WAIT);
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const failed = options.refusals && FAILED_LOAD.exec(m.text());
      if (failed) result.failedLoads.push(Number(failed[1]));
      else result.consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => result.pageErrors.push(String(e && e.stack ? e.stack : e)));

    await page.goto(url, { waitUntil: 'load' });
    await page.waitForFunction(() => window.relayConsole && window.relayConsole.config, null, { timeout: WAIT });
    ctx.step('loaded');

    await scenario(page, ctx);

    result.stats = await page.evaluate(() => JSON.parse(JSON.stringify(window.relayConsole)));
    result.state = await page.textContent('#state');
    result.tokenFieldVisible = await page.isVisible('#token');
    result.explain = await page.evaluate(() => {
      const el = document.getElementById('explain');
      return el.hidden ? null : el.textContent;
    });
    result.transcript = await page.$$eval('#transcript li', (lis) =>
      lis.map((li) => ({ className: li.className, text: li.textContent })),
    );
    result.sentTypes = await page.$$eval('#events li.out', (lis) => lis.map((li) => li.dataset.type).reverse());
    result.eventTypes = await page.$$eval('#events li', (lis) => lis.map((li) => li.dataset.type).reverse());
  } catch (err) {
    result.failure = String(err && err.stack ? err.stack : err);
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    writeFileSync(out, JSON.stringify(result, null, 2));
  }
}
