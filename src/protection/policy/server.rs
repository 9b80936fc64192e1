//! Hidden fields: removed from `session.created` and `session.updated` (and their beta-era
//! `transcription_session.*` twins) before the client sees them, so a pinned prompt or tool list
//! never reaches a browser. Called by the upstream pump for every upstream text frame of a
//! session whose policy hides something, including the `session.created` a warm pooled socket
//! replays; only those event types, told by their first bytes, are parsed.

use serde_json::Value;

use super::{Action, Policy};
use crate::protection::usage::top_level_type;

/// Server events that echo the session's configuration.
const ECHOES: [&str; 4] = [
    "session.created",
    "session.updated",
    "transcription_session.created",
    "transcription_session.updated",
];

impl Policy {
    /// Whether upstream events need looking at at all.
    pub(crate) fn hides(&self) -> bool {
        !self.hidden.is_empty()
    }

    /// `text` without the hidden fields, and the `(action, field)` of each removed, when it is a
    /// session echo that carried any; None to pass it as it is.
    pub(crate) fn hide(&self, text: &str) -> Option<(String, Vec<(Action, &str)>)> {
        if !top_level_type(text).is_some_and(|t| ECHOES.contains(&t)) {
            return None;
        }
        let mut event: Value = serde_json::from_str(text).ok()?;
        let session = event.get_mut("session")?.as_object_mut()?;
        let removed: Vec<(Action, &str)> = self
            .hidden
            .iter()
            .filter(|f| f.remove(session))
            .map(|f| (Action::Hidden, f.name.as_str()))
            .collect();
        (!removed.is_empty()).then(|| (event.to_string(), removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::policy::Policies;

    fn policy() -> std::sync::Arc<Policy> {
        Policies::parse(
            "[policies.default]\nhidden = [\"instructions\", \"tools\", \"audio.output.voice\"]\n",
            false,
        )
        .expect("valid")
        .choose(None)
        .expect("default")
    }

    /// Hidden fields leave both echoes; the rest, and other events, are untouched.
    #[test]
    fn echoes_lose_hidden_fields() {
        let p = policy();
        for kind in ["session.created", "session.updated"] {
            let text = format!(
                r#"{{"type":"{kind}","event_id":"e1","session":{{"id":"s","instructions":"secret","tools":[{{"name":"t"}}],"audio":{{"output":{{"voice":"marin","speed":1}}}}}}}}"#
            );
            let (out, removed) = p.hide(&text).expect("rewritten");
            assert!(!out.contains("secret") && !out.contains("marin"), "{out}");
            let v: Value = serde_json::from_str(&out).expect("json");
            assert_eq!(v["session"]["id"], "s");
            assert_eq!(v["session"]["audio"]["output"]["speed"], 1);
            assert_eq!(removed.len(), 3);
        }
        assert_eq!(
            p.hide(r#"{"type":"session.updated","session":{"id":"s"}}"#),
            None
        );
        assert_eq!(
            p.hide(r#"{"type":"response.done","session":{"instructions":"x"}}"#),
            None
        );
    }
}
