//! Client identity: who a client is, decided once when its WebSocket opens. Limits, budgets, logs
//! and `/stats` key on the resulting `Identity`.
//!
//! With neither `RELAY_TOKENS`/`RELAY_TOKENS_FILE` nor `RELAY_JWT_SECRET` set the relay is an open
//! proxy and a client is its address. Otherwise a client presents a credential the way the
//! official SDKs present an OpenAI key (`Authorization: Bearer`, or the browser subprotocol
//! `openai-insecure-api-key.<token>`) and is either a named token (`tokens.rs`) or the `sub` of an
//! HS256 JWT (`jwt.rs`). The `Authenticator` is built when the relay starts and shared by every
//! worker; the HTTP upgrade calls it for each client; SIGHUP swaps its token list in place.
//! Nothing here logs, and no error or `Debug` output contains a credential.

use std::{
    fmt,
    net::IpAddr,
    sync::{PoisonError, RwLock},
};

pub use super::jwt::mint_jwt;
use super::jwt::JwtError;
pub(crate) use super::{jwt::JwtVerifier, tokens::Tokens};

/// Who a client is: what limits, budgets, logs and /stats key on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    /// "token:<name>", "jwt:<sub>", or "ip:<address>" (open mode).
    pub(crate) key: String,
    pub(crate) kind: IdentityKind,
    /// Models this identity may use (the JWT `models` claim); None = no restriction.
    pub(crate) models: Option<Vec<String>>,
}

/// Which credential made the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IdentityKind {
    Token,
    Jwt,
    Address,
}

impl Identity {
    /// The identity of an unauthenticated client: `ip:<address>`, or `ip:unknown`.
    pub(crate) fn address(ip: Option<IpAddr>) -> Identity {
        // An IPv4 client reached over a dual-stack socket shows up as `::ffff:a.b.c.d`; canonical
        // form keeps it one identity whichever socket it came through.
        let key = match ip {
            Some(ip) => format!("ip:{}", ip.to_canonical()),
            None => "ip:unknown".to_string(),
        };
        Identity {
            key,
            kind: IdentityKind::Address,
            models: None,
        }
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

/// Why a client was refused; the message goes into its `unauthorized` close, never the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("no credential presented")]
    Missing,
    #[error("credential not recognised")]
    Invalid,
    #[error("token expired")]
    Expired,
}

/// Decides who a client is. Open mode (no tokens, no JWT secret): everyone is admitted, identity
/// = address.
pub(crate) struct Authenticator {
    tokens: RwLock<Tokens>,
    jwt: Option<JwtVerifier>,
    /// Whether a credential is required: tokens configured (even an empty list) or a JWT secret.
    /// Fixed at construction; [`reload`](Self::reload) never switches modes.
    required: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.required)
            .field("tokens", &self.token_count())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

impl Authenticator {
    /// `tokens`: Some when `RELAY_TOKENS` or `RELAY_TOKENS_FILE` is set, even if the list is
    /// empty (an emptied token file locks everyone out rather than opening the proxy).
    pub(crate) fn new(tokens: Option<Tokens>, jwt: Option<JwtVerifier>) -> Authenticator {
        let required = tokens.is_some() || jwt.is_some();
        Authenticator {
            tokens: RwLock::new(tokens.unwrap_or_default()),
            jwt,
            required,
        }
    }

    /// Open mode: `Ok(Identity::address(ip))` whatever is presented (a client's own OpenAI key is
    /// ignored, never used). Required mode: the token list first, then a JWT (a credential with
    /// two dots, when a secret is configured).
    pub(crate) fn authenticate(
        &self,
        presented: Option<&str>,
        ip: Option<IpAddr>,
        now_unix: u64,
    ) -> Result<Identity, AuthError> {
        if !self.required {
            return Ok(Identity::address(ip));
        }
        let presented = presented
            .filter(|p| !p.is_empty())
            .ok_or(AuthError::Missing)?;
        if let Some(name) = self.read_tokens().lookup(presented) {
            return Ok(Identity {
                key: format!("token:{name}"),
                kind: IdentityKind::Token,
                models: None,
            });
        }
        if let Some(jwt) = &self.jwt {
            if presented.matches('.').count() == 2 {
                return match jwt.verify(presented, now_unix) {
                    Ok(claims) => Ok(Identity {
                        key: format!("jwt:{}", claims.sub),
                        kind: IdentityKind::Jwt,
                        models: claims.models,
                    }),
                    Err(JwtError::Expired) => Err(AuthError::Expired),
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
mod tests {
    use super::*;
    use crate::secret::Secret;
    use serde_json::{json, Value};

    const NOW: u64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new("jwt-test-secret-0123456789")
    }

    fn mint(claims: Value) -> String {
        mint_jwt(&secret(), &claims)
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&secret())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("test address"))
    }

    /// Debug output of the authenticator and the verifier shows neither tokens nor the secret.
    #[test]
    fn debug_never_prints_credentials() {
        let t = Tokens::parse_list("alice:tok-visible-a,bob:tok-visible-b").expect("valid");
        let auth = Authenticator::new(Some(t), Some(verifier()));
        let out = format!("{auth:?} {:?}", verifier());
        assert!(
            !out.contains("tok-visible") && !out.contains("jwt-test-secret"),
            "{out}"
        );
    }

    /// The bearer header carries the credential, with any capitalisation of the scheme.
    #[test]
    fn credential_from_header() {
        assert_eq!(
            presented_credential(Some("Bearer abc"), std::iter::empty()),
            Some("abc")
        );
        assert_eq!(
            presented_credential(Some("  bearer   abc  "), std::iter::empty()),
            Some("abc")
        );
        assert_eq!(
            presented_credential(Some("BEARER abc"), std::iter::empty()),
            Some("abc")
        );
        assert_eq!(
            presented_credential(Some("Bearer "), std::iter::empty()),
            None
        );
        assert_eq!(
            presented_credential(Some("Basic abc"), std::iter::empty()),
            None
        );
        assert_eq!(
            presented_credential(Some("Bearerabc"), std::iter::empty()),
            None
        );
        assert_eq!(presented_credential(None, std::iter::empty()), None);
    }

    /// The browser subprotocol carries the credential, from any header value in a comma list.
    #[test]
    fn credential_from_subprotocol() {
        let protocols = ["realtime, openai-insecure-api-key.abc"];
        assert_eq!(
            presented_credential(None, protocols.into_iter()),
            Some("abc")
        );
        let split = [
            "realtime",
            "openai-beta.realtime-v1 ,openai-insecure-api-key.xyz",
        ];
        assert_eq!(presented_credential(None, split.into_iter()), Some("xyz"));
        let none = ["realtime, openai-insecure-api-key."];
        assert_eq!(presented_credential(None, none.into_iter()), None);
        // A non-bearer Authorization header does not hide the subprotocol.
        assert_eq!(
            presented_credential(Some("Basic x"), protocols.into_iter()),
            Some("abc")
        );
    }

    /// When both are present the header wins.
    #[test]
    fn credential_header_wins() {
        let protocols = ["realtime, openai-insecure-api-key.from-protocol"];
        assert_eq!(
            presented_credential(Some("Bearer from-header"), protocols.into_iter()),
            Some("from-header")
        );
    }

    /// The address identity, canonical for IPv4-mapped IPv6, or unknown.
    #[test]
    fn address_identity() {
        assert_eq!(Identity::address(ip("10.0.0.1")).key, "ip:10.0.0.1");
        assert_eq!(Identity::address(ip("::ffff:10.0.0.1")).key, "ip:10.0.0.1");
        assert_eq!(Identity::address(ip("2001:db8::1")).key, "ip:2001:db8::1");
        let unknown = Identity::address(None);
        assert_eq!(unknown.key, "ip:unknown");
        assert_eq!(unknown.kind, IdentityKind::Address);
        assert_eq!(unknown.models, None);
    }

    /// Open mode admits everyone by address and ignores whatever the client presents.
    #[test]
    fn open_mode_admits_by_address() {
        let auth = Authenticator::new(None, None);
        assert!(!auth.required);
        for presented in [None, Some("sk-client-own-key"), Some("garbage")] {
            assert_eq!(
                auth.authenticate(presented, ip("192.0.2.7"), NOW),
                Ok(Identity::address(ip("192.0.2.7")))
            );
        }
    }

    /// Required mode: tokens, then JWTs; missing, unknown and expired credentials are refused.
    #[test]
    fn required_mode() {
        let tokens = Tokens::parse_list("alice:tok-alice").expect("valid");
        let auth = Authenticator::new(Some(tokens), Some(verifier()));
        assert!(auth.required);
        let addr = ip("192.0.2.7");

        let id = auth
            .authenticate(Some("tok-alice"), addr, NOW)
            .expect("token");
        assert_eq!(id.key, "token:alice");
        assert_eq!(id.kind, IdentityKind::Token);
        assert_eq!(id.models, None);

        let jwt = mint(json!({"sub": "bob", "exp": NOW + 60, "models": ["gpt-realtime"]}));
        let id = auth.authenticate(Some(&jwt), addr, NOW).expect("jwt");
        assert_eq!(
            id,
            Identity {
                key: "jwt:bob".into(),
                kind: IdentityKind::Jwt,
                models: Some(vec!["gpt-realtime".into()])
            }
        );

        assert_eq!(auth.authenticate(None, addr, NOW), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some(""), addr, NOW),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate(Some("tok-mallory"), addr, NOW),
            Err(AuthError::Invalid)
        );
        let expired = mint(json!({"sub": "bob", "exp": NOW - 1}));
        assert_eq!(
            auth.authenticate(Some(&expired), addr, NOW),
            Err(AuthError::Expired)
        );
        let forged = mint_jwt(
            &Secret::new("other"),
            &json!({"sub": "bob", "exp": NOW + 60}),
        );
        assert_eq!(
            auth.authenticate(Some(&forged), addr, NOW),
            Err(AuthError::Invalid)
        );
    }

    /// A configured but empty token list still requires a credential; JWT-only mode has no tokens.
    #[test]
    fn empty_token_list_is_still_required() {
        let auth = Authenticator::new(Some(Tokens::default()), None);
        assert!(auth.required);
        assert_eq!(
            auth.authenticate(Some("anything"), ip("192.0.2.7"), NOW),
            Err(AuthError::Invalid)
        );
        let jwt_only = Authenticator::new(None, Some(verifier()));
        assert!(jwt_only.required);
        assert_eq!(jwt_only.token_count(), 0);
        assert_eq!(
            jwt_only.authenticate(Some("a.b.c"), None, NOW),
            Err(AuthError::Invalid)
        );
        // Without a JWT secret a JWT-shaped credential is just an unknown token.
        let jwt = mint(json!({"sub": "bob", "exp": NOW + 60}));
        assert_eq!(
            auth.authenticate(Some(&jwt), None, NOW),
            Err(AuthError::Invalid)
        );
    }

    /// reload swaps the token list: new tokens work, removed ones stop working.
    #[test]
    fn reload_swaps_tokens() {
        let auth = Authenticator::new(
            Some(Tokens::parse_list("old:tok-old").expect("valid")),
            None,
        );
        assert_eq!(auth.token_count(), 1);
        assert!(auth.authenticate(Some("tok-old"), None, NOW).is_ok());

        auth.reload(Tokens::parse_list("new:tok-new,other:tok-other").expect("valid"));
        assert_eq!(auth.token_count(), 2);
        assert_eq!(
            auth.authenticate(Some("tok-old"), None, NOW),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(Some("tok-new"), None, NOW).map(|i| i.key),
            Ok("token:new".to_string())
        );

        auth.reload(Tokens::default());
        assert!(auth.required);
        assert_eq!(
            auth.authenticate(Some("tok-new"), None, NOW),
            Err(AuthError::Invalid)
        );
    }
}
