// Drives the console page's WebRTC transport in the system Chromium, for tests/browser/webrtc.rs,
// and writes what it saw to a JSON file the Rust test asserts on (chromium.mjs launches the
// browser, with the loopback flags the fake upstream's WebRTC peer needs).
//
//   node tests/browser/call.mjs talk <url> <out.json> <token|->
//   node tests/browser/call.mjs held <url> <out.json> <token|->
//   node tests/browser/call.mjs expire <url> <out.json> <token|->
//   node tests/browser/call.mjs refused <url> <out.json> <offer-credential|-> <model> [<console token>]
//
// `talk`: pick WebRTC, connect (the console trades the token for a client secret), wait for
// session.created on the data channel, hold the space bar until the microphone meter moves,
// wait for the answer, send a text message and wait for its answer, then Disconnect (the hangup).
// `held`: connect as `talk`, then hold the call until the test pushes a `relay_test.finish` event
// down its data channel (through the fake upstream), then Disconnect.
// `expire`: connect as `talk`, then wait for the other side to end the call.
// `refused`: from the page, an offer of a real peer connection POSTed to /v1/realtime/calls with
// the credential and `?model=` given, its answer kept; then the console connects over WebRTC with
// that model (added to the list if the relay does not offer it) and `console token`, and must
// say why it was refused.
// Every `/v1/realtime/…` request the page makes is recorded in `requests` (method, path, the
// Authorization header, status). Every wait is a waitForFunction with a timeout.

import { WAIT, drive } from './chromium.mjs';

const mode = process.argv[2];
const arg = (s) => (s && s !== '-' ? s : null);

await drive({ refusals: mode === 'refused' }, async (page, ctx) => {
  const { result, step, extra } = ctx;
  result.requests = [];
  page.on('response', async (res) => {
    const req = res.request();
    const path = new URL(req.url()).pathname;
    if (!path.includes('/realtime/')) return;
    const headers = await req.allHeaders();
    result.requests.push({ method: req.method(), path, authorization: headers.authorization || null, status: res.status() });
  });

  if (mode === 'refused') {
    await refused(page, ctx, arg(extra[0]), extra[1], arg(extra[2]));
    return;
  }
  await connectCall(page, step, arg(extra[0]));
  if (mode === 'talk') {
    await talk(page, step);
    await hangUp(page, step);
  } else if (mode === 'held') {
    await page.waitForFunction(
      () => [...document.querySelectorAll('#events li.in')].some((li) => li.dataset.type === 'relay_test.finish'),
      null,
      { timeout: WAIT },
    );
    step('finish pushed');
    result.heldStats = await page.evaluate(() => JSON.parse(JSON.stringify(window.relayConsole)));
    await hangUp(page, step);
  } else if (mode === 'expire') {
    const began = Date.now();
    await page.waitForFunction(() => window.relayConsole.state === 'disconnected', null, { timeout: WAIT });
    result.endedAfterMs = Date.now() - began;
    step('ended by the other side');
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
});

// Picks WebRTC, types `token` (when given), connects and waits for session.created on the data
// channel and the page's session.update after it.
async function connectCall(page, step, token) {
  await page.selectOption('#transport', 'webrtc');
  if (token) await page.fill('#token', token);
  await page.click('#connect-btn');
  await page.waitForFunction(
    () => window.relayConsole.dataChannelOpen
      && window.relayConsole.state === 'connected'
      && [...document.querySelectorAll('#events li.in')].some((li) => li.dataset.type === 'session.created')
      && [...document.querySelectorAll('#events li.out')].some((li) => li.dataset.type === 'session.update'),
    null,
    { timeout: WAIT },
  );
  step('session.created');
}

// Push to talk over WebRTC (the track is live while the space bar is held: the meter moves),
// then a typed message; each answered.
async function talk(page, step) {
  const responses = () => page.evaluate(() => window.relayConsole.usage.responses);
  const before = await responses();
  await page.focus('#ptt');
  await page.keyboard.down('Space');
  await page.waitForFunction(() => window.relayConsole.meterPeak > 0, null, { timeout: WAIT });
  await page.keyboard.up('Space');
  await page.waitForFunction((n) => window.relayConsole.usage.responses > n, before, { timeout: WAIT });
  step('voice answered');
  const afterVoice = await responses();
  await page.fill('#text', 'hello over webrtc');
  await page.click('#send');
  await page.waitForFunction(
    (n) => window.relayConsole.usage.responses > n
      && [...document.querySelectorAll('#transcript li.assistant')].some((li) => li.textContent.includes('hello over webrtc')),
    afterVoice,
    { timeout: WAIT },
  );
  step('text answered');
}

// Disconnect: the page POSTs the hangup and closes its peer connection.
async function hangUp(page, step) {
  await page.click('#connect-btn');
  await page.waitForFunction(
    () => window.relayConsole.state === 'disconnected' && window.relayConsole.callEnd === 'hangup',
    null,
    { timeout: WAIT },
  );
  step('hung up');
}

async function refused(page, ctx, credential, model, consoleToken) {
  const { result, step } = ctx;
  result.offer = await page.evaluate(async ([credential, model]) => {
    const pc = new RTCPeerConnection();
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc.addTrack(mic.getAudioTracks()[0], mic);
    pc.createDataChannel('oai-events');
    await pc.setLocalDescription(await pc.createOffer());
    const headers = { 'Content-Type': 'application/sdp' };
    if (credential) headers.Authorization = `Bearer ${credential}`;
    const res = await fetch(`/v1/realtime/calls?model=${encodeURIComponent(model)}`, {
      method: 'POST',
      headers,
      body: pc.localDescription.sdp,
    });
    const text = await res.text();
    pc.close();
    mic.getTracks().forEach((t) => t.stop());
    let body = null;
    try { body = JSON.parse(text); } catch (_) { body = text; }
    return { status: res.status, contentType: res.headers.get('content-type'), location: res.headers.get('location'), body };
  }, [credential, model]);
  step('offer refused');

  await page.selectOption('#transport', 'webrtc');
  await page.evaluate((model) => {
    const select = document.getElementById('model');
    if (![...select.options].some((o) => o.value === model)) select.append(new Option(model, model));
  }, model);
  await page.selectOption('#model', model);
  if (consoleToken) await page.fill('#token', consoleToken);
  await page.click('#connect-btn');
  await page.waitForFunction(
    () => window.relayConsole.state === 'disconnected'
      && window.relayConsole.callEnd === 'refused'
      && !document.getElementById('explain').hidden,
    null,
    { timeout: WAIT },
  );
  step('console refused');
}
