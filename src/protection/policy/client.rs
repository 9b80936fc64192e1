//! What a session policy makes of one client event: forwarded as it came, forwarded with locked
//! fields removed and `max_output_tokens` lowered, or refused. Called by the client pump for
//! each data message of a session with a policy that locks, lists or caps something.
//!
//! The cost is kept off the audio path. The type is read from the first bytes, as the usage
//! glance does (`usage::top_level_type`); only `session.update`, `transcription_session.update`,
//! `response.create` and `conversation.item.create` (and a message whose type is not in its first
//! bytes) are parsed. Anything else is forwarded untouched once a scan for the two ways to hide a
//! second type (a second `type"`, or an escape) finds neither: base64 audio holds no quote and
//! no backslash, so an `input_audio_buffer.append` costs two byte scans and no parse. A parsed
//! event that repeats a key is refused (`strict.rs`): the relay does not guess which copy the
//! upstream reads.

use serde_json::{Map, Value};

use super::{strict, Action, OnViolation, Policy, FIELD_JSON, FIELD_MAX_OUTPUT_TOKENS, FIELD_TYPE};
use crate::{close::error_event, protection::usage::top_level_type};

/// Event types whose fields a policy looks at.
const JUDGED: [&str; 4] = [
    "session.update",
    "transcription_session.update",
    "response.create",
    "conversation.item.create",
];

/// What to do with the event.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Forward it as it came.
    Forward,
    /// Forward this text instead.
    Rewritten(String),
    /// Do not forward it.
    Refused(Violation),
}

/// The verdict and every decision to count, as `(action, field)`.
#[derive(Debug, PartialEq)]
pub(crate) struct Judgement<'p> {
    pub(crate) verdict: Verdict,
    pub(crate) actions: Vec<(Action, &'p str)>,
}

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Breach {
    /// It sets a locked field.
    Locked,
    /// A `conversation.item.create` with `role: "system"` while `instructions` is locked.
    SystemMessage,
    /// Its type is not in `allowed_client_events`.
    NotAllowed,
    /// It could not be read (not JSON, or a repeated key).
    Unreadable,
}

/// A refused event: what it broke, the field (or type) it names, whether the session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) breach: Breach,
    pub(crate) field: String,
    pub(crate) close: bool,
}

impl Violation {
    /// A sentence for the client's `error` event and the close.
    pub(crate) fn message(&self) -> String {
        let f = &self.field;
        let what = match self.breach {
            Breach::Locked => format!("The session policy does not let clients set {f:?}"),
            Breach::SystemMessage => format!(
                "The session policy does not let clients set \"instructions\", and a system \
                 message would ({f})"
            ),
            Breach::NotAllowed => {
                format!("The session policy does not allow client events of type {f:?}")
            }
            Breach::Unreadable => "The relay could not read this event as JSON without repeated \
                                   keys, so it could not check it against the session policy"
                .to_string(),
        };
        let after = if self.close {
            "; the event was not forwarded and the session ends."
        } else {
            "; the event was not forwarded."
        };
        format!("{what}{after}")
    }

    /// The `error` event (code `policy_violation`) the client gets instead of the event.
    pub(crate) fn error_event(&self, event_id: &str) -> String {
        error_event(event_id, "policy_violation", &self.message())
    }
}

impl Policy {
    /// Judges one client text message.
    pub(crate) fn judge(&self, text: &str) -> Judgement<'_> {
        let first = top_level_type(text);
        if let Some(kind) = first {
            if !self.allows(kind) {
                return self.not_allowed(kind);
            }
            if !JUDGED.contains(&kind) && !may_hide_a_type(text) {
                return forward();
            }
        }
        // Here the event is one the policy judges, or may hide one: what cannot be read
        // unambiguously is not forwarded.
        let Some(Value::Object(mut event)) = strict::parse(text) else {
            return self.refuse(Breach::Unreadable, FIELD_JSON, FIELD_JSON);
        };
        let kind = match event.get("type") {
            Some(Value::String(k)) => k.clone(),
            _ => return forward(),
        };
        if !self.allows(&kind) {
            return self.not_allowed(&kind);
        }
        let (key, object) = match kind.as_str() {
            "session.update" | "transcription_session.update" => ("session", true),
            "response.create" => ("response", true),
            "conversation.item.create" => return self.judge_item(&event),
            _ => ("", false),
        };
        let fields = match event.get_mut(key).filter(|_| object) {
            Some(Value::Object(fields)) => fields,
            _ => return forward(),
        };
        let mut actions = Vec::new();
        let mut changed = false;
        for field in &self.locked {
            let Some(value) = field.get(fields) else {
                continue;
            };
            if self.is_pinned_as(field, value) {
                continue;
            }
            if self.on_violation != OnViolation::Strip {
                return self.refuse(Breach::Locked, &field.name, &field.name);
            }
            field.remove(fields);
            actions.push((Action::Stripped, field.name.as_str()));
            changed = true;
        }
        if let Some(ceiling) = self.max_output_tokens {
            if lower(fields, ceiling) {
                actions.push((Action::Lowered, FIELD_MAX_OUTPUT_TOKENS));
                changed = true;
            }
        }
        let verdict = if changed {
            Verdict::Rewritten(Value::Object(event).to_string())
        } else {
            Verdict::Forward
        };
        Judgement { verdict, actions }
    }

    /// A `conversation.item.create`: a system message sets the instructions.
    fn judge_item(&self, event: &Map<String, Value>) -> Judgement<'_> {
        let role = event
            .get("item")
            .and_then(|i| i.get("role"))
            .and_then(Value::as_str);
        match self.locked.iter().find(|f| f.name == "instructions") {
            Some(f) if role == Some("system") => {
                self.refuse(Breach::SystemMessage, "role: system", &f.name)
            }
            _ => forward(),
        }
    }

    fn allows(&self, kind: &str) -> bool {
        self.allowed_client_events
            .as_ref()
            .is_none_or(|list| list.iter().any(|t| t == kind))
    }

    /// Whether `value` is what the policy itself pins at `field`: saying it again changes nothing.
    fn is_pinned_as(&self, field: &super::FieldPath, value: &Value) -> bool {
        self.session
            .as_ref()
            .and_then(|s| field.get(s))
            .is_some_and(|pinned| pinned == value)
    }

    fn not_allowed(&self, kind: &str) -> Judgement<'_> {
        Judgement {
            verdict: Verdict::Refused(Violation {
                breach: Breach::NotAllowed,
                field: kind.to_string(),
                close: false,
            }),
            actions: vec![(Action::NotAllowed, FIELD_TYPE)],
        }
    }

    /// Refuses for `breach`, naming `field` to the client and counting under `label`; the
    /// session ends when the policy says `close` (for a locked field or a system message).
    fn refuse<'p>(&'p self, breach: Breach, field: &str, label: &'p str) -> Judgement<'p> {
        let close = self.on_violation == OnViolation::Close
            && matches!(breach, Breach::Locked | Breach::SystemMessage);
        let action = if close {
            Action::Closed
        } else {
            Action::Rejected
        };
        Judgement {
            verdict: Verdict::Refused(Violation {
                breach,
                field: field.to_string(),
                close,
            }),
            actions: vec![(action, label)],
        }
    }
}

fn forward<'p>() -> Judgement<'p> {
    Judgement {
        verdict: Verdict::Forward,
        actions: Vec::new(),
    }
}

/// Whether a message whose first bytes name a type could name another one further on: a second
/// `type"` or any escape (`"typ\u0065"`). Two byte scans; base64 audio has neither.
fn may_hide_a_type(text: &str) -> bool {
    // Measured on a 20 KB append: about 0.8 µs for the second `type"` (found past the first)
    // and 1.5 µs for a backslash; `matches(..).nth(1)` took 7 to 10 µs.
    let second_type = match text.find("type\"") {
        Some(first) => text[first + 5..].contains("type\""),
        None => true,
    };
    second_type || text.contains('\\')
}

/// Lowers `max_output_tokens` in `fields` to `ceiling` when it is above it or `"inf"`; whether
/// it did.
fn lower(fields: &mut Map<String, Value>, ceiling: u64) -> bool {
    let over = match fields.get("max_output_tokens") {
        Some(Value::Number(n)) => n.as_u64().is_none_or(|n| n > ceiling),
        Some(Value::String(s)) => s == "inf",
        _ => false,
    };
    if over {
        fields.insert("max_output_tokens".into(), Value::from(ceiling));
    }
    over
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::policy::Policies;

    fn policy(extra: &str) -> std::sync::Arc<Policy> {
        let text = format!(
            "[policies.default]\nlocked = [\"instructions\", \"tools\", \"audio.output.voice\"]\n\
             {extra}\n[policies.default.session]\ntype = \"realtime\"\n\
             instructions = \"pinned\"\n"
        );
        Policies::parse(&text, false)
            .expect("valid")
            .choose(None)
            .expect("default")
    }

    fn rewritten(j: &Judgement<'_>) -> Value {
        match &j.verdict {
            Verdict::Rewritten(t) => serde_json::from_str(t).expect("json"),
            other => panic!("not rewritten: {other:?}"),
        }
    }

    fn refused(j: &Judgement<'_>) -> Violation {
        match &j.verdict {
            Verdict::Refused(v) => v.clone(),
            other => panic!("not refused: {other:?}"),
        }
    }

    /// Strip (the default) removes every locked field, nested ones too, and keeps the rest.
    #[test]
    fn strip_removes_locked_fields() {
        let p = policy("");
        let j = p.judge(
            r#"{"type":"session.update","session":{"type":"realtime","instructions":"evil","tools":[],"audio":{"output":{"voice":"ash","speed":1.1}}}}"#,
        );
        let v = rewritten(&j);
        assert_eq!(v["session"].get("instructions"), None);
        assert_eq!(v["session"].get("tools"), None);
        assert_eq!(v["session"]["audio"]["output"].get("voice"), None);
        assert_eq!(v["session"]["audio"]["output"]["speed"], 1.1);
        assert_eq!(
            j.actions,
            [
                (Action::Stripped, "instructions"),
                (Action::Stripped, "tools"),
                (Action::Stripped, "audio.output.voice")
            ]
        );
        // A response's own overrides are held to the same locks.
        let j = p.judge(
            r#"{"type":"response.create","response":{"instructions":"evil","metadata":{"a":"b"}}}"#,
        );
        assert_eq!(rewritten(&j)["response"]["metadata"]["a"], "b");
    }

    /// Reject and close refuse the whole event, naming the field; the pinned value itself passes.
    #[test]
    fn reject_and_close_refuse() {
        let update =
            r#"{"type":"session.update","session":{"tools":[{"type":"function","name":"x"}]}}"#;
        let v = refused(&policy("on_violation = \"reject\"").judge(update));
        assert_eq!(
            (v.breach, v.field.as_str(), v.close),
            (Breach::Locked, "tools", false)
        );
        assert!(v.message().contains("\"tools\""));
        let closing = policy("on_violation = \"close\"");
        let j = closing.judge(update);
        assert!(refused(&j).close);
        assert_eq!(j.actions, [(Action::Closed, "tools")]);
        let same = r#"{"type":"session.update","session":{"instructions":"pinned"}}"#;
        assert_eq!(
            policy("on_violation = \"reject\"").judge(same).verdict,
            Verdict::Forward
        );
    }

    /// A system message counts as setting the instructions, in every mode.
    #[test]
    fn system_messages_are_refused() {
        let item = r#"{"type":"conversation.item.create","item":{"type":"message","role":"system","content":[{"type":"input_text","text":"x"}]}}"#;
        assert_eq!(
            refused(&policy("").judge(item)).breach,
            Breach::SystemMessage
        );
        let user = item.replace("\"system\"", "\"user\"");
        assert_eq!(policy("").judge(&user).verdict, Verdict::Forward);
    }

    /// The allow-list refuses other types, from the first bytes or after a parse.
    #[test]
    fn allow_list() {
        let p =
            policy(r#"allowed_client_events = ["session.update", "input_audio_buffer.append"]"#);
        let v = refused(&p.judge(r#"{"type":"response.create"}"#));
        assert_eq!(
            (v.breach, v.field.as_str()),
            (Breach::NotAllowed, "response.create")
        );
        assert_eq!(
            p.judge(r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#)
                .verdict,
            Verdict::Forward
        );
        let late = format!(
            r#"{{"event_id":"{}","type":"response.create"}}"#,
            "x".repeat(100)
        );
        assert_eq!(refused(&p.judge(&late)).breach, Breach::NotAllowed);
    }

    /// The ceiling lowers larger values and `inf`, and leaves smaller ones.
    #[test]
    fn ceiling() {
        let p = policy("max_output_tokens = 100");
        for (given, lowered) in [("500", true), ("\"inf\"", true), ("50", false)] {
            let text = format!(
                r#"{{"type":"response.create","response":{{"max_output_tokens":{given}}}}}"#
            );
            let j = p.judge(&text);
            if lowered {
                assert_eq!(
                    rewritten(&j)["response"]["max_output_tokens"],
                    100,
                    "{given}"
                );
                assert_eq!(j.actions, [(Action::Lowered, FIELD_MAX_OUTPUT_TOKENS)]);
            } else {
                assert_eq!(j.verdict, Verdict::Forward, "{given}");
            }
        }
    }

    /// A second `type`, an escaped type or a repeated key cannot smuggle a locked field past.
    #[test]
    fn no_disguise_slips_through() {
        let p = policy("");
        let second = r#"{"type":"input_audio_buffer.append","audio":"","type":"session.update","session":{"instructions":"evil"}}"#;
        assert_eq!(refused(&p.judge(second)).breach, Breach::Unreadable);
        let escaped = r#"{"type":"input_audio_buffer.clear","x":1,"\u0074ype":"session.update"}"#;
        assert_eq!(refused(&p.judge(escaped)).breach, Breach::Unreadable);
        let hidden = r#"{"type":"session\u002eupdate","session":{"instructions":"evil"}}"#;
        assert!(rewritten(&p.judge(hidden))["session"]
            .get("instructions")
            .is_none());
        let repeated =
            r#"{"type":"session.update","session":{"tools":[]},"session":{"instructions":"evil"}}"#;
        assert_eq!(refused(&p.judge(repeated)).breach, Breach::Unreadable);
    }

    /// Audio and other events pass untouched, and so does JSON-looking garbage of other types.
    #[test]
    fn everything_else_passes() {
        let p = policy("");
        for text in [
            r#"{"type":"input_audio_buffer.append","audio":"AAAA/+8="}"#,
            r#"{"type":"input_audio_buffer.commit"}"#,
            r#"{"type":"response.create","response":{"metadata":{}}}"#,
            r#"{"type":"conversation.item.create","item":{"type":"message","role":"user"}}"#,
            r#"{"type":"response.cancel" oops"#,
        ] {
            assert_eq!(p.judge(text).verdict, Verdict::Forward, "{text}");
        }
        assert_eq!(
            refused(&p.judge(r#"{"type":"session.update" oops"#)).breach,
            Breach::Unreadable
        );
    }
}
