//! The static credentials: the `RELAY_TOKENS` list and the `RELAY_TOKENS_FILE` file, whose
//! names become identities (`token:<name>`). The file is `name:token` lines, or TOML or JSON
//! (a `.toml`/`.json` name, or a first line that starts with `[` or `{`) listing `clients`, each
//! with a `name` and a `token` and optionally its own `daily_usd_budget`, `models` and `policy`.
//! `config` parses them at startup so a bad list stops the relay before it binds; the
//! [`Authenticator`](super::identity::Authenticator) looks presented credentials up here,
//! comparing every token in constant time; SIGHUP re-reads the file. No error and no `Debug`
//! output contains a token.

use std::{fmt, path::Path};

use serde::Deserialize;

use super::usage::usd_to_nano;
use crate::{protection::models::is_query_safe, secret::Secret};

/// What a tokens-file entry says about its client beyond its name (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Client {
    /// The models it may use, on top of `ALLOWED_MODELS`.
    pub(crate) models: Option<Vec<String>>,
    /// Its own daily budget in billionths of a dollar, in place of `CLIENT_DAILY_USD_BUDGET`.
    pub(crate) usd_budget: Option<u64>,
    /// The name of the session policy it gets.
    pub(crate) policy: Option<String>,
}

/// One named token and its client's settings.
#[derive(Clone)]
struct Entry {
    name: String,
    secret: Secret,
    client: Client,
}

/// The RELAY_TOKENS list or the RELAY_TOKENS_FILE file.
#[derive(Clone, Default)]
pub(crate) struct Tokens {
    entries: Vec<Entry>,
}

/// A client as the TOML or JSON file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    token: String,
    daily_usd_budget: Option<f64>,
    models: Option<Vec<String>>,
    policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    clients: Vec<RawClient>,
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

    /// Reads and parses a token file, in whichever format it is written. Errors name the path,
    /// never a token.
    pub(crate) fn load_file(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        let first = text
            .lines()
            .map(str::trim_start)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let parsed = if ext == "json" || first.starts_with('{') {
            Self::parse_structured(&text, Format::Json)
        } else if ext == "toml" || first.starts_with('[') {
            Self::parse_structured(&text, Format::Toml)
        } else {
            Self::parse_file(&text)
        };
        parsed.map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// The `clients` of a TOML or JSON file. A syntax error is reported by its place only: the
    /// parsers' messages may quote the text, and the text holds tokens.
    fn parse_structured(text: &str, format: Format) -> Result<Tokens, String> {
        let raw: RawFile = match format {
            Format::Toml => toml::from_str(text).map_err(|e| {
                let line = e.span().map_or(0, |s| {
                    text[..s.start.min(text.len())].lines().count().max(1)
                });
                format!(
                    "not a valid TOML tokens file (line {line}){}",
                    hint(e.message())
                )
            })?,
            Format::Json => serde_json::from_str(text).map_err(|e| {
                format!(
                    "not a valid JSON tokens file (line {}){}",
                    e.line(),
                    hint(&e.to_string())
                )
            })?,
        };
        let mut tokens = Tokens::default();
        let mut errors = Vec::new();
        for (i, c) in raw.clients.into_iter().enumerate() {
            let at = format!("client {}", i + 1);
            let Some(client) = settings(&at, &c, &mut errors) else {
                continue;
            };
            tokens.add(&at, &c.name, &c.token, client, &mut errors);
        }
        finish(tokens, errors)
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
            tokens.add(
                &at,
                name.trim(),
                token.trim(),
                Client::default(),
                &mut errors,
            );
        }
        finish(tokens, errors)
    }

    /// Adds one entry, or says what is wrong with it (never echoing the token).
    fn add(&mut self, at: &str, name: &str, token: &str, client: Client, errors: &mut Vec<String>) {
        if !valid_name(name) {
            // Not echoed either: a malformed name may be part of a token.
            errors.push(format!(
                "{at} has an invalid name (letters, digits, '-', '_', '.' only)"
            ));
            return;
        }
        if token.is_empty() {
            errors.push(format!("empty token for {name}"));
            return;
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(format!("token for {name} contains whitespace"));
            return;
        }
        if self.entries.iter().any(|e| e.name == name) {
            errors.push(format!("duplicate name {name}"));
            return;
        }
        // Two names sharing a token would make the identity depend on list order.
        if let Some(other) = self.entries.iter().find(|e| e.secret.matches(token)) {
            errors.push(format!("{name} has the same token as {}", other.name));
            return;
        }
        self.entries.push(Entry {
            name: name.to_string(),
            secret: Secret::new(token.to_string()),
            client,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name whose token equals `presented`, and its settings. Every entry is compared, each
    /// in constant time, so the time taken does not tell how close a guess came to any token.
    pub(crate) fn lookup(&self, presented: &str) -> Option<(&str, &Client)> {
        let mut found = None;
        for e in &self.entries {
            let hit = e.secret.matches(presented);
            if hit && found.is_none() {
                found = Some((e.name.as_str(), &e.client));
            }
        }
        found
    }

    /// The token named `name`, while the list still has it: what a client secret minted with it
    /// is checked against (`identity.rs`), so removing or changing the token revokes them.
    pub(crate) fn by_name(&self, name: &str) -> Option<&Secret> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.secret)
    }
}

/// Which structured format a tokens file is in.
#[derive(Clone, Copy)]
enum Format {
    Toml,
    Json,
}

/// A parser's message when it names a key rather than quoting a value (`unknown field`,
/// `missing field`), so it can be shown.
fn hint(message: &str) -> String {
    let safe = message.starts_with("unknown field") || message.starts_with("missing field");
    if safe {
        let first = message.lines().next().unwrap_or("");
        format!(": {}", first.split(" at line").next().unwrap_or(first))
    } else {
        String::new()
    }
}

/// The optional settings of a structured entry, checked; None (with errors) when one is bad.
fn settings(at: &str, c: &RawClient, errors: &mut Vec<String>) -> Option<Client> {
    let before = errors.len();
    let usd_budget = match c.daily_usd_budget.map(usd_to_nano) {
        None => None,
        Some(Some(nano)) => (nano > 0).then_some(nano),
        Some(None) => {
            errors.push(format!(
                "{at}: daily_usd_budget must be an amount in dollars"
            ));
            None
        }
    };
    if let Some(models) = &c.models {
        if let Some(bad) = models.iter().find(|m| !is_query_safe(m)) {
            errors.push(format!("{at}: model {bad:?} is not a model name"));
        }
    }
    if c.policy.as_deref().is_some_and(|p| !valid_name(p)) {
        errors.push(format!(
            "{at}: policy must be a name (letters, digits, '-', '_', '.')"
        ));
    }
    (errors.len() == before).then(|| Client {
        models: c.models.clone(),
        usd_budget,
        policy: c.policy.clone(),
    })
}

fn finish(tokens: Tokens, errors: Vec<String>) -> Result<Tokens, String> {
    if errors.is_empty() {
        Ok(tokens)
    } else {
        Err(errors.join("; "))
    }
}

/// Letters, digits, `-`, `_` and `.`: a token's name, or a policy's.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|e| (&e.name, "***")))
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
        assert_eq!(t.lookup("tok-a").map(|(n, _)| n), Some("alice"));
        assert_eq!(t.lookup("tok_b").map(|(n, _)| n), Some("bob.2"));
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
        assert_eq!(t.lookup("tok-c").map(|(n, _)| n), Some("carol"));
        assert_eq!(t.lookup("tok-x").map(|(n, _)| n), None);

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
                .lookup("tok-file-a")
                .map(|(n, _)| n),
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
        assert_eq!(t.lookup("beta-token").map(|(n, _)| n), Some("b"));
        assert_eq!(t.lookup("beta-toke").map(|(n, _)| n), None);
        assert_eq!(t.lookup("beta-tokenX").map(|(n, _)| n), None);
        assert_eq!(t.lookup("").map(|(n, _)| n), None);
        assert_eq!(
            Tokens::default().lookup("alpha-token").map(|(n, _)| n),
            None
        );
    }

    /// A token is found by its name while it is listed, and not after.
    #[test]
    fn by_name() {
        let t = Tokens::parse_list("a:alpha-token,b:beta-token").expect("valid");
        assert!(t.by_name("b").is_some_and(|s| s.matches("beta-token")));
        assert!(t.by_name("c").is_none());
        assert!(Tokens::default().by_name("a").is_none());
    }

    /// Debug output shows names only.
    #[test]
    fn debug_never_prints_tokens() {
        let t = Tokens::parse_list("alice:tok-visible-a,bob:tok-visible-b").expect("valid");
        let out = format!("{t:?} {t:#?}");
        assert!(out.contains("alice") && out.contains("***"), "{out}");
        assert!(!out.contains("tok-visible"), "{out}");
    }

    /// A TOML or JSON file lists clients with their own dollar budget, models and policy;
    /// plain entries have none; errors say what is wrong without quoting a token.
    #[test]
    fn structured_files_carry_client_settings() {
        let dir = std::env::temp_dir().join(format!("tokens-structured-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let toml = dir.join("tokens.toml");
        std::fs::write(
            &toml,
            "# clients\n[[clients]]\nname = \"alice\"\ntoken = \"tok-alice\"\n\
             daily_usd_budget = 2.5\nmodels = [\"gpt-realtime-mini\"]\npolicy = \"support\"\n\n\
             [[clients]]\nname = \"bob\"\ntoken = \"tok-bob\"\n",
        )
        .expect("write");
        let t = Tokens::load_file(&toml).expect("toml");
        let (name, alice) = t.lookup("tok-alice").expect("alice");
        assert_eq!(name, "alice");
        assert_eq!(
            alice,
            &Client {
                models: Some(vec!["gpt-realtime-mini".into()]),
                usd_budget: Some(2_500_000_000),
                policy: Some("support".into()),
            }
        );
        assert_eq!(
            t.lookup("tok-bob").map(|(_, c)| c),
            Some(&Client::default())
        );

        let json = dir.join("clients");
        std::fs::write(
            &json,
            r#"{"clients":[{"name":"carol","token":"tok-carol","daily_usd_budget":0.25}]}"#,
        )
        .expect("write");
        let t = Tokens::load_file(&json).expect("json by content");
        assert_eq!(
            t.lookup("tok-carol").and_then(|(_, c)| c.usd_budget),
            Some(250_000_000)
        );

        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "[[clients]]\nname = \"dave\"\ntoken = \"tok-dave-secret\"\ndaily_usd_budget = -3\n\
             policy = \"has space\"\n[[clients]]\nname = \"eve\"\ntoken = \"tok-dave-secret\"\n",
        )
        .expect("write");
        let err = Tokens::load_file(&bad).expect_err("bad");
        assert!(err.contains("client 1: daily_usd_budget"), "{err}");
        assert!(err.contains("client 1: policy"), "{err}");
        assert!(!err.contains("tok-dave"), "{err}");
        std::fs::write(&bad, "[[clients]]\nname = \"x\"\ntoken = 12345678\n").expect("write");
        let err = Tokens::load_file(&bad).expect_err("wrong type");
        assert!(err.contains("line 3") && !err.contains("12345678"), "{err}");
        std::fs::write(
            &bad,
            "[[clients]]\nname = \"x\"\ntoken = \"t\"\nbudget = 1\n",
        )
        .expect("write");
        let err = Tokens::load_file(&bad).expect_err("unknown key");
        assert!(err.contains("unknown field `budget`"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
