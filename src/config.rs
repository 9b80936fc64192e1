//! Configuration: every setting the relay reads, parsed once at startup from an abstract source
//! (the process environment in production, a map in tests). Every bad variable is reported at
//! once, by name, before anything binds a port.

use std::{collections::HashMap, fmt, path::PathBuf, time::Duration};

pub use crate::protection::client_ip::TrustedProxies;

/// A secret (the server's OpenAI key, the admin token). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The server's OpenAI key.
pub type ApiKey = Secret;

impl Secret {
    pub fn new(key: impl Into<String>) -> Self {
        Secret(key.into())
    }

    /// The secret itself, for the few places that need it (the upstream `Authorization` header,
    /// a constant-time comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= usize::from(x ^ y);
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which origins may open a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a request with this `Origin` header (or none) is admitted.
    pub fn admits(&self, origin: Option<&str>, allow_missing: bool) -> bool {
        match (self, origin) {
            (AllowedOrigins::Any, _) => true,
            (AllowedOrigins::List(_), None) => allow_missing,
            (AllowedOrigins::List(list), Some(origin)) => list.iter().any(|o| o == origin),
        }
    }
}

/// Where the relay's upstream is and how to reach it.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `ws://` or `wss://` URL of the Realtime endpoint, without a query string.
    pub url: String,
    pub api_key: ApiKey,
    pub organization: Option<String>,
    pub project: Option<String>,
    pub connect_timeout: Duration,
    /// Extra PEM roots trusted for a `wss://` upstream, on top of the webpki roots.
    pub ca_file: Option<PathBuf>,
}

/// The warm upstream pool: sockets opened ahead of clients, per model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Warm sockets kept per pooled model (0 = no pool).
    pub size: usize,
    /// Models pooled besides `DEFAULT_MODEL`.
    pub models: Vec<String>,
    /// A warm socket older than this is closed and replaced.
    pub max_idle: Duration,
}

impl PoolConfig {
    /// Every pooled model, the default first; empty when the pool is off.
    pub fn pooled_models(&self, default_model: &str) -> Vec<String> {
        if self.size == 0 {
            return Vec::new();
        }
        let mut models = vec![default_model.to_string()];
        for m in &self.models {
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
        models
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
}

/// `SAFETY_IDENTIFIER`: what the `OpenAI-Safety-Identifier` header is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyIdentifier {
    Off,
    Identity,
    Address,
}

/// Who may connect and how much they may spend (all off by default: an open proxy).
#[derive(Debug, Clone)]
pub struct Protection {
    /// `RELAY_TOKENS`: `name:token` pairs (the raw list; a secret).
    pub tokens: Option<Secret>,
    /// `RELAY_TOKENS_FILE`: one `name:token` per line, re-read on SIGHUP.
    pub tokens_file: Option<PathBuf>,
    pub jwt_secret: Option<Secret>,
    /// 0 = unlimited.
    pub max_connections_per_client: usize,
    /// New sessions per minute per identity; 0 = unlimited.
    pub connection_rate_per_client: u32,
    /// Empty = any model.
    pub allowed_models: Vec<String>,
    pub max_session_duration: Option<Duration>,
    pub daily_token_budget: Option<u64>,
    pub client_daily_token_budget: Option<u64>,
    pub usage_state_file: PathBuf,
    pub safety_identifier: SafetyIdentifier,
    pub safety_identifier_salt: Option<Secret>,
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
    pub debug: bool,
}

pub const DEFAULT_UPSTREAM_URL: &str = "wss://api.openai.com/v1/realtime";
pub const DEFAULT_MODEL: &str = "gpt-realtime-mini";
pub const MIB: usize = 1024 * 1024;

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "OPENAI_API_KEY environment variable is required\n  \
         to try the relay without a key, run it with --demo-if-no-key \
         (cargo run --release -- --demo-if-no-key); to use OpenAI, put OPENAI_API_KEY=sk-... \
         in a .env file in the working directory (see .env.example) or export it"
    )]
    MissingApiKey,
    #[error("{name}: {problem} (got {value:?})")]
    Invalid {
        name: &'static str,
        value: String,
        problem: String,
    },
    #[error("{name}: cannot read {path}: {problem}")]
    Unreadable {
        name: &'static str,
        path: String,
        problem: String,
    },
}

/// All the problems found, in the order the variables are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where variables come from: the environment in production, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment (after `.env` has been loaded into it).
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| v.to_string())
    }
}

/// How the upstream is chosen: the configured one, or the built-in demo fake whose URL is only
/// known once it is listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// `OPENAI_API_KEY` must be set.
    Required,
    /// Demo mode: no key is needed; the upstream URL is filled in by the caller.
    Demo,
}

struct Reader<'a> {
    source: &'a dyn Source,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    /// The trimmed value, with empty treated as unset (a `.env` line `PORT=` means "default").
    fn raw(&self, name: &str) -> Option<String> {
        self.source
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn invalid(&mut self, name: &'static str, value: &str, problem: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            name,
            value: value.to_string(),
            problem: problem.into(),
        });
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    fn number<T>(&mut self, name: &'static str, default: T, min: T) -> T
    where
        T: std::str::FromStr + Copy + PartialOrd + fmt::Display,
    {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match v.parse::<T>() {
            Ok(n) if n >= min => n,
            Ok(_) => {
                self.invalid(name, &v, format!("must be at least {min}"));
                default
            }
            // All digits but no `T`: too large, which "a whole number" would misstate.
            Err(_) if v.bytes().all(|b| b.is_ascii_digit()) => {
                self.invalid(name, &v, "is too large");
                default
            }
            Err(_) => {
                self.invalid(name, &v, "must be a whole number");
                default
            }
        }
    }

    /// A TCP port: 1 to 65535, or 0 for any free port (the log names the one picked).
    fn port(&mut self, name: &'static str, default: u16) -> u16 {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match v.parse::<u16>() {
            Ok(n) => n,
            Err(_) => {
                self.invalid(
                    name,
                    &v,
                    "must be a port number between 1 and 65535 (or 0 for any free port)",
                );
                default
            }
        }
    }

    /// A comma list of model names (empty when unset), each checked like a `?model=` value.
    fn models(&mut self, name: &'static str) -> Vec<String> {
        let raw = self.string(name, "");
        let models: Vec<String> = raw
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        if let Some(bad) = models.iter().find(|m| !is_query_safe(m)) {
            self.invalid(
                name,
                &raw,
                format!("{bad:?} may contain only letters, digits, '-', '_', '.' and ':'"),
            );
        }
        models
    }

    fn millis(&mut self, name: &'static str, default_ms: u64) -> Duration {
        Duration::from_millis(self.number(name, default_ms, 1))
    }

    fn boolean(&mut self, name: &'static str, default: bool) -> bool {
        let Some(v) = self.raw(name) else {
            return default;
        };
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                self.invalid(name, &v, "must be true or false");
                default
            }
        }
    }
}

impl Config {
    /// Reads and validates every variable, returning all problems at once.
    pub fn from_source(source: &dyn Source, keys: KeyPolicy) -> Result<Config, ConfigErrors> {
        let mut r = Reader {
            source,
            errors: Vec::new(),
        };

        let api_key = match (r.raw("OPENAI_API_KEY"), keys) {
            (Some(k), _) => ApiKey::new(k),
            (None, KeyPolicy::Demo) => ApiKey::new("demo"),
            (None, KeyPolicy::Required) => {
                r.errors.push(ConfigError::MissingApiKey);
                ApiKey::new("")
            }
        };

        let port = r.port("PORT", 8080);
        let host = r.string("HOST", "0.0.0.0");
        if host.parse::<std::net::IpAddr>().is_err() && host != "localhost" {
            r.invalid("HOST", &host, "must be an IP address such as 0.0.0.0 or ::");
        }
        let production = r.string("NODE_ENV", "development") == "production";

        let url = r.string("OPENAI_API_URL", DEFAULT_UPSTREAM_URL);
        // Demo mode relays to the built-in fake and never uses OPENAI_API_URL.
        if keys == KeyPolicy::Required {
            check_upstream_url(&mut r, &url);
        }

        let default_model = r.string("DEFAULT_MODEL", DEFAULT_MODEL);
        if !is_query_safe(&default_model) {
            r.invalid(
                "DEFAULT_MODEL",
                &default_model,
                "may contain only letters, digits, '-', '_', '.' and ':'",
            );
        }

        let max_connections = r.number::<usize>("MAX_CONNECTIONS", 100, 1);
        let heartbeat_interval = r.millis("HEARTBEAT_INTERVAL", 30_000);
        let inactivity_timeout = r.millis("INACTIVITY_TIMEOUT", 300_000);

        let origins = r.string("ALLOWED_ORIGINS", "*");
        let allowed_origins = if origins == "*" {
            AllowedOrigins::Any
        } else {
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
        };
        let allow_missing_origin = r.boolean("ALLOW_MISSING_ORIGIN", true);

        let max_message_size = r.number::<usize>("MAX_MESSAGE_SIZE", 24 * MIB, 1024);
        let connect_timeout = r.millis("UPSTREAM_CONNECT_TIMEOUT", 10_000);
        let organization = r.raw("OPENAI_ORGANIZATION");
        let project = r.raw("OPENAI_PROJECT");
        for (name, value) in [
            ("OPENAI_ORGANIZATION", &organization),
            ("OPENAI_PROJECT", &project),
        ] {
            if let Some(v) = value {
                if awc::http::header::HeaderValue::from_str(v).is_err() {
                    r.invalid(name, v, "is not a valid HTTP header value");
                }
            }
        }
        let ca_file = r.raw("UPSTREAM_CA_FILE").map(PathBuf::from);
        if let Some(path) = &ca_file {
            if let Err(problem) = check_pem_certificates(path) {
                r.errors.push(ConfigError::Unreadable {
                    name: "UPSTREAM_CA_FILE",
                    path: path.display().to_string(),
                    problem,
                });
            }
        }
        let pool_size = r.number::<usize>("UPSTREAM_POOL_SIZE", 0, 0);
        let pool_models = r.models("UPSTREAM_POOL_MODELS");
        let pool_max_idle = r.millis("UPSTREAM_POOL_MAX_IDLE", 60_000);
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = r.number::<usize>("WORKERS", cpus, 1);
        let proxies = r.string("TRUSTED_PROXIES", TrustedProxies::DEFAULT);
        let trusted_proxies = match TrustedProxies::parse(&proxies) {
            Ok(t) => t,
            Err(bad) => {
                r.invalid(
                    "TRUSTED_PROXIES",
                    &proxies,
                    format!("{} not an IP address or CIDR block", bad.join(", ")),
                );
                TrustedProxies(Vec::new())
            }
        };
        let shutdown_timeout = r.millis("SHUTDOWN_TIMEOUT", 10_000);
        let format = r.string("LOG_FORMAT", "text");
        let log_format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                r.invalid("LOG_FORMAT", &format, "must be text or json");
                LogFormat::Text
            }
        };
        let admin_token = r.raw("ADMIN_TOKEN").map(Secret::new);
        let admin_host = r.string("ADMIN_HOST", "127.0.0.1");
        if admin_host.parse::<std::net::IpAddr>().is_err() && admin_host != "localhost" {
            r.invalid("ADMIN_HOST", &admin_host, "must be an IP address");
        }
        let admin_listen = r.raw("ADMIN_PORT").is_some().then(|| AdminListen {
            host: admin_host,
            port: r.port("ADMIN_PORT", 0),
        });
        let protection = read_protection(&mut r);
        let debug = r.boolean("DEBUG", false);

        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        Ok(Config {
            host,
            port,
            production,
            upstream: UpstreamConfig {
                url,
                api_key,
                organization,
                project,
                connect_timeout,
                ca_file,
            },
            default_model,
            max_connections,
            heartbeat_interval,
            inactivity_timeout,
            allowed_origins,
            allow_missing_origin,
            max_message_size,
            pool: PoolConfig {
                size: pool_size,
                models: pool_models,
                max_idle: pool_max_idle,
            },
            workers,
            trusted_proxies,
            shutdown_timeout,
            log_format,
            admin_token,
            admin_listen,
            protection,
            debug,
        })
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

fn check_upstream_url(r: &mut Reader<'_>, url: &str) {
    if !(url.starts_with("wss://") || url.starts_with("ws://")) {
        r.invalid("OPENAI_API_URL", url, "must start with wss:// or ws://");
    } else if url.contains('?') || url.contains('#') {
        r.invalid(
            "OPENAI_API_URL",
            url,
            "must not carry a query string; the relay adds ?model=",
        );
    } else if url.parse::<awc::http::Uri>().is_err() {
        r.invalid("OPENAI_API_URL", url, "is not a valid URL");
    }
}

fn read_protection(r: &mut Reader<'_>) -> Protection {
    let tokens = r.raw("RELAY_TOKENS").map(Secret::new);
    if let Some(list) = &tokens {
        if let Err(problem) = crate::protection::identity::Tokens::parse_list(list.expose()) {
            // The value is a secret: report the problem, never the value.
            r.invalid("RELAY_TOKENS", "***", problem);
        }
    }
    let tokens_file = r.raw("RELAY_TOKENS_FILE").map(PathBuf::from);
    if let Some(path) = &tokens_file {
        if let Err(problem) = crate::protection::identity::Tokens::load_file(path) {
            r.errors.push(ConfigError::Unreadable {
                name: "RELAY_TOKENS_FILE",
                path: path.display().to_string(),
                problem,
            });
        }
    }
    if tokens.is_some() && tokens_file.is_some() {
        r.invalid(
            "RELAY_TOKENS_FILE",
            "(set)",
            "set RELAY_TOKENS or RELAY_TOKENS_FILE, not both",
        );
    }
    let jwt_secret = r.raw("RELAY_JWT_SECRET").map(Secret::new);
    if jwt_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
        r.invalid("RELAY_JWT_SECRET", "***", "must be at least 32 characters");
    }
    let max_connections_per_client = r.number::<usize>("MAX_CONNECTIONS_PER_CLIENT", 0, 0);
    let connection_rate_per_client = r.number::<u32>("CONNECTION_RATE_PER_CLIENT", 0, 0);
    let allowed_models = r.models("ALLOWED_MODELS");
    let max_session_ms = r.number::<u64>("MAX_SESSION_DURATION", 0, 0);
    if max_session_ms != 0 && max_session_ms < 1_000 {
        r.invalid(
            "MAX_SESSION_DURATION",
            &max_session_ms.to_string(),
            "must be 0 (off) or at least 1000 ms",
        );
    }
    let budget = |r: &mut Reader<'_>, name: &'static str| {
        Some(r.number::<u64>(name, 0, 0)).filter(|n| *n > 0)
    };
    let daily_token_budget = budget(r, "DAILY_TOKEN_BUDGET");
    let client_daily_token_budget = budget(r, "CLIENT_DAILY_TOKEN_BUDGET");
    let usage_state_file = PathBuf::from(r.string("USAGE_STATE_FILE", "relay-usage.json"));
    let mode = r.string("SAFETY_IDENTIFIER", "off");
    let safety_identifier = match mode.as_str() {
        "off" => SafetyIdentifier::Off,
        "identity" => SafetyIdentifier::Identity,
        "address" => SafetyIdentifier::Address,
        _ => {
            r.invalid(
                "SAFETY_IDENTIFIER",
                &mode,
                "must be off, identity or address",
            );
            SafetyIdentifier::Off
        }
    };
    let safety_identifier_salt = r.raw("SAFETY_IDENTIFIER_SALT").map(Secret::new);
    Protection {
        tokens,
        tokens_file,
        jwt_secret,
        max_connections_per_client,
        connection_rate_per_client,
        allowed_models,
        max_session_duration: (max_session_ms > 0).then(|| Duration::from_millis(max_session_ms)),
        daily_token_budget,
        client_daily_token_budget,
        usage_state_file,
        safety_identifier,
        safety_identifier_salt,
    }
}

/// Checks that `path` holds at least one PEM certificate, so a bad file stops the relay before
/// it binds rather than at the first `wss://` dial.
fn check_pem_certificates(path: &std::path::Path) -> Result<(), String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut found = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        cert.map_err(|e| e.to_string())?;
        found += 1;
    }
    if found == 0 {
        return Err("no PEM certificates found".into());
    }
    Ok(())
}

/// Model names and intents go into the upstream query string; only this alphabet is let through,
/// so a client cannot add parameters of its own.
pub fn is_query_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&'static str, &'static str)]) -> Result<Config, ConfigErrors> {
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
    fn pool_models_start_with_the_default() {
        let c = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("UPSTREAM_POOL_SIZE", "2"),
            ("UPSTREAM_POOL_MODELS", "gpt-realtime, gpt-realtime-mini"),
        ])
        .expect("valid");
        assert_eq!(
            c.pool.pooled_models(&c.default_model),
            vec!["gpt-realtime-mini".to_string(), "gpt-realtime".to_string()]
        );
        assert!(parse(&[("OPENAI_API_KEY", "k"), ("UPSTREAM_POOL_MODELS", "a&b")]).is_err());
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
    fn ports_out_of_range_say_the_range() {
        for bad in ["99999", "65536", "-1", "eighty"] {
            let err = parse(&[("OPENAI_API_KEY", "k"), ("PORT", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("between 1 and 65535"),
                "PORT={bad}: {err}"
            );
            let err = parse(&[("OPENAI_API_KEY", "k"), ("ADMIN_PORT", bad)]).unwrap_err();
            assert!(err
                .to_string()
                .contains("ADMIN_PORT: must be a port number between 1 and 65535"));
        }
        assert_eq!(
            parse(&[("OPENAI_API_KEY", "k"), ("PORT", "65535")])
                .expect("valid")
                .port,
            65535
        );
    }

    #[test]
    fn numbers_too_large_are_not_called_malformed() {
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("MAX_CONNECTIONS", "99999999999999999999999"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("MAX_CONNECTIONS: is too large"),
            "{err}"
        );
    }

    #[test]
    fn demo_mode_ignores_the_upstream_url_it_does_not_use() {
        let map: HashMap<&str, &str> = [("OPENAI_API_URL", "http://not-a-websocket")].into();
        assert!(Config::from_source(&map, KeyPolicy::Demo).is_ok());
        let map: HashMap<&str, &str> = [
            ("OPENAI_API_KEY", "k"),
            ("OPENAI_API_URL", "http://not-a-websocket"),
        ]
        .into();
        assert!(Config::from_source(&map, KeyPolicy::Required).is_err());
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
    fn ca_file_must_hold_certificates() {
        let path = std::env::temp_dir().join(format!("relay-ca-test-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate").expect("write temp file");
        let map: HashMap<&str, &str> = [
            ("OPENAI_API_KEY", "k"),
            ("UPSTREAM_CA_FILE", path.to_str().expect("utf-8 temp path")),
        ]
        .into_iter()
        .collect();
        let err = Config::from_source(&map, KeyPolicy::Required).unwrap_err();
        assert!(err.to_string().contains("UPSTREAM_CA_FILE"), "{err}");
        let _ = std::fs::remove_file(&path);
        assert!(parse(&[
            ("OPENAI_API_KEY", "k"),
            ("UPSTREAM_CA_FILE", "/nonexistent.pem")
        ])
        .is_err());
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
        ])
        .expect("valid");
        assert_eq!(
            c.admin_listen,
            Some(AdminListen {
                host: "127.0.0.1".into(),
                port: 9090
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
