// WebRTC signalling for the console's WebRTC transport: the credential a call is made with (a
// relay client secret minted from the token), the wait for ICE gathering, and the hangup through
// the relay. The call itself (peer connection, data channel, microphone track) is in app.mjs.

import { refusalOf } from './events.mjs';

export function bearer(credential) {
  return credential ? { Authorization: `Bearer ${credential}` } : {};
}

// What the call's offer is authorized with. A relay token (or JWT) is first traded for a relay
// client secret that lives a minute, bound to this model: the secret, not the token, travels
// with the offer, as OpenAI's own browser flow does with its ephemeral keys. A client secret
// typed in (`rcs_…`, from an app's backend) is used as it is; no credential when tokens are off.
export async function callCredential(token, model, stats) {
  if (!token) {
    stats.credential = 'none';
    return null;
  }
  if (token.startsWith('rcs_')) {
    stats.credential = 'client_secret';
    return token;
  }
  const res = await fetch('/v1/realtime/client_secrets', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...bearer(token) },
    body: JSON.stringify({
      expires_after: { anchor: 'created_at', seconds: 60 },
      session: { type: 'realtime', model },
    }),
  });
  if (!res.ok) throw await refusalOf(res);
  const minted = await res.json();
  stats.credential = 'client_secret';
  return minted.value;
}

// Resolves once ICE gathering is complete (on loopback, at once), or after `ms`: the offer
// then carries the browser's candidates, as no candidate is sent after it.
export function gathered(pc, ms) {
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState !== 'complete') return;
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }, ms);
    pc.addEventListener('icegatheringstatechange', check);
    check();
  });
}

// POSTs the call's hangup with the token it was made with (both name the same client; the
// short-lived secret may have expired by now). Resolves to the relay's status, or null.
export async function hangUpAt(c) {
  if (!c.location) return null;
  try {
    const res = await fetch(`${c.location}/hangup`, { method: 'POST', headers: bearer(c.token) });
    return res.status;
  } catch (_) {
    return null;
  }
}
