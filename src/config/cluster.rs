//! The shared-state settings: `REDIS_URL` (several relay instances share per-client limits,
//! budgets and the usage ledger through one Redis or Valkey), `REDIS_KEY_PREFIX`,
//! `REDIS_CA_FILE`, `REDIS_FAILURE_MODE` and `REDIS_TIMEOUT`. Unset `REDIS_URL`: each instance
//! keeps its own (the embedded default). Read by `Config::from_source`; used by `relay::start`,
//! which builds the `cluster::Cluster` from it.

use std::{path::PathBuf, time::Duration};

use super::source::Reader;
use crate::secret::Secret;

/// What admission does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Refuse new sessions (`service_unavailable`) until Redis answers again.
    Closed,
    /// Admit with this instance's own limits and ledger; add what was counted to Redis later.
    Open,
}

impl FailureMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureMode::Closed => "closed",
            FailureMode::Open => "open",
        }
    }
}

/// Where the shared state lives, when it is shared.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `REDIS_URL`: `redis://[:password@]host:port[/db]` or `rediss://` (TLS). A secret: it may
    /// carry a password; logs name [`RedisConfig::address`] instead.
    pub url: Secret,
    /// `host:port`, for logs.
    pub address: String,
    pub tls: bool,
    /// `REDIS_KEY_PREFIX` (default `relay:`): every key the relay writes starts with it.
    pub key_prefix: String,
    /// `REDIS_CA_FILE`: a PEM bundle that replaces the public roots for `rediss://`.
    pub ca_file: Option<PathBuf>,
    pub failure_mode: FailureMode,
    /// `REDIS_TIMEOUT` (ms, default 300): the longest any one Redis command may take.
    pub timeout: Duration,
}

/// `REDIS_URL` and its companions; None when `REDIS_URL` is unset.
pub(super) fn read(r: &mut Reader<'_>) -> Option<RedisConfig> {
    let key_prefix = r.string("REDIS_KEY_PREFIX", "relay:");
    let ca_file = r.raw("REDIS_CA_FILE").map(PathBuf::from);
    let failure_mode = r.choice(
        "REDIS_FAILURE_MODE",
        "closed",
        &[("closed", FailureMode::Closed), ("open", FailureMode::Open)],
        "must be closed or open",
    );
    let timeout = r.millis("REDIS_TIMEOUT", 300);
    let Some(url) = r.secret("REDIS_URL") else {
        for name in ["REDIS_CA_FILE", "REDIS_FAILURE_MODE", "REDIS_TIMEOUT"] {
            if let Some(v) = r.raw(name) {
                r.invalid(name, &v, "has no effect without REDIS_URL");
            }
        }
        return None;
    };
    // The value is never echoed: it may carry a password.
    let (address, tls) = match redis::Client::open(url.expose()) {
        Ok(client) => {
            let addr = client.get_connection_info().addr();
            (
                addr.to_string(),
                matches!(addr, redis::ConnectionAddr::TcpTls { .. }),
            )
        }
        Err(_) => {
            r.invalid(
                "REDIS_URL",
                "(not shown: it may hold a password)",
                "must look like redis://[:password@]host:port[/db] or rediss://host:port",
            );
            return None;
        }
    };
    if url.expose().starts_with("redis+unix") || url.expose().starts_with("unix") {
        r.invalid(
            "REDIS_URL",
            "(not shown: it may hold a password)",
            "must be a redis:// or rediss:// address (TCP)",
        );
        return None;
    }
    if let Some(ca) = &ca_file {
        if !tls {
            r.invalid(
                "REDIS_CA_FILE",
                &ca.display().to_string(),
                "needs a rediss:// REDIS_URL",
            );
        } else if let Err(e) = std::fs::metadata(ca) {
            r.invalid("REDIS_CA_FILE", &ca.display().to_string(), e.to_string());
        }
    }
    if key_prefix.len() > 64 || key_prefix.chars().any(char::is_whitespace) {
        r.invalid(
            "REDIS_KEY_PREFIX",
            &key_prefix,
            "must be at most 64 characters, without spaces",
        );
    }
    Some(RedisConfig {
        url,
        address,
        tls,
        key_prefix,
        ca_file,
        failure_mode,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    /// Unset REDIS_URL: no shared state, and its companions alone are a mistake.
    #[test]
    fn unset_means_single_instance() {
        let c = parse(&[("OPENAI_API_KEY", "k")]).expect("valid");
        assert!(c.redis.is_none());
        let err = parse(&[("OPENAI_API_KEY", "k"), ("REDIS_FAILURE_MODE", "open")]).unwrap_err();
        assert!(err.to_string().contains("REDIS_FAILURE_MODE"), "{err}");
    }

    /// A URL with a password is read, its address kept for logs, and the password is never in
    /// an error or a Debug print.
    #[test]
    fn url_is_read_and_never_echoed() {
        let c = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("REDIS_URL", "redis://:hunter2@127.0.0.1:6380/2"),
            ("REDIS_FAILURE_MODE", "open"),
        ])
        .expect("valid");
        let r = c.redis.expect("redis");
        assert_eq!(r.address, "127.0.0.1:6380");
        assert!(!r.tls);
        assert_eq!(r.key_prefix, "relay:");
        assert_eq!(r.failure_mode, super::FailureMode::Open);
        assert!(!format!("{r:?}").contains("hunter2"));
        let err = parse(&[("OPENAI_API_KEY", "k"), ("REDIS_URL", "http://:hunter2@x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REDIS_URL") && !err.contains("hunter2"),
            "{err}"
        );
        let tls = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("REDIS_URL", "rediss://cache:6379"),
        ])
        .expect("valid")
        .redis
        .expect("redis");
        assert!(tls.tls);
    }
}
