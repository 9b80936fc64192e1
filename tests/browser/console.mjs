// Drives the relay's console page (/console) in the system Chromium through playwright-core, for
// tests/browser/main.rs, and writes what it saw to a JSON file the Rust test asserts on.
//
//   node tests/browser/console.mjs conversation <url> <out.json> [screenshot.png]
//   node tests/browser/console.mjs refused <url> <out.json> [token]
//   node tests/browser/console.mjs phone <url> <out.json>
//   node tests/browser/console.mjs keyboard <url> <out.json>
//   node tests/browser/console.mjs handsfree|bargein <url> <out.json>
//   node tests/browser/console.mjs panels <url> <out.json>
//
// `conversation`: connect, wait for session.created, hold the space bar about a second, wait for
// both transcripts and played audio, send a text message and wait for its answer.
// `refused`: connect (with `token` when given) and wait for the page to say why it was refused.
// `phone`: a 375x740 viewport; connect, measure horizontal overflow, check the talk button and
// the message box are visible, send a text and wait for its answer.
// `handsfree`: the fake microphone loops a loud tone and silence; connect, tick hands-free, wait
// for the fake's server VAD to hear speech and for the answer, with nothing pressed.
// `bargein`: as `handsfree`, then wait for the next tone to interrupt the playing answer.
// `keyboard`: from page load, only Tab and Enter: reach Connect, press Enter, reach the message
// box, type, press Enter, wait for the answer; records each focused control's outline.
// `panels`: the `conversation` push-to-talk turn (the page records its meter peak while the space
// bar is held), then the event log's type filter and an expanded row, an expanded audio event, and the
// session editor's instructions and voice sent by "Send session.update".
// Every wait is a waitForFunction with a timeout; the whole run is bounded by the Rust side too.
// The browser, its flags and the result file are chromium.mjs's.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { WAIT, drive } from './chromium.mjs';

const mode = process.argv[2];
let result;
let step;

// A WAV the fake microphone loops instead of its default beeps (too faint and too short for the
// fake's server VAD): a second of a loud 440 Hz tone (RMS about 5700, well over the fake's speech
// level of 500) then `quiet` seconds of silence (more than the 500 ms that end speech), 16-bit
// mono at 48 kHz. With 0.6 s of quiet the next tone starts while the answer (about 1.2 s of
// audio) is still playing: a barge-in.
function speechWav(dir, quiet) {
  const rate = 48000;
  const samples = Math.round(rate * (1 + quiet));
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(36 + samples * 2, 4);
  buf.write('WAVEfmt ', 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36);
  buf.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < rate; i += 1) {
    buf.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  }
  const path = join(dir, 'speech.wav');
  writeFileSync(path, buf);
  return path;
}

const QUIET = { handsfree: 2, bargein: 0.6 };

await drive(
  {
    viewport: mode === 'phone' ? { width: 375, height: 740 } : { width: 1280, height: 900 },
    fakeAudio: mode in QUIET ? (dir) => speechWav(dir, QUIET[mode]) : null,
  },
  async (page, ctx) => {
    ({ result, step } = ctx);
    const extra = ctx.extra[0];
    if (mode === 'refused') {
      if (extra) await page.fill('#token', extra);
      await page.click('#connect-btn');
      await page.waitForFunction(
        () => window.relayConsole.lastClose && !document.getElementById('explain').hidden,
        null,
        { timeout: WAIT },
      );
      step('refused');
    } else if (mode === 'phone') {
      await phone(page);
    } else if (mode === 'handsfree') {
      await handsFree(page);
    } else if (mode === 'bargein') {
      await handsFree(page);
      await bargeIn(page);
    } else if (mode === 'keyboard') {
      await keyboard(page);
    } else if (mode === 'panels') {
      await panels(page);
    } else {
      await conversation(page);
      if (extra) await page.screenshot({ path: extra, fullPage: true });
    }
  },
);

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

async function connected(page) {
  await page.waitForFunction(
    () => [...document.querySelectorAll('#events li')].some((li) => li.dataset.type === 'session.created')
      && !document.getElementById('text').disabled,
    null,
    { timeout: WAIT },
  );
  step('session.created');
}

async function textAnswered(page, text, responses) {
  await page.waitForFunction(
    ([text, responses]) => window.relayConsole.usage.responses > responses
      && [...document.querySelectorAll('#transcript li.assistant')].some((li) => li.textContent.includes(text)),
    [text, responses],
    { timeout: WAIT },
  );
  step('text answered');
}

async function phone(page) {
  await page.click('#connect-btn');
  await connected(page);
  result.layout = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  result.pttVisible = await page.isVisible('#ptt');
  result.textVisible = await page.isVisible('#text');
  result.sendVisible = await page.isVisible('#send');
  const responses = await page.evaluate(() => window.relayConsole.usage.responses);
  await page.fill('#text', 'hello from a phone');
  await page.click('#send');
  await textAnswered(page, 'hello from a phone', responses);
}

// Presses Tab until the element with `id` has focus (at most 20 times), recording each focused
// control and its computed outline in result.focused.
async function tabTo(page, id) {
  result.focused = result.focused || [];
  for (let i = 0; i < 20; i += 1) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const el = document.activeElement;
      const cs = getComputedStyle(el);
      return {
        id: el.id,
        tag: el.tagName,
        outlineStyle: cs.outlineStyle,
        outlineWidth: cs.outlineWidth,
        focusVisible: el.matches(':focus-visible'),
      };
    });
    result.focused.push(f);
    if (f.id === id) return;
  }
  throw new Error(`Tab never reached #${id}`);
}

async function keyboard(page) {
  await tabTo(page, 'connect-btn');
  await page.keyboard.press('Enter');
  await connected(page);
  const responses = await page.evaluate(() => window.relayConsole.usage.responses);
  await tabTo(page, 'text');
  await page.keyboard.type('hello from the keyboard');
  await page.keyboard.press('Enter');
  await textAnswered(page, 'hello from the keyboard', responses);
}

async function handsFree(page) {
  await page.click('#connect-btn');
  await connected(page);
  await page.waitForFunction(
    () => document.getElementById('mic-state').textContent === 'Microphone on.',
    null,
    { timeout: WAIT },
  );
  step('microphone on');
  await page.check('#handsfree');
  step('hands-free');
  await page.waitForFunction(
    () => [...document.querySelectorAll('#events li')].some((li) => li.dataset.type === 'input_audio_buffer.speech_started'),
    null,
    { timeout: WAIT },
  );
  step('speech_started');
  await page.waitForFunction(() => window.relayConsole.usage.responses > 0, null, { timeout: WAIT });
  step('answered');
}

// After a hands-free answer: the next tone, while the answer still plays, is speech_started; the
// page stops playback and sends conversation.item.truncate.
async function bargeIn(page) {
  await page.waitForFunction(
    () => window.relayConsole.samplesScheduled > 0
      && window.relayConsole.playbackCuts > 0
      && [...document.querySelectorAll('#events li.out')].some((li) => li.dataset.type === 'conversation.item.truncate'),
    null,
    { timeout: WAIT },
  );
  step('barged in');
}

// After a push-to-talk turn: the log's filter, an expanded row and an expanded audio event, then
// the session editor.
async function panels(page) {
  await conversation(page);
  await page.fill('#filter', 'response.done');
  result.filtered = await page.$$eval('#events li', (lis) =>
    lis.filter((li) => !li.hidden).map((li) => li.dataset.type),
  );
  result.hiddenCount = await page.$$eval('#events li', (lis) => lis.filter((li) => li.hidden).length);
  await page.click('#events li:not([hidden]) summary');
  result.expandedJson = await page.textContent('#events li:not([hidden]) pre');
  await page.fill('#filter', 'audio.delta');
  await page.click('#events li.in:not([hidden]) summary');
  result.audioJson = await page.textContent('#events li.in:not([hidden]) pre');
  await page.fill('#filter', '');
  step('event log');
  const instructions = 'Answer like a pirate, from the session editor.';
  await page.fill('#instructions', instructions);
  await page.selectOption('#voice-name', 'marin');
  const updated = () => document.querySelectorAll('#events li.in[data-type="session.updated"]').length;
  const before = await page.evaluate(updated);
  await page.click('#apply');
  await page.waitForFunction(
    (n) => document.querySelectorAll('#events li.in[data-type="session.updated"]').length > n,
    before,
    { timeout: WAIT },
  );
  // The last session.update sent and the last session.updated received, expanded.
  const json = async (sel) => {
    await page.click(`${sel} summary`);
    return JSON.parse(await page.textContent(`${sel} pre`));
  };
  await page.fill('#filter', 'session.update');
  result.sentUpdate = await json('#events li.out[data-type="session.update"]');
  result.echoed = await json('#events li.in[data-type="session.updated"]');
  result.instructionsField = await page.inputValue('#instructions');
  step('session editor');
}
