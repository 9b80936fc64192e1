//! The `Authenticator`'s unit tests: credentials, modes, throttling and reloads (`credentials`), and
//! the address keys and the credential's place in the request (`more_tests`).

use super::*;

mod credentials {
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

    /// The address identity: IPv4 as it is (canonical for IPv4-mapped IPv6), IPv6 by its prefix,
    /// or unknown.
    #[test]
    fn address_identity() {
        assert_eq!(Identity::address(ip("10.0.0.1"), 64).key, "ip:10.0.0.1");
        assert_eq!(
            Identity::address(ip("::ffff:10.0.0.1"), 64).key,
            "ip:10.0.0.1"
        );
        assert_eq!(
            Identity::address(ip("2001:db8::1"), 128).key,
            "ip:2001:db8::1"
        );
        assert_eq!(
            Identity::address(ip("2001:db8::1:2:3:4"), 64).key,
            "ip:2001:db8::/64"
        );
        let unknown = Identity::address(None, 64);
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
                auth.authenticate(presented, ip("192.0.2.7"), NOW, Instant::now()),
                Ok(Identity::address(ip("192.0.2.7"), 64))
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
            .authenticate(Some("tok-alice"), addr, NOW, Instant::now())
            .expect("token");
        assert_eq!(id.key, "token:alice");
        assert_eq!(id.kind, IdentityKind::Token);
        assert_eq!(id.models, None);

        let jwt = mint(json!({"sub": "bob", "exp": NOW + 60, "models": ["gpt-realtime"]}));
        let id = auth
            .authenticate(Some(&jwt), addr, NOW, Instant::now())
            .expect("jwt");
        assert_eq!(
            id,
            Identity {
                key: "jwt:bob".into(),
                kind: IdentityKind::Jwt,
                models: Some(vec!["gpt-realtime".into()]),
                policy: None,
                usd_budget: None,
                model: None,
                session: None,
            }
        );

        assert_eq!(
            auth.authenticate(None, addr, NOW, Instant::now()),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate(Some(""), addr, NOW, Instant::now()),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate(Some("tok-mallory"), addr, NOW, Instant::now()),
            Err(AuthError::Invalid)
        );
        let expired = mint(json!({"sub": "bob", "exp": NOW - 1}));
        assert_eq!(
            auth.authenticate(Some(&expired), addr, NOW, Instant::now()),
            Err(AuthError::Expired)
        );
        let forged = mint_jwt(
            &Secret::new("other"),
            &json!({"sub": "bob", "exp": NOW + 60}),
        );
        assert_eq!(
            auth.authenticate(Some(&forged), addr, NOW, Instant::now()),
            Err(AuthError::Invalid)
        );
    }

    /// A configured but empty token list still requires a credential; JWT-only mode has no tokens.
    #[test]
    fn empty_token_list_is_still_required() {
        let auth = Authenticator::new(Some(Tokens::default()), None);
        assert!(auth.required);
        assert_eq!(
            auth.authenticate(Some("anything"), ip("192.0.2.7"), NOW, Instant::now()),
            Err(AuthError::Invalid)
        );
        let jwt_only = Authenticator::new(None, Some(verifier()));
        assert!(jwt_only.required);
        assert_eq!(jwt_only.token_count(), 0);
        assert_eq!(
            jwt_only.authenticate(Some("a.b.c"), None, NOW, Instant::now()),
            Err(AuthError::Invalid)
        );
        // Without a JWT secret a JWT-shaped credential is just an unknown token.
        let jwt = mint(json!({"sub": "bob", "exp": NOW + 60}));
        assert_eq!(
            auth.authenticate(Some(&jwt), None, NOW, Instant::now()),
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
        assert!(auth
            .authenticate(Some("tok-old"), None, NOW, Instant::now())
            .is_ok());

        auth.reload(Tokens::parse_list("new:tok-new,other:tok-other").expect("valid"));
        assert_eq!(auth.token_count(), 2);
        assert_eq!(
            auth.authenticate(Some("tok-old"), None, NOW, Instant::now()),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(Some("tok-new"), None, NOW, Instant::now())
                .map(|i| i.key),
            Ok("token:new".to_string())
        );

        auth.reload(Tokens::default());
        assert!(auth.required);
        assert_eq!(
            auth.authenticate(Some("tok-new"), None, NOW, Instant::now()),
            Err(AuthError::Invalid)
        );
    }
}

#[cfg(test)]
mod more_tests {
    use std::time::Duration;

    use super::*;
    use crate::{config::tests::parse, secret::Secret};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const SECRET: &str = "jwt-secret-for-tests-0123456789abcdef";

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("test address"))
    }

    fn from(vars: &[(&'static str, &'static str)]) -> Authenticator {
        let mut all = vec![("OPENAI_API_KEY", "k")];
        all.extend_from_slice(vars);
        Authenticator::from_config(&parse(&all).expect("valid").protection).expect("builds")
    }

    /// Open mode keys IPv6 clients by their /64 (IPV6_PREFIX_LENGTH), IPv4 by the address.
    #[test]
    fn open_mode_keys_ipv6_by_prefix() {
        let t = Instant::now();
        let key = |a: &Authenticator, addr| a.authenticate(None, ip(addr), NOW, t).map(|i| i.key);
        let auth = from(&[]);
        assert_eq!(
            key(&auth, "2001:db8:1:2::a"),
            Ok("ip:2001:db8:1:2::/64".into())
        );
        assert_eq!(
            key(&auth, "2001:db8:1:2:ffff::b"),
            key(&auth, "2001:db8:1:2::a")
        );
        assert_ne!(key(&auth, "2001:db8:1:3::a"), key(&auth, "2001:db8:1:2::a"));
        assert_eq!(key(&auth, "198.51.100.7"), Ok("ip:198.51.100.7".into()));
        let exact = from(&[("IPV6_PREFIX_LENGTH", "128")]);
        assert_eq!(
            key(&exact, "2001:db8:1:2::a"),
            Ok("ip:2001:db8:1:2::a".into())
        );
        assert_eq!(
            exact.address_identity(ip("2001:db8::1")).key,
            "ip:2001:db8::1"
        );
    }

    /// After AUTH_FAILURES_PER_MINUTE failures from one address (or /64), even a valid token
    /// from there is refused unchecked, until the allowance refills; other addresses are not.
    #[test]
    fn failures_throttle_the_address() {
        let auth = from(&[
            ("RELAY_TOKENS", "alice:tok-alice"),
            ("AUTH_FAILURES_PER_MINUTE", "2"),
        ]);
        let t0 = Instant::now();
        let try_ = |token, addr, t| auth.authenticate(Some(token), ip(addr), NOW, t);
        assert_eq!(try_("bad-1", "2001:db8::1", t0), Err(AuthError::Invalid));
        assert_eq!(try_("bad-2", "2001:db8::2", t0), Err(AuthError::Invalid));
        let throttled = Err(AuthError::Throttled { per_minute: 2 });
        assert_eq!(try_("tok-alice", "2001:db8::3", t0), throttled);
        assert_eq!(
            auth.authenticate(None, ip("2001:db8::3"), NOW, t0),
            throttled,
            "a missing credential is refused the same way"
        );
        assert!(try_("tok-alice", "2001:db8:0:1::1", t0).is_ok());
        assert!(try_("tok-alice", "198.51.100.7", t0).is_ok());
        assert!(try_("tok-alice", "2001:db8::3", t0 + Duration::from_secs(30)).is_ok());
    }

    /// A throttled attempt does not count as another failure, so the wait does not grow.
    #[test]
    fn throttled_attempts_do_not_extend_the_wait() {
        let auth = from(&[
            ("RELAY_TOKENS", "alice:tok-alice"),
            ("AUTH_FAILURES_PER_MINUTE", "1"),
        ]);
        let t0 = Instant::now();
        assert!(auth
            .authenticate(Some("bad"), ip("192.0.2.1"), NOW, t0)
            .is_err());
        for s in 1..60 {
            let t = t0 + Duration::from_secs(s);
            assert!(matches!(
                auth.authenticate(Some("bad"), ip("192.0.2.1"), NOW, t),
                Err(AuthError::Throttled { .. })
            ));
        }
        let t = t0 + Duration::from_secs(60);
        assert!(auth
            .authenticate(Some("tok-alice"), ip("192.0.2.1"), NOW, t)
            .is_ok());
    }

    /// from_config passes RELAY_JWT_AUDIENCE and RELAY_JWT_ISSUER to the JWT check, and the
    /// refusal names the claim.
    #[test]
    fn jwt_audience_and_issuer_from_config() {
        let auth = from(&[
            ("RELAY_JWT_SECRET", SECRET),
            ("RELAY_JWT_AUDIENCE", "relay"),
            ("RELAY_JWT_ISSUER", "https://auth.example.com/"),
        ]);
        let t = Instant::now();
        let secret = Secret::new(SECRET);
        let token = |claims| mint_jwt(&secret, &claims);
        let good = token(
            json!({"sub": "u", "exp": NOW + 60, "aud": "relay", "iss": "https://auth.example.com/"}),
        );
        assert!(auth.authenticate(Some(&good), None, NOW, t).is_ok());
        let no_aud =
            token(json!({"sub": "u", "exp": NOW + 60, "iss": "https://auth.example.com/"}));
        let err = auth.authenticate(Some(&no_aud), None, NOW, t).unwrap_err();
        assert_eq!(err, AuthError::Audience);
        assert!(err.to_string().contains("aud"), "{err}");
        let bad_iss = token(json!({"sub": "u", "exp": NOW + 60, "aud": ["relay"], "iss": "x"}));
        let err = auth.authenticate(Some(&bad_iss), None, NOW, t).unwrap_err();
        assert_eq!(err, AuthError::Issuer);
        assert!(err.to_string().contains("iss"), "{err}");
    }
}
