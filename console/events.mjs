// What the page says about events: every relay error code and close code in plain words (the
// codes are those of docs/protocol.md), a refused WebRTC call too, audio payloads elided for the
// log, and the event log itself (time, direction, type, expandable JSON, a type filter, at most
// MAX_ENTRIES kept).

const CODES = {
  capacity_exceeded: 'the relay is full: it already has MAX_CONNECTIONS sessions; try again later',
  unauthorized: 'token missing or wrong: this relay needs a client token',
  invalid_request: 'the relay refused the request (a bad model name, a call_id, or an unknown policy)',
  rate_limited: 'too many attempts: this client is over its rate limit; wait a little',
  too_many_connections: 'this client already has as many sessions open as it may',
  model_not_allowed: 'this model is not allowed on this relay',
  budget_exceeded: 'the daily budget is spent; it resets at 00:00 UTC',
  service_unavailable: 'the relay cannot reach its shared state (Redis); try again shortly',
  server_shutting_down: 'the relay is shutting down; reconnect in a moment',
  policy_violation: 'the session policy does not allow that; the event was not forwarded',
  session_expiring: 'the relay will end this session soon (MAX_SESSION_DURATION)',
  session_max_duration: 'the session reached the relay\'s longest allowed duration',
  session_idle_timeout: 'nothing was sent either way for too long, so the relay ended the session',
  heartbeat_timeout: 'this browser did not answer the relay\'s pings',
  client_too_slow: 'this browser stopped reading while the model kept sending',
  client_queue_overflow: 'too much was sent before the upstream connection was open',
  invalid_websocket_frame: 'the relay received an invalid WebSocket frame from this page',
  invalid_utf8: 'the relay received text that is not UTF-8 from this page',
  message_too_large: 'a message was larger than the relay\'s MAX_MESSAGE_SIZE',
  upstream_unavailable: 'the relay could not reach the OpenAI Realtime API',
  upstream_timeout: 'the OpenAI Realtime API did not answer the relay in time',
  upstream_auth_failed: 'OpenAI refused the relay\'s key: the operator must check OPENAI_API_KEY',
  upstream_rate_limited: 'OpenAI is rate limiting this relay; try again later',
  upstream_rejected: 'OpenAI rejected the connection',
  upstream_closed: 'OpenAI closed the session',
  upstream_gone: 'the connection to OpenAI was lost',
  upstream_protocol_error: 'OpenAI sent an invalid WebSocket frame',
  upstream_message_too_large: 'OpenAI sent a message larger than the relay\'s limit',
  upstream_too_slow: 'OpenAI stopped reading what this session sent',
  call_not_found: 'the relay knows no live call with this id for this client (it may have ended already)',
  origin_not_allowed: 'this page\'s origin is not in the relay\'s ALLOWED_ORIGINS',
};

const CLOSES = {
  1000: 'closed normally',
  1001: 'the other side went away',
  1002: 'protocol error',
  1005: 'closed without a status code',
  1006: 'the connection failed or was refused before it opened (wrong address, origin not allowed, relay draining or down)',
  1007: 'invalid text',
  1008: 'refused by policy',
  1009: 'message too large',
  1011: 'the relay or the upstream failed',
  1012: 'the relay is restarting',
  1013: 'try again later',
};

// Plain words for an error code (relay or OpenAI), with the code kept for reference.
export function explainCode(code, message) {
  const words = CODES[code];
  if (words) return `${words} (${code})`;
  if (code) return message ? `${message} (${code})` : code;
  return message || 'an error';
}

// Plain words for a refusal of `POST /v1/realtime/calls` (or of the client secret minted for
// it): the relay's JSON error, `{"error":{"code","message"}}`. The demo upstream built into the
// relay does no WebRTC: it answers a call with HTTP 501, which the relay passes on as
// `upstream_rejected`.
export function explainRefusal(status, code, message) {
  if (code === 'upstream_rejected' && /\bHTTP 501\b/.test(message || '')) {
    return 'this relay\'s demo upstream does not do WebRTC; use WebSocket (upstream_rejected, HTTP 501)';
  }
  if (code) return explainCode(code, message);
  return `the relay answered HTTP ${status}${message ? `: ${message}` : ''}`;
}

// A refusal the relay answered as JSON, as an Error in words, with `refusal` (status, code,
// message) attached.
export async function refusalOf(res) {
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  const err = (body && body.error) || {};
  const refused = new Error(explainRefusal(res.status, err.code, err.message));
  refused.refusal = { status: res.status, code: err.code || null, message: err.message || '' };
  return refused;
}

// Plain words for a close code and its reason (the relay puts its error code in the reason).
export function explainClose(code, reason) {
  if (reason && CODES[reason]) return `${CODES[reason]} (close ${code}, ${reason})`;
  const words = CLOSES[code] || 'closed';
  return `${words} (close ${code}${reason ? ', ' + reason : ''})`;
}

// A copy of `event` for display: base64 audio replaced by its size.
export function elide(event) {
  const copy = { ...event };
  for (const key of ['audio', 'delta']) {
    const v = copy[key];
    const isAudio = key === 'audio' || /audio\.delta$/.test(event.type || '');
    if (isAudio && typeof v === 'string' && !/transcript/.test(event.type || '')) {
      copy[key] = `<${Math.round((v.length * 3) / 4)} bytes of audio elided>`;
    }
  }
  return copy;
}

const MAX_ENTRIES = 500;

export class EventLog {
  constructor(list, filter) {
    this.list = list;
    this.filter = filter;
    filter.addEventListener('input', () => this.applyFilter());
  }

  add(direction, event) {
    const type = String(event.type || '(no type)');
    // Only the elided copy is kept: the log must not hold on to every audio chunk.
    const shown = elide(event);
    const li = document.createElement('li');
    li.className = direction;
    li.dataset.type = type;
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    const time = new Date().toISOString().slice(11, 23);
    const arrow = direction === 'in' ? '\u2190' : '\u2192';
    summary.textContent = `${time} ${arrow} ${type}`;
    summary.setAttribute('aria-label', `${time}, ${direction === 'in' ? 'received' : 'sent'} ${type}`);
    details.append(summary);
    // The JSON is written when first opened: most entries never are.
    details.addEventListener('toggle', () => {
      if (details.open && details.childElementCount === 1) {
        const pre = document.createElement('pre');
        pre.textContent = JSON.stringify(shown, null, 2);
        details.append(pre);
      }
    });
    li.append(details);
    li.hidden = !this.matches(type);
    this.list.prepend(li);
    while (this.list.childElementCount > MAX_ENTRIES) this.list.lastElementChild.remove();
  }

  matches(type) {
    const f = this.filter.value.trim().toLowerCase();
    return !f || type.toLowerCase().includes(f);
  }

  applyFilter() {
    for (const li of this.list.children) li.hidden = !this.matches(li.dataset.type);
  }

  clear() {
    this.list.replaceChildren();
  }
}
