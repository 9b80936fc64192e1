//! Session policies (`SESSION_POLICY_FILE`): what the operator pins, locks and hides in every
//! session, whatever the client sends. A policy is read once at startup (`file.rs`), chosen per
//! client at the upgrade (the identity's `policy`, else `default`), and applied by the pumps:
//! the upstream actor sends [`Policy::pinned_update`] before any client frame, the client pump
//! asks [`Policy::judge`] (`client.rs`) about each client event, and the upstream pump asks
//! [`Policy::hide`] (`server.rs`) about each `session.created`/`session.updated`. Every decision is
//! counted in `relay_policy_actions_total{policy,action,field}` through [`Applied::count`]. A
//! client secret's session fields narrow the policy further (`narrow.rs`). Pure logic, no state
//! besides the counter.

mod client;
mod drift;
mod file;
mod narrow;
mod server;
mod strict;

use std::{collections::BTreeMap, sync::Arc};

use prometheus::IntCounterVec;
use serde_json::{Map, Value};

use self::narrow::narrow;
pub(crate) use self::{
    client::{Verdict, Violation},
    narrow::{Contradiction, SECRET_POLICY},
};

/// The `event_id` of the relay's pinned `session.update`.
pub(crate) const PINNED_EVENT_ID: &str = "relay_policy";

/// What happens to a client event that sets a locked field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnViolation {
    /// The locked fields are removed and the rest is forwarded.
    Strip,
    /// The event is not forwarded; the client gets a `policy_violation` error event.
    Reject,
    /// As `Reject`, and the session ends with close code 1008.
    Close,
}

/// One decision, the `action` label of `relay_policy_actions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The pinned `session.update` went upstream (field `session`).
    Pinned,
    /// A locked field was removed from a client event.
    Stripped,
    /// A client event was not forwarded.
    Rejected,
    /// A client event was not forwarded and the session ended.
    Closed,
    /// A client's `max_output_tokens` was lowered to the ceiling.
    Lowered,
    /// A hidden field was removed from an event on its way to the client.
    Hidden,
    /// A client event type outside `allowed_client_events` (field `type`).
    NotAllowed,
    /// A WebRTC call's `session.updated` showed a locked field changed; the pinned update was
    /// sent again on the sideband.
    Reasserted,
}

impl Action {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Action::Pinned => "pinned",
            Action::Stripped => "stripped",
            Action::Rejected => "rejected",
            Action::Closed => "closed",
            Action::Lowered => "lowered",
            Action::Hidden => "hidden",
            Action::NotAllowed => "not_allowed",
            Action::Reasserted => "reasserted",
        }
    }
}

/// The `field` label of decisions about no particular field: the event type (allow-list), an
/// event the relay could not read, the pinned update, the ceiling.
pub(crate) const FIELD_TYPE: &str = "type";
pub(crate) const FIELD_JSON: &str = "json";
pub(crate) const FIELD_SESSION: &str = "session";
pub(crate) const FIELD_MAX_OUTPUT_TOKENS: &str = "max_output_tokens";

/// A field of a session (or of a response's overrides) by its dotted path: `instructions`,
/// `audio.output.voice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    /// As written in the file; also the metric's `field` label.
    pub(crate) name: String,
    pub(crate) path: Vec<String>,
}

impl FieldPath {
    pub(crate) fn parse(name: &str) -> Option<FieldPath> {
        let path: Vec<String> = name.split('.').map(str::to_string).collect();
        let valid = !name.is_empty()
            && name.len() <= 128
            && path.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        valid.then(|| FieldPath {
            name: name.to_string(),
            path,
        })
    }

    /// The value at this path inside `object`, if there is one.
    pub(crate) fn get<'v>(&self, object: &'v Map<String, Value>) -> Option<&'v Value> {
        let (last, parents) = self.path.split_last()?;
        let mut at = object;
        for p in parents {
            at = at.get(p)?.as_object()?;
        }
        at.get(last)
    }

    /// Removes the value at this path; whether there was one.
    pub(crate) fn remove(&self, object: &mut Map<String, Value>) -> bool {
        let Some((last, parents)) = self.path.split_last() else {
            return false;
        };
        let mut at = object;
        for p in parents {
            match at.get_mut(p).and_then(Value::as_object_mut) {
                Some(next) => at = next,
                None => return false,
            }
        }
        at.shift_remove(last).is_some()
    }
}

/// One named policy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    pub(crate) name: String,
    /// The pinned fields, sent upstream as one `session.update` (with the ceiling applied).
    pub(crate) session: Option<Map<String, Value>>,
    pub(crate) locked: Vec<FieldPath>,
    pub(crate) on_violation: OnViolation,
    pub(crate) hidden: Vec<FieldPath>,
    pub(crate) allowed_client_events: Option<Vec<String>>,
    pub(crate) max_output_tokens: Option<u64>,
}

impl Policy {
    /// The `session.update` the relay sends before any client frame, if the policy pins anything.
    pub(crate) fn pinned_update(&self) -> Option<String> {
        let session = self.session.as_ref()?;
        let event = serde_json::json!({
            "type": "session.update",
            "event_id": PINNED_EVENT_ID,
            "session": session,
        });
        Some(event.to_string())
    }

    /// Whether client events need looking at at all.
    pub(crate) fn judges_client(&self) -> bool {
        !self.locked.is_empty()
            || self.allowed_client_events.is_some()
            || self.max_output_tokens.is_some()
    }

    /// Every `(action, field)` pair this policy can count, to create the series at 0.
    fn series(&self) -> Vec<(Action, &str)> {
        let mut out = Vec::new();
        if self.session.is_some() {
            out.push((Action::Pinned, FIELD_SESSION));
        }
        let refused = match self.on_violation {
            OnViolation::Close => Action::Closed,
            _ => Action::Rejected,
        };
        for f in &self.locked {
            if self.on_violation == OnViolation::Strip {
                out.push((Action::Stripped, f.name.as_str()));
            }
            out.push((refused, f.name.as_str()));
        }
        for f in &self.hidden {
            out.push((Action::Hidden, f.name.as_str()));
        }
        if let Some(pinned) = &self.session {
            for f in self.locked.iter().filter(|f| f.get(pinned).is_some()) {
                out.push((Action::Reasserted, f.name.as_str()));
            }
        }
        if self.max_output_tokens.is_some() {
            out.push((Action::Lowered, FIELD_MAX_OUTPUT_TOKENS));
        }
        if self.allowed_client_events.is_some() {
            out.push((Action::NotAllowed, FIELD_TYPE));
        }
        out
    }
}

/// Every policy of the file, by name; one is `default`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policies {
    by_name: BTreeMap<String, Arc<Policy>>,
}

/// The name of the policy a client without one of its own gets.
pub(crate) const DEFAULT_POLICY: &str = "default";

impl Policies {
    /// The policy named `name` (the identity's), else `default`; Err with the name when the file
    /// has no such policy.
    pub(crate) fn choose(&self, name: Option<&str>) -> Result<Arc<Policy>, String> {
        let name = name.unwrap_or(DEFAULT_POLICY);
        self.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| name.to_string())
    }

    /// Every `(policy, action, field)` series of `relay_policy_actions_total`.
    pub(crate) fn series(&self) -> Vec<[&str; 3]> {
        self.by_name
            .values()
            .flat_map(|p| {
                p.series()
                    .into_iter()
                    .map(|(a, f)| [p.name.as_str(), a.label(), f])
            })
            .collect()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// The policies and their counter, shared by every worker (`web::Data`); no policies without
/// `SESSION_POLICY_FILE`, where only client secrets narrow sessions.
#[derive(Default)]
pub(crate) struct PolicyBook {
    policies: Option<Arc<Policies>>,
    /// `relay_policy_actions_total`; None only in a book built without the relay's metrics.
    actions: Option<IntCounterVec>,
}

/// Why a client gets no session policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PolicyError {
    /// The credential names a policy the file does not define.
    #[error(
        "the credential names the session policy {0:?}, which this relay's SESSION_POLICY_FILE \
         does not define"
    )]
    Unknown(String),
    /// The client secret's session fields contradict the policy.
    #[error("{0}")]
    Contradiction(#[from] Contradiction),
}

impl PolicyBook {
    /// The book of `policies`, counting into `actions`, whose series it creates at 0.
    pub(crate) fn new(policies: Arc<Policies>, actions: IntCounterVec) -> PolicyBook {
        for labels in policies.series() {
            actions.with_label_values(&labels);
        }
        PolicyBook {
            policies: Some(policies),
            actions: Some(actions),
        }
    }

    /// No policy file: sessions have a policy only when a client secret narrows them.
    pub(crate) fn without_file(actions: IntCounterVec) -> PolicyBook {
        PolicyBook {
            policies: None,
            actions: Some(actions),
        }
    }

    /// The policy a client whose credential names `name` (None: `default`) gets: None without a
    /// file; Err with the name when the file has no such policy.
    pub(crate) fn policy(&self, name: Option<&str>) -> Result<Option<Arc<Policy>>, String> {
        self.policies
            .as_ref()
            .map(|policies| policies.choose(name))
            .transpose()
    }

    /// The policy of a client whose credential names `name` (None: `default`), narrowed by a
    /// client secret's session fields when it has some (`narrow.rs`): None without a file and
    /// without such fields; with no file, a policy of those fields alone.
    pub(crate) fn narrowed(
        &self,
        name: Option<&str>,
        secret: Option<&Map<String, Value>>,
    ) -> Result<Option<Arc<Applied>>, PolicyError> {
        let base = self.policy(name).map_err(PolicyError::Unknown)?;
        let Some(fields) = secret.filter(|f| !f.is_empty()) else {
            return Ok(base.map(|policy| self.apply(policy, Vec::new())));
        };
        let (policy, added) = narrow(base.as_deref(), fields)?;
        Ok(Some(self.apply(Arc::new(policy), added)))
    }

    fn apply(&self, policy: Arc<Policy>, from_secret: Vec<String>) -> Arc<Applied> {
        Arc::new(Applied {
            policy,
            actions: self.actions.clone(),
            from_secret,
        })
    }
}

/// The policy a session runs under, and where its decisions are counted.
pub(crate) struct Applied {
    pub(crate) policy: Arc<Policy>,
    /// `relay_policy_actions_total`.
    pub(crate) actions: Option<IntCounterVec>,
    /// Fields a client secret locked: counted under the field [`SECRET_POLICY`], since their
    /// names are the client's.
    from_secret: Vec<String>,
}

impl Applied {
    pub(crate) fn count(&self, action: Action, field: &str) {
        let Some(actions) = &self.actions else { return };
        let field = if self.from_secret.iter().any(|f| f == field) {
            SECRET_POLICY
        } else {
            field
        };
        actions
            .with_label_values(&[self.policy.name.as_str(), action.label(), field])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths() {
        let voice = FieldPath::parse("audio.output.voice").expect("valid");
        let mut session = serde_json::json!({"audio":{"output":{"voice":"alloy","format":{}}}});
        let object = session.as_object_mut().expect("object");
        assert_eq!(voice.get(object), Some(&Value::from("alloy")));
        assert!(voice.remove(object));
        assert!(!voice.remove(object));
        assert_eq!(voice.get(object), None);
        assert!(object["audio"]["output"].get("format").is_some());
        for bad in ["", "a..b", ".a", "a.", "a b", "a\"b"] {
            assert_eq!(FieldPath::parse(bad), None, "{bad}");
        }
    }
}
