//! Where the demo's server events go and what they are called: an [`Outbox`] takes each event as
//! text (one WebSocket, or a WebRTC call's data channel and sidebands), and [`Names`] gives every
//! event its `event_id` and every object (item, response) its id. Used by the demo server for
//! everything it sends; lives as long as the connection or call that owns the demo.

use serde_json::{Map, Value};

/// Where a demo's server events go, in order.
pub(crate) trait Outbox {
    /// Sends one text message. `Err` when the receiver is gone: the demo stops answering.
    async fn text(&mut self, text: String) -> Result<(), actix_ws::Closed>;
}

impl Outbox for actix_ws::Session {
    async fn text(&mut self, text: String) -> Result<(), actix_ws::Closed> {
        actix_ws::Session::text(self, text).await
    }
}

/// The ids of one demo's events and objects: unique to the fake (its `run`) and to the
/// connection or call (its `scope`), numbered in the order they are made.
pub(crate) struct Names {
    scope: String,
    run: String,
    next_event: u64,
    next_id: u64,
}

impl Names {
    /// Names for the demo of connection or call `scope`, on the fake whose run is `run`.
    pub(crate) fn new(scope: String, run: &str) -> Names {
        Names {
            scope,
            run: run.to_owned(),
            next_event: 0,
            next_id: 0,
        }
    }

    /// `sess_fake` and the scope, at least six characters of it (`sess_fake000001`).
    pub(crate) fn session_id(&self) -> String {
        format!("sess_fake{:0>6}", self.scope)
    }

    /// The next `event_id`.
    pub(crate) fn event_id(&mut self) -> String {
        self.next_event += 1;
        format!("event_{}_{}", self.scope, self.next_event)
    }

    /// The next object id with `prefix` (`item`, `resp`).
    pub(crate) fn object_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_fake{}x{}x{}", self.run, self.scope, self.next_id)
    }

    /// `event` as text with an `event_id` added (kept second, after `type`, as OpenAI does).
    pub(crate) fn stamp(&mut self, event: Value) -> String {
        let Value::Object(mut fields) = event else {
            return event.to_string();
        };
        let mut out = Map::new();
        if let Some(kind) = fields.remove("type") {
            out.insert("type".into(), kind);
        }
        out.insert("event_id".into(), Value::String(self.event_id()));
        out.extend(fields);
        Value::Object(out).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Ids keep the shapes the relay's tests know: `event_<scope>_<n>`, `sess_fake000001`, and
    /// objects unique to the run and scope; `event_id` goes right after `type`.
    #[test]
    fn names_have_stable_shapes() {
        let mut names = Names::new("1".into(), "abc");
        assert_eq!(names.session_id(), "sess_fake000001");
        assert_eq!(names.object_id("resp"), "resp_fakeabcx1x1");
        let text = names.stamp(json!({"response": {}, "type": "response.done"}));
        assert_eq!(
            text,
            r#"{"type":"response.done","event_id":"event_1_1","response":{}}"#
        );
    }
}
