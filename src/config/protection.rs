//! The protection settings: who may connect (`RELAY_TOKENS`, `RELAY_TOKENS_FILE`,
//! `RELAY_JWT_SECRET`), how much they may use (per-client limits, allowed models, session length,
//! daily token budgets, the usage state file) and the `SAFETY_IDENTIFIER` header. All off by
//! default: an open proxy. Read by `Config::from_source`; used when the relay starts (the
//! authenticator, the registry's limits) and by the HTTP upgrade.

use std::{path::PathBuf, time::Duration};

use super::source::{ConfigError, Reader};
use crate::{protection::tokens::Tokens, secret::Secret};

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

impl Protection {
    pub(super) fn read(r: &mut Reader<'_>) -> Protection {
        let (tokens, tokens_file) = tokens(r);
        // Fields are evaluated in the order written, which is the order errors are listed in.
        Protection {
            tokens,
            tokens_file,
            jwt_secret: jwt_secret(r),
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
            safety_identifier_salt: r.secret("SAFETY_IDENTIFIER_SALT"),
        }
    }
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
