//! The protection settings: who may connect (`RELAY_TOKENS`, `RELAY_TOKENS_FILE`,
//! `RELAY_JWT_SECRET` with `RELAY_JWT_AUDIENCE` and `RELAY_JWT_ISSUER`, the `CLIENT_SECRET_KEY`
//! relay client secrets are signed with, how often a client address
//! may fail to authenticate), how clients are keyed (`IPV6_PREFIX_LENGTH`), how much they may use
//! (per-client limits, allowed models, session length, daily token budgets, the usage state file)
//! and the `SAFETY_IDENTIFIER` header with its secret. Access control is off by default: an open
//! proxy. Read by `Config::from_source`; used when the relay starts (the
//! authenticator, the registry's limits) and by the HTTP upgrade.

use std::{path::PathBuf, time::Duration};

use super::source::{ConfigError, Reader};
use crate::{
    protection::{client_ip::DEFAULT_IPV6_PREFIX, tokens::Tokens},
    secret::Secret,
};

/// The default `AUTH_FAILURES_PER_MINUTE`.
const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 30;

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
    /// `RELAY_JWT_AUDIENCE`: when set, a JWT's `aud` (a string, or an array of them) must name it.
    pub jwt_audience: Option<String>,
    /// `RELAY_JWT_ISSUER`: when set, a JWT's `iss` must be exactly this.
    pub jwt_issuer: Option<String>,
    /// `CLIENT_SECRET_KEY`: signs the relay's client secrets (`POST /v1/realtime/client_secrets`);
    /// the same on every instance behind a load balancer. Unset: a random key per process.
    pub client_secret_key: Option<Secret>,
    /// `AUTH_FAILURES_PER_MINUTE`: failed authentications one client address may make per
    /// minute (a burst of this many) before its attempts are refused unchecked; 0 = unlimited.
    pub auth_failures_per_minute: u32,
    /// `IPV6_PREFIX_LENGTH` (1..=128): an IPv6 client is keyed by this many leading bits of its
    /// address wherever its address stands for it.
    pub ipv6_prefix_length: u8,
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
    /// `SAFETY_IDENTIFIER_SECRET` (or its old name `SAFETY_IDENTIFIER_SALT`): the HMAC key of the
    /// safety identifier. Unset: a random secret kept beside the usage state file
    /// (`protection/safety.rs`), never the OpenAI key.
    pub safety_identifier_salt: Option<Secret>,
}

impl Protection {
    pub(super) fn read(r: &mut Reader<'_>) -> Protection {
        let (tokens, tokens_file) = tokens(r);
        // Fields are evaluated in the order written, which is the order errors are listed in.
        Protection {
            tokens,
            tokens_file,
            jwt_secret: jwt_secret(r),
            jwt_audience: jwt_claim(r, "RELAY_JWT_AUDIENCE"),
            jwt_issuer: jwt_claim(r, "RELAY_JWT_ISSUER"),
            client_secret_key: client_secret_key(r),
            auth_failures_per_minute: r.number::<u32>(
                "AUTH_FAILURES_PER_MINUTE",
                DEFAULT_AUTH_FAILURES_PER_MINUTE,
                0,
            ),
            ipv6_prefix_length: ipv6_prefix_length(r),
            max_connections_per_client: r.number::<usize>("MAX_CONNECTIONS_PER_CLIENT", 0, 0),
            connection_rate_per_client: r.number::<u32>("CONNECTION_RATE_PER_CLIENT", 0, 0),
            allowed_models: r.models("ALLOWED_MODELS"),
            max_session_duration: max_session_duration(r),
            daily_token_budget: budget(r, "DAILY_TOKEN_BUDGET"),
            client_daily_token_budget: budget(r, "CLIENT_DAILY_TOKEN_BUDGET"),
            usage_state_file: PathBuf::from(r.string("USAGE_STATE_FILE", "relay-usage.json")),
            safety_identifier: r.choice(
                "SAFETY_IDENTIFIER",
                "off",
                &[
                    ("off", SafetyIdentifier::Off),
                    ("identity", SafetyIdentifier::Identity),
                    ("address", SafetyIdentifier::Address),
                ],
                "must be off, identity or address",
            ),
            safety_identifier_salt: safety_secret(r),
        }
    }
}

/// `RELAY_JWT_AUDIENCE` or `RELAY_JWT_ISSUER`: only meaningful with `RELAY_JWT_SECRET`, so set
/// without it they are a mistake worth stopping for.
fn jwt_claim(r: &mut Reader<'_>, name: &'static str) -> Option<String> {
    let value = r.raw(name)?;
    if r.raw("RELAY_JWT_SECRET").is_none() {
        r.invalid(name, &value, "has no effect without RELAY_JWT_SECRET");
    }
    Some(value)
}

/// `IPV6_PREFIX_LENGTH`: 1 to 128 bits.
fn ipv6_prefix_length(r: &mut Reader<'_>) -> u8 {
    let n = r.number::<u8>("IPV6_PREFIX_LENGTH", DEFAULT_IPV6_PREFIX, 1);
    if n > 128 {
        r.invalid(
            "IPV6_PREFIX_LENGTH",
            &n.to_string(),
            "must be between 1 and 128",
        );
        return DEFAULT_IPV6_PREFIX;
    }
    n
}

/// `SAFETY_IDENTIFIER_SECRET`, or `SAFETY_IDENTIFIER_SALT`, its name before the secret stopped
/// defaulting to the OpenAI key; one of the two, not both.
fn safety_secret(r: &mut Reader<'_>) -> Option<Secret> {
    let secret = r.secret("SAFETY_IDENTIFIER_SECRET");
    let salt = r.secret("SAFETY_IDENTIFIER_SALT");
    if secret.is_some() && salt.is_some() {
        r.invalid(
            "SAFETY_IDENTIFIER_SALT",
            "***",
            "is the old name of SAFETY_IDENTIFIER_SECRET; set one of the two, not both",
        );
    }
    secret.or(salt)
}

/// `RELAY_TOKENS` or `RELAY_TOKENS_FILE` (not both), each parsed now so a bad list stops the
/// relay before it binds.
fn tokens(r: &mut Reader<'_>) -> (Option<Secret>, Option<PathBuf>) {
    let tokens = r.secret("RELAY_TOKENS");
    if let Some(list) = &tokens {
        if let Err(problem) = Tokens::parse_list(list.expose()) {
            // The value is a secret: report the problem, never the value.
            r.invalid("RELAY_TOKENS", "***", problem);
        }
    }
    let tokens_file = r.raw("RELAY_TOKENS_FILE").map(PathBuf::from);
    if let Some(path) = &tokens_file {
        if let Err(problem) = Tokens::load_file(path) {
            r.push(ConfigError::Unreadable {
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
    (tokens, tokens_file)
}

/// `RELAY_JWT_SECRET`: at least 32 bytes, the size of an HS256 key.
fn jwt_secret(r: &mut Reader<'_>) -> Option<Secret> {
    let secret = r.secret("RELAY_JWT_SECRET");
    if secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
        r.invalid("RELAY_JWT_SECRET", "***", "must be at least 32 bytes");
    }
    secret
}

/// `CLIENT_SECRET_KEY`: at least 32 characters, like an HS256 key.
fn client_secret_key(r: &mut Reader<'_>) -> Option<Secret> {
    let key = r.secret("CLIENT_SECRET_KEY");
    if key
        .as_ref()
        .is_some_and(|k| k.expose().chars().count() < 32)
    {
        r.invalid("CLIENT_SECRET_KEY", "***", "must be at least 32 characters");
    }
    key
}

/// `MAX_SESSION_DURATION` in ms: 0 (off) or at least a second.
fn max_session_duration(r: &mut Reader<'_>) -> Option<Duration> {
    let ms = r.number::<u64>("MAX_SESSION_DURATION", 0, 0);
    if ms != 0 && ms < 1_000 {
        r.invalid(
            "MAX_SESSION_DURATION",
            &ms.to_string(),
            "must be 0 (off) or at least 1000 ms",
        );
    }
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// A daily token budget; 0 or unset = none.
fn budget(r: &mut Reader<'_>, name: &'static str) -> Option<u64> {
    Some(r.number::<u64>(name, 0, 0)).filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    const SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";

    /// The new protection settings default to a /64, thirty failures a minute, no audience or
    /// issuer, and no safety secret.
    #[test]
    fn defaults() {
        let p = parse(&[("OPENAI_API_KEY", "k")]).expect("valid").protection;
        assert_eq!(p.ipv6_prefix_length, 64);
        assert_eq!(p.auth_failures_per_minute, 30);
        assert_eq!((p.jwt_audience, p.jwt_issuer), (None, None));
        assert!(p.safety_identifier_salt.is_none());
    }

    /// IPV6_PREFIX_LENGTH takes 1 to 128; anything else is reported by name.
    #[test]
    fn ipv6_prefix_length_range() {
        for (value, want) in [("1", 1), ("48", 48), ("128", 128)] {
            let c = parse(&[("OPENAI_API_KEY", "k"), ("IPV6_PREFIX_LENGTH", value)]);
            assert_eq!(c.expect("valid").protection.ipv6_prefix_length, want);
        }
        for bad in ["0", "129", "255", "256", "-1", "/64"] {
            let err = parse(&[("OPENAI_API_KEY", "k"), ("IPV6_PREFIX_LENGTH", bad)]).unwrap_err();
            assert!(
                err.to_string().starts_with("IPV6_PREFIX_LENGTH: "),
                "{bad}: {err}"
            );
        }
    }

    /// RELAY_JWT_AUDIENCE and RELAY_JWT_ISSUER are read with RELAY_JWT_SECRET and refused
    /// without it, where they would silently do nothing.
    #[test]
    fn jwt_audience_and_issuer() {
        let p = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("RELAY_JWT_SECRET", SECRET),
            ("RELAY_JWT_AUDIENCE", "realtime-relay"),
            ("RELAY_JWT_ISSUER", "https://auth.example.com/"),
        ])
        .expect("valid")
        .protection;
        assert_eq!(p.jwt_audience.as_deref(), Some("realtime-relay"));
        assert_eq!(p.jwt_issuer.as_deref(), Some("https://auth.example.com/"));
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("RELAY_JWT_AUDIENCE", "realtime-relay"),
            ("RELAY_JWT_ISSUER", "me"),
        ])
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.to_string().contains("without RELAY_JWT_SECRET"),
            "{err}"
        );
    }

    /// SAFETY_IDENTIFIER_SECRET, or its old name SAFETY_IDENTIFIER_SALT, is the key; both at once
    /// is refused, without printing either.
    #[test]
    fn safety_secret_and_its_old_name() {
        for name in ["SAFETY_IDENTIFIER_SECRET", "SAFETY_IDENTIFIER_SALT"] {
            let p = parse(&[("OPENAI_API_KEY", "k"), (name, "s3cr3t-value")])
                .expect("valid")
                .protection;
            assert!(p
                .safety_identifier_salt
                .is_some_and(|s| s.matches("s3cr3t-value")));
        }
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("SAFETY_IDENTIFIER_SECRET", "s3cr3t-one"),
            ("SAFETY_IDENTIFIER_SALT", "s3cr3t-two"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SAFETY_IDENTIFIER_SALT") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    /// CLIENT_SECRET_KEY is optional, and when set at least 32 characters, refused without
    /// printing it.
    #[test]
    fn client_secret_key() {
        let p = parse(&[("OPENAI_API_KEY", "k")]).expect("valid").protection;
        assert!(p.client_secret_key.is_none());
        let p = parse(&[("OPENAI_API_KEY", "k"), ("CLIENT_SECRET_KEY", SECRET)])
            .expect("valid")
            .protection;
        assert!(p.client_secret_key.is_some_and(|k| k.matches(SECRET)));
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("CLIENT_SECRET_KEY", "short-s3cr3t"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("CLIENT_SECRET_KEY: ") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    /// AUTH_FAILURES_PER_MINUTE: 0 turns the throttle off; it must be a whole number.
    #[test]
    fn auth_failures_per_minute() {
        let p = parse(&[("OPENAI_API_KEY", "k"), ("AUTH_FAILURES_PER_MINUTE", "0")])
            .expect("valid")
            .protection;
        assert_eq!(p.auth_failures_per_minute, 0);
        assert!(parse(&[
            ("OPENAI_API_KEY", "k"),
            ("AUTH_FAILURES_PER_MINUTE", "lots")
        ])
        .is_err());
    }
}
