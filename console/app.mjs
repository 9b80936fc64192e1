// The console's wiring: reads /console/config, connects over one of two transports, and routes
// every event to the transcript, the player, the usage panel and the log. WebSocket: the relay's
// `/realtime` (subprotocol `realtime`, plus `openai-insecure-api-key.<token>` when tokens are on);
// the page sends the microphone as PCM16 events and plays the answer's audio deltas. WebRTC: a
// call through the relay's `/v1/realtime/calls` (the token first traded for a short-lived relay
// client secret); the browser sends the microphone and plays the answer as media, and the same
// events travel on the `oai-events` data channel. Counters for tests and the curious are on
// `window.relayConsole`.

import { Mic, Player, bytesToBase64 } from './audio.mjs';
import { EventLog, explainClose, explainCode, refusalOf } from './events.mjs';
import { Transcript, Usage } from './panels.mjs';
import { bearer, callCredential, gathered, hangUpAt } from './call.mjs';

const $ = (id) => document.getElementById(id);

const stats = {
  state: 'disconnected',
  // `websocket` or `webrtc`: the transport of the current (or last) connection.
  transport: 'websocket',
  eventsIn: 0,
  eventsOut: 0,
  samplesSent: 0,
  samplesScheduled: 0,
  playbackCuts: 0,
  // Chunks of one answer that started later than the previous chunk ended (audio.mjs).
  playbackGaps: 0,
  // The highest microphone level seen while talking.
  meterPeak: 0,
  lastError: null,
  lastClose: null,
  // WebRTC only: the call's data channel is open; the peer connection's state; the call's id
  // (from its Location); what the offer was authorized with (`client_secret` minted by the page,
  // `token`, or `none` when tokens are off); remote media tracks received; how the last call
  // ended (`hangup` from the page, `remote` when the other side ended it, `refused`, `failed`);
  // the status the relay gave the page's hangup.
  dataChannelOpen: false,
  peerState: null,
  callId: null,
  credential: null,
  remoteTracks: 0,
  callEnd: null,
  hangupStatus: null,
  usage: { responses: 0, input_tokens: 0, output_tokens: 0, total_tokens: 0, cost_usd: 0, unpriced: 0 },
  config: null,
};
window.relayConsole = stats;

const log = new EventLog($('events'), $('filter'));
const transcript = new Transcript($('transcript'));
const usage = new Usage(stats, {
  responses: $('u-responses'), input: $('u-input'), output: $('u-output'),
  total: $('u-total'), cost: $('u-cost'), note: $('u-note'),
});
const player = new Player(stats);
let ws = null;
// The WebRTC call, while there is one: { pc, channel, track, location, token, hangingUp }.
let call = null;
let talking = false;
let localKey = 0;
let model = '';

const STATE_WORDS = {
  disconnected: 'Disconnected',
  connecting: 'Connecting\u2026',
  connected: 'Connected',
  closing: 'Disconnecting\u2026',
};

function setState(state, words) {
  stats.state = state;
  const el = $('state');
  el.dataset.state = state;
  el.textContent = words || STATE_WORDS[state] || state;
  const open = state === 'connected';
  for (const id of ['handsfree', 'text', 'send', 'apply']) $(id).disabled = !open;
  $('ptt').disabled = !open || $('handsfree').checked;
  $('connect-btn').textContent = state === 'disconnected' ? 'Connect' : 'Disconnect';
  $('model').disabled = state !== 'disconnected';
  $('transport').disabled = state !== 'disconnected';
  $('token').disabled = state !== 'disconnected';
}

function explain(text) {
  const el = $('explain');
  el.hidden = !text;
  el.textContent = text || '';
}

// Sends `event` on the open transport: the WebSocket, or the call's data channel.
function send(event) {
  const text = JSON.stringify(event);
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(text);
  else if (call && call.channel && call.channel.readyState === 'open') call.channel.send(text);
  else return false;
  stats.eventsOut += 1;
  log.add('out', event);
  return true;
}

const mic = new Mic(
  (pcm) => {
    // Over WebRTC the microphone is a media track; the chunks only feed the meter.
    if (!ws || !(talking || $('handsfree').checked)) return;
    if (send({ type: 'input_audio_buffer.append', audio: bytesToBase64(new Uint8Array(pcm.buffer)) })) {
      stats.samplesSent += pcm.length;
    }
  },
  (peak) => {
    $('level').value = peak;
    if (talking) stats.meterPeak = Math.max(stats.meterPeak, peak);
  },
);

// Interrupts the assistant: stops playback and tells the relay how much was heard. Over WebRTC
// the browser plays the answer as media and OpenAI cuts it itself (server VAD): nothing to do.
function interrupt() {
  if (!ws) return;
  const cut = player.stop();
  if (cut) {
    send({
      type: 'conversation.item.truncate',
      item_id: cut.itemId,
      content_index: cut.contentIndex,
      audio_end_ms: cut.audioEndMs,
    });
  }
}

function onEvent(e) {
  switch (e.type) {
    case 'session.created':
      fillSession(e.session || {}, false);
      startSession();
      break;
    case 'session.updated':
      fillSession(e.session || {}, true);
      break;
    case 'input_audio_buffer.speech_started':
      interrupt();
      break;
    case 'conversation.item.input_audio_transcription.delta':
      transcript.append(e.item_id, 'user', e.delta || '');
      break;
    case 'conversation.item.input_audio_transcription.completed':
      transcript.set(e.item_id, 'user', e.transcript || '');
      break;
    case 'input_audio_buffer.committed':
      if (stats.config.transcription_model) transcript.pending(e.item_id, 'user');
      else transcript.set(e.item_id, 'user', '(audio, not transcribed)');
      break;
    case 'response.output_audio.delta':
    case 'response.audio.delta':
      // Over WebRTC the answer's audio is the remote media track (OpenAI sends no deltas then).
      if (ws) player.play(e.item_id, e.content_index || 0, e.delta || '');
      break;
    case 'response.output_audio_transcript.delta':
    case 'response.audio_transcript.delta':
    case 'response.output_text.delta':
    case 'response.text.delta':
      transcript.append(e.item_id, 'assistant', e.delta || '');
      break;
    case 'response.done':
      usage.add(e.response && e.response.usage, (stats.config.prices || {})[model]);
      break;
    case 'error': {
      const err = e.error || {};
      stats.lastError = { code: err.code || null, message: err.message || '', explanation: explainCode(err.code, err.message) };
      explain(stats.lastError.explanation);
      break;
    }
    default:
  }
}

// An event as text from either transport: counted, logged and handled.
function received(data) {
  if (typeof data !== 'string') return;
  let e;
  try { e = JSON.parse(data); } catch (_) { return; }
  stats.eventsIn += 1;
  log.add('in', e);
  onEvent(e);
}

function connect() {
  const token = $('token').value.trim();
  if (stats.config.tokens && !token) {
    explain('This relay needs a client token: enter it above.');
    return;
  }
  model = $('model').value;
  stats.transport = $('transport').value === 'webrtc' ? 'webrtc' : 'websocket';
  explain('');
  stats.lastError = null;
  if (stats.transport === 'webrtc') {
    connectCall(token);
    return;
  }
  player.ensure();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const url = `${scheme}://${location.host}/realtime?model=${encodeURIComponent(model)}`;
  const protocols = ['realtime'];
  if (token) protocols.push(`openai-insecure-api-key.${token}`);
  let socket;
  try {
    socket = new WebSocket(url, protocols);
  } catch (err) {
    explain(`Cannot connect: ${err.message} (a token may hold only letters, digits and - _ . ~ and similar).`);
    return;
  }
  setState('connecting');
  ws = socket;
  socket.onopen = () => {
    setState('connected');
    mic.start().then(
      () => { if (ws === socket) $('mic-state').textContent = 'Microphone on.'; },
      (err) => {
        if (ws === socket) $('mic-state').textContent = `Microphone unavailable (${err.name || err}): text still works.`;
      },
    );
  };
  socket.onmessage = (m) => received(m.data);
  socket.onclose = (c) => {
    if (ws !== socket) return;
    ws = null;
    talking = false;
    mic.stop();
    player.stop();
    $('mic-state').textContent = 'Microphone off.';
    stats.lastClose = { code: c.code, reason: c.reason };
    const words = explainClose(c.code, c.reason);
    setState('disconnected', `Disconnected: ${words}`);
    if (c.code !== 1000 || stats.lastError) explain(stats.lastError ? stats.lastError.explanation : words);
  };
}

function disconnect() {
  if (call) {
    hangUp(call);
    return;
  }
  if (!ws) return;
  setState('closing');
  ws.close(1000, 'console disconnect');
}

// --- WebRTC -------------------------------------------------------------------------------

// Whether the microphone track sends sound: while talking, or always hands-free.
function setTrackLive() {
  if (call && call.track) call.track.enabled = talking || $('handsfree').checked;
}

// Opens a call: the microphone (muted until push to talk or hands-free) as a media track, the
// `oai-events` data channel, the offer to /v1/realtime/calls, its answer applied.
async function connectCall(token) {
  const c = { pc: null, channel: null, track: null, location: null, token, hangingUp: false };
  call = c;
  Object.assign(stats, { dataChannelOpen: false, peerState: null, callId: null, credential: null, callEnd: null, hangupStatus: null });
  setState('connecting');
  try {
    const credential = await callCredential(token, model, stats);
    if (call !== c) return;
    const pc = new RTCPeerConnection();
    c.pc = pc;
    try {
      await mic.start();
      c.track = mic.stream ? mic.stream.getAudioTracks()[0] || null : null;
    } catch (err) {
      $('mic-state').textContent = `Microphone unavailable (${err.name || err}): text still works.`;
    }
    if (call !== c) return;
    if (c.track) {
      setTrackLive();
      pc.addTrack(c.track, mic.stream);
      $('mic-state').textContent = 'Microphone on (sent as media).';
    } else {
      pc.addTransceiver('audio', { direction: 'recvonly' });
    }
    pc.ontrack = (e) => {
      stats.remoteTracks += 1;
      const audio = $('remote-audio');
      audio.srcObject = e.streams[0] || new MediaStream([e.track]);
      audio.play().catch(() => { /* autoplay refused: the call goes on */ });
    };
    pc.onconnectionstatechange = () => {
      stats.peerState = pc.connectionState;
      if (call === c && !c.hangingUp && pc.connectionState === 'failed') {
        endCall(c, 'failed', 'the media connection with OpenAI failed (a firewall, or no route)');
      }
    };
    const channel = pc.createDataChannel('oai-events');
    c.channel = channel;
    channel.onopen = () => {
      if (call !== c) return;
      stats.dataChannelOpen = true;
      setState('connected');
    };
    channel.onmessage = (m) => received(m.data);
    channel.onclose = () => {
      stats.dataChannelOpen = false;
      if (call === c && !c.hangingUp) {
        endCall(c, 'remote', 'the call ended: the relay or OpenAI hung up (the relay does at '
          + 'MAX_SESSION_DURATION, when a budget is spent, and when it shuts down)');
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 1000);
    const res = await fetch(`/v1/realtime/calls?model=${encodeURIComponent(model)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', ...bearer(credential) },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw await refusalOf(res);
    c.location = res.headers.get('Location');
    stats.callId = c.location ? c.location.split('/').pop() : null;
    const answer = await res.text();
    if (call !== c) {
      // Disconnected while the call was being made: end it at once.
      hangUpAt(c);
      return;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  } catch (err) {
    if (call !== c) return;
    if (err.refusal) {
      stats.lastError = { ...err.refusal, explanation: err.message };
      endCall(c, 'refused', err.message);
    } else {
      endCall(c, 'failed', `cannot connect: ${err.message || err}`);
    }
  }
}

// The Disconnect button on a call: hang up through the relay, then close the peer connection.
async function hangUp(c) {
  c.hangingUp = true;
  setState('closing');
  const status = await hangUpAt(c);
  stats.hangupStatus = status;
  const words = status === null || (status >= 200 && status < 300)
    ? 'hung up'
    : `hung up here; the relay answered the hangup with HTTP ${status}`;
  endCall(c, 'hangup', words);
}

// Tears down call `c` and says why.
function endCall(c, how, words) {
  if (call === c) call = null;
  talking = false;
  stats.callEnd = how;
  stats.dataChannelOpen = false;
  if (c.channel) c.channel.close();
  if (c.pc) c.pc.close();
  stats.peerState = c.pc ? c.pc.connectionState : null;
  mic.stop();
  $('remote-audio').srcObject = null;
  $('ptt').setAttribute('aria-pressed', 'false');
  $('mic-state').textContent = 'Microphone off.';
  setState('disconnected', `Disconnected: ${words}`);
  if (how !== 'hangup') explain(words);
}

// Push to talk: pressing interrupts the assistant and starts a fresh buffer; releasing commits
// it and asks for a response.
function pressTalk() {
  if (talking || stats.state !== 'connected' || $('handsfree').checked) return;
  talking = true;
  $('ptt').setAttribute('aria-pressed', 'true');
  interrupt();
  send({ type: 'input_audio_buffer.clear' });
  setTrackLive();
}

function releaseTalk() {
  if (!talking) return;
  talking = false;
  $('ptt').setAttribute('aria-pressed', 'false');
  setTrackLive();
  send({ type: 'input_audio_buffer.commit' });
  send({ type: 'response.create' });
}

function turnDetection(kind) {
  return kind === 'none' ? null : { type: kind };
}

function sessionUpdate(session) {
  send({ type: 'session.update', session: { type: 'realtime', ...session } });
}

// Shows what the session says; the turn detection only once it is the page's own choice.
function fillSession(s, withTurn) {
  if (typeof s.instructions === 'string' && document.activeElement !== $('instructions')) {
    $('instructions').value = s.instructions;
  }
  const td = s.audio && s.audio.input && s.audio.input.turn_detection;
  if (withTurn && td !== undefined) {
    $('turn').value = td && td.type ? td.type : 'none';
    setHandsFree(!!td);
  }
}

function setHandsFree(on) {
  $('handsfree').checked = on;
  $('ptt').disabled = on || stats.state !== 'connected';
  setTrackLive();
}

// The page's own turn-taking (push to talk unless hands-free is ticked) and, when the relay
// allows a transcription model, the user's speech transcribed.
function startSession() {
  const input = { turn_detection: turnDetection($('handsfree').checked ? 'server_vad' : 'none') };
  const tm = stats.config.transcription_model;
  if (tm) input.transcription = { model: tm };
  sessionUpdate({ audio: { input } });
}

function wire() {
  $('connect-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (ws || call) disconnect(); else connect();
  });
  const ptt = $('ptt');
  ptt.addEventListener('pointerdown', (ev) => { ev.preventDefault(); pressTalk(); });
  ptt.addEventListener('pointerup', releaseTalk);
  ptt.addEventListener('pointerleave', releaseTalk);
  ptt.addEventListener('pointercancel', releaseTalk);
  // The space bar talks anywhere but in a field, and on the button itself.
  const typing = (t) => t instanceof HTMLElement && (t.matches('input, textarea, select') || (t.matches('button') && t !== ptt));
  document.addEventListener('keydown', (ev) => {
    if (ev.code !== 'Space' || typing(ev.target)) return;
    ev.preventDefault();
    if (!ev.repeat) pressTalk();
  });
  document.addEventListener('keyup', (ev) => {
    if (ev.code !== 'Space' || typing(ev.target)) return;
    ev.preventDefault();
    releaseTalk();
  });
  $('handsfree').addEventListener('change', () => {
    const on = $('handsfree').checked;
    setHandsFree(on);
    $('turn').value = on ? 'server_vad' : 'none';
    sessionUpdate({ audio: { input: { turn_detection: turnDetection($('turn').value) } } });
  });
  $('text-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('text').value.trim();
    if (!text) return;
    interrupt();
    send({
      type: 'conversation.item.create',
      item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] },
    });
    send({ type: 'response.create' });
    transcript.set(`local-${++localKey}`, 'user', text);
    $('text').value = '';
  });
  $('session-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const session = {
      instructions: $('instructions').value,
      output_modalities: [$('modalities').value],
      audio: { input: { turn_detection: turnDetection($('turn').value) } },
    };
    const voice = $('voice-name').value;
    if (voice) session.audio.output = { voice };
    setHandsFree($('turn').value !== 'none');
    sessionUpdate(session);
  });
  $('clear-log').addEventListener('click', () => log.clear());
}

async function init() {
  wire();
  setState('disconnected');
  usage.render();
  try {
    const res = await fetch('/console/config', { cache: 'no-store' });
    stats.config = await res.json();
  } catch (err) {
    stats.config = { models: [], tokens: false, prices: {} };
    explain(`Could not read /console/config (${err}).`);
  }
  const select = $('model');
  for (const m of stats.config.models || []) select.append(new Option(m, m));
  $('token-row').hidden = !stats.config.tokens;
  $('version').textContent = `openai-realtime-relay ${stats.config.version || ''}`;
}

init();
