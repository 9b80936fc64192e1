//! What the [`crate::FakeUpstream`] handle and its server's worker share: the recorder, the
//! current script and, with the `webrtc` feature, the open calls. Made by `FakeUpstream::start`,
//! handed to every request handler as `web::Data`; it lives as long as either side holds it.

use std::sync::{Arc, Mutex};

use crate::recorder::Recorder;
use crate::script::Script;

/// State shared by the handle and the server's worker.
pub(crate) struct Shared {
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) script: Mutex<Script>,
    #[cfg(feature = "webrtc")]
    pub(crate) calls: crate::calls::Calls,
}

impl Shared {
    pub(crate) fn new(script: Script) -> Shared {
        Shared {
            recorder: Arc::new(Recorder::new()),
            script: Mutex::new(script),
            #[cfg(feature = "webrtc")]
            calls: crate::calls::Calls::default(),
        }
    }

    /// The script as it is now.
    pub(crate) fn script(&self) -> Script {
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the script for what arrives from now on.
    pub(crate) fn set_script(&self, script: Script) {
        *self.script.lock().unwrap_or_else(|e| e.into_inner()) = script;
    }
}
