//! Relay client secrets as credentials (`client_secret.rs` signs and checks them): the
//! [`Authenticator`] mints one for an identity, and turns a presented one back into the identity
//! that minted it, bound to its model and session fields. A relay token's secret holds the
//! token's fingerprint, so it works only while that token is listed with the same value (SIGHUP
//! reloads the list); an address's secret only while the relay is open. Nothing here logs, and
//! no error holds a secret.

use serde_json::{Map, Value};

use super::{AuthError, Authenticator, Identity, IdentityKind};
use crate::protection::client_secret::{ClientSecrets, Grant, Holder, MintError, SecretError};

impl Authenticator {
    /// A relay client secret: signed with this relay's key, not expired, and for a relay token,
    /// that token still listed under its name with the same value. Its holder is the minting
    /// identity, limited to the bound model; an address's secret is only honoured in open mode.
    pub(super) fn check_secret(
        &self,
        presented: &str,
        now_unix: u64,
    ) -> Result<Identity, AuthError> {
        let secrets = self.secrets.as_ref().ok_or(SecretError::NotRecognised)?;
        let grant = secrets.verify(presented, now_unix)?;
        let kind = match grant.kind {
            Holder::Token => IdentityKind::Token,
            Holder::Jwt => IdentityKind::Jwt,
            Holder::Address => IdentityKind::Address,
        };
        match kind {
            IdentityKind::Token => {
                let name = grant.sub.strip_prefix("token:").unwrap_or_default();
                let tokens = self.read_tokens();
                let listed = tokens.by_name(name).zip(grant.tf.as_deref());
                if !listed.is_some_and(|(t, tf)| secrets.fingerprint_matches(tf, t.expose())) {
                    return Err(AuthError::SecretRevoked);
                }
            }
            IdentityKind::Address if self.required => return Err(SecretError::NotRecognised.into()),
            _ => {}
        }
        Ok(Identity {
            key: grant.sub,
            kind,
            models: Some(vec![grant.model.clone()]),
            policy: grant.policy,
            usd_budget: grant.usd_budget,
            model: Some(grant.model),
            session: grant.session,
        })
    }

    /// A client secret for `identity` (not itself from a secret) bound to `model` and the session
    /// `fields`, valid from `now_unix` for `seconds`. A relay token's secret carries the token's
    /// fingerprint; Err when that token is gone (a reload raced the request) or the secret
    /// would be too long.
    pub(crate) fn mint_secret(
        &self,
        identity: &Identity,
        model: &str,
        fields: Option<Map<String, Value>>,
        now_unix: u64,
        seconds: u64,
    ) -> Result<String, MintError> {
        let secrets = self.secrets.as_ref().ok_or(MintError::Random)?;
        let kind = match identity.kind {
            IdentityKind::Token => Holder::Token,
            IdentityKind::Jwt => Holder::Jwt,
            IdentityKind::Address => Holder::Address,
        };
        let mut grant = Grant::new(&identity.key, kind, model, now_unix, now_unix + seconds);
        grant.models = identity.models.clone();
        grant.policy = identity.policy.clone();
        grant.usd_budget = identity.usd_budget;
        grant.session = fields.filter(|f| !f.is_empty());
        if kind == Holder::Token {
            let name = identity.key.strip_prefix("token:").unwrap_or_default();
            let tokens = self.read_tokens();
            let token = tokens.by_name(name).ok_or(MintError::Revoked)?;
            grant.tf = Some(secrets.fingerprint(token.expose()));
        }
        secrets.mint(&grant)
    }

    /// Whether client secrets die with this process (no `CLIENT_SECRET_KEY`).
    pub(crate) fn secrets_are_ephemeral(&self) -> bool {
        self.secrets
            .as_ref()
            .is_none_or(ClientSecrets::is_ephemeral)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::protection::identity::{mint_jwt, JwtVerifier, Tokens};
    use crate::secret::Secret;

    const NOW: u64 = 1_800_000_000;

    fn ip() -> Option<std::net::IpAddr> {
        Some("192.0.2.7".parse().expect("address"))
    }

    fn check(auth: &Authenticator, presented: &str, now: u64) -> Result<Identity, AuthError> {
        auth.authenticate(Some(presented), ip(), now, Instant::now())
    }

    fn tokens(list: &str) -> Tokens {
        Tokens::parse_list(list).expect("valid")
    }

    /// A token's secret is the token's identity, bound to one model and its session fields,
    /// until it expires ("client secret expired"); it cannot pass for a token or a JWT.
    #[test]
    fn a_token_secret_is_its_minter_bound_to_a_model() {
        let auth = Authenticator::new(Some(tokens("alice:tok-alice")), None);
        let alice = check(&auth, "tok-alice", NOW).expect("token");
        let fields = json!({"instructions": "Be brief."}).as_object().cloned();
        let secret = auth
            .mint_secret(&alice, "gpt-realtime", fields.clone(), NOW, 600)
            .expect("mints");
        let id = check(&auth, &secret, NOW + 599).expect("secret");
        assert_eq!(
            (id.key.as_str(), id.kind),
            ("token:alice", IdentityKind::Token)
        );
        assert_eq!(id.models, Some(vec!["gpt-realtime".to_string()]));
        assert_eq!(id.model.as_deref(), Some("gpt-realtime"));
        assert_eq!(id.session, fields);
        assert!(id.is_client_secret() && !alice.is_client_secret());
        let expired = check(&auth, &secret, NOW + 600).unwrap_err();
        assert_eq!(expired, AuthError::Secret(SecretError::Expired));
        assert_eq!(expired.to_string(), "client secret expired");
        let err = check(&auth, &secret[..secret.len() - 2], NOW).unwrap_err();
        assert_eq!(err.to_string(), "client secret not recognised");
    }

    /// Removing the token, or giving its name another value, revokes what it minted; other
    /// tokens' secrets are untouched.
    #[test]
    fn reloading_the_tokens_revokes() {
        let auth = Authenticator::new(Some(tokens("alice:tok-a,bob:tok-b")), None);
        let mint = |token| {
            let id = check(&auth, token, NOW).expect("token");
            auth.mint_secret(&id, "m", None, NOW, 600).expect("mints")
        };
        let (alice, bob) = (mint("tok-a"), mint("tok-b"));
        auth.reload(tokens("bob:tok-b"));
        assert_eq!(check(&auth, &alice, NOW), Err(AuthError::SecretRevoked));
        assert!(check(&auth, &bob, NOW).is_ok());
        auth.reload(tokens("alice:tok-a2,bob:tok-b"));
        assert_eq!(check(&auth, &alice, NOW), Err(AuthError::SecretRevoked));
        let err = AuthError::SecretRevoked.to_string();
        assert!(err.contains("revoked") && !err.contains("tok-"), "{err}");
    }

    /// A JWT's secret carries its models, policy and budget claims into the identity, with the
    /// models narrowed to the bound one.
    #[test]
    fn a_jwt_secret_keeps_its_claims() {
        let key = Secret::new("jwt-secret-for-tests-0123456789abcdef");
        let auth = Authenticator::new(None, Some(JwtVerifier::new(&key)));
        let jwt = mint_jwt(
            &key,
            &json!({"sub": "u1", "exp": NOW + 60, "policy": "kiosk", "budget_usd": 1,
                    "models": ["a", "b"]}),
        );
        let id = check(&auth, &jwt, NOW).expect("jwt");
        let secret = auth.mint_secret(&id, "b", None, NOW, 600).expect("mints");
        let held = check(&auth, &secret, NOW + 300).expect("secret, after the JWT expired");
        assert_eq!(held.key, "jwt:u1");
        assert_eq!(held.policy.as_deref(), Some("kiosk"));
        assert_eq!(held.usd_budget, Some(1_000_000_000));
        assert_eq!(held.models, Some(vec!["b".to_string()]));
    }

    /// Open mode: a client presenting a secret gets its binding, a bad one is refused (and counts
    /// as a failure), anything else is still the address; an address's secret is refused once
    /// credentials are required.
    #[test]
    fn open_mode_checks_secrets_only() {
        let open = Authenticator::new(None, None);
        let address = check(&open, "sk-anything", NOW).expect("address");
        assert_eq!(address.key, "ip:192.0.2.7");
        let secret = open
            .mint_secret(&address, "m", None, NOW, 60)
            .expect("mints");
        let id = check(&open, &secret, NOW).expect("secret");
        assert_eq!(
            (id.key.as_str(), id.model.as_deref()),
            ("ip:192.0.2.7", Some("m"))
        );
        assert_eq!(
            check(&open, "rcs_forged.AAAA", NOW),
            Err(AuthError::Secret(SecretError::NotRecognised))
        );
        let required = Authenticator::new(Some(tokens("alice:tok-a")), None);
        let foreign = required
            .mint_secret(&address, "m", None, NOW, 60)
            .expect("mints");
        assert_eq!(
            check(&required, &foreign, NOW),
            Err(AuthError::Secret(SecretError::NotRecognised))
        );
    }

    /// Each instance's random key recognises only its own secrets; Debug shows no key.
    #[test]
    fn random_keys_are_per_instance() {
        let (a, b) = (
            Authenticator::new(None, None),
            Authenticator::new(None, None),
        );
        assert!(a.secrets_are_ephemeral());
        let id = a.address_identity(ip());
        let secret = a.mint_secret(&id, "m", None, NOW, 60).expect("mints");
        assert!(check(&a, &secret, NOW).is_ok());
        assert!(check(&b, &secret, NOW).is_err());
        assert!(format!("{a:?}").contains("***"));
    }
}
