//! `Upstream`: the relay's WebSocket to OpenAI for one session. It is started by its `Session`
//! once the `Registry` has admitted it, dials with the server's key, hands the session a writer
//! for client→upstream frames, and itself pumps upstream→client frames straight into the
//! client's socket. It stops when the upstream closes (telling the session why) or when its
//! session sends `Close` (after passing the close frame on).

pub mod pool;
pub mod wire;

use std::{
    cell::Cell,
    io,
    path::Path,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::web::{Bytes, BytesMut};
use actix_ws::ProtocolError;
use awc::{
    error::WsClientError,
    http::header,
    ws::{self, Codec, Frame, Message},
    BoxedSocket,
};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use self::pool::{Pool, Warm};
use crate::{
    admission::registry::{self, Registry},
    close::CloseReason,
    config::UpstreamConfig,
    ops::{
        metrics::{Flow, Metrics},
        throttle::{self, Throttle},
    },
    protection::usage::{self, Watched},
    session::{self, Session, Shared},
};

/// The query a pooled socket for `model` is opened with.
fn pool_query(model: &str) -> String {
    format!("model={model}")
}

pub type Socket = actix_codec::Framed<BoxedSocket, Codec>;

/// Frames queued for the upstream writer; a full queue makes the client reader wait.
pub const WRITER_QUEUE: usize = 16;
/// How long a closing upstream gets to take its close frame before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The sending half of an open upstream: the session's client reader feeds it.
pub type Writer = mpsc::Sender<Message>;

/// The TLS settings for a `wss://` upstream: webpki roots plus `UPSTREAM_CA_FILE`, the ring
/// provider only, and ALPN pinned to HTTP/1.1 (a WebSocket cannot ride an h2 connection here).
pub fn tls_config(ca_file: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| io::Error::other(format!("UPSTREAM_CA_FILE {}: {e}", path.display())))?
        {
            let cert = cert.map_err(|e| {
                io::Error::other(format!("UPSTREAM_CA_FILE {}: {e}", path.display()))
            })?;
            roots.add(cert).map_err(|e| {
                io::Error::other(format!("UPSTREAM_CA_FILE {}: {e}", path.display()))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(io::Error::other(format!(
                "UPSTREAM_CA_FILE {}: no PEM certificates found",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Dials upstream WebSockets and keeps the worker's warm pool. One per HTTP worker thread
/// (`awc::Client` and its sockets are not `Send`).
pub struct Dialer {
    client: awc::Client,
    config: UpstreamConfig,
    max_message_size: usize,
    metrics: Arc<Metrics>,
    registry: Addr<Registry>,
    pool: Option<Pool>,
    /// Collapses repeated dial-failure warnings; shared by every worker's dialer.
    failures: Arc<Throttle>,
}

/// An upstream socket ready for a session, and what it received before the session took it.
pub struct Opened {
    pub socket: Socket,
    pub replay: Vec<Message>,
    /// Whether it came warm from the pool.
    pub pooled: bool,
}

impl Dialer {
    /// Builds the worker's dialer; with a pool, starts filling it and its maintenance tick.
    pub fn new(
        config: UpstreamConfig,
        tls: Arc<rustls::ClientConfig>,
        max_message_size: usize,
        metrics: Arc<Metrics>,
        registry: Addr<Registry>,
        pool: Option<Pool>,
        failures: Arc<Throttle>,
    ) -> Rc<Dialer> {
        let connector = awc::Connector::new()
            .rustls_0_23(tls)
            .timeout(config.connect_timeout)
            .handshake_timeout(config.connect_timeout)
            // Every open WebSocket holds a pool slot for its whole life; the registry is the limit.
            .limit(0);
        // No `ClientBuilder::max_http_version`: it would replace the TLS config (and with it the
        // UPSTREAM_CA_FILE roots) with awc's default; `tls_config` already pins ALPN to HTTP/1.1.
        let client = awc::Client::builder()
            .connector(connector)
            .disable_timeout()
            .finish();
        let dialer = Rc::new(Dialer {
            client,
            config,
            max_message_size,
            metrics,
            registry,
            pool,
            failures,
        });
        if let Some(pool) = &dialer.pool {
            let tick =
                (pool.max_idle() / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
            let weak = Rc::downgrade(&dialer);
            actix_web::rt::spawn(async move {
                let mut interval = tokio::time::interval(tick);
                loop {
                    interval.tick().await;
                    let Some(dialer) = weak.upgrade() else { break };
                    dialer.maintain();
                }
            });
        }
        dialer
    }

    /// An upstream for `query`: a warm one from the pool when `model` is pooled and one is
    /// ready, a fresh dial otherwise.
    /// A safety identifier is per client, so such sessions always dial their own socket.
    pub async fn open(
        self: Rc<Self>,
        query: &str,
        model: &str,
        safety_id: Option<&str>,
    ) -> Result<Opened, CloseReason> {
        if let (Some(pool), None) = (&self.pool, safety_id) {
            if pool.pools(model) && query == pool_query(model) {
                let (warm, dead) = pool.take(model);
                let m = &self.metrics;
                m.upstream_pool_expired
                    .with_label_values(&[model])
                    .inc_by(dead as u64);
                if let Some(warm) = warm {
                    m.upstream_pool_warm
                        .with_label_values(&[model])
                        .sub(1 + dead as i64);
                    m.upstream_pool_hits.with_label_values(&[model]).inc();
                    m.upstream_pool_age_seconds
                        .observe(warm.opened_at.elapsed().as_secs_f64());
                    self.refill(model);
                    return Ok(Opened {
                        socket: warm.socket,
                        replay: warm.replay,
                        pooled: true,
                    });
                }
                m.upstream_pool_warm
                    .with_label_values(&[model])
                    .sub(dead as i64);
                m.upstream_pool_misses.with_label_values(&[model]).inc();
                self.refill(model);
            }
        }
        let socket = self.connect(query, safety_id).await?;
        Ok(Opened {
            socket,
            replay: Vec::new(),
            pooled: false,
        })
    }

    /// Expires old warm sockets and tops every shelf up.
    fn maintain(self: &Rc<Self>) {
        let Some(pool) = &self.pool else { return };
        for (model, n) in pool.expire() {
            log::debug!("upstream pool: closed {n} warm socket(s) for model={model} (idle limit)");
            self.metrics
                .upstream_pool_expired
                .with_label_values(&[&model])
                .inc_by(n as u64);
            self.metrics
                .upstream_pool_warm
                .with_label_values(&[&model])
                .sub(n as i64);
        }
        for model in pool.models() {
            self.refill(&model);
        }
    }

    /// Starts the dials that bring `model`'s shelf back to its target.
    fn refill(self: &Rc<Self>, model: &str) {
        let Some(pool) = &self.pool else { return };
        for _ in 0..pool.reserve_dials(model) {
            let dialer = self.clone();
            let model = model.to_string();
            actix_web::rt::spawn(async move {
                let warm = dialer.dial_warm(&model).await;
                let Some(pool) = &dialer.pool else { return };
                match warm {
                    Ok(warm) => {
                        if pool.dial_done(&model, Some(warm)) {
                            dialer
                                .metrics
                                .upstream_pool_warm
                                .with_label_values(&[&model])
                                .inc();
                        }
                    }
                    // `connect` has logged why.
                    Err(_) => {
                        pool.dial_done(&model, None);
                    }
                }
            });
        }
    }

    /// Opens a socket for the pool and waits for its first event (`session.created`).
    async fn dial_warm(&self, model: &str) -> Result<Warm, CloseReason> {
        let opened_at = Instant::now();
        let mut socket = self.connect(&pool_query(model), None).await?;
        let mut replay = Vec::new();
        let first = tokio::time::timeout(self.config.connect_timeout, async {
            while let Some(frame) = socket.next().await {
                match frame {
                    Ok(Frame::Text(b)) => {
                        return ByteString::try_from(b).ok().map(Message::Text);
                    }
                    Ok(Frame::Binary(b)) => return Some(Message::Binary(b)),
                    Ok(Frame::Ping(p)) => {
                        let _ = socket.send(Message::Pong(p)).await;
                    }
                    Ok(Frame::Pong(_)) => {}
                    _ => return None,
                }
            }
            None
        })
        .await;
        match first {
            Ok(Some(msg)) => replay.push(msg),
            Ok(None) => return Err(CloseReason::UpstreamGone),
            Err(_) => {
                return Err(CloseReason::UpstreamTimeout {
                    after_ms: self.config.connect_timeout.as_millis(),
                })
            }
        }
        Ok(Warm {
            socket,
            replay,
            opened_at,
        })
    }

    /// Opens the upstream WebSocket for `query` (`model=..` and/or `intent=..`).
    pub async fn connect(
        &self,
        query: &str,
        safety_id: Option<&str>,
    ) -> Result<Socket, CloseReason> {
        let started = Instant::now();
        let result = self.dial(query, safety_id).await;
        match &result {
            Ok(_) => {
                let seconds = started.elapsed().as_secs_f64();
                self.metrics.upstream_connect_seconds.observe(seconds);
                self.registry.do_send(registry::ConnectTime { seconds });
            }
            Err(reason) => {
                self.metrics
                    .upstream_connect_failures
                    .with_label_values(&[reason.label()])
                    .inc();
                // The client gets the error event; the operator needs the cause, once, not
                // once per client while the upstream is down.
                if let Some(held_back) = self.failures.check(reason.label(), Instant::now()) {
                    log::warn!(
                        "upstream dial failed reason={} upstream={} {query}: {}{}",
                        reason.label(),
                        self.config.url,
                        reason.message(),
                        throttle::held_back_note(held_back)
                    );
                }
            }
        }
        result
    }

    async fn dial(&self, query: &str, safety_id: Option<&str>) -> Result<Socket, CloseReason> {
        let url = format!("{}?{}", self.config.url, query);
        let mut req = self
            .client
            .ws(url)
            .max_frame_size(self.max_message_size)
            .set_header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.config.api_key.expose()),
            );
        if let Some(org) = &self.config.organization {
            req = req.set_header("OpenAI-Organization", org.as_str());
        }
        if let Some(project) = &self.config.project {
            req = req.set_header("OpenAI-Project", project.as_str());
        }
        if let Some(id) = safety_id {
            req = req.set_header("OpenAI-Safety-Identifier", id);
        }
        let timeout = self.config.connect_timeout;
        match tokio::time::timeout(timeout, req.connect()).await {
            Err(_) => Err(CloseReason::UpstreamTimeout {
                after_ms: timeout.as_millis(),
            }),
            Ok(Ok((_, socket))) => Ok(socket),
            Ok(Err(WsClientError::InvalidResponseStatus(status))) => Err(match status.as_u16() {
                401 | 403 => CloseReason::UpstreamAuthFailed {
                    status: status.as_u16(),
                },
                429 => CloseReason::UpstreamRateLimited,
                s => CloseReason::UpstreamRejected { status: s },
            }),
            Ok(Err(WsClientError::SendRequest(e))) => {
                if matches!(e, awc::error::SendRequestError::Timeout)
                    || matches!(
                        e,
                        awc::error::SendRequestError::Connect(awc::error::ConnectError::Timeout)
                    )
                {
                    Err(CloseReason::UpstreamTimeout {
                        after_ms: timeout.as_millis(),
                    })
                } else {
                    Err(CloseReason::UpstreamUnavailable {
                        detail: e.to_string(),
                    })
                }
            }
            Ok(Err(e)) => Err(CloseReason::UpstreamUnavailable {
                detail: format!("bad WebSocket handshake ({e})"),
            }),
        }
    }
}

/// The session ends from the client or relay side: pass the close on and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

pub struct Upstream {
    session: Addr<Session>,
    session_id: u64,
    client: actix_ws::Session,
    query: String,
    model: String,
    dialer: Rc<Dialer>,
    metrics: Arc<Metrics>,
    shared: Rc<Shared>,
    opened: Option<oneshot::Sender<Writer>>,
    admitted_at: Instant,
    log_events: bool,
    identity: String,
    safety_id: Option<String>,
    writer: Option<Writer>,
    /// Set when closing: the reader drops upstream frames instead of forwarding them.
    draining: Rc<Cell<bool>>,
    reader_done: bool,
    writer_done: bool,
    closing: bool,
}

/// What a session hands its upstream.
pub struct Params {
    pub session: Addr<Session>,
    pub session_id: u64,
    pub client: actix_ws::Session,
    pub query: String,
    pub model: String,
    pub dialer: Rc<Dialer>,
    pub metrics: Arc<Metrics>,
    pub shared: Rc<Shared>,
    pub opened: oneshot::Sender<Writer>,
    /// When the registry admitted the session, for the time-to-first-event histogram.
    pub admitted_at: Instant,
    /// Log each upstream event's type (debug).
    pub log_events: bool,
    /// Whose usage this session's `response.done` events count against.
    pub identity: String,
    pub safety_id: Option<String>,
}

impl Upstream {
    pub fn new(p: Params) -> Upstream {
        Upstream {
            session: p.session,
            session_id: p.session_id,
            client: p.client,
            query: p.query,
            model: p.model,
            dialer: p.dialer,
            metrics: p.metrics,
            shared: p.shared,
            opened: Some(p.opened),
            admitted_at: p.admitted_at,
            log_events: p.log_events,
            identity: p.identity,
            safety_id: p.safety_id,
            writer: None,
            draining: Rc::new(Cell::new(false)),
            reader_done: false,
            writer_done: false,
            closing: false,
        }
    }

    fn connected(&mut self, opened: Opened, ctx: &mut Context<Self>) {
        let (stream, sink) = wire::split(opened.socket);
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        ctx.spawn(
            write_upstream(rx, sink)
                .into_actor(self)
                .map(|_, act, ctx| {
                    // The writer ends after our close frame (or when every sender is gone). The
                    // socket stays open until the upstream answers the close, so it sees the
                    // frame before the connection ends; if it already has, stop now.
                    act.writer_done = true;
                    if act.closing && act.reader_done {
                        ctx.stop();
                    }
                }),
        );
        let reader = read_upstream(
            opened.replay,
            stream,
            ToClient {
                client: self.client.clone(),
                writer: tx.clone(),
                shared: self.shared.clone(),
                draining: self.draining.clone(),
                flow: self.metrics.upstream_to_client.clone(),
                max_message_size: self.dialer.max_message_size,
                session_id: self.session_id,
                log_events: self.log_events,
                first_event: Some((
                    self.admitted_at,
                    self.metrics.first_upstream_event_seconds.clone(),
                )),
                accounting: Accounting {
                    registry: self.dialer.registry.clone(),
                    identity: self.identity.clone(),
                    model: self.model.clone(),
                },
            },
        );
        ctx.spawn(reader.into_actor(self).map(|reason, act, ctx| {
            act.reader_done = true;
            act.ended(reason, ctx);
        }));
        if let Some(opened) = self.opened.take() {
            // The session may already be gone; then its close follows shortly.
            let _ = opened.send(tx.clone());
        }
        self.writer = Some(tx);
    }

    /// The reader ended. If we were closing, this was the upstream's answer: stop. Otherwise the
    /// upstream ended the session: answer its close (or say why we stop), tell the session, stop
    /// once our close frame is written.
    fn ended(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.closing {
            ctx.stop();
            return;
        }
        let frame = match &reason {
            CloseReason::UpstreamClosed { code, reason: text } => ws::CloseReason {
                code: code.map_or(ws::CloseCode::Normal, ws::CloseCode::from),
                description: (code.is_some() && !text.is_empty()).then(|| text.clone()),
            },
            CloseReason::UpstreamMessageTooLarge { .. } => ws::CloseCode::Size.into(),
            CloseReason::UpstreamProtocolError => ws::CloseCode::Protocol.into(),
            _ => ws::CloseCode::Normal.into(),
        };
        self.session.do_send(session::UpstreamEnded { reason });
        self.begin_close(frame, ctx);
    }

    /// Sends the upstream a close frame and stops forwarding its frames. The actor stops when
    /// the close handshake is complete (reader and writer done) or after `CLOSE_GRACE`.
    fn begin_close(&mut self, frame: ws::CloseReason, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.draining.set(true);
        let Some(writer) = self.writer.take() else {
            // Not connected yet: stopping drops the dial; nothing was opened.
            ctx.stop();
            return;
        };
        if writer.try_send(Message::Close(Some(frame))).is_err()
            || self.reader_done && self.writer_done
        {
            ctx.stop();
            return;
        }
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }
}

impl Actor for Upstream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let dialer = self.dialer.clone();
        let query = self.query.clone();
        let model = self.model.clone();
        let safety_id = self.safety_id.clone();
        let started = Instant::now();
        ctx.spawn(
            async move { dialer.open(&query, &model, safety_id.as_deref()).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    if act.closing {
                        return;
                    }
                    match result {
                        Ok(opened) => {
                            let took = started.elapsed();
                            log::debug!(
                                "session={} upstream open in {} ms pooled={}",
                                act.session_id,
                                took.as_millis(),
                                opened.pooled
                            );
                            act.connected(opened, ctx);
                            act.session.do_send(session::UpstreamOpened { took });
                        }
                        Err(reason) => {
                            act.closing = true;
                            act.session.do_send(session::UpstreamEnded { reason });
                            ctx.stop();
                        }
                    }
                }),
        );
    }
}

impl Handler<Close> for Upstream {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Context<Self>) {
        let frame = ws::CloseReason {
            code: msg.code.into(),
            description: (!msg.reason.is_empty()).then_some(msg.reason),
        };
        // Still dialing: stop now, which aborts the dial; nothing was opened, nothing is billed.
        self.begin_close(frame, ctx);
    }
}

/// Drains the writer queue into the upstream socket, in order, until a close frame is written or
/// every sender is gone.
async fn write_upstream(mut rx: mpsc::Receiver<Message>, mut sink: wire::Writer) {
    while let Some(msg) = rx.recv().await {
        // Encode every frame already waiting, then write once: one write carries them all.
        let mut is_close = matches!(msg, Message::Close(_));
        if sink.encode(msg).is_err() {
            return;
        }
        while !is_close {
            let Ok(next) = rx.try_recv() else { break };
            is_close = matches!(next, Message::Close(_));
            if sink.encode(next).is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() || is_close {
            return;
        }
    }
}

/// What the upstream reader writes to: the client socket (and the upstream writer, for pongs).
struct ToClient {
    client: actix_ws::Session,
    writer: Writer,
    shared: Rc<Shared>,
    draining: Rc<Cell<bool>>,
    flow: Flow,
    max_message_size: usize,
    session_id: u64,
    log_events: bool,
    /// Observed once, when the first upstream event is handed to the client.
    first_event: Option<(Instant, prometheus::Histogram)>,
    accounting: Accounting,
}

/// Where usage read off `response.done` goes.
struct Accounting {
    registry: Addr<Registry>,
    identity: String,
    model: String,
}

impl ToClient {
    /// Looks at the few event types that matter for accounting (a check of the first bytes;
    /// anything else is not parsed). Returns true when the session must now end because its
    /// budget is spent and the response in flight just completed.
    fn account(&self, text: &str) -> bool {
        let Some(kind) = usage::watched(text) else {
            return false;
        };
        let s = &self.shared;
        match kind {
            Watched::ResponseCreated => {
                s.responses_in_flight.set(s.responses_in_flight.get() + 1);
                return false;
            }
            Watched::ResponseDone => {
                s.responses_in_flight
                    .set(s.responses_in_flight.get().saturating_sub(1));
            }
            Watched::TranscriptionCompleted => {}
        }
        if let Some(used) = usage::parse_usage(text) {
            let mut total = s.usage.get();
            total.add(&used);
            s.usage.set(total);
            self.accounting.registry.do_send(registry::RecordUsage {
                identity: self.accounting.identity.clone(),
                model: self.accounting.model.clone(),
                usage: used,
            });
        }
        kind == Watched::ResponseDone
            && s.budget_spent.get().is_some()
            && s.responses_in_flight.get() == 0
    }

    #[inline]
    fn record(&mut self, msg: &Message, len: usize) {
        self.flow.record(len);
        self.shared.upstream_to_client.record(len);
        if let Some((since, histogram)) = self.first_event.take() {
            histogram.observe(since.elapsed().as_secs_f64());
        }
        if self.log_events {
            session::log_event(self.session_id, "upstream_to_client", msg);
        }
    }
}

/// Relays upstream frames to the client until either side ends; returns why.
async fn read_upstream(
    replay: Vec<Message>,
    mut stream: wire::Reader,
    mut to: ToClient,
) -> CloseReason {
    let mut client = to.client.clone();
    let writer = to.writer.clone();
    let shared = to.shared.clone();
    let draining = to.draining.clone();
    let max_message_size = to.max_message_size;
    // Frames a pooled socket received before this session took it (`session.created`).
    for msg in replay {
        let len = match &msg {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
            _ => 0,
        };
        to.record(&msg, len);
        if client.send(msg).await.is_err() {
            return CloseReason::ClientGone;
        }
    }
    // A fragmented message being reassembled: whether it is text, and its bytes so far.
    let mut partial: Option<(bool, BytesMut)> = None;
    while let Some(frame) = stream.next().await {
        let (text, data): (bool, Bytes) = match frame {
            Ok(Frame::Text(b)) => (true, b),
            Ok(Frame::Binary(b)) => (false, b),
            Ok(Frame::Continuation(item)) => {
                use actix_ws::Item;
                let (first, chunk, last) = match item {
                    Item::FirstText(b) => (Some(true), b, false),
                    Item::FirstBinary(b) => (Some(false), b, false),
                    Item::Continue(b) => (None, b, false),
                    Item::Last(b) => (None, b, true),
                };
                match (first, partial.as_mut()) {
                    (Some(is_text), None) => partial = Some((is_text, BytesMut::from(&chunk[..]))),
                    (None, Some((_, buf))) => buf.extend_from_slice(&chunk),
                    _ => return CloseReason::UpstreamProtocolError,
                }
                let size = partial.as_ref().map_or(0, |(_, b)| b.len());
                if size > max_message_size {
                    return CloseReason::UpstreamMessageTooLarge {
                        limit: max_message_size,
                    };
                }
                if !last {
                    continue;
                }
                match partial.take() {
                    Some((is_text, buf)) => (is_text, buf.freeze()),
                    None => return CloseReason::UpstreamProtocolError,
                }
            }
            Ok(Frame::Ping(p)) => {
                // Answer for the relay; if the writer queue is full the upstream is not reading
                // anyway and a lost pong changes nothing.
                let _ = writer.try_send(Message::Pong(p));
                continue;
            }
            Ok(Frame::Pong(_)) => continue,
            Ok(Frame::Close(reason)) => {
                return CloseReason::UpstreamClosed {
                    code: reason.as_ref().map(|r| u16::from(r.code)),
                    reason: reason.and_then(|r| r.description).unwrap_or_default(),
                }
            }
            Err(ProtocolError::Overflow) => {
                return CloseReason::UpstreamMessageTooLarge {
                    limit: max_message_size,
                }
            }
            Err(ProtocolError::Io(_)) => return CloseReason::UpstreamGone,
            Err(_) => return CloseReason::UpstreamProtocolError,
        };
        if draining.get() {
            // Closing: wait for the upstream's close without relaying anything more.
            continue;
        }
        let len = data.len();
        let msg = if text {
            match ByteString::try_from(data) {
                Ok(s) => Message::Text(s),
                Err(_) => return CloseReason::UpstreamProtocolError,
            }
        } else {
            Message::Binary(data)
        };
        to.record(&msg, len);
        let budget_end = matches!(&msg, Message::Text(t) if to.account(t));
        shared.client_write_blocked.set(true);
        let sent = client.send(msg).await;
        shared.client_write_blocked.set(false);
        if sent.is_err() {
            return CloseReason::ClientGone;
        }
        if budget_end {
            return CloseReason::BudgetExceeded {
                which: shared.budget_spent.get().unwrap_or("daily"),
            };
        }
    }
    CloseReason::UpstreamGone
}
