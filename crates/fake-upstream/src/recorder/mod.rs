//! What the fake saw: every upgrade request, data message and connection end, shared by all
//! connections of one fake, with waits that wake on every change; what its WebRTC calls saw is
//! in `calls.rs`. Written by `server.rs`, `connection/` and `calls/`; read by tests through
//! [`crate::FakeUpstream::recorder`].

mod calls;

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use calls::CallRecords;
pub use calls::{CallEnd, CallEvent, CallRequest, Hangup, Source};

/// One upgrade request as it arrived.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub path_and_query: String,
    /// Header names are lowercase; values that are not UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    pub protocols_offered: Vec<String>,
}

impl Handshake {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A data message as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub connection: u64,
    pub frame: Frame,
}

impl Received {
    /// The message parsed as JSON, if it is a text frame holding JSON.
    pub fn json(&self) -> Option<Value> {
        match &self.frame {
            Frame::Text(text) => serde_json::from_str(text).ok(),
            Frame::Binary(_) => None,
        }
    }
}

/// How a WebSocket connection ended.
///
/// - The client sent a Close frame: its `code` and `reason`, `abrupt: false`.
/// - The fake closed first (`close_after_open`, or a frame it could not accept): `code: None`,
///   `reason` starts with "closed by the fake upstream" and names the code, `abrupt: false`.
///   actix-ws ends the read side once that Close is flushed, so the client's answer is usually
///   not seen; if it arrives first, it is recorded as in the case above.
/// - Neither side sent a Close frame (client vanished, `drop_after_open`, `drop_after_deltas`),
///   or the fake was not reading and so could not see one (`stop_reading`): `abrupt: true`.
#[derive(Clone, Debug)]
pub struct Closed {
    pub connection: u64,
    pub code: Option<u16>,
    pub reason: String,
    pub abrupt: bool,
}

#[derive(Debug)]
pub struct WaitTimeout;

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for the fake upstream")
    }
}

impl std::error::Error for WaitTimeout {}

#[derive(Default)]
struct Records {
    next_connection: u64,
    handshakes: Vec<Handshake>,
    messages: Vec<Received>,
    message_count: u64,
    closes: Vec<Closed>,
    open: usize,
    calls: CallRecords,
}

/// What the fake saw, shared by all its connections; waits are woken on every change.
pub struct Recorder {
    /// Unique to this server (its process and start time): part of every object id it makes, so
    /// responses of two fakes (two `--demo` relays sharing one Redis, say) never share an id.
    pub(crate) run: String,
    records: Mutex<Records>,
    changed: Notify,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Recorder {
            run: format!("{:x}{:x}", std::process::id(), started & 0xffff_ffff_ffff),
            records: Mutex::new(Records::default()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // A panic elsewhere must not hide what was recorded before it.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<T>(&self, f: impl FnOnce(&mut Records) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_waiters();
        out
    }

    /// Records an upgrade request and returns its connection number (from 1).
    pub(crate) fn record_handshake(&self, handshake: Handshake) -> u64 {
        self.update(|r| {
            r.next_connection += 1;
            r.handshakes.push(handshake);
            r.next_connection
        })
    }

    pub(crate) fn record_message(&self, connection: u64, frame: Frame) {
        self.update(|r| {
            r.message_count += 1;
            r.messages.push(Received { connection, frame })
        });
    }

    /// Counts a message without keeping it; nothing waits on the count, so no one is woken.
    pub(crate) fn count_message(&self) {
        self.lock().message_count += 1;
    }

    pub(crate) fn opened(&self) {
        self.update(|r| r.open += 1);
    }

    pub(crate) fn record_close(&self, closed: Closed) {
        self.update(|r| {
            r.open = r.open.saturating_sub(1);
            r.closes.push(closed);
        });
    }

    /// Every upgrade request, including rejected and delayed ones, recorded on arrival.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.lock().handshakes.clone()
    }

    /// Data messages received, in order.
    pub fn messages(&self) -> Vec<Received> {
        self.lock().messages.clone()
    }

    /// Data messages received, kept or not (see [`crate::Script::record_messages`]).
    pub fn message_count(&self) -> u64 {
        self.lock().message_count
    }

    /// One entry per ended WebSocket connection.
    pub fn closes(&self) -> Vec<Closed> {
        self.lock().closes.clone()
    }

    /// WebSocket connections upgraded and not yet ended.
    pub fn open_connections(&self) -> usize {
        self.lock().open
    }

    pub async fn wait_handshakes(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Handshake>, WaitTimeout> {
        self.wait_for(timeout, |r| {
            (r.handshakes.len() >= n).then(|| r.handshakes.clone())
        })
        .await
    }

    pub async fn wait_messages(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        self.wait_for(timeout, |r| {
            (r.messages.len() >= n).then(|| r.messages.clone())
        })
        .await
    }

    pub async fn wait_closes(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Closed>, WaitTimeout> {
        self.wait_for(timeout, |r| (r.closes.len() >= n).then(|| r.closes.clone()))
            .await
    }

    async fn wait_for<T>(
        &self,
        timeout: Duration,
        ready: impl Fn(&Records) -> Option<T>,
    ) -> Result<T, WaitTimeout> {
        let wait = async {
            loop {
                // Register before checking, so a change between the check and the await wakes us.
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(out) = ready(&self.lock()) {
                    return out;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| WaitTimeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const T: Duration = Duration::from_secs(5);

    /// Connections are numbered from 1 in arrival order, and waits see changes made after they
    /// started (no System needed).
    #[test]
    fn recorder_numbers_connections_and_wakes_waiters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let recorder = Arc::new(Recorder::new());
        let shake = || Handshake {
            path_and_query: "/v1/realtime".into(),
            headers: Vec::new(),
            protocols_offered: Vec::new(),
        };
        assert_eq!(recorder.record_handshake(shake()), 1);
        assert_eq!(recorder.record_handshake(shake()), 2);
        let writer = Arc::clone(&recorder);
        let got = rt.block_on(async move {
            let wait = recorder.wait_messages(1, T);
            let write = async {
                tokio::task::yield_now().await;
                writer.record_message(2, Frame::Text("late".into()));
            };
            let (got, ()) = tokio::join!(wait, write);
            got
        });
        assert_eq!(got.unwrap()[0].connection, 2);
    }
}
