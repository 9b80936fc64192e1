//! [`Secret`]: a value that must never reach a log line, an error message or `Debug` output (the
//! server's OpenAI key, the admin token, `RELAY_TOKENS`, the JWT secret, the safety salt). A leaf
//! module: `config` reads secrets into it, `protection` (tokens, JWTs) and the upstream dialer
//! read them back out with [`Secret::expose`], and nothing here imports the rest of the crate.

use std::fmt;

/// A secret. `Debug` and `Display` print `***`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The server's OpenAI key.
pub type ApiKey = Secret;

impl Secret {
    pub fn new(key: impl Into<String>) -> Self {
        Secret(key.into())
    }

    /// The secret itself, for the few places that need it (the upstream `Authorization` header,
    /// an HMAC key).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ, and of their lengths
    /// up to the longer one.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= usize::from(x ^ y);
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neither `Debug` nor `Display` shows the value.
    #[test]
    fn prints_as_stars() {
        let s = Secret::new("sk-visible");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    /// Only the exact value matches: not a prefix, an extension or another string.
    #[test]
    fn matches_exactly() {
        let s = Secret::new("adm-secret");
        assert!(s.matches("adm-secret"));
        assert!(!s.matches("adm-secreT"));
        assert!(!s.matches("adm"));
        assert!(!s.matches("adm-secret-and-more"));
        assert!(!s.matches(""));
    }
}
