// Drives the relay's console page (/console) in the system Chromium through playwright-core, for
// tests/browser/main.rs, and writes what it saw to a JSON file the Rust test asserts on.
//
//   node tests/browser/console.mjs conversation <url> <out.json> [screenshot.png]
//   node tests/browser/console.mjs refused <url> <out.json> [token]
//
// `conversation`: connect, wait for session.created, hold the space bar about a second, wait for
// both transcripts and played audio, send a text message and wait for its answer.
// `refused`: connect (with `token` when given) and wait for the page to say why it was refused.
// Every wait is a waitForFunction with a timeout; the whole run is bounded by the Rust side too.
// playwright-core comes from $RELAY_PLAYWRIGHT/node_modules; Chromium from $RELAY_CHROMIUM.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [mode, url, out, extra] = process.argv.slice(2);
const WAIT = 10000;
const require = createRequire(join(process.env.RELAY_PLAYWRIGHT, 'node_modules', 'noop.js'));
const { chromium } = require('playwright-core');

const result = { mode, steps: [], consoleErrors: [], pageErrors: [] };
const step = (name) => result.steps.push(name);
const profile = mkdtempSync(join(tmpdir(), 'relay-chromium-'));
let context;

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.RELAY_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: WAIT,
    viewport: { width: 1280, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(WAIT);
  page.on('console', (m) => {
    if (m.type() === 'error') result.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => result.pageErrors.push(String(e && e.stack ? e.stack : e)));

  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => window.relayConsole && window.relayConsole.config, null, { timeout: WAIT });
  step('loaded');

  if (mode === 'refused') {
    if (extra) await page.fill('#token', extra);
    await page.click('#connect-btn');
    await page.waitForFunction(
      () => window.relayConsole.lastClose && !document.getElementById('explain').hidden,
      null,
      { timeout: WAIT },
    );
    step('refused');
  } else {
    await conversation(page);
    if (extra) await page.screenshot({ path: extra, fullPage: true });
  }

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
  result.eventTypes = await page.$$eval('#events li', (lis) => lis.map((li) => li.dataset.type).reverse());
} catch (err) {
  result.failure = String(err && err.stack ? err.stack : err);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  writeFileSync(out, JSON.stringify(result, null, 2));
}

async function conversation(page) {
  const stats = () => page.evaluate(() => JSON.parse(JSON.stringify(window.relayConsole)));
  await page.click('#connect-btn');
  await page.waitForFunction(
    () => [...document.querySelectorAll('#events li')].some((li) => li.dataset.type === 'session.created'),
    null,
    { timeout: WAIT },
  );
  step('session.created');
  // The page sends its session.update on session.created; the microphone starts on open.
  await page.waitForFunction(
    () => document.getElementById('mic-state').textContent === 'Microphone on.',
    null,
    { timeout: WAIT },
  );
  step('microphone on');
  const before = await stats();
  // Hold the space bar (the page listens on the document) until a second of audio was sent.
  await page.focus('#ptt');
  await page.keyboard.down('Space');
  await page.waitForFunction(
    (sent) => window.relayConsole.samplesSent >= sent + 24000,
    before.samplesSent,
    { timeout: WAIT },
  );
  await page.keyboard.up('Space');
  step('pushed to talk');
  await page.waitForFunction(
    (responses) => window.relayConsole.usage.responses > responses
      && window.relayConsole.samplesScheduled > 0
      && [...document.querySelectorAll('#transcript li.user')].some((li) => /seconds of audio/.test(li.textContent))
      && [...document.querySelectorAll('#transcript li.assistant')].some((li) => /I heard .* seconds of audio/.test(li.textContent)),
    before.usage.responses,
    { timeout: WAIT },
  );
  step('voice answered');
  const afterVoice = await stats();
  await page.fill('#text', 'hello from chromium');
  await page.click('#send');
  await page.waitForFunction(
    (responses) => window.relayConsole.usage.responses > responses
      && [...document.querySelectorAll('#transcript li.assistant')].some((li) => /hello from chromium/.test(li.textContent)),
    afterVoice.usage.responses,
    { timeout: WAIT },
  );
  step('text answered');
}
