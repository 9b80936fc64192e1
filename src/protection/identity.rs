//! Client identity: who a client is, decided once when its WebSocket opens. Limits, budgets, logs
//! and `/stats` key on the resulting `Identity`.
//!
//! With neither `RELAY_TOKENS`/`RELAY_TOKENS_FILE` nor `RELAY_JWT_SECRET` set the relay is an open
//! proxy and a client is its address. Otherwise a client presents a credential the way the
//! official SDKs present an OpenAI key (`Authorization: Bearer`, or the browser subprotocol
//! `openai-insecure-api-key.<token>`) and is either a named token (`tokens.rs`) or the `sub` of an
//! HS256 JWT (`jwt/`). A relay client secret (`rcs_…`, `client_secret.rs`, minted and checked
//! in `identity/secrets.rs`) is accepted in either mode: its holder is the identity that minted
//! it, bound to one model and its session fields. The `Authenticator` is built when the relay starts and shared by every
//! worker; the HTTP upgrade calls it for each client; SIGHUP swaps its token list in place. It
//! also keys addresses (an IPv6 client by its `IPV6_PREFIX_LENGTH` prefix, `client_ip.rs`) and
//! refuses an address that failed too often before looking at its credential
//! (`auth_failures.rs`).
//! Nothing here logs, and no error or `Debug` output contains a credential.

use std::{
    fmt,
    net::IpAddr,
    sync::{PoisonError, RwLock},
    time::Instant,
};

use serde_json::{Map, Value};

use super::{
    auth_failures::AuthFailures,
    client_ip::{address_key, DEFAULT_IPV6_PREFIX},
    client_secret::{ClientSecrets, SecretError, PREFIX},
    jwt::JwtError,
};
pub use super::{client_secret::mint_client_secret, jwt::mint_jwt};
pub(crate) use super::{jwt::JwtVerifier, tokens::Tokens};
use crate::config::Protection;

mod secrets;

/// Who a client is: what limits, budgets, logs and /stats key on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    /// "token:<name>", "jwt:<sub>", or "ip:<address>" (open mode).
    pub(crate) key: String,
    pub(crate) kind: IdentityKind,
    /// Models this identity may use (its tokens-file entry or the JWT `models` claim); None =
    /// no restriction.
    pub(crate) models: Option<Vec<String>>,
    /// The session policy it gets by name (its tokens-file entry or the JWT `policy` claim);
    /// None = the `default` policy, if any.
    pub(crate) policy: Option<String>,
    /// Its own daily budget in billionths of a dollar (its tokens-file entry or the JWT
    /// `budget_usd` claim), in place of `CLIENT_DAILY_USD_BUDGET`.
    pub(crate) usd_budget: Option<u64>,
    /// With a client secret: the one model it is bound to (`models` is then just this one).
    pub(crate) model: Option<String>,
    /// With a client secret: the session fields it pins and locks on top of the policy.
    pub(crate) session: Option<Map<String, Value>>,
}

/// Which credential made the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IdentityKind {
    Token,
    Jwt,
    Address,
}

impl Identity {
    /// The identity of an unauthenticated client: `ip:<address>` (an IPv6 client by the first
    /// `v6_prefix` bits of its address, `ip:2001:db8:1:2::/64`), or `ip:unknown`.
    pub(crate) fn address(ip: Option<IpAddr>, v6_prefix: u8) -> Identity {
        // An IPv4 client reached over a dual-stack socket shows up as `::ffff:a.b.c.d`; canonical
        // form keeps it one identity whichever socket it came through.
        let key = match ip {
            Some(ip) => format!("ip:{}", address_key(ip, v6_prefix)),
            None => "ip:unknown".to_string(),
        };
        Identity {
            key,
            kind: IdentityKind::Address,
            models: None,
            policy: None,
            usd_budget: None,
            model: None,
            session: None,
        }
    }

    /// Whether it came from a client secret (which cannot mint another).
    pub(crate) fn is_client_secret(&self) -> bool {
        self.model.is_some()
    }
}

/// The subprotocol the official browser SDK offers to carry a key.
const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// Where a client presents its credential, exactly like the official SDKs present a key.
/// `authorization`: the Authorization header value; `protocols`: every Sec-WebSocket-Protocol
/// header value (comma lists). Returns the token from `Bearer <token>` (case-insensitive scheme),
/// else from a subprotocol `openai-insecure-api-key.<token>`; None if neither.
pub(crate) fn presented_credential<'a>(
    authorization: Option<&'a str>,
    mut protocols: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let bearer = authorization.and_then(|value| {
        let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    });
    bearer.or_else(|| {
        protocols.find_map(|value| {
            value.split(',').find_map(|p| {
                p.trim()
                    .strip_prefix(KEY_SUBPROTOCOL_PREFIX)
                    .filter(|t| !t.is_empty())
            })
        })
    })
}

/// Why a client was refused; the message goes into its `unauthorized` close (`rate_limited` for
/// [`AuthError::Throttled`]), never the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("no credential presented")]
    Missing,
    #[error("credential not recognised")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("the token's aud claim does not name this relay (RELAY_JWT_AUDIENCE)")]
    Audience,
    #[error("the token's iss claim is not the issuer this relay trusts (RELAY_JWT_ISSUER)")]
    Issuer,
    /// The address failed `per_minute` times in a row: not checked at all.
    #[error("too many failed attempts from this address")]
    Throttled { per_minute: u32 },
    /// A relay client secret that is malformed, forged, signed with another key or expired.
    #[error("{0}")]
    Secret(#[from] SecretError),
    /// A client secret whose relay token has since been removed or changed.
    #[error("client secret revoked: the relay token that minted it is no longer valid")]
    SecretRevoked,
}

/// Decides who a client is. Open mode (no tokens, no JWT secret): everyone is admitted, identity
/// = address.
pub(crate) struct Authenticator {
    tokens: RwLock<Tokens>,
    jwt: Option<JwtVerifier>,
    /// Whether a credential is required: tokens configured (even an empty list) or a JWT secret.
    /// Fixed at construction; [`reload`](Self::reload) never switches modes.
    required: bool,
    /// `IPV6_PREFIX_LENGTH`.
    ipv6_prefix: u8,
    /// `AUTH_FAILURES_PER_MINUTE`, per address key.
    failures: AuthFailures,
    /// `CLIENT_SECRET_KEY` (or a random key): mints and checks relay client secrets. None only
    /// if no random key could be made: then none is minted or accepted.
    secrets: Option<ClientSecrets>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.required)
            .field("tokens", &self.token_count())
            .field("jwt", &self.jwt.is_some())
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("failures_per_minute", &self.failures.per_minute())
            .field("client_secrets", &self.secrets)
            .finish()
    }
}

impl Authenticator {
    /// `tokens`: Some when `RELAY_TOKENS` or `RELAY_TOKENS_FILE` is set, even if the list is
    /// empty (an emptied token file locks everyone out rather than opening the proxy).
    /// With the defaults: IPv6 keyed by /64, failed authentication not throttled, client
    /// secrets signed with a random key.
    pub(crate) fn new(tokens: Option<Tokens>, jwt: Option<JwtVerifier>) -> Authenticator {
        let required = tokens.is_some() || jwt.is_some();
        Authenticator {
            tokens: RwLock::new(tokens.unwrap_or_default()),
            jwt,
            required,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            failures: AuthFailures::new(0),
            secrets: ClientSecrets::random().ok(),
        }
    }

    /// Everything from the settings: `RELAY_TOKENS` or `RELAY_TOKENS_FILE` (read now),
    /// `RELAY_JWT_SECRET` with `RELAY_JWT_AUDIENCE` and `RELAY_JWT_ISSUER`,
    /// `AUTH_FAILURES_PER_MINUTE`, `IPV6_PREFIX_LENGTH` and `CLIENT_SECRET_KEY` (unset: a random
    /// key). Err: the token list or file is bad, or no random key could be made.
    pub(crate) fn from_config(p: &Protection) -> Result<Authenticator, String> {
        let tokens = match (&p.tokens, &p.tokens_file) {
            (Some(list), _) => Some(Tokens::parse_list(list.expose())?),
            (None, Some(path)) => Some(Tokens::load_file(path)?),
            (None, None) => None,
        };
        let jwt = p.jwt_secret.as_ref().map(|secret| {
            JwtVerifier::new(secret)
                .audience(p.jwt_audience.clone())
                .issuer(p.jwt_issuer.clone())
        });
        let mut auth = Authenticator::new(tokens, jwt);
        auth.ipv6_prefix = p.ipv6_prefix_length;
        auth.failures = AuthFailures::new(p.auth_failures_per_minute);
        auth.secrets = Some(
            ClientSecrets::from_key(p.client_secret_key.as_ref())
                .map_err(|e| format!("CLIENT_SECRET_KEY is unset and {e}"))?,
        );
        Ok(auth)
    }

    /// The identity `ip` has as an address (`SAFETY_IDENTIFIER=address`, open mode).
    pub(crate) fn address_identity(&self, ip: Option<IpAddr>) -> Identity {
        Identity::address(ip, self.ipv6_prefix)
    }

    /// Open mode: `Ok(Identity::address(ip))` whatever is presented (a client's own OpenAI key is
    /// ignored, never used), except a relay client secret, which is checked. Required mode: an
    /// address that has failed too often is refused unchecked (`Throttled`); otherwise the token
    /// list, then a client secret (`rcs_…`), then a JWT (a credential with two dots, when a
    /// secret is configured), and a failure counts against the address.
    pub(crate) fn authenticate(
        &self,
        presented: Option<&str>,
        ip: Option<IpAddr>,
        now_unix: u64,
        now: Instant,
    ) -> Result<Identity, AuthError> {
        let secret = presented.filter(|p| p.starts_with(PREFIX));
        if !self.required && secret.is_none() {
            return Ok(self.address_identity(ip));
        }
        let address = self.address_identity(ip).key;
        if self.failures.blocked(&address, now) {
            return Err(AuthError::Throttled {
                per_minute: self.failures.per_minute(),
            });
        }
        let verdict = self.check(presented, now_unix);
        if verdict.is_err() {
            self.failures.failed(&address, now);
        }
        verdict
    }

    /// The credential alone: the token list first, then a JWT.
    fn check(&self, presented: Option<&str>, now_unix: u64) -> Result<Identity, AuthError> {
        let presented = presented
            .filter(|p| !p.is_empty())
            .ok_or(AuthError::Missing)?;
        if let Some((name, client)) = self.read_tokens().lookup(presented) {
            return Ok(Identity {
                key: format!("token:{name}"),
                kind: IdentityKind::Token,
                models: client.models.clone(),
                policy: client.policy.clone(),
                usd_budget: client.usd_budget,
                model: None,
                session: None,
            });
        }
        // After the tokens, so a relay token that happens to start with `rcs_` still works.
        if presented.starts_with(PREFIX) {
            return self.check_secret(presented, now_unix);
        }
        if let Some(jwt) = &self.jwt {
            if presented.matches('.').count() == 2 {
                return match jwt.verify(presented, now_unix) {
                    Ok(claims) => Ok(Identity {
                        key: format!("jwt:{}", claims.sub),
                        kind: IdentityKind::Jwt,
                        models: claims.models,
                        policy: claims.policy,
                        usd_budget: claims.usd_budget,
                        model: None,
                        session: None,
                    }),
                    Err(JwtError::Expired) => Err(AuthError::Expired),
                    Err(JwtError::Audience) => Err(AuthError::Audience),
                    Err(JwtError::Issuer) => Err(AuthError::Issuer),
                    Err(_) => Err(AuthError::Invalid),
                };
            }
        }
        Err(AuthError::Invalid)
    }

    /// SIGHUP: swap the token list (live sessions unaffected).
    pub(crate) fn reload(&self, tokens: Tokens) {
        // The list is replaced whole, so a poisoned lock still holds a consistent value.
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = tokens;
    }

    fn token_count(&self) -> usize {
        self.read_tokens().len()
    }

    fn read_tokens(&self) -> std::sync::RwLockReadGuard<'_, Tokens> {
        self.tokens.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
