//! `SESSION_POLICY_FILE`: the session policies (pinned, locked and hidden fields; the file format
//! is in `protection/policy/file.rs`). Read and checked once by `Config::from_source`, so a bad
//! file stops the relay before it binds; unset, no session has a policy. `relay::start` hands the
//! result to the HTTP layer, which picks each client's policy at the upgrade.

use std::{path::PathBuf, sync::Arc};

use super::source::{ConfigError, Reader};
use crate::protection::policy::Policies;

/// The policies of `SESSION_POLICY_FILE`, read once.
#[derive(Debug, Clone)]
pub struct SessionPolicies {
    pub path: PathBuf,
    pub(crate) policies: Arc<Policies>,
}

/// `SESSION_POLICY_FILE`, read and checked; None when unset (or unreadable, reported).
pub(super) fn read(r: &mut Reader<'_>) -> Option<SessionPolicies> {
    let path = PathBuf::from(r.raw("SESSION_POLICY_FILE")?);
    match Policies::load(&path) {
        Ok(policies) => Some(SessionPolicies {
            path,
            policies: Arc::new(policies),
        }),
        Err(problem) => {
            r.push(ConfigError::Unreadable {
                name: "SESSION_POLICY_FILE",
                path: path.display().to_string(),
                problem,
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    /// Unset: no policy. The shipped example loads; a missing or bad file is reported by name.
    #[test]
    fn file_is_read_or_reported() {
        let c = parse(&[("OPENAI_API_KEY", "k")]).expect("valid");
        assert!(c.session_policies.is_none());
        let example = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/session-policy.example.toml"
        );
        let c = parse(&[("OPENAI_API_KEY", "k"), ("SESSION_POLICY_FILE", example)]).expect("valid");
        let p = c.session_policies.expect("policies");
        assert!(p.policies.choose(None).is_ok());
        let err = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("SESSION_POLICY_FILE", "/nonexistent/policy.toml"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("SESSION_POLICY_FILE"), "{err}");
    }
}
