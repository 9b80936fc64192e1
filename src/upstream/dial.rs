//! `Dialer`: opens upstream WebSockets with the server's key, one per HTTP worker thread
//! (`awc::Client` and its sockets are not `Send`), and keeps that worker's warm pool
//! (`pool.rs`) topped up. A failed dial becomes the `SessionEnd` its session ends with, and is
//! logged at WARN with its cause (collapsed while it repeats).

use std::{
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection, Connector as TcpConnector, Resolver,
};
use actix_web::rt::net::TcpStream;
use awc::{
    error::WsClientError,
    http::{header, Uri},
    ws::{Frame, Message},
};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};

use crate::{
    admission::msg::{ConnectTime, RecordUsage},
    close::SessionEnd,
    config::UpstreamConfig,
    ops::{
        metrics::Metrics,
        throttle::{self, Throttle},
    },
    protection::pricing::Pricing,
    upstream::{
        pool::{Pool, Warm},
        wire::Socket,
    },
};

/// The query a pooled socket for `model` is opened with.
fn pool_query(model: &str) -> String {
    format!("model={model}")
}

/// Dials upstream WebSockets and keeps the worker's warm pool. One per HTTP worker thread
/// (`awc::Client` and its sockets are not `Send`).
pub(crate) struct Dialer {
    client: awc::Client,
    config: UpstreamConfig,
    pub(crate) max_message_size: usize,
    metrics: Arc<Metrics>,
    /// Where successful dials report their time (the `/stats` latency window).
    connect_times: Recipient<ConnectTime>,
    /// Where sessions' upstream readers send usage; kept here so each upstream can clone it.
    pub(crate) usage: Recipient<RecordUsage>,
    /// What usage costs; each upstream reader prices the usage it counts.
    pub(crate) pricing: Arc<Pricing>,
    pool: Option<Pool>,
    /// Collapses repeated dial-failure warnings; shared by every worker's dialer.
    failures: Arc<Throttle>,
}

/// An upstream socket ready for a session, and what it received before the session took it.
pub(crate) struct Opened {
    pub(crate) socket: Socket,
    pub(crate) replay: Vec<Message>,
    /// Whether it came warm from the pool.
    pub(crate) pooled: bool,
}

/// What every worker's `Dialer` is built from; shared, so `Clone` and `Send`.
#[derive(Clone)]
pub(crate) struct DialerSettings {
    pub(crate) upstream: UpstreamConfig,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) max_message_size: usize,
    /// Models with a warm pool (empty: no pool), and how many sockets each worker keeps.
    pub(crate) pool_models: Vec<String>,
    pub(crate) per_worker: usize,
    pub(crate) pool_max_idle: Duration,
    /// Collapses repeated dial-failure warnings across every worker.
    pub(crate) failures: Arc<Throttle>,
    /// The price table (`PRICING_FILE` or the built-in one).
    pub(crate) pricing: Arc<Pricing>,
}

/// Where a dialer reports: metrics, connect times and usage (the registry's).
pub(crate) struct Reports {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) connect_times: Recipient<ConnectTime>,
    pub(crate) usage: Recipient<RecordUsage>,
}

/// awc's TCP connector, with TCP_NODELAY on every connection it opens: a frame the relay writes
/// goes out at once, not after the upstream's ACK of the previous one (Nagle), which on a real
/// network would hold a small event back by up to a round trip.
fn tcp_nodelay() -> impl actix_service::Service<
    ConnectInfo<Uri>,
    Response = Connection<Uri, TcpStream>,
    Error = ConnectError,
> + Clone {
    use actix_service::ServiceExt;
    TcpConnector::new(Resolver::default()).service().map(
        |connection: Connection<Uri, TcpStream>| {
            let _ = connection.io_ref().set_nodelay(true);
            connection
        },
    )
}

impl Dialer {
    /// Builds the worker's dialer; with a pool, starts filling it and its maintenance tick.
    pub(crate) fn new(settings: &DialerSettings, reports: Reports) -> Rc<Dialer> {
        let s = settings.clone();
        let config = s.upstream;
        let pool = (!s.pool_models.is_empty())
            .then(|| Pool::new(&s.pool_models, s.per_worker, s.pool_max_idle));
        let connector = awc::Connector::new()
            .connector(tcp_nodelay())
            .rustls_0_23(s.tls)
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
            max_message_size: s.max_message_size,
            metrics: reports.metrics,
            connect_times: reports.connect_times,
            usage: reports.usage,
            pricing: s.pricing,
            pool,
            failures: s.failures,
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
    pub(crate) async fn open(
        self: Rc<Self>,
        query: &str,
        model: &str,
        safety_id: Option<&str>,
    ) -> Result<Opened, SessionEnd> {
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

    /// The worker's HTTP client (WebRTC call signalling, `upstream/calls.rs`).
    pub(crate) fn http(&self) -> &awc::Client {
        &self.client
    }

    /// Where the upstream is and the key it gets.
    pub(crate) fn upstream(&self) -> &UpstreamConfig {
        &self.config
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
    async fn dial_warm(&self, model: &str) -> Result<Warm, SessionEnd> {
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
            Ok(None) => return Err(SessionEnd::UpstreamGone),
            Err(_) => {
                return Err(SessionEnd::UpstreamTimeout {
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
    pub(crate) async fn connect(
        &self,
        query: &str,
        safety_id: Option<&str>,
    ) -> Result<Socket, SessionEnd> {
        let started = Instant::now();
        let result = self.dial(query, safety_id).await;
        match &result {
            Ok(_) => {
                let seconds = started.elapsed().as_secs_f64();
                self.metrics.upstream_connect_seconds.observe(seconds);
                self.connect_times.do_send(ConnectTime { seconds });
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

    async fn dial(&self, query: &str, safety_id: Option<&str>) -> Result<Socket, SessionEnd> {
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
            Err(_) => Err(SessionEnd::UpstreamTimeout {
                after_ms: timeout.as_millis(),
            }),
            Ok(Ok((_, socket))) => Ok(socket),
            Ok(Err(WsClientError::InvalidResponseStatus(status))) => Err(match status.as_u16() {
                401 | 403 => SessionEnd::UpstreamAuthFailed {
                    status: status.as_u16(),
                },
                429 => SessionEnd::UpstreamRateLimited,
                s => SessionEnd::UpstreamRejected { status: s },
            }),
            Ok(Err(WsClientError::SendRequest(e))) => {
                if matches!(e, awc::error::SendRequestError::Timeout)
                    || matches!(
                        e,
                        awc::error::SendRequestError::Connect(awc::error::ConnectError::Timeout)
                    )
                {
                    Err(SessionEnd::UpstreamTimeout {
                        after_ms: timeout.as_millis(),
                    })
                } else {
                    Err(SessionEnd::UpstreamUnavailable {
                        detail: e.to_string(),
                    })
                }
            }
            Ok(Err(e)) => Err(SessionEnd::UpstreamUnavailable {
                detail: format!("bad WebSocket handshake ({e})"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_service::Service;

    use super::*;

    /// Every upstream connection the dialer's TCP connector opens has TCP_NODELAY set.
    #[actix_web::test]
    async fn upstream_connections_have_tcp_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse().expect("a URI");
        let connect = tcp_nodelay().call(ConnectInfo::new(uri));
        let connection = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .expect("connected in time")
            .expect("connected");
        assert!(connection.io_ref().nodelay().expect("getsockopt"));
    }
}
