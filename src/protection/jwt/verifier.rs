//! [`JwtVerifier`]: a token's shape (three base64url parts, bounded length), its header (`alg:
//! HS256` only), its HMAC-SHA256 signature, checked in constant time before the payload is
//! decoded, and the `aud` and `iss` the relay expects; the relay's own claims are read by
//! `claims.rs`. [`mint_jwt`] signs tokens the same way, for tests.

use std::fmt;

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use ring::hmac;
use serde_json::{Map, Value};

use super::{
    claims::{claims, JwtClaims},
    JwtError,
};
use crate::secret::Secret;

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

/// HS256 JWT verification (RELAY_JWT_SECRET), with the `aud` and `iss` the relay expects
/// (`RELAY_JWT_AUDIENCE`, `RELAY_JWT_ISSUER`) when set.
pub(crate) struct JwtVerifier {
    key: hmac::Key,
    audience: Option<String>,
    issuer: Option<String>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtVerifier(HS256, ***)")
    }
}

impl JwtVerifier {
    pub(crate) fn new(secret: &Secret) -> JwtVerifier {
        JwtVerifier {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
            audience: None,
            issuer: None,
        }
    }

    /// From now on, a token's `aud` must name `audience` (when Some).
    pub(crate) fn audience(mut self, audience: Option<String>) -> JwtVerifier {
        self.audience = audience;
        self
    }

    /// From now on, a token's `iss` must be exactly `issuer` (when Some).
    pub(crate) fn issuer(mut self, issuer: Option<String>) -> JwtVerifier {
        self.issuer = issuer;
        self
    }

    /// Verifies `header.payload.signature` (base64url, padding tolerated). The header must say
    /// `alg: HS256` (never `none`, never another algorithm, whatever the token claims) and the
    /// signature is checked in constant time before the payload is even decoded. `sub` (a
    /// non-empty string without whitespace or control characters, at most 256 bytes) and `exp`
    /// (seconds) are required, with no leeway: `exp <= now` is expired. `nbf`, when present, is
    /// honoured. `models`, when present, is an array of strings. With an expected audience, `aud`
    /// must be that string or an array holding it (RFC 7519 §4.1.3); with an expected issuer,
    /// `iss` must be that string; a token without the claim is refused like a wrong one.
    pub(crate) fn verify(&self, token: &str, now_unix: u64) -> Result<JwtClaims, JwtError> {
        if token.len() > MAX_JWT_LEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        check_header(&decode_object(header)?)?;
        let signature = B64.decode(signature).map_err(|_| JwtError::Malformed)?;
        // The signature covers `header.payload` exactly as sent, not a re-encoding.
        let signed = token
            .get(..header.len() + 1 + payload.len())
            .ok_or(JwtError::Malformed)?;
        hmac::verify(&self.key, signed.as_bytes(), &signature).map_err(|_| JwtError::Signature)?;
        let payload = decode_object(payload)?;
        let claims = claims(&payload, now_unix)?;
        if let Some(audience) = &self.audience {
            let named = match payload.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !named {
                return Err(JwtError::Audience);
            }
        }
        if let Some(issuer) = &self.issuer {
            if payload.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(JwtError::Issuer);
            }
        }
        Ok(claims)
    }
}

/// Only `alg: HS256`, spelled exactly so. RFC 7515 §4.1.11: extensions we do not understand
/// (`crit`) must make the token invalid.
fn check_header(header: &Map<String, Value>) -> Result<(), JwtError> {
    if header.get("alg").and_then(Value::as_str) != Some("HS256") || header.contains_key("crit") {
        return Err(JwtError::Algorithm);
    }
    Ok(())
}

/// One base64url part holding a JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = B64.decode(part).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// For tests: mint an HS256 token.
pub fn mint_jwt(secret: &Secret, claims: &serde_json::Value) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    let signature = B64.encode(hmac::sign(&key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::jwt::testing::{mint, secret, verifier, NOW};
    use serde_json::json;

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

    /// With RELAY_JWT_AUDIENCE set, `aud` must name it (a string, or an array holding it); with
    /// RELAY_JWT_ISSUER set, `iss` must equal it; a missing claim is refused like a wrong one,
    /// and neither is looked at when not configured.
    #[test]
    fn jwt_audience_and_issuer() {
        let v = verifier()
            .audience(Some("relay".into()))
            .issuer(Some("https://auth.example.com/".into()));
        let with = |extra: Value| {
            let mut claims = json!({"sub": "u", "exp": NOW + 60});
            for (k, val) in extra.as_object().expect("object") {
                claims[k] = val.clone();
            }
            v.verify(&mint(claims), NOW)
        };
        let iss = "https://auth.example.com/";
        assert!(with(json!({"aud": "relay", "iss": iss})).is_ok());
        assert!(with(json!({"aud": ["other", "relay"], "iss": iss})).is_ok());
        for aud in [
            json!("other"),
            json!(["other"]),
            json!([]),
            json!(null),
            json!(5),
        ] {
            assert_eq!(
                with(json!({"aud": aud, "iss": iss})),
                Err(JwtError::Audience),
                "{aud}"
            );
        }
        assert_eq!(with(json!({"iss": iss})), Err(JwtError::Audience));
        assert_eq!(
            with(json!({"aud": "relay", "iss": "https://evil.example.com/"})),
            Err(JwtError::Issuer)
        );
        assert_eq!(with(json!({"aud": "relay"})), Err(JwtError::Issuer));
        assert_eq!(
            with(json!({"aud": "relay", "iss": ["https://auth.example.com/"]})),
            Err(JwtError::Issuer)
        );
        // Expiry is still checked first; without expectations aud and iss are ignored.
        assert_eq!(
            v.verify(
                &mint(json!({"sub": "u", "exp": NOW - 1, "aud": "relay", "iss": iss})),
                NOW
            ),
            Err(JwtError::Expired)
        );
        assert!(verifier()
            .verify(
                &mint(json!({"sub": "u", "exp": NOW + 60, "aud": "x", "iss": "y"})),
                NOW
            )
            .is_ok());
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
}
