//! A session policy narrowed by a client secret (`protection/client_secret.rs`): the session
//! fields a secret was minted with are pinned and locked on top of the client's policy, so a
//! session opened with it starts with them (the pinned `session.update`) and cannot change them.
//! A secret may only narrow: a field the policy locks may be given only with the value the policy
//! pins, and `max_output_tokens` only up to the policy's ceiling. Without `SESSION_POLICY_FILE`
//! the secret's fields alone make a policy named `client_secret` (on violation: reject). The
//! client-secrets endpoint narrows once to refuse a contradiction before minting; the upgrade
//! (`session_policy`) narrows again for each session. Pure.

use serde_json::{Map, Value};

use super::{FieldPath, OnViolation, Policy};

/// The policy of a secret's session when there is no policy file; also the `field` label its
/// own locked fields are counted under (`relay_policy_actions_total` stays a closed set whatever
/// names a client gives).
pub(crate) const SECRET_POLICY: &str = "client_secret";

/// Why a client secret's session fields cannot narrow a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Contradiction {
    /// A key that is not a field name (letters, digits, `_`, `-`), or a path over 128 bytes.
    #[error("session.{0} is not a field name (letters, digits, '_' and '-', at most 128 bytes)")]
    NotAField(String),
    /// It sets, under a field the policy locks, something other than the pinned value.
    #[error(
        "the session policy locks {locked:?}, so session.{field} may only repeat the value the \
         policy pins"
    )]
    Locked { field: String, locked: String },
    /// `max_output_tokens` above the policy's ceiling (or not a number).
    #[error("session.max_output_tokens must be a number no higher than the session policy's {0}")]
    Ceiling(u64),
}

impl Contradiction {
    /// The refusal's `code`: a field the policy rules out, or a request that is malformed.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Contradiction::NotAField(_) => "invalid_request",
            _ => "policy_violation",
        }
    }
}

/// `base` (the client's policy, if any) narrowed by a secret's `fields`: them merged into its
/// pinned session (with `type: realtime` when it has none) and each of their leaves locked. Also
/// returns the names of the locks it added.
pub(crate) fn narrow(
    base: Option<&Policy>,
    fields: &Map<String, Value>,
) -> Result<(Policy, Vec<String>), Contradiction> {
    let mut paths = Vec::new();
    leaves("", fields, &mut paths)?;
    let mut session = base.and_then(|b| b.session.clone()).unwrap_or_default();
    merge(&mut session, fields);
    if let Some(base) = base {
        check(base, &paths, &session)?;
        if let (Some(ceiling), Some(asked)) =
            (base.max_output_tokens, fields.get("max_output_tokens"))
        {
            if asked.as_u64().is_none_or(|n| n > ceiling) {
                return Err(Contradiction::Ceiling(ceiling));
            }
        }
    }
    if !session.contains_key("type") {
        session.insert("type".into(), Value::from("realtime"));
    }
    let mut locked = base.map(|b| b.locked.clone()).unwrap_or_default();
    let mut added = Vec::new();
    for path in paths {
        if !locked.iter().any(|l| l.name == path.name) {
            added.push(path.name.clone());
            locked.push(path);
        }
    }
    let policy = Policy {
        name: base.map_or(SECRET_POLICY.to_string(), |b| b.name.clone()),
        session: Some(session),
        locked,
        on_violation: base.map_or(OnViolation::Reject, |b| b.on_violation),
        hidden: base.map(|b| b.hidden.clone()).unwrap_or_default(),
        allowed_client_events: base.and_then(|b| b.allowed_client_events.clone()),
        max_output_tokens: base.and_then(|b| b.max_output_tokens),
    };
    Ok((policy, added))
}

/// Every field the policy locks that a secret's field touches (one is inside the other) must
/// still hold exactly the policy's pinned value after the merge.
fn check(
    base: &Policy,
    paths: &[FieldPath],
    merged: &Map<String, Value>,
) -> Result<(), Contradiction> {
    for lock in &base.locked {
        let Some(field) = paths.iter().find(|p| overlaps(p, lock)) else {
            continue;
        };
        let pinned = base.session.as_ref().and_then(|s| lock.get(s));
        if pinned.is_none() || lock.get(merged) != pinned {
            return Err(Contradiction::Locked {
                field: field.name.clone(),
                locked: lock.name.clone(),
            });
        }
    }
    Ok(())
}

/// Whether one path is the other or inside it.
fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.path.iter().zip(&b.path).all(|(x, y)| x == y)
}

/// The dotted path of every leaf of `object` (a value that is not a non-empty object).
fn leaves(
    prefix: &str,
    object: &Map<String, Value>,
    out: &mut Vec<FieldPath>,
) -> Result<(), Contradiction> {
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        // A key with a dot would read as a nested path it is not.
        if key.contains('.') || FieldPath::parse(key).is_none() {
            return Err(Contradiction::NotAField(name));
        }
        match value {
            Value::Object(inner) if !inner.is_empty() => leaves(&name, inner, out)?,
            _ => out.push(FieldPath::parse(&name).ok_or(Contradiction::NotAField(name))?),
        }
    }
    Ok(())
}

/// `from` merged into `into`: objects field by field, anything else replaced.
fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(Value::Object(inner)), Value::Object(more)) => merge(inner, more),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

impl Policy {
    /// The pinned session as a client may see it: without the fields the policy hides.
    pub(crate) fn visible_session(&self) -> Map<String, Value> {
        let mut session = self.session.clone().unwrap_or_default();
        for field in &self.hidden {
            field.remove(&mut session);
        }
        session
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::policy::{Policies, Verdict};
    use serde_json::json;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn base() -> Policy {
        let text = r#"
[policies.default]
locked = ["instructions", "audio.output.voice"]
hidden = ["instructions"]
max_output_tokens = 500
[policies.default.session]
type = "realtime"
instructions = "Pinned."
audio = { output = { voice = "marin" } }
"#;
        let p = Policies::parse(text, false).expect("valid");
        (*p.choose(None).expect("default")).clone()
    }

    /// Without a policy file the secret's fields alone pin and lock, rejecting a change, and the
    /// pinned update carries them with the session type.
    #[test]
    fn alone_pins_and_locks() {
        let (p, added) = narrow(
            None,
            &fields(json!({"audio": {"output": {"voice": "cedar"}}, "tools": []})),
        )
        .expect("narrows");
        assert_eq!(p.name, SECRET_POLICY);
        assert_eq!(p.on_violation, OnViolation::Reject);
        assert_eq!(added, ["audio.output.voice", "tools"]);
        let update: Value = serde_json::from_str(&p.pinned_update().expect("pins")).expect("json");
        assert_eq!(update["session"]["type"], "realtime");
        assert_eq!(update["session"]["audio"]["output"]["voice"], "cedar");
        let change =
            r#"{"type":"session.update","session":{"audio":{"output":{"voice":"alloy"}}}}"#;
        assert!(matches!(p.judge(change).verdict, Verdict::Refused(_)));
        let other = r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcmu"}}}}}"#;
        assert_eq!(p.judge(other).verdict, Verdict::Forward);
        let same = r#"{"type":"session.update","session":{"audio":{"output":{"voice":"cedar"}}}}"#;
        assert_eq!(p.judge(same).verdict, Verdict::Forward);
    }

    /// On top of a policy: its locks, hidden fields and ceiling stay; a locked field may only
    /// repeat its pinned value; the visible session leaves hidden fields out.
    #[test]
    fn narrows_a_policy() {
        let b = base();
        let (p, added) = narrow(
            Some(&b),
            &fields(json!({"instructions": "Pinned.", "output_modalities": ["text"]})),
        )
        .expect("narrows");
        assert_eq!(p.name, "default");
        assert_eq!(added, ["output_modalities"]);
        assert_eq!(p.locked.len(), 3);
        assert_eq!(p.max_output_tokens, Some(500));
        let visible = p.visible_session();
        assert_eq!(visible.get("instructions"), None);
        assert_eq!(visible["output_modalities"], json!(["text"]));
        assert_eq!(visible["audio"]["output"]["voice"], "marin");
        assert!(narrow(Some(&b), &fields(json!({"max_output_tokens": 400}))).is_ok());
    }

    /// Contradictions name the field: a locked field given another value (or set inside a
    /// locked one), a ceiling exceeded, a key that is not a field name.
    #[test]
    fn contradictions_are_refused() {
        let b = base();
        let locked = narrow(Some(&b), &fields(json!({"instructions": "Mine."}))).unwrap_err();
        assert_eq!(locked.code(), "policy_violation");
        assert!(
            locked.to_string().contains("session.instructions"),
            "{locked}"
        );
        let inside = narrow(
            Some(&b),
            &fields(json!({"audio": {"output": {"voice": "x"}}})),
        );
        assert!(
            matches!(inside, Err(Contradiction::Locked { .. })),
            "{inside:?}"
        );
        let whole = narrow(
            Some(&b),
            &fields(json!({"audio": {"output": {"speed": 1.2}}})),
        );
        assert!(whole.is_ok(), "{whole:?}");
        assert_eq!(
            narrow(Some(&b), &fields(json!({"max_output_tokens": "inf"}))).unwrap_err(),
            Contradiction::Ceiling(500)
        );
        for bad in [
            json!({"a b": 1}),
            json!({"a.b": 1}),
            json!({"audio": {"": 1}}),
        ] {
            let err = narrow(None, &fields(bad)).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{err}");
        }
    }
}
