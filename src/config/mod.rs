//! Configuration: every setting the relay reads, parsed once at startup from an abstract
//! [`Source`] (the process environment in production, a map in tests) into one [`Config`]. Every
//! bad variable is reported at once, by name, before anything binds a port (`main` exits 64);
//! secrets are read into [`Secret`], which prints as `***`.
//!
//! This file holds [`Config`] and [`Config::from_source`], which reads the variables in a fixed
//! order; `source.rs` has the typed reads and the errors, `upstream.rs` and `protection.rs` the
//! settings of those two groups. `main` and the tests build the config; the relay's start-up, the
//! HTTP face and the upstream dialer read it.

mod cluster;
mod console;
mod cost;
mod policy;
mod protection;
mod source;
mod upstream;

pub use self::{
    cluster::{FailureMode, RedisConfig},
    cost::Cost,
    policy::SessionPolicies,
    protection::{Protection, SafetyIdentifier},
    source::{ConfigError, ConfigErrors, Env, Source},
    upstream::{PoolConfig, UpstreamConfig},
};
pub use crate::{
    protection::client_ip::TrustedProxies,
    secret::{ApiKey, Secret},
};

use std::time::Duration;

use self::source::Reader;
pub(crate) use crate::protection::models::is_query_safe;

/// Which origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a request with this `Origin` header (or none) is admitted.
    pub(crate) fn admits(&self, origin: Option<&str>, allow_missing: bool) -> bool {
        match (self, origin) {
            (AllowedOrigins::Any, _) => true,
            (AllowedOrigins::List(_), None) => allow_missing,
            (AllowedOrigins::List(list), Some(origin)) => list.iter().any(|o| o == origin),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The optional separate listener for `/stats` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminListen {
    pub host: String,
    pub port: u16,
    /// `ADMIN_HOSTNAMES`: host names the admin listener answers besides IP literals and
    /// `localhost` (lower case, no port).
    pub hostnames: Vec<String>,
}

/// Everything the relay needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub production: bool,
    pub upstream: UpstreamConfig,
    pub default_model: String,
    pub max_connections: usize,
    pub heartbeat_interval: Duration,
    pub inactivity_timeout: Duration,
    pub allowed_origins: AllowedOrigins,
    pub allow_missing_origin: bool,
    pub max_message_size: usize,
    pub pool: PoolConfig,
    /// HTTP worker threads; each runs its share of the sessions.
    pub workers: usize,
    pub trusted_proxies: TrustedProxies,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// When set, `/stats` and `/metrics` require `Authorization: Bearer <token>`.
    pub admin_token: Option<Secret>,
    /// When set, `/stats` and `/metrics` are served here instead of on the public listener.
    pub admin_listen: Option<AdminListen>,
    pub protection: Protection,
    /// `PRICING_FILE` and the budgets in dollars.
    pub cost: Cost,
    /// `REDIS_URL` and its companions: limits, budgets and usage shared by several instances.
    pub redis: Option<RedisConfig>,
    /// `SESSION_POLICY_FILE`: what every session pins, locks and hides.
    pub session_policies: Option<SessionPolicies>,
    /// `CONSOLE`: whether `/console` (the browser console) is served.
    pub console: bool,
    pub debug: bool,
}

const DEFAULT_MODEL: &str = "gpt-realtime-mini";
const MIB: usize = 1024 * 1024;

/// How the upstream is chosen: the configured one, or the built-in demo fake whose URL is only
/// known once it is listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// `OPENAI_API_KEY` must be set.
    Required,
    /// Demo mode: no key is needed; the upstream URL is filled in by the caller.
    Demo,
}

impl Config {
    /// Reads and validates every variable, returning all problems at once.
    pub fn from_source(source: &dyn Source, keys: KeyPolicy) -> Result<Config, ConfigErrors> {
        let mut r = Reader::new(source);
        let api_key = upstream::api_key(&mut r, keys);
        let port = r.port("PORT", 8080);
        let host = host(
            &mut r,
            "HOST",
            "0.0.0.0",
            "must be an IP address such as 0.0.0.0 or ::",
        );
        let production = r.string("NODE_ENV", "development") == "production";
        let url = upstream::url(&mut r, keys);
        // Fields are evaluated in the order written, which is the order errors are listed in.
        let config = Config {
            host,
            port,
            production,
            default_model: default_model(&mut r),
            max_connections: r.number::<usize>("MAX_CONNECTIONS", 100, 1),
            heartbeat_interval: r.millis("HEARTBEAT_INTERVAL", 30_000),
            inactivity_timeout: r.millis("INACTIVITY_TIMEOUT", 300_000),
            allowed_origins: allowed_origins(&mut r),
            allow_missing_origin: r.boolean("ALLOW_MISSING_ORIGIN", true),
            max_message_size: r.number::<usize>("MAX_MESSAGE_SIZE", 24 * MIB, 1024),
            upstream: UpstreamConfig::read(&mut r, url, api_key),
            pool: PoolConfig::read(&mut r),
            workers: r.number::<usize>("WORKERS", available_cpus(), 1),
            trusted_proxies: trusted_proxies(&mut r),
            shutdown_timeout: r.millis("SHUTDOWN_TIMEOUT", 10_000),
            log_format: r.choice(
                "LOG_FORMAT",
                "text",
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                "must be text or json",
            ),
            admin_token: r.secret("ADMIN_TOKEN"),
            admin_listen: admin_listen(&mut r),
            protection: Protection::read(&mut r),
            cost: Cost::read(&mut r),
            redis: cluster::read(&mut r),
            session_policies: policy::read(&mut r),
            console: console::read(&mut r, keys, production),
            debug: r.boolean("DEBUG", false),
        };
        r.finish()?;
        Ok(config)
    }

    /// Startup warnings an operator should see: only in production, where they matter.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.production {
            return w;
        }
        if self.allowed_origins == AllowedOrigins::Any {
            w.push(
                "ALLOWED_ORIGINS=* in production: any web page can open sessions on your key; \
                 list your app's origins"
                    .to_string(),
            );
        }
        if self.upstream.url.starts_with("ws://") {
            w.push(
                "OPENAI_API_URL uses ws:// in production: the API key travels unencrypted"
                    .to_string(),
            );
        }
        w
    }
}

/// An address to listen on: an IP address, or `localhost`.
fn host(r: &mut Reader<'_>, name: &'static str, default: &str, problem: &str) -> String {
    let host = r.string(name, default);
    if host.parse::<std::net::IpAddr>().is_err() && host != "localhost" {
        r.invalid(name, &host, problem);
    }
    host
}

fn default_model(r: &mut Reader<'_>) -> String {
    let model = r.string("DEFAULT_MODEL", DEFAULT_MODEL);
    if !is_query_safe(&model) {
        r.invalid(
            "DEFAULT_MODEL",
            &model,
            "may contain only letters, digits, '-', '_', '.' and ':'",
        );
    }
    model
}

/// `ALLOWED_ORIGINS`: `*`, or a comma list compared without a trailing `/`.
fn allowed_origins(r: &mut Reader<'_>) -> AllowedOrigins {
    let origins = r.string("ALLOWED_ORIGINS", "*");
    if origins == "*" {
        return AllowedOrigins::Any;
    }
    let list: Vec<String> = origins
        .split(',')
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect();
    if list.iter().any(|o| o == "*") {
        r.invalid(
            "ALLOWED_ORIGINS",
            &origins,
            "'*' cannot be combined with other origins",
        );
    }
    AllowedOrigins::List(list)
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn trusted_proxies(r: &mut Reader<'_>) -> TrustedProxies {
    let proxies = r.string("TRUSTED_PROXIES", TrustedProxies::DEFAULT);
    TrustedProxies::parse(&proxies).unwrap_or_else(|bad| {
        r.invalid(
            "TRUSTED_PROXIES",
            &proxies,
            format!("{} not an IP address or CIDR block", bad.join(", ")),
        );
        TrustedProxies::none()
    })
}

/// `ADMIN_HOST` is checked whether or not `ADMIN_PORT` turns the admin listener on.
fn admin_listen(r: &mut Reader<'_>) -> Option<AdminListen> {
    let host = host(r, "ADMIN_HOST", "127.0.0.1", "must be an IP address");
    let hostnames: Vec<String> = r
        .string("ADMIN_HOSTNAMES", "")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    r.raw("ADMIN_PORT").is_some().then(|| AdminListen {
        host,
        port: r.port("ADMIN_PORT", 0),
        hostnames,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::upstream::DEFAULT_UPSTREAM_URL;

    /// `vars` as the whole environment, with a key required.
    pub(crate) fn parse(vars: &[(&'static str, &'static str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_source(&map, KeyPolicy::Required)
    }

    #[test]
    fn defaults_match_the_node_relay() {
        let c = parse(&[("OPENAI_API_KEY", "sk-test")]).expect("valid");
        assert_eq!(c.port, 8080);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.upstream.url, DEFAULT_UPSTREAM_URL);
        assert_eq!(c.default_model, "gpt-realtime-mini");
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.inactivity_timeout, Duration::from_secs(300));
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        assert!(c.allow_missing_origin);
        assert_eq!(c.max_message_size, 24 * MIB);
        assert_eq!(c.upstream.connect_timeout, Duration::from_secs(10));
        assert!(!c.production && !c.debug);
        assert_eq!(c.pool.size, 0);
        assert!(c.pool.pooled_models(&c.default_model).is_empty());
        assert_eq!(c.pool.max_idle, Duration::from_secs(60));
    }

    #[test]
    fn missing_key_is_reported_with_the_node_message_then_what_to_do() {
        let text = parse(&[]).unwrap_err().to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "OPENAI_API_KEY environment variable is required");
        assert!(lines[1].contains("--demo-if-no-key"), "{text}");
        assert!(lines[1].contains(".env"), "{text}");
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = parse(&[
            ("PORT", "eighty"),
            ("MAX_CONNECTIONS", "0"),
            ("HEARTBEAT_INTERVAL", "-5"),
            ("OPENAI_API_URL", "http://x"),
            ("DEBUG", "maybe"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "OPENAI_API_KEY",
            "PORT",
            "MAX_CONNECTIONS",
            "HEARTBEAT_INTERVAL",
            "OPENAI_API_URL",
            "DEBUG",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert_eq!(err.0.len(), 6);
    }

    #[test]
    fn key_never_prints() {
        let c = parse(&[("OPENAI_API_KEY", "sk-secret-123")]).expect("valid");
        assert!(!format!("{c:?}").contains("sk-secret-123"));
        assert_eq!(c.upstream.api_key.to_string(), "***");
    }

    #[test]
    fn origins_list_and_missing_origin() {
        let c = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("ALLOWED_ORIGINS", "https://a.example, https://b.example/"),
            ("ALLOW_MISSING_ORIGIN", "false"),
        ])
        .expect("valid");
        let o = &c.allowed_origins;
        assert!(o.admits(Some("https://b.example"), false));
        assert!(!o.admits(Some("https://evil.example"), true));
        assert!(!o.admits(None, c.allow_missing_origin));
        assert!(AllowedOrigins::Any.admits(None, false));
    }

    #[test]
    fn production_warnings() {
        let c = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("NODE_ENV", "production"),
            ("OPENAI_API_URL", "ws://127.0.0.1:9/v1/realtime"),
        ])
        .expect("valid");
        assert_eq!(c.warnings().len(), 2);
        let dev = parse(&[("OPENAI_API_KEY", "k")]).expect("valid");
        assert!(dev.warnings().is_empty());
    }

    #[test]
    fn operations_settings() {
        let c = parse(&[("OPENAI_API_KEY", "k")]).expect("valid");
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.admin_token.is_none() && c.admin_listen.is_none());
        assert!(c.trusted_proxies.trusts("127.0.0.1".parse().expect("ip")));
        let c = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("ADMIN_TOKEN", "adm-secret"),
            ("ADMIN_PORT", "9090"),
            ("LOG_FORMAT", "json"),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
            ("ADMIN_HOSTNAMES", " Relay.Internal, ,metrics.example "),
        ])
        .expect("valid");
        assert_eq!(
            c.admin_listen,
            Some(AdminListen {
                host: "127.0.0.1".into(),
                port: 9090,
                hostnames: vec!["relay.internal".into(), "metrics.example".into()],
            })
        );
        assert!(!format!("{c:?}").contains("adm-secret"));
        assert!(c
            .admin_token
            .as_ref()
            .is_some_and(|t| t.matches("adm-secret")));
        assert!(!c
            .admin_token
            .as_ref()
            .is_some_and(|t| t.matches("adm-secreT")));
        assert!(!c.admin_token.as_ref().is_some_and(|t| t.matches("adm")));
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("LOG_FORMAT", "xml"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }

    #[test]
    fn query_safe_alphabet() {
        assert!(is_query_safe("gpt-realtime-2025-08-28"));
        assert!(!is_query_safe("gpt&api_key=x"));
        assert!(!is_query_safe(""));
    }
}
