//! Drift: a WebRTC call's client speaks to the upstream over the browser's own data channel,
//! which the relay never sees, so the policy cannot stop a `session.update` there. What the relay
//! does see, on the call's sideband, is the upstream's `session.updated`: when it shows a locked
//! field that the policy pins at another value, the relay sends its pinned `session.update` again.
//! Called by the call's sideband reader for every text event; only `session.updated` (told by its
//! first bytes) is parsed.

use serde_json::Value;

use super::Policy;
use crate::protection::usage::top_level_type;

impl Policy {
    /// Whether sideband events need looking at: some locked field has a pinned value.
    pub(crate) fn guards_drift(&self) -> bool {
        let Some(pinned) = &self.session else {
            return false;
        };
        self.locked.iter().any(|f| f.get(pinned).is_some())
    }

    /// The locked fields a `session.updated` shows at another value than the pinned one, by
    /// name; empty for any other event.
    pub(crate) fn drifted(&self, text: &str) -> Vec<&str> {
        let Some(pinned) = &self.session else {
            return Vec::new();
        };
        if top_level_type(text) != Some("session.updated") {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return Vec::new();
        };
        let Some(session) = event.get("session").and_then(Value::as_object) else {
            return Vec::new();
        };
        self.locked
            .iter()
            .filter(|f| {
                f.get(pinned)
                    .is_some_and(|want| f.get(session) != Some(want))
            })
            .map(|f| f.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::protection::policy::Policies;

    fn policy(toml: &str) -> std::sync::Arc<crate::protection::policy::Policy> {
        Policies::parse(toml, false)
            .expect("valid")
            .choose(None)
            .expect("default")
    }

    #[test]
    fn a_changed_pinned_locked_field_is_drift() {
        let p = policy(
            r#"
            [policies.default]
            session = { type = "realtime", instructions = "Be brief.", audio = { output = { voice = "alloy" } } }
            locked = ["instructions", "audio.output.voice", "tools"]
            "#,
        );
        assert!(p.guards_drift());
        let same = r#"{"type":"session.updated","session":{"instructions":"Be brief.","audio":{"output":{"voice":"alloy"}}}}"#;
        assert!(p.drifted(same).is_empty());
        let changed = r#"{"type":"session.updated","session":{"instructions":"Be long.","audio":{"output":{"voice":"alloy"}},"tools":[1]}}"#;
        assert_eq!(p.drifted(changed), ["instructions"]);
        let gone = r#"{"type":"session.updated","session":{}}"#;
        assert_eq!(p.drifted(gone), ["instructions", "audio.output.voice"]);
        let other = r#"{"type":"session.created","session":{"instructions":"x"}}"#;
        assert!(p.drifted(other).is_empty());
    }

    #[test]
    fn nothing_pinned_and_locked_is_no_guard() {
        let p = policy(
            r#"
            [policies.default]
            locked = ["instructions"]
            "#,
        );
        assert!(!p.guards_drift());
        assert!(p
            .drifted(r#"{"type":"session.updated","session":{"instructions":"x"}}"#)
            .is_empty());
    }
}
