//! The policy file (`SESSION_POLICY_FILE`): TOML, or JSON when the name ends in `.json`, with one
//! table per policy under `policies`, one of them `default`. Every problem is reported at once, by
//! policy and key, and an unknown key is a problem (a misspelt `lockd` would otherwise lock
//! nothing). Read by `config/policy.rs` at startup; the result is [`Policies`].

use std::{collections::BTreeMap, path::Path, sync::Arc};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{FieldPath, OnViolation, Policies, Policy, DEFAULT_POLICY};

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    policies: BTreeMap<String, Entry>,
}

/// One policy as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    session: Option<Map<String, Value>>,
    #[serde(default)]
    locked: Vec<String>,
    #[serde(default)]
    on_violation: Option<String>,
    #[serde(default)]
    hidden: Vec<String>,
    allowed_client_events: Option<Vec<String>>,
    max_output_tokens: Option<u64>,
}

/// The session types a pinned `session.update` may carry (GA needs one).
const SESSION_TYPES: [&str; 2] = ["realtime", "transcription"];

impl Policies {
    /// Reads and checks the file at `path`; every problem in one message.
    pub(crate) fn load(path: &Path) -> Result<Policies, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Policies::parse(&text, json)
    }

    /// Parses the file's text (JSON when `json`, else TOML).
    pub(crate) fn parse(text: &str, json: bool) -> Result<Policies, String> {
        let file: File = if json {
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?
        } else {
            toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?
        };
        let mut problems = Vec::new();
        if !file.policies.contains_key(DEFAULT_POLICY) {
            problems.push(format!("no policy named {DEFAULT_POLICY:?}"));
        }
        let mut by_name = BTreeMap::new();
        for (name, entry) in file.policies {
            let mut problem = |what: String| problems.push(format!("policy {name:?}: {what}"));
            if !is_label_safe(&name) {
                problem(
                    "the name may contain only letters, digits, '-', '_' and '.' (at most 64)"
                        .into(),
                );
            }
            let policy = entry.check(&name, &mut problem);
            by_name.insert(name, Arc::new(policy));
        }
        if problems.is_empty() {
            Ok(Policies { by_name })
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Entry {
    /// The policy, with every problem handed to `problem`.
    fn check(self, name: &str, problem: &mut impl FnMut(String)) -> Policy {
        let on_violation = match self.on_violation.as_deref() {
            None | Some("strip") => OnViolation::Strip,
            Some("reject") => OnViolation::Reject,
            Some("close") => OnViolation::Close,
            Some(other) => {
                problem(format!(
                    "on_violation must be strip, reject or close (got {other:?})"
                ));
                OnViolation::Strip
            }
        };
        let mut paths = |list: Vec<String>, key: &str| -> Vec<FieldPath> {
            list.iter()
                .filter_map(|f| {
                    let parsed = FieldPath::parse(f);
                    if parsed.is_none() {
                        problem(format!(
                            "{key}: {f:?} is not a field name (letters, digits, '_' and '-', \
                             nested fields joined with '.')"
                        ));
                    }
                    parsed
                })
                .collect()
        };
        let locked = paths(self.locked, "locked");
        let hidden = paths(self.hidden, "hidden");
        if let Some(events) = &self.allowed_client_events {
            if events.iter().any(|e| e.is_empty()) {
                problem("allowed_client_events: an event type is empty".into());
            }
        }
        if self.max_output_tokens == Some(0) {
            problem("max_output_tokens must be at least 1".into());
        }
        let mut session = self.session;
        if let Some(ceiling) = self.max_output_tokens {
            match &mut session {
                Some(s) => lower_to(s, ceiling),
                None => problem(
                    "max_output_tokens needs a [session] table (with its type) so the ceiling \
                     is also the session's own"
                        .into(),
                ),
            }
        }
        if let Some(s) = &session {
            let kind = s.get("type").and_then(Value::as_str);
            if !kind.is_some_and(|k| SESSION_TYPES.contains(&k)) {
                problem(
                    "session.type must be \"realtime\" or \"transcription\" (the upstream \
                     refuses a session.update without it)"
                        .into(),
                );
            }
        }
        Policy {
            name: name.to_string(),
            session,
            locked,
            on_violation,
            hidden,
            allowed_client_events: self.allowed_client_events,
            max_output_tokens: self.max_output_tokens,
        }
    }
}

/// Sets `max_output_tokens` in `session` to at most `ceiling` (absent or `"inf"` count as more).
fn lower_to(session: &mut Map<String, Value>, ceiling: u64) {
    let current = session.get("max_output_tokens").and_then(Value::as_u64);
    if current.is_none_or(|n| n > ceiling) {
        session.insert("max_output_tokens".into(), Value::from(ceiling));
    }
}

/// Policy names become metric labels and log values: a short, plain alphabet.
fn is_label_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[policies.default]
locked = ["instructions", "tools", "audio.output.voice"]
hidden = ["instructions", "tools"]
on_violation = "reject"
allowed_client_events = ["session.update", "input_audio_buffer.append"]
max_output_tokens = 500

[policies.default.session]
type = "realtime"
instructions = "You are the help desk."
max_output_tokens = 4096
audio = { output = { voice = "marin" } }

[policies.kiosk]
locked = ["instructions"]
"#;

    /// A full TOML file: every key read, the ceiling applied to the pinned session.
    #[test]
    fn toml_file_is_read() {
        let p = Policies::parse(FULL, false).expect("valid");
        assert_eq!(p.names().collect::<Vec<_>>(), ["default", "kiosk"]);
        let d = p.choose(None).expect("default");
        assert_eq!(d.on_violation, OnViolation::Reject);
        assert_eq!(d.locked.len(), 3);
        assert_eq!(d.locked[2].path, ["audio", "output", "voice"]);
        assert_eq!(d.max_output_tokens, Some(500));
        let session = d.session.as_ref().expect("session");
        assert_eq!(session["max_output_tokens"], 500);
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        let update: Value =
            serde_json::from_str(&d.pinned_update().expect("pinned")).expect("json");
        assert_eq!(update["type"], "session.update");
        assert_eq!(update["session"]["instructions"], "You are the help desk.");
        let kiosk = p.choose(Some("kiosk")).expect("kiosk");
        assert_eq!(kiosk.on_violation, OnViolation::Strip);
        assert!(kiosk.pinned_update().is_none());
        assert_eq!(p.choose(Some("nope")).unwrap_err(), "nope");
    }

    /// The same policies as JSON.
    #[test]
    fn json_file_is_read() {
        let text = r#"{"policies":{"default":{"locked":["tools"],"on_violation":"close",
            "session":{"type":"realtime","tools":[]}}}}"#;
        let p = Policies::parse(text, true).expect("valid");
        let d = p.choose(None).expect("default");
        assert_eq!(d.on_violation, OnViolation::Close);
        assert_eq!(
            d.session.as_ref().expect("session")["tools"],
            Value::Array(vec![])
        );
    }

    /// Every problem is reported, each naming its policy and key.
    #[test]
    fn every_problem_is_reported() {
        let text = r#"
[policies."bad name"]
on_violation = "ignore"
locked = ["a..b"]
max_output_tokens = 10
[policies.other.session]
instructions = "no type"
"#;
        let err = Policies::parse(text, false).unwrap_err();
        for part in [
            "no policy named \"default\"",
            "\"bad name\": the name",
            "on_violation",
            "locked: \"a..b\"",
            "max_output_tokens needs a [session]",
            "\"other\": session.type",
        ] {
            assert!(err.contains(part), "{part:?} missing from {err}");
        }
        let typo = Policies::parse("[policies.default]\nlockd = [\"tools\"]\n", false).unwrap_err();
        assert!(typo.contains("lockd"), "{typo}");
        assert!(Policies::parse("{", true).unwrap_err().contains("JSON"));
    }

    /// The example shipped in `config/` parses.
    #[test]
    fn shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/session-policy.example.toml");
        let p = Policies::load(&path).expect("the example parses");
        let d = p.choose(None).expect("default");
        assert!(d.pinned_update().is_some() && !d.locked.is_empty() && !d.hidden.is_empty());
    }
}
