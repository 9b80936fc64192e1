//! The relay's claims in a JWT whose signature `verifier.rs` has checked: `sub` and `exp`
//! (required, with no leeway), `nbf`, and the optional `models`, `budget_usd` and `policy`,
//! each checked against the caller's `now` and turned into [`JwtClaims`]. Pure functions, called
//! only by [`JwtVerifier::verify`](super::JwtVerifier::verify).

use serde_json::{Map, Value};

use super::JwtError;
use crate::protection::{tokens, usage::usd_to_nano};

/// Longest `sub` accepted; it becomes a key in logs and `/stats`.
const MAX_SUB_LEN: usize = 256;

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtClaims {
    pub(crate) sub: String,
    pub(crate) exp: u64,
    pub(crate) models: Option<Vec<String>>,
    /// `budget_usd`: the holder's own daily budget in dollars, as billionths (0 = none).
    pub(crate) usd_budget: Option<u64>,
    /// `policy`: the name of the session policy the holder gets.
    pub(crate) policy: Option<String>,
}

/// The relay's claims, checked against `now_unix`.
pub(super) fn claims(claims: &Map<String, Value>, now_unix: u64) -> Result<JwtClaims, JwtError> {
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
    let usd_budget = match claims.get("budget_usd") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let nano = v
                .as_f64()
                .and_then(usd_to_nano)
                .ok_or(JwtError::Malformed)?;
            (nano > 0).then_some(nano)
        }
    };
    let policy = match claims.get("policy") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if valid_policy(name) => Some(name.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok(JwtClaims {
        sub: sub.to_string(),
        exp,
        models,
        usd_budget,
        policy,
    })
}

/// A policy name: what a tokens-file entry may name too (`tokens::valid_name`).
fn valid_policy(name: &str) -> bool {
    name.len() <= MAX_SUB_LEN && tokens::valid_name(name)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::jwt::testing::{mint, verifier, NOW};
    use serde_json::json;

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
                models: None,
                usd_budget: None,
                policy: None,
            }
        );
    }

    /// `budget_usd` becomes billionths of a dollar (0 = none) and `policy` a name; a budget that
    /// is not an amount, or a policy that is not a name, rejects the token.
    #[test]
    fn jwt_budget_and_policy_claims() {
        let token =
            mint(json!({"sub": "u", "exp": NOW + 60, "budget_usd": 2.5, "policy": "support-bot"}));
        let claims = verifier().verify(&token, NOW).expect("valid");
        assert_eq!(claims.usd_budget, Some(2_500_000_000));
        assert_eq!(claims.policy.as_deref(), Some("support-bot"));
        let zero = mint(json!({"sub": "u", "exp": NOW + 60, "budget_usd": 0}));
        assert_eq!(
            verifier().verify(&zero, NOW).map(|c| c.usd_budget),
            Ok(None)
        );
        for bad in [
            json!({"sub": "u", "exp": NOW + 60, "budget_usd": -1}),
            json!({"sub": "u", "exp": NOW + 60, "budget_usd": "2"}),
            json!({"sub": "u", "exp": NOW + 60, "policy": 3}),
            json!({"sub": "u", "exp": NOW + 60, "policy": "no spaces"}),
        ] {
            assert_eq!(
                verifier().verify(&mint(bad.clone()), NOW),
                Err(JwtError::Malformed),
                "{bad}"
            );
        }
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
}
