//! The static credentials: the `RELAY_TOKENS` list and the `RELAY_TOKENS_FILE` file, `name:token`
//! pairs whose names become identities (`token:<name>`). `config` parses them at startup so a bad
//! list stops the relay before it binds; the [`Authenticator`](super::identity::Authenticator)
//! looks presented credentials up here, comparing every token in constant time; SIGHUP re-reads
//! the file. No error and no `Debug` output contains a token.

use std::{fmt, path::Path};

use crate::secret::Secret;

/// The RELAY_TOKENS list: `name:token` pairs.
#[derive(Clone, Default)]
pub(crate) struct Tokens {
    entries: Vec<(String, Secret)>,
}

impl Tokens {
    /// Comma-separated `name:token` pairs (whitespace trimmed). Err names the bad entries WITHOUT
    /// echoing tokens. Names: letters digits - _ . only. Empty entries (a trailing comma) are
    /// skipped.
    pub(crate) fn parse_list(s: &str) -> Result<Tokens, String> {
        Self::parse_entries(
            s.split(',')
                .enumerate()
                .map(|(i, e)| (format!("entry {}", i + 1), e)),
        )
    }

    /// One `name:token` per line; blank lines and lines starting with # ignored.
    fn parse_file(text: &str) -> Result<Tokens, String> {
        Self::parse_entries(
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with('#'))
                .map(|(i, l)| (format!("line {}", i + 1), l)),
        )
    }

    /// Reads and parses a token file. Errors name the path, never a token.
    pub(crate) fn load_file(path: &Path) -> Result<Tokens, String> {
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

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name whose token equals `presented`. Every entry is compared, each in constant time,
    /// so the time taken does not tell how close a guess came to any token.
    pub(crate) fn lookup(&self, presented: &str) -> Option<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A list parses into named tokens, trimming whitespace and skipping empty entries.
    #[test]
    fn parse_list_ok() {
        let t = Tokens::parse_list(" alice : tok-a , bob.2:tok_b,").expect("valid list");
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup("tok-a"), Some("alice"));
        assert_eq!(t.lookup("tok_b"), Some("bob.2"));
        assert_eq!(Tokens::parse_list("").expect("empty").len(), 0);
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
        assert_eq!(
            Tokens::parse_file("# nothing yet\n")
                .expect("empty file")
                .len(),
            0
        );
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
    }
}
