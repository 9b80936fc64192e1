//! `ALLOWED_MODELS` as a type: which names a session may be opened or switched to, and the names a
//! client's URL is checked under. Built once when the relay starts and shared by every worker: the
//! HTTP upgrade checks the URL with it, the registry checks the session's name with the same rule
//! (`admission/limits.rs`), and the client pump checks `session.update` (`client_events.rs`).
//!
//! A URL is checked under every name it carries, so no combination of parameters slips past the
//! list: `?model=M` is `M`; `?intent=I` is `intent:I` (OpenAI's transcription sessions have no
//! model in the URL); `?model=M&intent=I` is both `M` and `intent:I`; a URL with neither is
//! `DEFAULT_MODEL`. The session is named (in logs, `/stats` and usage) by its model, or by
//! `intent:I` when it has none.

/// `ALLOWED_MODELS` (empty allows any name), and for one session the credential's own list on
/// top (the JWT `models` claim), which a name must be in too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowedModels {
    list: Vec<String>,
    credential: Option<Vec<String>>,
}

impl AllowedModels {
    pub(crate) fn new(models: Vec<String>) -> AllowedModels {
        AllowedModels {
            list: models,
            credential: None,
        }
    }

    /// This list narrowed by a credential's own list of models: a session's `session.update` is
    /// checked against both.
    pub(crate) fn with_credential(&self, models: &[String]) -> AllowedModels {
        AllowedModels {
            list: self.list.clone(),
            credential: Some(models.to_vec()),
        }
    }

    /// Whether every name passes, so nothing needs a look.
    pub(crate) fn is_any(&self) -> bool {
        self.list.is_empty() && self.credential.is_none()
    }

    /// Whether `name` may be used.
    pub(crate) fn admits(&self, name: &str) -> bool {
        admits(&self.list, name)
            && self
                .credential
                .as_ref()
                .is_none_or(|c| c.iter().any(|m| m == name))
    }

    /// The first of `names` that this list or the credential's own list (the JWT `models` claim,
    /// when it has one) does not allow.
    pub(crate) fn first_refused<'a>(
        &self,
        names: &'a [String],
        credential: Option<&[String]>,
    ) -> Option<&'a str> {
        names.iter().map(String::as_str).find(|name| {
            !self.admits(name) || credential.is_some_and(|c| !c.iter().any(|m| m == name))
        })
    }
}

/// Model names and intents go into the upstream query string; only this alphabet is let through,
/// so a client cannot add parameters of its own.
pub(crate) fn is_query_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// `list` admits `name`: an empty list admits everything.
pub(crate) fn admits(list: &[String], name: &str) -> bool {
    list.is_empty() || list.iter().any(|m| m == name)
}

/// The name an `intent` is listed under in `ALLOWED_MODELS` (and in a JWT's `models` claim).
pub(crate) fn intent_name(intent: &str) -> String {
    format!("intent:{intent}")
}

/// Every name a URL with this `model` and `intent` is checked under (see the module docs).
pub(crate) fn url_names(
    model: Option<&str>,
    intent: Option<&str>,
    default_model: &str,
) -> Vec<String> {
    match (model, intent) {
        (Some(m), Some(i)) => vec![m.to_string(), intent_name(i)],
        (Some(m), None) => vec![m.to_string()],
        (None, Some(i)) => vec![intent_name(i)],
        (None, None) => vec![default_model.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> AllowedModels {
        AllowedModels::new(names.iter().map(|s| s.to_string()).collect())
    }

    /// An empty list admits anything; a list admits exactly its names.
    #[test]
    fn admits_exactly_the_list() {
        assert!(AllowedModels::default().admits("anything"));
        assert!(AllowedModels::default().is_any());
        let l = list(&["gpt-realtime-mini", "intent:transcription"]);
        assert!(!l.is_any());
        assert!(l.admits("gpt-realtime-mini"));
        assert!(l.admits("intent:transcription"));
        assert!(!l.admits("gpt-realtime"));
        assert!(!l.admits("transcription"));
        assert!(!l.admits("gpt-realtime-mini "));
    }

    /// A URL is checked under every name it carries.
    #[test]
    fn url_names_cover_model_and_intent() {
        let d = "gpt-realtime-mini";
        assert_eq!(url_names(None, None, d), ["gpt-realtime-mini"]);
        assert_eq!(url_names(Some("gpt-realtime"), None, d), ["gpt-realtime"]);
        assert_eq!(
            url_names(None, Some("transcription"), d),
            ["intent:transcription"]
        );
        assert_eq!(
            url_names(Some("gpt-realtime"), Some("transcription"), d),
            ["gpt-realtime", "intent:transcription"]
        );
    }

    /// `?model=<allowed>&intent=transcription` is refused unless the intent is listed too; the
    /// credential's own list applies on top.
    #[test]
    fn every_name_must_be_allowed() {
        let names = url_names(Some("gpt-realtime-mini"), Some("transcription"), "x");
        let models_only = list(&["gpt-realtime-mini"]);
        assert_eq!(
            models_only.first_refused(&names, None),
            Some("intent:transcription")
        );
        let both = list(&["gpt-realtime-mini", "intent:transcription"]);
        assert_eq!(both.first_refused(&names, None), None);
        let claim = vec!["gpt-realtime-mini".to_string()];
        assert_eq!(
            both.first_refused(&names, Some(&claim)),
            Some("intent:transcription")
        );
        assert_eq!(AllowedModels::default().first_refused(&names, None), None);
    }

    /// A credential's list narrows the relay's, even when the relay's allows anything; a claim
    /// that lists nothing allows nothing.
    #[test]
    fn a_credential_narrows_the_list() {
        let claim = vec!["gpt-realtime-mini".to_string(), "whisper-1".to_string()];
        let any = AllowedModels::default().with_credential(&claim);
        assert!(!any.is_any());
        assert!(any.admits("whisper-1"));
        assert!(!any.admits("gpt-4o-transcribe"));
        let listed = list(&["gpt-realtime-mini"]).with_credential(&claim);
        assert!(listed.admits("gpt-realtime-mini"));
        assert!(!listed.admits("whisper-1"));
        let none = AllowedModels::default().with_credential(&[]);
        assert!(!none.admits("gpt-realtime-mini"));
    }
}
