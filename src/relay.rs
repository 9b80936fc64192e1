//! Wiring: `start` builds a running relay from a `Config` and a bound listener (the registry
//! and reaper, the shared HTTP state, one dialer and warm pool per worker, the admin listener),
//! and `Relay` drains and stops it. `listen` binds with an error that names the setting to
//! change.

use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::{Actor, Addr};
use actix_web::{dev::ServerHandle, web, App, HttpServer};

use crate::{
    admission::{
        limits::Limits,
        msg::{Drain, SaveUsage},
        reaper::Reaper,
        registry::Registry,
    },
    cluster::Cluster,
    config::Config,
    http::{self, AppState},
    ops::{
        metrics::Metrics,
        throttle::{self, RefusalLog, Throttle},
    },
    protection::{
        identity::{Authenticator, Tokens},
        models::AllowedModels,
        policy::PolicyBook,
        pricing::{self, Pricing},
        safety::Safety,
        usage::StateLock,
    },
    session::actor::CLOSE_GRACE,
    upstream::{
        dial::{Dialer, DialerSettings, Reports},
        pool::per_worker,
        tls::tls_config,
    },
};

/// A running relay.
pub struct Relay {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    authenticator: Arc<Authenticator>,
    tokens_file: Option<std::path::PathBuf>,
    handle: ServerHandle,
    registry: Addr<Registry>,
    live: tokio::sync::watch::Receiver<usize>,
    draining: Arc<AtomicBool>,
    shutdown_timeout: Duration,
    server: actix_web::rt::task::JoinHandle<io::Result<()>>,
    /// One relay per `USAGE_STATE_FILE`, for as long as this one runs.
    _usage_lock: Arc<StateLock>,
}

/// Re-reads `RELAY_TOKENS_FILE` into the running relay (SIGHUP).
#[derive(Clone)]
pub struct TokenReloader {
    authenticator: Arc<Authenticator>,
    path: Option<std::path::PathBuf>,
}

impl TokenReloader {
    /// Swaps in the file's tokens; live sessions are not touched. A file that does not parse
    /// keeps the old tokens. Returns how many tokens are now accepted.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.path else {
            return Err("RELAY_TOKENS_FILE is not set".into());
        };
        let tokens = Tokens::load_file(path)?;
        let n = tokens.len();
        self.authenticator.reload(tokens);
        Ok(n)
    }
}

/// The least time a drain keeps the listener open (answering 503), bounded by
/// `SHUTDOWN_TIMEOUT`.
const DRAIN_LINGER: Duration = Duration::from_secs(1);
/// The client connection's write buffer: actix-ws's output is polled while it holds less.
const CLIENT_WRITE_BUFFER: usize = 4 * 1024;

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Sessions live when the drain began.
    pub sessions: usize,
    /// Sessions still live when `SHUTDOWN_TIMEOUT` ran out, cut by the server stop.
    pub cut: usize,
}

/// Binds `host:port`; on failure the error is one sentence that names the address and
/// `variables`, the setting to change.
pub fn listen(host: &str, port: u16, variables: &str) -> io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind((host, port)).map_err(|e| {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e}; set {variables} to a free address"),
        )
    })
}

/// Starts the relay on `listener` (bind port 0 in tests), plus the admin listener when
/// `ADMIN_PORT` is set. Must be called inside an actix `System`; the registry and reaper run on
/// the calling arbiter, sessions on the HTTP workers.
pub async fn start(config: Config, listener: std::net::TcpListener) -> io::Result<Relay> {
    let tls = tls_config(config.upstream.ca_file.as_deref())?;
    let addr = listener.local_addr()?;
    let admin_listener = match &config.admin_listen {
        Some(a) => Some(listen(&a.host, a.port, "ADMIN_PORT (or ADMIN_HOST)")?),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let pool_models = config.pool.pooled_models(&config.default_model);
    let mut models = vec![config.default_model.clone()];
    models.extend(config.protection.allowed_models.iter().cloned());
    let metrics = Arc::new(Metrics::new(&pool_models, &models));
    let authenticator =
        Arc::new(Authenticator::from_config(&config.protection).map_err(io::Error::other)?);
    if authenticator.secrets_are_ephemeral() {
        log::info!(
            "CLIENT_SECRET_KEY is unset: client secrets are signed with a random key of this \
             process, so they end with it and other instances refuse them"
        );
    }
    let usage_lock = Arc::new(StateLock::acquire(&config.protection.usage_state_file)?);
    let safety = Safety::load(&config.protection)?;
    let cluster = shared_state(&config, &metrics)?;
    let (registry, live) = start_admission(&config, metrics.clone(), &usage_lock, cluster.clone())?;
    let draining = Arc::new(AtomicBool::new(false));
    let mut state = app_state(
        &config,
        &registry,
        metrics,
        admin_addr,
        &draining,
        &authenticator,
        safety,
    );
    state.cluster = cluster;
    let state = web::Data::new(state);
    // `awc::Client` is not `Send`: every worker builds its own dialer (and warm pool) from these.
    let dialing = DialerSettings {
        upstream: config.upstream.clone(),
        tls,
        max_message_size: config.max_message_size,
        pool_models,
        per_worker: per_worker(config.pool.size, config.workers),
        pool_max_idle: config.pool.max_idle,
        failures: Arc::new(Throttle::new(throttle::WINDOW)),
        pricing: pricing(&config)?,
    };
    let listeners = Listeners {
        public: listener,
        admin: admin_listener,
    };
    let server = http_server(&config, state, dialing, listeners)?;
    let handle = server.handle();
    let server = actix_web::rt::spawn(server);
    Ok(Relay {
        addr,
        admin_addr,
        authenticator,
        tokens_file: config.protection.tokens_file.clone(),
        handle,
        registry,
        live,
        draining,
        shutdown_timeout: config.shutdown_timeout,
        server,
        _usage_lock: usage_lock,
    })
}

/// The relay's listening sockets: the public one, and the admin one when `ADMIN_PORT` is set.
struct Listeners {
    public: std::net::TcpListener,
    admin: Option<std::net::TcpListener>,
}

/// The HTTP server on `listeners`: one `Dialer` per worker, TCP_USER_TIMEOUT on client sockets,
/// the session's close grace as the disconnect timeout, no signal handling of its own.
fn http_server(
    config: &Config,
    state: web::Data<AppState>,
    dialing: DialerSettings,
    listeners: Listeners,
) -> io::Result<actix_web::dev::Server> {
    let user_timeout = config.heartbeat_interval * 3;
    let allowed_models =
        web::Data::new(AllowedModels::new(config.protection.allowed_models.clone()));
    let refusals = web::Data::new(RefusalLog::default());
    let calls = web::Data::new(crate::call::book::CallBook::default());
    let policies = web::Data::new(match &config.session_policies {
        Some(p) => {
            let names: Vec<&str> = p.policies.names().collect();
            log::info!(
                "session policies from {}: {}",
                p.path.display(),
                names.join(", ")
            );
            PolicyBook::new(p.policies.clone(), state.metrics.policy_actions.clone())
        }
        None => PolicyBook::without_file(state.metrics.policy_actions.clone()),
    });
    let console = http::console::Console::new(config, &dialing.pricing).map(web::Data::new);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(allowed_models.clone())
            .app_data(refusals.clone())
            .app_data(calls.clone())
            .app_data(policies.clone())
            .app_data(Dialer::new(
                &dialing,
                Reports {
                    metrics: state.metrics.clone(),
                    connect_times: state.registry.clone().recipient(),
                    usage: state.registry.clone().recipient(),
                },
            ))
            .configure(|cfg| http::console::routes(cfg, console.clone()))
            .configure(http::routes)
    })
    .on_connect(move |conn, _| {
        // A client that stops reading leaves the relay's writes unacknowledged (zero window).
        // Its session is ended after two missed heartbeats, but only the kernel can drop the
        // connection and the bytes queued for it: bound that at three heartbeat intervals.
        #[cfg(target_os = "linux")]
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(user_timeout));
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (conn, user_timeout);
    })
    .workers(config.workers)
    // What a client connection's write buffer takes before it is written out: with the byte
    // bound of `upstream/backlog.rs` this bounds what waits for a client that stops reading.
    .h1_write_buffer_size(CLIENT_WRITE_BUFFER)
    // Small frames go out at once: without it a session.created written right after the 101
    // on a reused keep-alive connection waited ~40 ms for the client's delayed ACK (Nagle).
    .tcp_nodelay(true)
    // actix-web resets a connection 1 s after the response by default (its client disconnect
    // timeout), which cut slow readers off before the session's final events and close frame:
    // the session's own close grace is the one that applies.
    .client_disconnect_timeout(CLOSE_GRACE)
    // Sessions are drained before the server stops; what is left after that is cut.
    .shutdown_timeout(1)
    .disable_signals()
    .listen(listeners.public)?;
    Ok(match listeners.admin {
        Some(l) => server.listen(l)?,
        None => server,
    }
    .run())
}

/// The registry (with its limits and ledger, saved while `usage_lock` is held) and the reaper, on
/// the calling arbiter; and the live session count the drain waits on.
/// With `REDIS_URL`: the handle to the shared state, asked once at once so `/health` and
/// admission know whether it answers; the log names the server, never the URL.
fn shared_state(config: &Config, metrics: &Arc<Metrics>) -> io::Result<Option<Cluster>> {
    let Some(redis) = &config.redis else {
        return Ok(None);
    };
    let cluster = Cluster::new(redis, metrics.clone()).map_err(io::Error::other)?;
    log::info!(
        redis = cluster.address(), instance = cluster.instance();
        "shared state: redis at {}{} (key prefix {:?}, REDIS_FAILURE_MODE={}); per-client limits, \
         budgets and usage are shared with every relay that uses it; the usage state file keeps \
         this instance's own counts",
        if redis.tls { "rediss://" } else { "redis://" },
        cluster.address(),
        redis.key_prefix,
        redis.failure_mode.as_str(),
    );
    let first = cluster.clone();
    actix::spawn(async move {
        first.ping().await;
    });
    Ok(Some(cluster))
}

/// The price table usage is charged at: `PRICING_FILE`, or the built-in one.
fn pricing(config: &Config) -> io::Result<Arc<Pricing>> {
    let (table, from) = match &config.cost.pricing_file {
        Some(path) => (Pricing::load(path), path.display().to_string()),
        None => (Pricing::parse(pricing::SHIPPED), "built in".into()),
    };
    let table = table.map_err(io::Error::other)?;
    log::info!("pricing ({from}): {}", table.describe());
    Ok(Arc::new(table))
}

fn start_admission(
    config: &Config,
    metrics: Arc<Metrics>,
    usage_lock: &Arc<StateLock>,
    cluster: Option<Cluster>,
) -> io::Result<(Addr<Registry>, tokio::sync::watch::Receiver<usize>)> {
    let p = &config.protection;
    let registry = Registry::new(config.max_connections, metrics)
        .with_limits(Limits {
            per_client: p.max_connections_per_client,
            rate_per_minute: p.connection_rate_per_client,
            allowed_models: p.allowed_models.clone(),
            daily_budget: p.daily_token_budget,
            client_budget: p.client_daily_token_budget,
            daily_usd_budget: config.cost.daily_usd_budget,
            client_usd_budget: config.cost.client_daily_usd_budget,
        })
        .with_usage_file(p.usage_state_file.clone(), usage_lock)?;
    let registry = match cluster {
        Some(c) => registry.with_cluster(c),
        None => registry,
    };
    let live = registry.watch_live();
    let registry = registry.start();
    Reaper::new(
        registry.clone(),
        config.heartbeat_interval,
        config.inactivity_timeout,
    )
    .start();
    Ok((registry, live))
}

/// With client tokens on, the admin data is not for every client: unless `ADMIN_TOKEN` or
/// `ADMIN_PORT` says how to reach it, only this host may read `/stats` and `/metrics`.
fn admin_loopback_only(config: &Config) -> bool {
    let p = &config.protection;
    let tokens_on = p.tokens.is_some() || p.tokens_file.is_some() || p.jwt_secret.is_some();
    let only = tokens_on && config.admin_token.is_none() && config.admin_listen.is_none();
    if only {
        log::info!(
            "client tokens are on: /stats and /metrics answer only loopback clients; \
             set ADMIN_TOKEN (and send it as a Bearer token) or ADMIN_PORT to expose them"
        );
    }
    only
}

/// What every HTTP worker shares.
fn app_state(
    config: &Config,
    registry: &Addr<Registry>,
    metrics: Arc<Metrics>,
    admin_addr: Option<SocketAddr>,
    draining: &Arc<AtomicBool>,
    authenticator: &Arc<Authenticator>,
    safety: Safety,
) -> AppState {
    let p = &config.protection;
    AppState {
        registry: registry.clone(),
        metrics,
        started_at: Instant::now(),
        max_connections: config.max_connections,
        allowed_origins: config.allowed_origins.clone(),
        allow_missing_origin: config.allow_missing_origin,
        default_model: config.default_model.clone(),
        max_message_size: config.max_message_size,
        inactivity_timeout: config.inactivity_timeout,
        trusted_proxies: config.trusted_proxies.clone(),
        admin_token: config.admin_token.clone(),
        admin_addr,
        admin_loopback_only: admin_loopback_only(config),
        admin_hostnames: config
            .admin_listen
            .as_ref()
            .map(|a| a.hostnames.clone())
            .unwrap_or_default(),
        draining: draining.clone(),
        authenticator: authenticator.clone(),
        safety,
        max_session_duration: p.max_session_duration,
        cluster: None,
    }
}

impl Relay {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The separate `/stats` and `/metrics` listener, when `ADMIN_PORT` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Graceful drain: `/health` turns 503 and new upgrades are refused at once, every live
    /// client gets `server_shutting_down` and close 1012 (its upstream closed too), then this
    /// waits until no session is left or `SHUTDOWN_TIMEOUT` has passed, and stops the server.
    pub async fn drain(&self) -> DrainReport {
        let began = tokio::time::Instant::now();
        self.draining.store(true, Ordering::SeqCst);
        let sessions = self.registry.send(Drain).await.unwrap_or(0);
        log::info!("draining: told {sessions} session(s) to end");
        let mut live = self.live.clone();
        let emptied = tokio::time::timeout(self.shutdown_timeout, live.wait_for(|n| *n == 0)).await;
        let cut = match emptied {
            Ok(Ok(_)) => 0,
            _ => *self.live.borrow(),
        };
        if cut > 0 {
            log::warn!(
                "drain: SHUTDOWN_TIMEOUT ({} ms) ran out with {cut} session(s) still open; cutting them",
                self.shutdown_timeout.as_millis()
            );
        } else {
            log::info!("drain: all sessions ended");
        }
        let _ = self.registry.send(SaveUsage).await;
        // Clients (and load balancers) that arrive during a short drain get the promised 503,
        // not a refused connection: keep listening for at least DRAIN_LINGER.
        tokio::time::sleep_until(began + DRAIN_LINGER.min(self.shutdown_timeout)).await;
        self.handle.stop(true).await;
        DrainReport { sessions, cut }
    }

    /// What SIGHUP uses to re-read `RELAY_TOKENS_FILE`.
    pub fn token_reloader(&self) -> TokenReloader {
        TokenReloader {
            authenticator: self.authenticator.clone(),
            path: self.tokens_file.clone(),
        }
    }

    /// Stops at once: no drain.
    pub async fn stop(self) {
        self.handle.stop(false).await;
        let _ = self.server.await;
    }

    /// Runs until the server stops.
    pub async fn wait(self) -> io::Result<()> {
        self.server.await.map_err(io::Error::other)?
    }

    /// Resolves if the server stops by itself (it normally does not); cancel-safe.
    pub async fn until_stopped(&mut self) -> io::Result<()> {
        (&mut self.server).await.map_err(io::Error::other)?
    }
}
