//! Client identity: who a client is, decided once when its WebSocket opens. Limits, budgets, logs
//! and `/stats` key on the resulting [`Identity`].
//!
//! With neither `RELAY_TOKENS`/`RELAY_TOKENS_FILE` nor `RELAY_JWT_SECRET` set the relay is an open
//! proxy and a client is its address. Otherwise a client presents a credential the way the
//! official SDKs present an OpenAI key (`Authorization: Bearer`, or the browser subprotocol
//! `openai-insecure-api-key.<token>`) and is either a named token or the `sub` of an HS256 JWT.
//! The [`Authenticator`] is shared by every worker; SIGHUP swaps its token list in place.
//! Nothing here logs, and no error or `Debug` output contains a credential.

use std::{
    fmt,
    net::IpAddr,
    path::Path,
    sync::{PoisonError, RwLock},
};

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use ring::hmac;
use serde_json::Value;

use crate::config::Secret;

/// Who a client is: what limits, budgets, logs and /stats key on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// "token:<name>", "jwt:<sub>", or "ip:<address>" (open mode).
    pub key: String,
    pub kind: IdentityKind,
    /// Models this identity may use (JWT `models` claim); None = no restriction from the credential.
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    Token,
    Jwt,
    Address,
}

impl Identity {
    /// The identity of an unauthenticated client: `ip:<address>`, or `ip:unknown`.
    pub fn address(ip: Option<IpAddr>) -> Identity {
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

/// The RELAY_TOKENS list: `name:token` pairs.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Secret)>,
}

impl Tokens {
    /// Comma-separated `name:token` pairs (whitespace trimmed). Err names the bad entries WITHOUT
    /// echoing tokens. Names: letters digits - _ . only. Empty entries (a trailing comma) are
    /// skipped.
    pub fn parse_list(s: &str) -> Result<Tokens, String> {
        Self::parse_entries(
            s.split(',')
                .enumerate()
                .map(|(i, e)| (format!("entry {}", i + 1), e)),
        )
    }

    /// One `name:token` per line; blank lines and lines starting with # ignored.
    pub fn parse_file(text: &str) -> Result<Tokens, String> {
        Self::parse_entries(
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with('#'))
                .map(|(i, l)| (format!("line {}", i + 1), l)),
        )
    }

    /// Reads and parses a token file. Errors name the path, never a token.
    pub fn load_file(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        Self::parse_file(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// Every problem is collected so an operator fixes the list in one pass.
    fn parse_entries<'a>(
        entries: impl Iterator<Item = (String, &'a str)>,
    ) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        let mut errors = Vec::new();
        for (at, entry) in entries {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            // An entry without ':' may well be a bare token: never echo it.
            let Some((name, token)) = entry.split_once(':') else {
                errors.push(format!("{at} has no ':'"));
                continue;
            };
            let (name, token) = (name.trim(), token.trim());
            if !valid_name(name) {
                // Not echoed either: a malformed name may be part of a token.
                errors.push(format!(
                    "{at} has an invalid name (letters, digits, '-', '_', '.' only)"
                ));
                continue;
            }
            if token.is_empty() {
                errors.push(format!("empty token for {name}"));
                continue;
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(format!("token for {name} contains whitespace"));
                continue;
            }
            if tokens.entries.iter().any(|(n, _)| n == name) {
                errors.push(format!("duplicate name {name}"));
                continue;
            }
            // Two names sharing a token would make the identity depend on list order.
            if let Some((other, _)) = tokens.entries.iter().find(|(_, s)| s.matches(token)) {
                errors.push(format!("{name} has the same token as {other}"));
                continue;
            }
            tokens
                .entries
                .push((name.to_string(), Secret::new(token.to_string())));
        }
        if errors.is_empty() {
            Ok(tokens)
        } else {
            Err(errors.join("; "))
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name whose token equals `presented`. Every entry is compared, each in constant time,
    /// so the time taken does not tell how close a guess came to any token.
    pub fn lookup(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (name, secret) in &self.entries {
            let hit = secret.matches(presented);
            if hit && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(name, _)| (name, "***")))
            .finish()
    }
}

/// Base64url as JWTs use it: no padding written, padding tolerated when read.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longer tokens are refused before any decoding, so a client cannot make the relay parse
/// megabytes of JSON per connection attempt.
const MAX_JWT_LEN: usize = 8 * 1024;

/// Longest `sub` accepted; it becomes a key in logs and `/stats`.
const MAX_SUB_LEN: usize = 256;

/// HS256 JWT verification (RELAY_JWT_SECRET).
pub struct JwtVerifier {
    key: hmac::Key,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtVerifier(HS256, ***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    pub sub: String,
    pub exp: u64,
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    /// Also returned for a token whose `nbf` is still in the future: it is not valid now.
    #[error("token expired")]
    Expired,
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
}

impl JwtVerifier {
    pub fn new(secret: &Secret) -> JwtVerifier {
        JwtVerifier {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
        }
    }

    /// Verifies `header.payload.signature` (base64url, padding tolerated). The header must say
    /// `alg: HS256` (never `none`, never another algorithm, whatever the token claims) and the
    /// signature is checked in constant time before the payload is even decoded. `sub` (a
    /// non-empty string without whitespace or control characters, at most 256 bytes) and `exp`
    /// (seconds) are required, with no leeway: `exp <= now` is expired. `nbf`, when present, is
    /// honoured. `models`, when present, is an array of strings.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<JwtClaims, JwtError> {
        if token.len() > MAX_JWT_LEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };

        let header: Value = decode_json(header_b64)?;
        let header = header.as_object().ok_or(JwtError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::Algorithm);
        }
        // RFC 7515 §4.1.11: extensions we do not understand must make the token invalid.
        if header.contains_key("crit") {
            return Err(JwtError::Algorithm);
        }

        let signature = B64.decode(signature_b64).map_err(|_| JwtError::Malformed)?;
        // The signature covers `header.payload` exactly as sent, not a re-encoding.
        let signed = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(JwtError::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &signature).map_err(|_| JwtError::Signature)?;

        let claims: Value = decode_json(payload_b64)?;
        let claims = claims.as_object().ok_or(JwtError::Malformed)?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| valid_sub(s))
            .ok_or(JwtError::MissingClaim("sub"))?;
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(JwtError::MissingClaim("exp"))?;
        if exp <= now_unix {
            return Err(JwtError::Expired);
        }
        match claims.get("nbf") {
            None | Some(Value::Null) => {}
            Some(nbf) => match numeric_date(nbf) {
                Some(nbf) if nbf <= now_unix => {}
                Some(_) => return Err(JwtError::Expired),
                None => return Err(JwtError::Malformed),
            },
        }
        let models = match claims.get("models") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|m| m.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(JwtError::Malformed)?,
            ),
            Some(_) => return Err(JwtError::Malformed),
        };
        Ok(JwtClaims {
            sub: sub.to_string(),
            exp,
            models,
        })
    }
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = B64.decode(part).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// A JWT NumericDate: seconds, possibly fractional (truncated); negative or non-numeric is None.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // `as` saturates at u64::MAX, which is as good as "never expires" for a finite huge value.
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

/// `sub` ends up as `identity=jwt:<sub>` in `key=value` log lines: no whitespace, no control
/// characters, bounded length.
fn valid_sub(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= MAX_SUB_LEN
        && !sub.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// For tests and the README: mint an HS256 token.
pub fn mint_jwt(secret: &Secret, claims: &serde_json::Value) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let signature = B64.encode(hmac::sign(&key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// The subprotocol the official browser SDK offers to carry a key.
const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";

/// Where a client presents its credential, exactly like the official SDKs present a key.
/// `authorization`: the Authorization header value; `protocols`: every Sec-WebSocket-Protocol
/// header value (comma lists). Returns the token from `Bearer <token>` (case-insensitive scheme),
/// else from a subprotocol `openai-insecure-api-key.<token>`; None if neither.
pub fn presented_credential<'a>(
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential presented")]
    Missing,
    #[error("credential not recognised")]
    Invalid,
    #[error("token expired")]
    Expired,
}

/// Decides who a client is. Open mode (no tokens, no JWT secret): everyone is admitted, identity
/// = address.
pub struct Authenticator {
    tokens: RwLock<Tokens>,
    jwt: Option<JwtVerifier>,
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
    pub fn new(tokens: Option<Tokens>, jwt: Option<JwtVerifier>) -> Authenticator {
        let required = tokens.is_some() || jwt.is_some();
        Authenticator {
            tokens: RwLock::new(tokens.unwrap_or_default()),
            jwt,
            required,
        }
    }

    /// Whether a credential is required: tokens configured (even an empty list) or a JWT secret.
    /// Fixed at construction; [`reload`](Self::reload) never switches modes.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Open mode: `Ok(Identity::address(ip))` whatever is presented (a client's own OpenAI key is
    /// ignored, never used). Required mode: the token list first, then a JWT (a credential with
    /// two dots, when a secret is configured).
    pub fn authenticate(
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
    pub fn reload(&self, tokens: Tokens) {
        // The list is replaced whole, so a poisoned lock still holds a consistent value.
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = tokens;
    }

    pub fn token_count(&self) -> usize {
        self.read_tokens().len()
    }

    fn read_tokens(&self) -> std::sync::RwLockReadGuard<'_, Tokens> {
        self.tokens.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new("jwt-test-secret-0123456789")
    }

    fn mint(claims: Value) -> String {
        mint_jwt(&secret(), &claims)
    }

    /// A token with a hand-made header, signed with the test secret.
    fn mint_with_header(header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret().expose().as_bytes());
        format!(
            "{signed}.{}",
            B64.encode(hmac::sign(&key, signed.as_bytes()))
        )
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&secret())
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("test address"))
    }

    /// A list parses into named tokens, trimming whitespace and skipping empty entries.
    #[test]
    fn parse_list_ok() {
        let t = Tokens::parse_list(" alice : tok-a , bob.2:tok_b,").expect("valid list");
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup("tok-a"), Some("alice"));
        assert_eq!(t.lookup("tok_b"), Some("bob.2"));
        assert!(Tokens::parse_list("").expect("empty").is_empty());
    }

    /// Every bad entry is reported, by position or name, and no token text appears in the error.
    #[test]
    fn parse_list_errors_never_echo_tokens() {
        let err = Tokens::parse_list(
            "ok:tok-1, sekrit-bare-token, bad name:tok-2, dup:tok-3, dup:tok-4, empty:, \
             twin:tok-1, sp:a\tsecret-tab",
        )
        .expect_err("bad list");
        assert!(err.contains("entry 2 has no ':'"), "{err}");
        assert!(err.contains("entry 3 has an invalid name"), "{err}");
        assert!(err.contains("duplicate name dup"), "{err}");
        assert!(err.contains("empty token for empty"), "{err}");
        assert!(err.contains("twin has the same token as ok"), "{err}");
        assert!(err.contains("token for sp contains whitespace"), "{err}");
        for secret in ["sekrit", "tok-", "secret-tab", "bad name"] {
            assert!(!err.contains(secret), "{secret} leaked in: {err}");
        }
    }

    /// A file has one pair per line; comments and blank lines are skipped; errors cite lines.
    #[test]
    fn parse_file_lines_and_comments() {
        let t =
            Tokens::parse_file("# team tokens\n\nalice:tok-a\n  # old: bob:tok-x\ncarol:tok-c\n")
                .expect("valid file");
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup("tok-c"), Some("carol"));
        assert_eq!(t.lookup("tok-x"), None);

        let err = Tokens::parse_file("alice:tok-a\nhunter2\n").expect_err("bad line");
        assert_eq!(err, "line 2 has no ':'");
        assert!(Tokens::parse_file("# nothing yet\n")
            .expect("empty file")
            .is_empty());
    }

    /// load_file names the path in its errors, never the file's tokens.
    #[test]
    fn load_file_errors_name_the_path() {
        let dir = std::env::temp_dir().join(format!("identity-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good");
        std::fs::write(&good, "a:tok-file-a\n").expect("write");
        assert_eq!(
            Tokens::load_file(&good)
                .expect("loads")
                .lookup("tok-file-a"),
            Some("a")
        );

        let bad = dir.join("bad");
        std::fs::write(&bad, "a:tok-file-a\nlonely-secret\n").expect("write");
        let err = Tokens::load_file(&bad).expect_err("bad file");
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(
            !err.contains("lonely-secret") && !err.contains("tok-file"),
            "{err}"
        );

        let missing = dir.join("missing");
        let err = Tokens::load_file(&missing).expect_err("missing file");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// lookup finds exactly the matching token; prefixes, extensions and empty strings miss.
    #[test]
    fn lookup_hit_and_miss() {
        let t = Tokens::parse_list("a:alpha-token,b:beta-token").expect("valid");
        assert_eq!(t.lookup("beta-token"), Some("b"));
        assert_eq!(t.lookup("beta-toke"), None);
        assert_eq!(t.lookup("beta-tokenX"), None);
        assert_eq!(t.lookup(""), None);
        assert_eq!(Tokens::default().lookup("alpha-token"), None);
    }

    /// Debug output shows names only.
    #[test]
    fn debug_never_prints_tokens() {
        let t = Tokens::parse_list("alice:tok-visible-a,bob:tok-visible-b").expect("valid");
        let out = format!("{t:?} {t:#?}");
        assert!(out.contains("alice") && out.contains("***"), "{out}");
        assert!(!out.contains("tok-visible"), "{out}");

        let auth = Authenticator::new(Some(t), Some(verifier()));
        let out = format!("{auth:?} {:?}", verifier());
        assert!(
            !out.contains("tok-visible") && !out.contains("jwt-test-secret"),
            "{out}"
        );
    }

    /// A well-formed token yields its claims; models is optional.
    #[test]
    fn jwt_valid() {
        let claims = verifier()
            .verify(&mint(json!({"sub": "user-1", "exp": NOW + 60})), NOW)
            .expect("valid");
        assert_eq!(
            claims,
            JwtClaims {
                sub: "user-1".into(),
                exp: NOW + 60,
                models: None
            }
        );
    }

    /// The models claim restricts models; a malformed one rejects the token.
    #[test]
    fn jwt_models_claim() {
        let token = mint(json!({"sub": "u", "exp": NOW + 60, "models": ["gpt-realtime-mini"]}));
        let claims = verifier().verify(&token, NOW).expect("valid");
        assert_eq!(claims.models, Some(vec!["gpt-realtime-mini".to_string()]));

        let bad = mint(json!({"sub": "u", "exp": NOW + 60, "models": ["ok", 3]}));
        assert_eq!(verifier().verify(&bad, NOW), Err(JwtError::Malformed));
        let bad = mint(json!({"sub": "u", "exp": NOW + 60, "models": "gpt-realtime"}));
        assert_eq!(verifier().verify(&bad, NOW), Err(JwtError::Malformed));
    }

    /// exp is enforced with no leeway; nbf in the future is not valid yet.
    #[test]
    fn jwt_expired() {
        let v = verifier();
        assert_eq!(
            v.verify(&mint(json!({"sub": "u", "exp": NOW})), NOW),
            Err(JwtError::Expired)
        );
        assert_eq!(
            v.verify(&mint(json!({"sub": "u", "exp": NOW - 1})), NOW),
            Err(JwtError::Expired)
        );
        assert!(v
            .verify(&mint(json!({"sub": "u", "exp": NOW + 1})), NOW)
            .is_ok());
        assert_eq!(
            v.verify(
                &mint(json!({"sub": "u", "exp": NOW + 60, "nbf": NOW + 10})),
                NOW
            ),
            Err(JwtError::Expired)
        );
        assert!(v
            .verify(&mint(json!({"sub": "u", "exp": NOW + 60, "nbf": NOW})), NOW)
            .is_ok());
    }

    /// A token signed with another secret is refused.
    #[test]
    fn jwt_wrong_secret() {
        let token = mint_jwt(
            &Secret::new("some-other-secret"),
            &json!({"sub": "u", "exp": NOW + 60}),
        );
        assert_eq!(verifier().verify(&token, NOW), Err(JwtError::Signature));
    }

    /// alg none (with or without a signature) and other algorithms are refused.
    #[test]
    fn jwt_algorithms() {
        let claims = json!({"sub": "u", "exp": NOW + 60});
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(claims.to_string())
        );
        assert_eq!(verifier().verify(&none, NOW), Err(JwtError::Algorithm));
        let none_signed = mint_with_header(json!({"alg": "none"}), claims.clone());
        assert_eq!(
            verifier().verify(&none_signed, NOW),
            Err(JwtError::Algorithm)
        );
        let hs512 = mint_with_header(json!({"alg": "HS512", "typ": "JWT"}), claims.clone());
        assert_eq!(verifier().verify(&hs512, NOW), Err(JwtError::Algorithm));
        let lower = mint_with_header(json!({"alg": "hs256"}), claims.clone());
        assert_eq!(verifier().verify(&lower, NOW), Err(JwtError::Algorithm));
        let crit = mint_with_header(json!({"alg": "HS256", "crit": ["x"]}), claims.clone());
        assert_eq!(verifier().verify(&crit, NOW), Err(JwtError::Algorithm));
        let no_typ = mint_with_header(json!({"alg": "HS256"}), claims);
        assert!(verifier().verify(&no_typ, NOW).is_ok());
    }

    /// Changing the payload after signing (a longer exp, another sub) breaks the signature.
    #[test]
    fn jwt_tampered_payload() {
        let token = mint(json!({"sub": "user", "exp": NOW + 60}));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(json!({"sub": "admin", "exp": NOW + 60}).to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(verifier().verify(&tampered, NOW), Err(JwtError::Signature));
    }

    /// sub (usable string) and exp (number) are required.
    #[test]
    fn jwt_missing_claims() {
        let v = verifier();
        let cases = [
            (json!({"exp": NOW + 60}), "sub"),
            (json!({"sub": "", "exp": NOW + 60}), "sub"),
            (json!({"sub": 42, "exp": NOW + 60}), "sub"),
            (json!({"sub": "a b", "exp": NOW + 60}), "sub"),
            (json!({"sub": "a\nlevel=ERROR", "exp": NOW + 60}), "sub"),
            (json!({"sub": "u"}), "exp"),
            (json!({"sub": "u", "exp": "soon"}), "exp"),
            (json!({"sub": "u", "exp": -5}), "exp"),
        ];
        for (claims, missing) in cases {
            assert_eq!(
                v.verify(&mint(claims.clone()), NOW),
                Err(JwtError::MissingClaim(missing)),
                "{claims}"
            );
        }
        let fractional = mint(json!({"sub": "u", "exp": (NOW + 60) as f64 + 0.5}));
        assert_eq!(v.verify(&fractional, NOW).map(|c| c.exp), Ok(NOW + 60));
    }

    /// Garbage in any part is malformed, never a panic; padding is tolerated.
    #[test]
    fn jwt_malformed_and_padding() {
        let v = verifier();
        for bad in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(v.verify(bad, NOW).is_err(), "{bad}");
        }
        assert_eq!(v.verify("a.b.c.d", NOW), Err(JwtError::Malformed));
        assert_eq!(
            v.verify(&"a".repeat(MAX_JWT_LEN + 1), NOW),
            Err(JwtError::Malformed)
        );
        // An issuer that pads signs the padded text; the signature segment may be padded too.
        let pad = |p: &str| format!("{p}{}", "=".repeat((4 - p.len() % 4) % 4));
        let claims = json!({"sub": "u", "exp": NOW + 60});
        let signed = format!(
            "{}.{}",
            pad(&B64.encode(r#"{"alg":"HS256"}"#)),
            pad(&B64.encode(claims.to_string()))
        );
        assert!(signed.contains('='), "test input must actually be padded");
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret().expose().as_bytes());
        let sig = pad(&B64.encode(hmac::sign(&key, signed.as_bytes())));
        assert!(sig.ends_with('='));
        assert!(v.verify(&format!("{signed}.{sig}"), NOW).is_ok());
        // Padding added after signing changes the signed text.
        let token = mint(claims);
        let parts: Vec<&str> = token.split('.').collect();
        let repadded = format!("{}.{}.{}", pad(parts[0]), pad(parts[1]), parts[2]);
        assert_ne!(repadded, token);
        assert_eq!(v.verify(&repadded, NOW), Err(JwtError::Signature));
        // A payload that is valid JSON but not an object, correctly signed.
        let array = mint_with_header(json!({"alg": "HS256"}), json!(["sub", "exp"]));
        assert_eq!(v.verify(&array, NOW), Err(JwtError::Malformed));
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
        assert!(!auth.required());
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
        assert!(auth.required());
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
        assert!(auth.required());
        assert_eq!(
            auth.authenticate(Some("anything"), ip("192.0.2.7"), NOW),
            Err(AuthError::Invalid)
        );
        let jwt_only = Authenticator::new(None, Some(verifier()));
        assert!(jwt_only.required());
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
        assert!(auth.required());
        assert_eq!(
            auth.authenticate(Some("tok-new"), None, NOW),
            Err(AuthError::Invalid)
        );
    }
}
