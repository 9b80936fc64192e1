//! A scriptable fake of OpenAI's Realtime WebSocket server, on loopback.
//!
//! It owns a small actix-web server (one worker, port 0) and a [`Recorder`] that every connection
//! writes to: upgrade requests, data messages, and how each connection ended. What a new
//! connection does is decided by the [`Script`] current when its upgrade arrives; tests swap it
//! with [`FakeUpstream::set_script`]. Three users: the relay's `--demo` mode (no API key), the
//! integration tests, and the echo benchmark. It stops when [`FakeUpstream::stop`] is called or
//! the actix `System` that started it goes away.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

/// How long a connection waits for the client's answer after the fake sent a Close frame.
const CLOSE_ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The model named in `session.created` when the upgrade carried no `?model=`.
const DEFAULT_MODEL: &str = "gpt-realtime-mini";

/// What a connection does once it is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// GA-shaped demo server: `session.created` on open, `session.update` -> `session.updated`,
    /// `response.create` -> a short deterministic streamed response ending in `response.done` with
    /// usage, `input_audio_buffer.commit` -> `input_audio_buffer.committed`; unknown types -> an
    /// OpenAI-shaped `error` event.
    Demo,
    /// `session.created` on open, then every text/binary message is sent back unchanged.
    Echo,
    /// `session.created` on open, then never sends anything (still records and answers pings).
    Silent,
    /// `session.created`, then `count` (None = until the client goes away)
    /// `response.output_audio.delta` events of about `message_bytes` of JSON each, one every
    /// `interval` (None = as fast as the socket accepts).
    Stream {
        message_bytes: usize,
        interval: Option<Duration>,
        count: Option<u64>,
    },
}

/// Everything a connection does, fixed when its upgrade arrives.
#[derive(Clone, Debug)]
pub struct Script {
    pub mode: Mode,
    /// Wait this long before answering the upgrade.
    pub handshake_delay: Duration,
    /// Answer the upgrade with this HTTP status and an OpenAI-shaped JSON error body instead.
    pub reject_status: Option<u16>,
    pub send_session_created: bool,
    /// After `session.created`, send a Close frame with this code and reason.
    pub close_after_open: Option<(u16, String)>,
    /// After `session.created`, drop the connection without a Close frame.
    pub drop_after_open: bool,
    /// Frames and aggregated messages up to this many bytes are accepted.
    pub max_message_size: usize,
    /// Keep every received message for [`Recorder::messages`]. Off for long benchmarks, where
    /// keeping them would grow without bound; [`Recorder::message_count`] still counts them.
    pub record_messages: bool,
    /// Demo mode waits this long before each delta of a streamed response, so a test can act
    /// while a response is in flight. Zero (the default) streams at once.
    pub demo_delta_delay: Duration,
}

impl Script {
    pub fn demo() -> Self {
        Self::with_mode(Mode::Demo)
    }

    pub fn echo() -> Self {
        Self::with_mode(Mode::Echo)
    }

    pub fn silent() -> Self {
        Self::with_mode(Mode::Silent)
    }

    /// A script with default settings and the given mode (e.g. [`Mode::Stream`]).
    pub fn with_mode(mode: Mode) -> Self {
        Script {
            mode,
            handshake_delay: Duration::ZERO,
            reject_status: None,
            send_session_created: true,
            close_after_open: None,
            drop_after_open: false,
            max_message_size: 64 * 1024 * 1024,
            record_messages: true,
            demo_delta_delay: Duration::ZERO,
        }
    }
}

impl Default for Script {
    fn default() -> Self {
        Self::demo()
    }
}

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
/// - Neither side sent a Close frame (client vanished, or `drop_after_open`): `abrupt: true`.
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
}

/// What the fake saw, shared by all its connections; waits are woken on every change.
pub struct Recorder {
    records: Mutex<Records>,
    changed: Notify,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
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
    fn record_handshake(&self, handshake: Handshake) -> u64 {
        self.update(|r| {
            r.next_connection += 1;
            r.handshakes.push(handshake);
            r.next_connection
        })
    }

    fn record_message(&self, connection: u64, frame: Frame) {
        self.update(|r| {
            r.message_count += 1;
            r.messages.push(Received { connection, frame })
        });
    }

    /// Counts a message without keeping it; nothing waits on the count, so no one is woken.
    fn count_message(&self) {
        self.lock().message_count += 1;
    }

    fn opened(&self) {
        self.update(|r| r.open += 1);
    }

    fn record_close(&self, closed: Closed) {
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

    /// Data messages received, kept or not (see [`Script::record_messages`]).
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

/// State shared by the handle and the server's worker.
struct Shared {
    recorder: Arc<Recorder>,
    script: Mutex<Script>,
}

impl Shared {
    fn script(&self) -> Script {
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A running fake upstream; see the module docs.
pub struct FakeUpstream {
    handle: ServerHandle,
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
}

impl FakeUpstream {
    /// Binds 127.0.0.1:0 and starts serving `ws://`. Call from inside a running actix System.
    pub async fn start(script: Script) -> std::io::Result<FakeUpstream> {
        Self::start_inner(script, None, 0).await
    }

    /// Binds 127.0.0.1:`port` (0 = any free port) and starts serving `ws://`.
    pub async fn start_on_port(script: Script, port: u16) -> std::io::Result<FakeUpstream> {
        Self::start_inner(script, None, port).await
    }

    /// Binds 127.0.0.1:0 and starts serving `wss://` with `tls`.
    pub async fn start_tls(
        script: Script,
        tls: rustls::ServerConfig,
    ) -> std::io::Result<FakeUpstream> {
        Self::start_inner(script, Some(tls), 0).await
    }

    async fn start_inner(
        script: Script,
        tls: Option<rustls::ServerConfig>,
        port: u16,
    ) -> std::io::Result<FakeUpstream> {
        let shared = Arc::new(Shared {
            recorder: Arc::new(Recorder::new()),
            script: Mutex::new(script),
        });
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(upgrade))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .client_disconnect_timeout(Duration::from_millis(100));
        let is_tls = tls.is_some();
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        log::debug!("fake upstream listening addr={addr} tls={is_tls}");
        Ok(FakeUpstream {
            handle,
            addr,
            tls: is_tls,
            shared,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`, or `wss://localhost:PORT/v1/realtime` for TLS.
    pub fn url(&self) -> String {
        if self.tls {
            format!("wss://localhost:{}/v1/realtime", self.addr.port())
        } else {
            format!("ws://{}/v1/realtime", self.addr)
        }
    }

    pub fn recorder(&self) -> Arc<Recorder> {
        Arc::clone(&self.shared.recorder)
    }

    /// Replaces the script for connections whose upgrade arrives from now on.
    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap_or_else(|e| e.into_inner()) = script;
    }

    /// Stops the server, dropping open connections.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Every request lands here: record it, then reject it or upgrade it as the script says.
async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> actix_web::Result<HttpResponse> {
    let script = shared.script();
    let handshake = handshake_of(&req);
    let model = query_model(&req);
    let connection = shared.recorder.record_handshake(handshake);
    log::debug!("fake upstream got an upgrade request connection={connection}");

    if !script.handshake_delay.is_zero() {
        tokio::time::sleep(script.handshake_delay).await;
    }
    if let Some(status) = script.reject_status {
        log::debug!("fake upstream rejects the upgrade connection={connection} status={status}");
        return Ok(rejection(status));
    }

    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &["realtime"])?;
    let stream = stream
        .max_frame_size(script.max_message_size)
        .aggregate_continuations()
        .max_continuation_size(script.max_message_size);
    let recorder = Arc::clone(&shared.recorder);
    recorder.opened();
    actix_web::rt::spawn(async move {
        let conn = Connection {
            id: connection,
            script,
            model,
            recorder: Arc::clone(&recorder),
            session,
            next_event: 0,
            next_id: 0,
            session_config: Value::Null,
        };
        let closed = conn.run(stream).await;
        log::debug!(
            "fake upstream connection ended connection={connection} code={:?} abrupt={}",
            closed.code,
            closed.abrupt
        );
        recorder.record_close(closed);
    });
    Ok(response)
}

fn handshake_of(req: &HttpRequest) -> Handshake {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
    let headers = req
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let protocols_offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    Handshake {
        path_and_query,
        headers,
        protocols_offered,
    }
}

fn query_model(req: &HttpRequest) -> String {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("model").cloned())
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned())
}

fn rejection(status: u16) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match status {
        401 => json!({"error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "param": null,
        }}),
        429 => json!({"error": {
            "message": "Rate limit reached for requests. Please try again later.",
            "type": "requests",
            "code": "rate_limit_exceeded",
            "param": null,
        }}),
        _ => json!({"error": {
            "message": format!("The fake upstream rejected the upgrade with status {status}"),
            "type": "server_error",
            "code": null,
            "param": null,
        }}),
    };
    HttpResponse::build(code)
        .content_type("application/json")
        .body(body.to_string())
}

/// How a connection's read loop ended, before it is turned into a [`Closed`].
enum End {
    /// The client sent a Close frame.
    ClientClose(Option<CloseReason>),
    /// The fake sent a Close frame first and the stream then ended.
    FakeClosed(String),
    /// The stream ended without a Close frame from either side.
    Abrupt(String),
}

/// One open WebSocket connection.
struct Connection {
    id: u64,
    script: Script,
    model: String,
    recorder: Arc<Recorder>,
    session: Session,
    next_event: u64,
    next_id: u64,
    /// The session object as last announced, updated by `session.update` in demo mode.
    session_config: Value,
}

impl Connection {
    async fn run(mut self, mut stream: AggregatedMessageStream) -> Closed {
        self.session_config = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": format!("sess_fake{:06}", self.id),
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": "You are a demo voice on a fake upstream.",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "turn_detection": {"type": "server_vad"},
                },
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": "alloy",
                },
            },
            "tools": [],
            "max_output_tokens": "inf",
            "expires_at": 0,
        });
        if self.script.send_session_created {
            let event = json!({"type": "session.created", "session": self.session_config});
            if self.send_event(event).await.is_err() {
                return self.closed(End::Abrupt(
                    "client went away before session.created".into(),
                ));
            }
        }
        if self.script.drop_after_open {
            // Dropping both halves ends the response body and the request payload: the server
            // closes the TCP connection without a Close frame.
            drop(stream);
            return self.closed(End::Abrupt("dropped by the fake upstream".into()));
        }
        let mut fake_closed = None;
        if let Some((code, reason)) = self.script.close_after_open.clone() {
            fake_closed = Some(format!("closed by the fake upstream: {code} {reason}"));
            let reason = CloseReason {
                code: CloseCode::from(code),
                description: Some(reason),
            };
            let _ = self.session.clone().close(Some(reason)).await;
        }

        let streamer = match (&self.script.mode, &fake_closed) {
            (
                Mode::Stream {
                    message_bytes,
                    interval,
                    count,
                },
                None,
            ) => Some(actix_web::rt::spawn(stream_deltas(
                self.session.clone(),
                *message_bytes,
                *interval,
                *count,
            ))),
            _ => None,
        };
        let end = self.read(&mut stream, fake_closed).await;
        if let Some(streamer) = streamer {
            streamer.abort();
        }
        self.closed(end)
    }

    /// Reads until the client closes or goes away. `fake_closed` says why, if the fake has
    /// already sent its Close frame.
    async fn read(
        &mut self,
        stream: &mut AggregatedMessageStream,
        mut fake_closed: Option<String>,
    ) -> End {
        // Once a reply fails the client is gone or closing: keep reading, stop answering.
        let mut replying = fake_closed.is_none();
        let mut deadline = None;
        loop {
            if fake_closed.is_some() && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + CLOSE_ANSWER_GRACE);
            }
            let next = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, stream.recv())
                    .await
                    .unwrap_or(None),
                None => stream.recv().await,
            };
            let msg = match next {
                // actix-ws ends the stream as soon as the fake's own Close is flushed, so the
                // client's answer to it is usually not seen.
                None => {
                    return match fake_closed {
                        Some(why) => End::FakeClosed(why),
                        None => End::Abrupt("stream ended without a Close frame".into()),
                    }
                }
                Some(Err(err)) => {
                    log::debug!(
                        "fake upstream read a bad frame connection={} error={err}",
                        self.id
                    );
                    if fake_closed.is_some() {
                        continue;
                    }
                    let Some(code) = close_code_for(&err) else {
                        return End::Abrupt(format!("connection failed: {err}"));
                    };
                    let reason = CloseReason {
                        code,
                        description: None,
                    };
                    let _ = self.session.clone().close(Some(reason)).await;
                    fake_closed = Some(format!(
                        "closed by the fake upstream: {} after a protocol error: {err}",
                        u16::from(code)
                    ));
                    replying = false;
                    continue;
                }
                Some(Ok(msg)) => msg,
            };
            match msg {
                AggregatedMessage::Text(text) => {
                    if self.script.record_messages {
                        self.recorder
                            .record_message(self.id, Frame::Text(text.to_string()));
                    } else {
                        self.recorder.count_message();
                    }
                    let replied = match self.script.mode {
                        _ if !replying => Ok(()),
                        Mode::Echo => self.session.text(text).await,
                        Mode::Demo => self.demo(&text).await,
                        Mode::Silent | Mode::Stream { .. } => Ok(()),
                    };
                    replying &= replied.is_ok();
                }
                AggregatedMessage::Binary(bytes) => {
                    if self.script.record_messages {
                        self.recorder
                            .record_message(self.id, Frame::Binary(bytes.to_vec()));
                    } else {
                        self.recorder.count_message();
                    }
                    if replying && self.on_binary(bytes).await.is_err() {
                        replying = false;
                    }
                }
                AggregatedMessage::Ping(bytes) => {
                    let _ = self.session.pong(&bytes).await;
                }
                AggregatedMessage::Pong(_) => {}
                AggregatedMessage::Close(reason) => {
                    if fake_closed.is_none() {
                        let echo = reason.as_ref().map(|r| CloseReason {
                            code: r.code,
                            description: None,
                        });
                        let _ = self.session.clone().close(echo).await;
                    }
                    return End::ClientClose(reason);
                }
            }
        }
    }

    fn closed(&self, end: End) -> Closed {
        match end {
            End::ClientClose(reason) => Closed {
                connection: self.id,
                code: reason.as_ref().map(|r| u16::from(r.code)),
                reason: reason.and_then(|r| r.description).unwrap_or_default(),
                abrupt: false,
            },
            End::FakeClosed(reason) => Closed {
                connection: self.id,
                code: None,
                reason,
                abrupt: false,
            },
            End::Abrupt(reason) => Closed {
                connection: self.id,
                code: None,
                reason,
                abrupt: true,
            },
        }
    }

    async fn on_binary(&mut self, bytes: Bytes) -> Result<(), actix_ws::Closed> {
        match self.script.mode {
            Mode::Echo => self.session.binary(bytes).await,
            Mode::Demo => {
                let error = Self::error_event(
                    "invalid_request_error",
                    "invalid_message",
                    "Binary frames are not supported; send JSON text events.",
                    None,
                    None,
                );
                self.send_event(error).await
            }
            Mode::Silent | Mode::Stream { .. } => Ok(()),
        }
    }

    fn event_id(&mut self) -> String {
        self.next_event += 1;
        format!("event_{}_{}", self.id, self.next_event)
    }

    fn object_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_fake{}x{}", self.id, self.next_id)
    }

    /// Sends `event` after giving it an `event_id` (kept second, after `type`, as OpenAI does).
    async fn send_event(&mut self, event: Value) -> Result<(), actix_ws::Closed> {
        let mut out = Map::new();
        let Value::Object(fields) = event else {
            return self.session.text(event.to_string()).await;
        };
        let mut fields = fields;
        if let Some(kind) = fields.remove("type") {
            out.insert("type".into(), kind);
        }
        out.insert("event_id".into(), Value::String(self.event_id()));
        out.extend(fields);
        self.session.text(Value::Object(out).to_string()).await
    }

    fn error_event(
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
        client_event_id: Option<Value>,
    ) -> Value {
        json!({
            "type": "error",
            "error": {
                "type": kind,
                "code": code,
                "message": message,
                "param": param,
                "event_id": client_event_id.unwrap_or(Value::Null),
            },
        })
    }

    async fn demo(&mut self, text: &str) -> Result<(), actix_ws::Closed> {
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(text) else {
            let error = Self::error_event(
                "invalid_request_error",
                "invalid_json",
                "The server could not parse the JSON body of the event.",
                None,
                None,
            );
            return self.send_event(error).await;
        };
        let client_event_id = event.get("event_id").cloned();
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "session.update" => {
                if let (Some(Value::Object(update)), Value::Object(current)) =
                    (event.get("session"), &mut self.session_config)
                {
                    for (key, value) in update {
                        current.insert(key.clone(), value.clone());
                    }
                }
                let updated = json!({"type": "session.updated", "session": self.session_config});
                self.send_event(updated).await
            }
            "response.create" => {
                let modalities = event
                    .get("response")
                    .and_then(|r| r.get("output_modalities"))
                    .or_else(|| self.session_config.get("output_modalities"))
                    .cloned();
                let text_only = modalities
                    .as_ref()
                    .and_then(Value::as_array)
                    .is_some_and(|m| !m.iter().any(|v| v == "audio"));
                self.demo_response(text_only).await
            }
            "input_audio_buffer.append" => Ok(()),
            "input_audio_buffer.commit" => {
                let item_id = self.object_id("item");
                let committed = json!({
                    "type": "input_audio_buffer.committed",
                    "previous_item_id": null,
                    "item_id": item_id,
                });
                self.send_event(committed).await
            }
            "input_audio_buffer.clear" => {
                self.send_event(json!({"type": "input_audio_buffer.cleared"}))
                    .await
            }
            "conversation.item.create" => {
                let mut item = event.get("item").cloned().unwrap_or_else(|| json!({}));
                if let Value::Object(fields) = &mut item {
                    if !fields.contains_key("id") {
                        let id = self.object_id("item");
                        fields.insert("id".into(), Value::String(id));
                    }
                    fields.insert("object".into(), json!("realtime.item"));
                    fields.insert("status".into(), json!("completed"));
                }
                let added = json!({"type": "conversation.item.added", "previous_item_id": null, "item": item});
                self.send_event(added).await?;
                let done = json!({"type": "conversation.item.done", "previous_item_id": null, "item": item});
                self.send_event(done).await
            }
            _ => {
                let message = format!(
                    "Invalid value: '{kind}'. Supported values are: 'session.update', \
                     'input_audio_buffer.append', 'input_audio_buffer.commit', \
                     'input_audio_buffer.clear', 'conversation.item.create', and 'response.create'."
                );
                let error = Self::error_event(
                    "invalid_request_error",
                    "invalid_value",
                    &message,
                    Some("type"),
                    client_event_id,
                );
                self.send_event(error).await
            }
        }
    }

    /// The script's pause before a streamed delta, if any.
    async fn delta_pause(&self) {
        if !self.script.demo_delta_delay.is_zero() {
            tokio::time::sleep(self.script.demo_delta_delay).await;
        }
    }

    /// A short, deterministic response: audio with a transcript, or text when asked for text only.
    async fn demo_response(&mut self, text_only: bool) -> Result<(), actix_ws::Closed> {
        const WORDS: [&str; 4] = ["Hello ", "from the ", "fake ", "upstream."];
        let response_id = self.object_id("resp");
        let item_id = self.object_id("item");
        let modality = if text_only { "text" } else { "audio" };
        let mut response = json!({
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": null,
            "output": [],
            "output_modalities": [modality],
            "usage": null,
        });
        self.send_event(json!({"type": "response.created", "response": response}))
            .await?;
        let mut item = json!({
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        });
        let at = json!({"response_id": response_id, "item_id": item_id, "output_index": 0});
        let with = |mut event: Value, extra: &Value| {
            if let (Value::Object(e), Value::Object(x)) = (&mut event, extra) {
                for (k, v) in x {
                    e.insert(k.clone(), v.clone());
                }
            }
            event
        };
        let added = json!({"type": "response.output_item.added", "response_id": response_id, "output_index": 0, "item": item});
        self.send_event(added).await?;
        let empty_part = if text_only {
            json!({"type": "output_text", "text": ""})
        } else {
            json!({"type": "output_audio", "transcript": ""})
        };
        let part_at = with(json!({"content_index": 0}), &at);
        self.send_event(with(
            json!({"type": "response.content_part.added", "part": empty_part}),
            &part_at,
        ))
        .await?;
        let transcript: String = WORDS.concat();
        if text_only {
            for word in WORDS {
                self.delta_pause().await;
                let delta = json!({"type": "response.output_text.delta", "delta": word});
                self.send_event(with(delta, &part_at)).await?;
            }
            let done = json!({"type": "response.output_text.done", "text": transcript});
            self.send_event(with(done, &part_at)).await?;
        } else {
            // 480 zero bytes of PCM16 (10 ms of silence at 24 kHz), base64-encoded.
            let silence = "A".repeat(640);
            for word in WORDS {
                self.delta_pause().await;
                let audio = json!({"type": "response.output_audio.delta", "delta": silence});
                self.send_event(with(audio, &part_at)).await?;
                self.delta_pause().await;
                let said = json!({"type": "response.output_audio_transcript.delta", "delta": word});
                self.send_event(with(said, &part_at)).await?;
            }
            self.send_event(with(
                json!({"type": "response.output_audio.done"}),
                &part_at,
            ))
            .await?;
            let done =
                json!({"type": "response.output_audio_transcript.done", "transcript": transcript});
            self.send_event(with(done, &part_at)).await?;
        }
        let part = if text_only {
            json!({"type": "output_text", "text": transcript})
        } else {
            json!({"type": "output_audio", "transcript": transcript})
        };
        self.send_event(with(
            json!({"type": "response.content_part.done", "part": part}),
            &part_at,
        ))
        .await?;
        item["status"] = json!("completed");
        item["content"] = json!([part]);
        let item_done = json!({"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": item});
        self.send_event(item_done).await?;
        response["status"] = json!("completed");
        response["output"] = json!([item]);
        response["usage"] = json!({
            "total_tokens": 32,
            "input_tokens": 12,
            "output_tokens": 20,
            "input_token_details": {"text_tokens": 10, "audio_tokens": 2, "cached_tokens": 0},
            "output_token_details": {"text_tokens": 5, "audio_tokens": 15},
        });
        self.send_event(json!({"type": "response.done", "response": response}))
            .await
    }
}

/// The Close code answering a frame the fake cannot accept; None when the connection itself failed.
fn close_code_for(err: &actix_ws::ProtocolError) -> Option<CloseCode> {
    match err {
        actix_ws::ProtocolError::Overflow => Some(CloseCode::Size),
        // actix-ws reports an oversized aggregated message as an I/O error with this text.
        actix_ws::ProtocolError::Io(e) if e.to_string().contains("maximum continuation size") => {
            Some(CloseCode::Size)
        }
        actix_ws::ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Some(CloseCode::Invalid)
        }
        actix_ws::ProtocolError::Io(_) => None,
        _ => Some(CloseCode::Protocol),
    }
}

/// Sends `response.output_audio.delta` events of about `message_bytes` each until `count` is
/// reached or the client is gone. Sending waits on the session's bounded queue, so the pace
/// follows the socket when `interval` is None.
async fn stream_deltas(
    mut session: Session,
    message_bytes: usize,
    interval: Option<Duration>,
    count: Option<u64>,
) {
    const HEAD: &str = r#"{"type":"response.output_audio.delta","event_id":"event_s"#;
    const MIDDLE: &str = r#"","response_id":"resp_stream","item_id":"item_stream","output_index":0,"content_index":0,"delta":""#;
    const TAIL: &str = r#""}"#;
    let fixed = HEAD.len() + 20 + MIDDLE.len() + TAIL.len();
    let padding = "A".repeat(message_bytes.saturating_sub(fixed).max(4));
    let mut ticker = interval.map(|every| {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut sent: u64 = 0;
    while count.is_none_or(|count| sent < count) {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        sent += 1;
        // A fixed-width counter keeps every message the same size.
        let text = format!("{HEAD}{sent:020}{MIDDLE}{padding}{TAIL}");
        if session.text(text).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::ws::{self, CloseCode, CloseReason};
    use futures_util::{SinkExt, Stream, StreamExt};

    const T: Duration = Duration::from_secs(5);

    async fn connect(
        url: &str,
    ) -> (
        awc::ClientResponse,
        impl Stream<Item = Result<ws::Frame, actix_ws::ProtocolError>>
            + futures_util::Sink<ws::Message, Error = actix_ws::ProtocolError>
            + Unpin,
    ) {
        let connecting = awc::Client::new()
            .ws(url)
            .protocols(["realtime"])
            .header("Authorization", "Bearer sk-test")
            .connect();
        tokio::time::timeout(T, connecting)
            .await
            .expect("connect in time")
            .expect("upgrade accepted")
    }

    /// The next frame other than a ping or pong; None when the stream ended.
    async fn next_frame<S>(framed: &mut S) -> Option<Result<ws::Frame, actix_ws::ProtocolError>>
    where
        S: Stream<Item = Result<ws::Frame, actix_ws::ProtocolError>> + Unpin,
    {
        loop {
            let next = tokio::time::timeout(T, framed.next())
                .await
                .expect("frame in time");
            if let Some(Ok(ws::Frame::Ping(_) | ws::Frame::Pong(_))) = next {
                continue;
            }
            return next;
        }
    }

    async fn next_json<S>(framed: &mut S) -> Value
    where
        S: Stream<Item = Result<ws::Frame, actix_ws::ProtocolError>> + Unpin,
    {
        match next_frame(framed).await {
            Some(Ok(ws::Frame::Text(bytes))) => serde_json::from_slice(&bytes).expect("JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn send<S>(framed: &mut S, msg: ws::Message)
    where
        S: futures_util::Sink<ws::Message, Error = actix_ws::ProtocolError> + Unpin,
    {
        tokio::time::timeout(T, framed.send(msg))
            .await
            .expect("send in time")
            .expect("send ok");
    }

    /// Echo mode returns each text and binary frame byte for byte, and records both in order.
    #[actix_web::test]
    async fn echo_returns_frames_unchanged() {
        let fake = FakeUpstream::start(Script::echo()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");

        let text = r#"{"type":"input_audio_buffer.append","event_id":"evt_42","audio":"AAAA"}"#;
        send(&mut framed, ws::Message::Text(text.into())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], text.as_bytes()),
            other => panic!("expected the text back, got {other:?}"),
        }
        let bin = Bytes::from_static(&[0, 159, 146, 150, 255]);
        send(&mut framed, ws::Message::Binary(bin.clone())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Binary(got))) => assert_eq!(got, bin),
            other => panic!("expected the binary back, got {other:?}"),
        }

        let got = fake.recorder().wait_messages(2, T).await.unwrap();
        assert_eq!(got[0].connection, 1);
        assert_eq!(got[0].frame, Frame::Text(text.to_owned()));
        assert_eq!(got[1].frame, Frame::Binary(bin.to_vec()));
        fake.stop().await;
    }

    /// Demo mode announces the requested model and answers response.create with deltas, then
    /// response.done carrying usage.
    #[actix_web::test]
    async fn demo_streams_a_response_with_usage() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let (_, mut framed) = connect(&format!("{}?model=gpt-realtime", fake.url())).await;
        let created = next_json(&mut framed).await;
        assert_eq!(created["type"], "session.created");
        assert_eq!(created["session"]["model"], "gpt-realtime");
        assert_eq!(created["session"]["type"], "realtime");
        assert!(created["event_id"].as_str().unwrap().starts_with("event_"));

        let update =
            r#"{"type":"session.update","session":{"type":"realtime","instructions":"Be brief."}}"#;
        send(&mut framed, ws::Message::Text(update.into())).await;
        let updated = next_json(&mut framed).await;
        assert_eq!(updated["type"], "session.updated");
        assert_eq!(updated["session"]["instructions"], "Be brief.");

        send(
            &mut framed,
            ws::Message::Text(r#"{"type":"response.create"}"#.into()),
        )
        .await;
        let mut types = Vec::new();
        let done = loop {
            let event = next_json(&mut framed).await;
            let kind = event["type"].as_str().unwrap().to_owned();
            types.push(kind.clone());
            if kind == "response.done" {
                break event;
            }
            assert!(types.len() < 50, "no response.done in {types:?}");
        };
        assert_eq!(types[0], "response.created");
        let audio = types
            .iter()
            .filter(|t| *t == "response.output_audio.delta")
            .count();
        let said = types
            .iter()
            .filter(|t| *t == "response.output_audio_transcript.delta")
            .count();
        assert!(audio >= 2 && said >= 2, "{types:?}");
        let usage = &done["response"]["usage"];
        assert_eq!(usage["total_tokens"], 32);
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
            )
        );
        assert_eq!(usage["input_token_details"]["cached_tokens"], 0);
        assert_eq!(usage["output_token_details"]["audio_tokens"], 15);

        send(
            &mut framed,
            ws::Message::Text(r#"{"type":"bogus.kind","event_id":"e1"}"#.into()),
        )
        .await;
        let error = next_json(&mut framed).await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["event_id"], "e1");
        fake.stop().await;
    }

    /// A scripted rejection reaches the client as that HTTP status, and is still recorded.
    #[actix_web::test]
    async fn reject_status_is_the_upgrade_answer() {
        let fake = FakeUpstream::start(Script {
            reject_status: Some(401),
            ..Script::demo()
        })
        .await
        .unwrap();
        let attempt = awc::Client::new().ws(fake.url()).connect();
        match tokio::time::timeout(T, attempt).await.unwrap() {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status.as_u16(), 401)
            }
            Err(other) => panic!("expected a 401, got {other:?}"),
            Ok(_) => panic!("expected a 401, the upgrade was accepted"),
        }
        assert_eq!(
            fake.recorder().wait_handshakes(1, T).await.unwrap().len(),
            1
        );
        assert_eq!(fake.recorder().open_connections(), 0);
        fake.stop().await;
    }

    /// The upgrade is recorded with its path, query, headers and offered subprotocols, and
    /// `realtime` is selected.
    #[actix_web::test]
    async fn handshake_is_recorded() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let connecting = awc::Client::new()
            .ws(format!("{}?model=gpt-realtime-2", fake.url()))
            .protocols(["realtime", "openai-insecure-api-key.sk-x"])
            .header("OpenAI-Project", "proj_1")
            .connect();
        let (res, _framed) = tokio::time::timeout(T, connecting).await.unwrap().unwrap();
        assert_eq!(
            res.headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok()),
            Some("realtime")
        );
        let shakes = fake.recorder().wait_handshakes(1, T).await.unwrap();
        assert_eq!(
            shakes[0].path_and_query,
            "/v1/realtime?model=gpt-realtime-2"
        );
        assert_eq!(shakes[0].header("openai-project"), Some("proj_1"));
        assert_eq!(
            shakes[0].protocols_offered,
            vec!["realtime", "openai-insecure-api-key.sk-x"]
        );
        fake.stop().await;
    }

    /// A client's Close frame is recorded with its code and reason, and answered with the same code.
    #[actix_web::test]
    async fn client_close_is_recorded_and_echoed() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        assert_eq!(fake.recorder().open_connections(), 1);
        let reason = CloseReason {
            code: CloseCode::Away,
            description: Some("bye".into()),
        };
        send(&mut framed, ws::Message::Close(Some(reason))).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Close(Some(r)))) => assert_eq!(r.code, CloseCode::Away),
            other => panic!("expected a close echo, got {other:?}"),
        }
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert_eq!(closes[0].code, Some(1001));
        assert_eq!(closes[0].reason, "bye");
        assert!(!closes[0].abrupt);
        assert_eq!(fake.recorder().open_connections(), 0);
        fake.stop().await;
    }

    /// A client that goes away without a Close frame is recorded as abrupt.
    #[actix_web::test]
    async fn vanished_client_is_abrupt() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        drop(framed);
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(closes[0].abrupt);
        assert_eq!(closes[0].code, None);
        fake.stop().await;
    }

    /// close_after_open sends session.created, then a Close with the scripted code and reason.
    #[actix_web::test]
    async fn close_after_open_sends_the_scripted_close() {
        let fake = FakeUpstream::start(Script {
            close_after_open: Some((4000, "invalid_request_error.beta_api_shape_disabled".into())),
            ..Script::demo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Close(Some(r)))) => {
                assert_eq!(u16::from(r.code), 4000);
                assert_eq!(
                    r.description.as_deref(),
                    Some("invalid_request_error.beta_api_shape_disabled")
                );
            }
            other => panic!("expected a close, got {other:?}"),
        }
        let _ = framed
            .send(ws::Message::Close(Some(CloseCode::from(4000).into())))
            .await;
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(!closes[0].abrupt);
        if closes[0].code.is_none() {
            assert!(closes[0].reason.contains("4000"), "{:?}", closes[0]);
        }
        fake.stop().await;
    }

    /// drop_after_open ends the connection after session.created with no Close frame.
    #[actix_web::test]
    async fn drop_after_open_sends_no_close() {
        let fake = FakeUpstream::start(Script {
            drop_after_open: true,
            ..Script::echo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        match next_frame(&mut framed).await {
            None | Some(Err(_)) => {}
            Some(Ok(frame)) => panic!("expected the connection to end, got {frame:?}"),
        }
        let closes = fake.recorder().wait_closes(1, T).await.unwrap();
        assert!(closes[0].abrupt);
        fake.stop().await;
    }

    /// Stream mode sends exactly `count` audio deltas of about `message_bytes` each.
    #[actix_web::test]
    async fn stream_sends_sized_deltas() {
        let fake = FakeUpstream::start(Script::with_mode(Mode::Stream {
            message_bytes: 1000,
            interval: Some(Duration::from_millis(1)),
            count: Some(3),
        }))
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        for _ in 0..3 {
            match next_frame(&mut framed).await {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    assert_eq!(bytes.len(), 1000);
                    let event: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(event["type"], "response.output_audio.delta");
                }
                other => panic!("expected a delta, got {other:?}"),
            }
        }
        send(&mut framed, ws::Message::Ping(Bytes::from_static(b"p"))).await;
        match tokio::time::timeout(T, framed.next()).await.unwrap() {
            Some(Ok(ws::Frame::Pong(p))) => assert_eq!(&p[..], b"p"),
            other => panic!("expected only a pong after the count, got {other:?}"),
        }
        fake.stop().await;
    }

    /// With record_messages off, messages are still echoed and counted but not kept.
    #[actix_web::test]
    async fn unrecorded_messages_are_counted_only() {
        let fake = FakeUpstream::start(Script {
            record_messages: false,
            ..Script::echo()
        })
        .await
        .unwrap();
        let (_, mut framed) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        for text in ["one", "two"] {
            send(&mut framed, ws::Message::Text(text.into())).await;
            match next_frame(&mut framed).await {
                Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], text.as_bytes()),
                other => panic!("expected the echo, got {other:?}"),
            }
        }
        assert_eq!(fake.recorder().message_count(), 2);
        assert!(fake.recorder().messages().is_empty());
        fake.stop().await;
    }

    /// set_script changes what the next connection gets; connections are numbered from 1.
    #[actix_web::test]
    async fn set_script_applies_to_new_connections() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let (_, mut first) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut first).await["type"], "session.created");
        fake.set_script(Script {
            send_session_created: false,
            ..Script::echo()
        });
        let (_, mut second) = connect(&fake.url()).await;
        send(&mut second, ws::Message::Text("hi".into())).await;
        match next_frame(&mut second).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], b"hi"),
            other => panic!("expected the echo first, got {other:?}"),
        }
        let got = fake.recorder().wait_messages(1, T).await.unwrap();
        assert_eq!(got[0].connection, 2);
        assert_eq!(fake.recorder().open_connections(), 2);
        fake.stop().await;
    }

    /// A wait that cannot be satisfied ends with WaitTimeout instead of hanging.
    #[actix_web::test]
    async fn wait_times_out() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let waited = fake
            .recorder()
            .wait_messages(1, Duration::from_millis(50))
            .await;
        assert!(waited.is_err());
        fake.stop().await;
    }

    /// Messages far above the 64 KiB actix default are accepted, recorded and echoed whole.
    #[actix_web::test]
    async fn large_messages_are_accepted() {
        let fake = FakeUpstream::start(Script::echo()).await.unwrap();
        let connecting = awc::Client::new()
            .ws(fake.url())
            .max_frame_size(4 * 1024 * 1024)
            .connect();
        let (_, mut framed) = tokio::time::timeout(T, connecting).await.unwrap().unwrap();
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        let big = format!(
            r#"{{"type":"x","audio":"{}"}}"#,
            "A".repeat(3 * 1024 * 1024)
        );
        send(&mut framed, ws::Message::Text(big.clone().into())).await;
        match next_frame(&mut framed).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(got.len(), big.len()),
            other => panic!(
                "expected the big message back, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        let got = fake.recorder().wait_messages(1, T).await.unwrap();
        assert_eq!(got[0].frame, Frame::Text(big));
        fake.stop().await;
    }

    /// start_tls serves wss:// on localhost with the given certificate.
    #[actix_web::test]
    async fn tls_serves_wss() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let fake = FakeUpstream::start_tls(Script::demo(), server)
            .await
            .unwrap();
        assert!(fake.url().starts_with("wss://localhost:"));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = awc::Connector::new().rustls_0_23(Arc::new(client));
        let connecting = awc::Client::builder()
            .connector(connector)
            .finish()
            .ws(fake.url())
            .connect();
        let (_, mut framed) = tokio::time::timeout(T, connecting).await.unwrap().unwrap();
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        fake.stop().await;
    }

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
