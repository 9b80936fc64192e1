//! Shared state for several relay instances (`REDIS_URL`): per-client limits, daily budgets and
//! the usage ledger held in one Redis (or Valkey), so N instances enforce each limit once, not N
//! times. Nothing here is on the path of a frame: Redis sees admissions (`admission.rs`: one Lua
//! script checks and takes the slot atomically), session ends, lease refreshes every
//! [`LEASE_REFRESH`], usage reports and budget checks (`usage.rs`), and `/stats?scope=cluster`
//! (`stats.rs`). The scripts are in `scripts/`.
//!
//! A [`Cluster`] is a cheap handle (a clone of redis-rs's `ConnectionManager`, which reconnects
//! with backoff by itself). The registry owns the calls; every call is bounded by
//! `REDIS_TIMEOUT`, and a failed or late one marks Redis down (`relay_redis_up`, `/health`),
//! which the next successful call undoes. Built by `relay::start` when `REDIS_URL` is set; lives
//! as long as the relay.

mod admission;
mod stats;
mod usage;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use redis::aio::ConnectionManager;

pub(crate) use self::{
    admission::{Admission, Lease, SharedLimits},
    usage::{Backlog, PendingUsage, Totals},
};
use crate::{
    config::{FailureMode, RedisConfig},
    ops::metrics::Metrics,
};

/// How long a session's slot lives in Redis without a refresh: an instance that dies frees its
/// slots within this time.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often an instance refreshes the leases of its live sessions.
pub(crate) const LEASE_REFRESH: Duration = Duration::from_secs(10);

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A Redis operation, for errors and their metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Admit,
    Release,
    Refresh,
    Usage,
    Totals,
    Stats,
    Ping,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Admit => "admit",
            Op::Release => "release",
            Op::Refresh => "refresh",
            Op::Usage => "usage",
            Op::Totals => "totals",
            Op::Stats => "stats",
            Op::Ping => "ping",
        }
    }
}

/// Why a Redis call gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unanswered {
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer: {0}")]
    Shape(String),
}

/// The handle the registry and the admin endpoints use.
#[derive(Clone)]
pub(crate) struct Cluster {
    conn: ConnectionManager,
    /// `REDIS_KEY_PREFIX`.
    prefix: Arc<str>,
    /// This instance's name in leases and `/stats?scope=cluster`: `host/pid/start time`.
    instance: Arc<str>,
    pub(crate) failure_mode: FailureMode,
    timeout: Duration,
    /// [`UNKNOWN`] until the first call, then [`UP`] or [`DOWN`] after each.
    state: Arc<AtomicU8>,
    metrics: Arc<Metrics>,
    /// `host:port` of the Redis server, for logs (never the URL: it may carry a password).
    address: Arc<str>,
    scripts: Arc<Scripts>,
}

/// The Lua scripts, hashed once (redis-rs sends EVALSHA, and the source when Redis lacks it).
struct Scripts {
    admit: redis::Script,
    release: redis::Script,
    refresh: redis::Script,
    usage: redis::Script,
    totals: redis::Script,
    stats: redis::Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            admit: redis::Script::new(include_str!("scripts/admit.lua")),
            release: redis::Script::new(include_str!("scripts/release.lua")),
            refresh: redis::Script::new(include_str!("scripts/refresh.lua")),
            usage: redis::Script::new(include_str!("scripts/usage.lua")),
            totals: redis::Script::new(include_str!("scripts/totals.lua")),
            stats: redis::Script::new(include_str!("scripts/cluster_stats.lua")),
        }
    }
}

impl Cluster {
    /// A handle that connects on first use and reconnects with backoff; Err when the TLS
    /// settings cannot be read. Redis being down is not an error here: the relay starts and
    /// reports it.
    pub(crate) fn new(config: &RedisConfig, metrics: Arc<Metrics>) -> Result<Cluster, String> {
        let client = match &config.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("REDIS_CA_FILE {}: {e}", ca.display()))?;
                redis::Client::build_with_tls(
                    config.url.expose(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(config.url.expose()),
        }
        .map_err(|e| format!("REDIS_URL: {:?}", e.kind()))?;
        let settings = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(config.timeout))
            // One attempt per call: a refused connection or a wrong password is reported at
            // once, with its cause, not hidden behind retries that outlast `REDIS_TIMEOUT`; the
            // next call connects again.
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client, settings)
            .map_err(|e| format!("REDIS_URL: {:?}", e.kind()))?;
        metrics.redis_up.set(0);
        Ok(Cluster {
            conn,
            prefix: config.key_prefix.as_str().into(),
            instance: instance_name().into(),
            failure_mode: config.failure_mode,
            timeout: config.timeout,
            state: Arc::new(AtomicU8::new(UNKNOWN)),
            metrics,
            address: config.address.as_str().into(),
            scripts: Arc::new(Scripts::new()),
        })
    }

    /// Whether the last Redis call answered in time.
    pub(crate) fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// Runs one Redis call under `REDIS_TIMEOUT`, counting a failure under `op` and keeping the
    /// up/down state (a change is logged once).
    async fn run<T, F>(&self, op: Op, call: F) -> Result<T, Unanswered>
    where
        F: Future<Output = Result<T, Unanswered>>,
    {
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(Unanswered::Timeout(self.timeout.as_millis())),
        };
        let now = if result.is_ok() { UP } else { DOWN };
        let before = self.state.swap(now, Ordering::Relaxed);
        if let Err(e) = &result {
            self.metrics
                .redis_errors
                .with_label_values(&[op.label()])
                .inc();
            if before != DOWN {
                log::warn!(
                    redis = &*self.address, op = op.label();
                    "redis: no answer ({e}); {}",
                    match self.failure_mode {
                        FailureMode::Closed => "new sessions are refused until it answers (REDIS_FAILURE_MODE=closed); live sessions go on",
                        FailureMode::Open => "admitting with this instance's own limits until it answers (REDIS_FAILURE_MODE=open); live sessions go on",
                    }
                );
            }
        } else if before != UP {
            log::info!(redis = &*self.address; "redis: answering");
        }
        let up = now == UP;
        self.metrics.redis_up.set(i64::from(up));
        result
    }

    /// A PING: how a down Redis is noticed coming back when nothing else calls it. The first
    /// call after Redis returns can only report the connection attempt that failed while it was
    /// away (and starts a new one), so a failed PING is sent once more.
    pub(crate) async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        self.run(Op::Ping, async move {
            let first = redis::cmd("PING").query_async::<String>(&mut conn).await;
            match first {
                Ok(pong) => Ok(pong),
                Err(_) => Ok(redis::cmd("PING").query_async::<String>(&mut conn).await?),
            }
        })
        .await
        .is_ok()
    }

    /// Where the log says the shared state is.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

/// `host/pid/unix start time`: unique per process even when a container restarts with the same
/// host name and pid 1.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '/')
        .take(64)
        .collect();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{host}/{}/{started}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instance name has no spaces (lease members are split on them) and names the pid.
    #[test]
    fn instance_name_is_one_word() {
        let name = instance_name();
        assert!(!name.contains(' '), "{name}");
        assert!(
            name.contains(&format!("/{}/", std::process::id())),
            "{name}"
        );
    }
}
