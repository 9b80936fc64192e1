//! What the fake's WebRTC calls saw: every `POST /v1/realtime/calls` ([`CallRequest`]), the
//! client events each call received and from where ([`CallEvent`], [`Source`]), data channels
//! that opened, audio packets, hangup requests ([`Hangup`]) and how each call ended
//! ([`CallEnd`]). Written by `calls/` (with the `webrtc` feature; without it these stay empty),
//! read by tests through [`crate::Recorder`].

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::{Recorder, WaitTimeout};

/// Client events kept for all calls together; later ones are not kept.
#[cfg(feature = "webrtc")]
const MAX_CALL_EVENTS: usize = 100_000;

/// Calls whose audio packets are counted at most; later calls' packets are not.
#[cfg(feature = "webrtc")]
const MAX_COUNTED_CALLS: usize = 1024;

/// One `POST /v1/realtime/calls`, recorded on arrival, whatever it was answered.
#[derive(Clone, Debug)]
pub struct CallRequest {
    /// The id the call gets if it is made: `rtc_` and 32 hex digits.
    pub call_id: String,
    /// The `Authorization` header as sent (`Bearer sk-…`); None without one.
    pub authorization: Option<String>,
    /// The `Content-Type` header as sent (`multipart/form-data; boundary=…`, `application/sdp`).
    pub content_type: String,
    /// The `session` part as JSON; for `application/sdp`, `{"type":"realtime","model":…}` from
    /// `?model=`. Null when the body held no usable offer and session (answered 4xx).
    pub session: Value,
    /// The SDP offer; empty when the body held no usable offer and session.
    pub offer: String,
}

/// Where a call's client event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The browser's `oai-events` data channel.
    DataChannel,
    /// A sideband WebSocket (`?call_id=`); [`CallEvent::connection`] says which.
    Sideband,
}

/// A client event a call received (from the browser or a sideband; not what tests push with
/// `FakeUpstream::call_event`, which is a server event), in arrival order.
#[derive(Clone, Debug)]
pub struct CallEvent {
    pub call_id: String,
    pub source: Source,
    /// The sideband's connection number (as in [`crate::Received`] and the handshakes, from 1);
    /// None from the data channel.
    pub connection: Option<u64>,
    pub text: String,
}

impl CallEvent {
    /// The event parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.text).ok()
    }
}

/// A `POST /v1/realtime/calls/{call_id}/hangup`, recorded when answered.
#[derive(Clone, Debug)]
pub struct Hangup {
    pub call_id: String,
    /// The `Authorization` header as sent; None without one.
    pub authorization: Option<String>,
    /// 200 (the call was ended), 401 (no bearer key) or 404 (no such open call).
    pub status: u16,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// A hangup request ended it.
    HungUp,
    /// The browser's side went away: its peer connection failed or closed, or it closed the
    /// `oai-events` data channel.
    PeerGone,
}

#[derive(Default)]
pub(super) struct CallRecords {
    requests: Vec<CallRequest>,
    events: Vec<CallEvent>,
    channels_opened: Vec<String>,
    hangups: Vec<Hangup>,
    ends: Vec<(String, CallEnd)>,
    audio_packets: HashMap<String, u64>,
}

#[cfg(feature = "webrtc")]
impl Recorder {
    pub(crate) fn record_call(&self, request: CallRequest) {
        self.update(|r| r.calls.requests.push(request));
    }

    /// Keeps a client event of a call, unless `keep` is off or the cap is reached.
    pub(crate) fn record_call_event(&self, event: CallEvent, keep: bool) {
        self.update(|r| {
            if keep && r.calls.events.len() < MAX_CALL_EVENTS {
                r.calls.events.push(event);
            }
        });
    }

    pub(crate) fn record_data_channel(&self, call_id: &str) {
        self.update(|r| r.calls.channels_opened.push(call_id.to_owned()));
    }

    pub(crate) fn record_hangup(&self, hangup: Hangup) {
        self.update(|r| r.calls.hangups.push(hangup));
    }

    pub(crate) fn record_call_end(&self, call_id: &str, end: CallEnd) {
        self.update(|r| r.calls.ends.push((call_id.to_owned(), end)));
    }

    /// Counts one RTP packet of the browser's audio (for at most [`MAX_COUNTED_CALLS`] calls).
    pub(crate) fn count_audio_packet(&self, call_id: &str) {
        self.update(|r| {
            let counts = &mut r.calls.audio_packets;
            if let Some(count) = counts.get_mut(call_id) {
                *count += 1;
            } else if counts.len() < MAX_COUNTED_CALLS {
                counts.insert(call_id.to_owned(), 1);
            }
        });
    }
}

impl Recorder {
    /// Every `POST /v1/realtime/calls`, in arrival order.
    pub fn calls(&self) -> Vec<CallRequest> {
        self.lock().calls.requests.clone()
    }

    /// Waits until at least `n` call requests have arrived; returns them all.
    pub async fn wait_for_calls(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<CallRequest>, WaitTimeout> {
        self.wait_for(timeout, |r| {
            (r.calls.requests.len() >= n).then(|| r.calls.requests.clone())
        })
        .await
    }

    /// The client events call `call_id` received, from its data channel and sidebands, in order.
    pub fn call_events(&self, call_id: &str) -> Vec<CallEvent> {
        events_of(&self.lock().calls, call_id)
    }

    /// Waits until call `call_id` has received at least `n` client events; returns them all.
    pub async fn wait_for_call_events(
        &self,
        call_id: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<CallEvent>, WaitTimeout> {
        self.wait_for(timeout, |r| {
            let events = events_of(&r.calls, call_id);
            (events.len() >= n).then_some(events)
        })
        .await
    }

    /// Waits until call `call_id`'s `oai-events` data channel has opened (it may have closed
    /// since).
    pub async fn wait_for_data_channel(
        &self,
        call_id: &str,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        self.wait_for(timeout, |r| {
            r.calls
                .channels_opened
                .iter()
                .any(|id| id == call_id)
                .then_some(())
        })
        .await
    }

    /// Every hangup request, in the order they were answered.
    pub fn hangups(&self) -> Vec<Hangup> {
        self.lock().calls.hangups.clone()
    }

    /// Waits for the first hangup request for `call_id` to be answered; returns it.
    pub async fn wait_for_hangup(
        &self,
        call_id: &str,
        timeout: Duration,
    ) -> Result<Hangup, WaitTimeout> {
        self.wait_for(timeout, |r| {
            r.calls
                .hangups
                .iter()
                .find(|h| h.call_id == call_id)
                .cloned()
        })
        .await
    }

    /// How call `call_id` ended; None while it is open (or if it never was).
    pub fn call_end(&self, call_id: &str) -> Option<CallEnd> {
        end_of(&self.lock().calls, call_id)
    }

    /// Waits for call `call_id` to end (its sidebands have been sent their Close by then).
    pub async fn wait_for_call_end(
        &self,
        call_id: &str,
        timeout: Duration,
    ) -> Result<CallEnd, WaitTimeout> {
        self.wait_for(timeout, |r| end_of(&r.calls, call_id)).await
    }

    /// RTP packets of the browser's audio call `call_id` has received.
    pub fn audio_packets(&self, call_id: &str) -> u64 {
        packets_of(&self.lock().calls, call_id)
    }

    /// Waits until call `call_id` has received at least `n` RTP packets of the browser's audio.
    pub async fn wait_for_audio_packets(
        &self,
        call_id: &str,
        n: u64,
        timeout: Duration,
    ) -> Result<u64, WaitTimeout> {
        self.wait_for(timeout, |r| {
            let got = packets_of(&r.calls, call_id);
            (got >= n).then_some(got)
        })
        .await
    }
}

fn events_of(records: &CallRecords, call_id: &str) -> Vec<CallEvent> {
    records
        .events
        .iter()
        .filter(|e| e.call_id == call_id)
        .cloned()
        .collect()
}

fn packets_of(records: &CallRecords, call_id: &str) -> u64 {
    records.audio_packets.get(call_id).copied().unwrap_or(0)
}

fn end_of(records: &CallRecords, call_id: &str) -> Option<CallEnd> {
    records
        .ends
        .iter()
        .find(|(id, _)| id == call_id)
        .map(|(_, end)| *end)
}
