//! What a connection does: the [`Script`] current when its upgrade arrives, its [`Mode`], and
//! what `POST /v1/realtime/calls` does ([`CallScript`]). Plain data; tests build one and hand it
//! to `FakeUpstream::start` or `set_script`.

use std::time::Duration;

/// What a connection does once it is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// GA-shaped demo server: `session.created` on open, `session.update` -> `session.updated`,
    /// `input_audio_buffer.commit` -> `input_audio_buffer.committed`; unknown types -> an
    /// OpenAI-shaped `error` event. `response.create` -> a short streamed response ending in
    /// `response.done` with usage: after a commit of at least 100 ms of appended PCM16, a chime
    /// and "I heard 1.4 seconds of audio." (the commit also gets a user item and its
    /// transcription, "(1.4 seconds of audio)"); after a user text message, an echo of it;
    /// otherwise always the same greeting with silent audio and 32 tokens. With server VAD in
    /// the session (the default), appended audio loud enough is speech: `speech_started`, then
    /// after 500 ms of quiet `speech_stopped`, the commit and the response without being asked.
    Demo,
    /// `session.created` on open, then every text/binary message is sent back unchanged.
    Echo,
    /// `session.created` on open, then never sends anything (still records and answers pings).
    Silent,
    /// `session.created`, then `count` (None = until the client goes away)
    /// `response.output_audio.delta` events of about `message_bytes` of JSON each, one every
    /// `interval` (None = as fast as the socket accepts).
    Stream {
        message_bytes: usize,
        interval: Option<Duration>,
        count: Option<u64>,
    },
}

/// What `POST /v1/realtime/calls` does, fixed when the request arrives, in the style of
/// [`Script::handshake_delay`] and [`Script::reject_status`]. A call that is made always answers
/// as [`Mode::Demo`] does, whatever the script's mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallScript {
    /// Wait this long before answering (after recording the request).
    pub delay: Duration,
    /// Answer with this HTTP status and an OpenAI-shaped JSON error body instead of a call.
    pub reject_status: Option<u16>,
}

/// Everything a connection does, fixed when its upgrade arrives. A sideband (`?call_id=`) obeys
/// `handshake_delay`, `reject_status`, `max_message_size` and `record_messages`; a call obeys
/// `calls`, `demo_delta_delay` and `record_messages`.
#[derive(Clone, Debug)]
pub struct Script {
    /// What the connection does once open.
    pub mode: Mode,
    /// Wait this long before answering the upgrade.
    pub handshake_delay: Duration,
    /// Answer the upgrade with this HTTP status and an OpenAI-shaped JSON error body instead.
    pub reject_status: Option<u16>,
    /// Send `session.created` first thing after the upgrade (on by default).
    pub send_session_created: bool,
    /// Text frames sent exactly as given (any bytes of UTF-8, JSON or not, empty included), in
    /// order, right after `session.created` and before anything is read. Empty by default.
    pub frames_after_open: Vec<String>,
    /// After `session.created`, send a Close frame with this code and reason.
    pub close_after_open: Option<(u16, String)>,
    /// After `session.created`, drop the connection without a Close frame.
    pub drop_after_open: bool,
    /// Frames and aggregated messages up to this many bytes are accepted.
    pub max_message_size: usize,
    /// Keep every received message for [`crate::Recorder::messages`]. Off for long benchmarks, where
    /// keeping them would grow without bound; [`crate::Recorder::message_count`] still counts them.
    pub record_messages: bool,
    /// Demo mode waits this long before each delta of a streamed response, so a test can act
    /// while a response is in flight. Zero (the default) streams at once.
    pub demo_delta_delay: Duration,
    /// Demo mode drops the TCP connection (no Close frame) right after sending this many delta
    /// events (`response.output_*.delta`, audio and transcript alike) of a response; everything
    /// sent before still reaches the client. None (the default): responses run to the end.
    pub drop_after_deltas: Option<usize>,
    /// After `session.created` (and `frames_after_open`), never read from the connection again,
    /// but keep it open: what the client sends backs up in TCP. Nothing is recorded or answered
    /// from then on; the end is noticed by a failing ping and recorded as abrupt. Off by default.
    pub stop_reading: bool,
    /// What `POST /v1/realtime/calls` does (with the `webrtc` feature; without it, 501).
    pub calls: CallScript,
}

impl Script {
    /// A [`Mode::Demo`] script with default settings.
    pub fn demo() -> Self {
        Self::with_mode(Mode::Demo)
    }

    /// A [`Mode::Echo`] script with default settings.
    pub fn echo() -> Self {
        Self::with_mode(Mode::Echo)
    }

    /// A [`Mode::Silent`] script with default settings.
    pub fn silent() -> Self {
        Self::with_mode(Mode::Silent)
    }

    /// A script with default settings and the given mode (e.g. [`Mode::Stream`]).
    pub fn with_mode(mode: Mode) -> Self {
        Script {
            mode,
            handshake_delay: Duration::ZERO,
            reject_status: None,
            send_session_created: true,
            close_after_open: None,
            drop_after_open: false,
            max_message_size: 64 * 1024 * 1024,
            record_messages: true,
            demo_delta_delay: Duration::ZERO,
            frames_after_open: Vec::new(),
            drop_after_deltas: None,
            stop_reading: false,
            calls: CallScript::default(),
        }
    }
}

impl Default for Script {
    fn default() -> Self {
        Self::demo()
    }
}
