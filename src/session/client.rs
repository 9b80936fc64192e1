//! The client pump: reads the client's WebSocket until it ends, holding frames sent before the
//! upstream is open in a bounded queue, then handing each to the upstream writer in order with
//! backpressure. It answers pings, counts the pongs that echo the relay's own pings, answers a
//! `session.update` that `ALLOWED_MODELS` refuses with an `error` event instead of forwarding
//! it, holds every event to the session policy (`protection/policy/`: locked fields stripped or
//! refused, a ceiling, an allow-list), and turns the way the client ended into a `SessionEnd` for
//! its session. Before actix-ws sees the client's bytes, `guard.rs` judges each frame header.

use std::{
    collections::VecDeque,
    future::{poll_fn, Future},
    io,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::Poll,
};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, Message, ProtocolError};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use crate::{
    close::{error_event, SessionEnd},
    ops::metrics::Flow,
    protection::{
        client_events::{refuse_client_binary, refuse_client_event, Refusal},
        models::AllowedModels,
        policy::{Applied, Verdict, Violation},
        usage::Budget,
    },
    session::{
        events::log_event,
        guard::{guard_refusal, max_fragments},
        msg::SessionId,
        shared::Shared,
    },
    upstream::{sender::ToUpstream, wire},
};

/// One client frame, sorted.
enum Step {
    Data(Message, usize),
    Skip,
    End(SessionEnd),
}

fn classify(
    item: Option<Result<AggregatedMessage, ProtocolError>>,
    client: &mut actix_ws::Session,
    shared: &Shared,
    max_message_size: usize,
) -> Step {
    match item {
        Some(Ok(AggregatedMessage::Text(t))) => {
            let len = t.len();
            Step::Data(Message::Text(t), len)
        }
        Some(Ok(AggregatedMessage::Binary(b))) => {
            let len = b.len();
            Step::Data(Message::Binary(b), len)
        }
        Some(Ok(AggregatedMessage::Ping(p))) => {
            // Answer for the relay; a client whose socket is full is not reading the pong either.
            let _ = client.pong(&p).now_or_never();
            Step::Skip
        }
        Some(Ok(AggregatedMessage::Pong(p))) => {
            // Only an echo of the relay's own ping counts (`liveness.rs`).
            shared.liveness.pong(&p);
            Step::Skip
        }
        Some(Ok(AggregatedMessage::Close(reason))) => Step::End(SessionEnd::ClientClosed {
            code: reason.as_ref().map_or(1000, |r| u16::from(r.code)),
            reason: reason.and_then(|r| r.description).unwrap_or_default(),
        }),
        Some(Err(ProtocolError::Overflow)) => Step::End(SessionEnd::ClientMessageTooLarge {
            limit: max_message_size,
        }),
        Some(Err(ProtocolError::Io(e))) => Step::End(io_ending(&e, max_message_size)),
        None => Step::End(SessionEnd::ClientGone),
        Some(Err(_)) => Step::End(SessionEnd::ClientProtocolError),
    }
}

/// What an I/O-shaped error from actix-ws means. A failed connection comes as a payload error
/// (kind `Other`), and so does a frame `guard.rs` refused; the codec reports reserved bits
/// and text that is not UTF-8 as `InvalidData`; the aggregator an oversized message by its text.
fn io_ending(e: &io::Error, max_message_size: usize) -> SessionEnd {
    match guard_refusal(e) {
        Some(wire::Refusal::TooLarge) => SessionEnd::ClientMessageTooLarge {
            limit: max_message_size,
        },
        Some(wire::Refusal::TooManyFragments) => SessionEnd::ClientTooManyFragments {
            limit: max_fragments(max_message_size),
        },
        Some(wire::Refusal::Invalid(_)) => SessionEnd::ClientProtocolError,
        None if is_continuation_overflow(e) => SessionEnd::ClientMessageTooLarge {
            limit: max_message_size,
        },
        None if e.kind() == io::ErrorKind::InvalidData && is_invalid_utf8(e) => {
            SessionEnd::ClientInvalidUtf8
        }
        None if e.kind() == io::ErrorKind::InvalidData => SessionEnd::ClientProtocolError,
        None => SessionEnd::ClientGone,
    }
}

/// actix-ws reports an oversized fragmented message as an I/O error with this text.
fn is_continuation_overflow(e: &io::Error) -> bool {
    e.to_string().contains("maximum continuation size")
}

/// A text message that is not UTF-8: actix-ws wraps the `Utf8Error` of a single frame, and the
/// text of one for a reassembled message ("invalid utf-8 sequence ...").
fn is_invalid_utf8(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| {
        inner.is::<std::str::Utf8Error>() || inner.to_string().contains("utf-8")
    })
}

/// What one frame waiting in the pre-open queue costs besides its payload: its queue slot and
/// message header, rounded up (`size_of::<(Message, usize)>()` is 40 bytes on 64-bit targets).
pub(crate) const QUEUED_FRAME_COST: usize = 64;

/// What the client reader needs besides its stream.
pub(crate) struct FromClient {
    pub(crate) id: SessionId,
    pub(crate) client: actix_ws::Session,
    pub(crate) shared: Rc<Shared>,
    pub(crate) flow: Flow,
    pub(crate) max_queued: usize,
    pub(crate) log_events: bool,
    /// `ALLOWED_MODELS`, held to on every `session.update`.
    pub(crate) allowed_models: Arc<AllowedModels>,
    /// The session policy, held to on every client event.
    pub(crate) policy: Option<Arc<Applied>>,
}

/// Reads the client until it ends. Before the upstream is open, data frames wait in a queue of
/// at most `max_queued` bytes; after, each is handed to the upstream writer in order, waiting for
/// room (so a stalled upstream stops the reading, not the memory).
///
/// Not an `async fn`, and the state is borrowed below it: an `async fn` keeps a copy of its
/// arguments beside the locals moved out of them, and this future lives as long as its session
/// (every byte of it is idle memory; see BENCHMARKS.md, issue 15).
// An `async fn` would keep its arguments twice (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)]
pub(crate) fn read_client(
    mut stream: AggregatedMessageStream,
    mut opened: oneshot::Receiver<ToUpstream>,
    mut from: FromClient,
) -> impl Future<Output = SessionEnd> {
    async move { read(&mut stream, &mut opened, &mut from).await }
}

async fn read(
    stream: &mut AggregatedMessageStream,
    opened: &mut oneshot::Receiver<ToUpstream>,
    from: &mut FromClient,
) -> SessionEnd {
    let max_queued = from.max_queued;
    let mut queue: VecDeque<(Message, usize)> = VecDeque::new();
    let mut queued = 0usize;
    let writer = loop {
        tokio::select! {
            biased;
            writer = &mut *opened => match writer {
                Ok(writer) => break writer,
                // The upstream failed to open; its `End` ends this session.
                Err(_) => return std::future::pending().await,
            },
            item = stream.next() => match classify(item, &mut from.client, &from.shared, max_queued) {
                Step::Data(msg, len) => {
                    // Each queued frame costs its bookkeeping too, so empty or tiny frames
                    // cannot queue without bound.
                    queued += len + QUEUED_FRAME_COST;
                    if queued > max_queued {
                        return SessionEnd::ClientQueueOverflow { limit: max_queued };
                    }
                    queue.push_back((msg, len));
                }
                Step::Skip => {}
                Step::End(reason) => return reason,
            },
        }
    };
    // A policy that only pins or hides has nothing to say about client events.
    from.policy = from.policy.take().filter(|p| p.policy.judges_client());
    let mut to = Onward { from, writer };
    // What waited for the upstream goes first, through the same `pass` (one await point of it
    // in this future, not two).
    let mut waited = Some(queue.into_iter());
    loop {
        let step = match waited.as_mut().and_then(Iterator::next) {
            Some((msg, len)) => Step::Data(msg, len),
            None => {
                waited = None;
                let item = match at_hand(stream).await {
                    Some(item) => item,
                    // Nothing more at hand: write out what was queued, then wait for the client.
                    // `after_pending` relies on `at_hand`'s poll in this same turn of the task:
                    // nothing that can wait may come between the two but the flush, which says
                    // whether it waited.
                    None => match flush_and_note_wait(&to.writer, &to.from.shared).await {
                        Flush::Done => after_pending(stream).await,
                        Flush::Waited => stream.next().await,
                        Flush::UpstreamGone => return std::future::pending().await,
                    },
                };
                classify(item, &mut to.from.client, &to.from.shared, max_queued)
            }
        };
        match step {
            Step::Data(msg, len) => match to.pass(msg, len) {
                Passed::On => {}
                Passed::Flush => {
                    if !flush(&to.writer, &to.from.shared).await {
                        return std::future::pending().await;
                    }
                }
                Passed::Answer(event) => {
                    let _ = answer(&mut to.from.client, event).await;
                }
                // The upstream is closing; its `End` ends this session.
                Passed::UpstreamClosing => return std::future::pending().await,
                Passed::End(reason) => return reason,
            },
            Step::Skip => {}
            Step::End(reason) => return reason,
        }
    }
}

/// Where the client's messages go once the upstream is open, and the checks on the way.
struct Onward<'a> {
    from: &'a mut FromClient,
    writer: ToUpstream,
}

/// What became of one client message.
enum Passed {
    /// Queued for the upstream: go on.
    On,
    /// Queued, and the batch is large enough to be written out now.
    Flush,
    /// Refused: answer the client with this `error` event, and go on.
    Answer(String),
    /// The upstream is closing; its `End` ends the session.
    UpstreamClosing,
    /// The session ends (the policy's `on_violation = "close"`).
    End(SessionEnd),
}

impl Onward<'_> {
    /// Queues one client message for the upstream, or says which `error` event answers it when a
    /// check refuses it (a model `ALLOWED_MODELS` does not list; a new response once a budget is
    /// spent; the session policy), after the policy has had its say (locked fields stripped, a
    /// ceiling). Not async: the client reader awaits the rare answer and the flush itself, so
    /// its future (which lives as long as the session) holds no future of this one.
    fn pass(&mut self, msg: Message, len: usize) -> Passed {
        if self.from.log_events {
            log_event(self.from.id, "client_to_upstream", &msg);
        }
        let refusal = match refused(&msg, &self.from.allowed_models) {
            Some(r) => Some(r.error_event(&format!("relay_evt_{}", self.from.id))),
            // Only once a budget is spent: no new response may start on it.
            None => match self.from.shared.budget_spent.get() {
                Some(budget) if may_start_a_response(&msg) => Some(refusal(self.from.id, budget)),
                _ => None,
            },
        };
        if let Some(event) = refusal {
            return Passed::Answer(event);
        }
        let (msg, len) = match self.police(msg, len) {
            Ok(policed) => policed,
            Err(violation) if violation.close => {
                return Passed::End(SessionEnd::PolicyViolation {
                    message: violation.message(),
                })
            }
            Err(violation) => {
                return Passed::Answer(
                    violation.error_event(&format!("relay_evt_{}", self.from.id)),
                );
            }
        };
        self.from.flow.record(len);
        self.from.shared.traffic.client_to_upstream.record(len);
        if !self.writer.queue(msg) {
            Passed::UpstreamClosing
        } else if self.writer.queued() >= BATCH_BYTES {
            Passed::Flush
        } else {
            Passed::On
        }
    }

    /// The session policy's verdict on a message: forwarded as it came or rewritten (with its
    /// new length), or refused. Text and UTF-8 binary frames are judged alike (either could be
    /// read upstream as an event); each decision is counted.
    fn police(&self, msg: Message, len: usize) -> Result<(Message, usize), Violation> {
        let Some(applied) = &self.from.policy else {
            return Ok((msg, len));
        };
        let text = match &msg {
            Message::Text(t) => &**t,
            Message::Binary(b) => match std::str::from_utf8(b) {
                Ok(t) => t,
                Err(_) => return Ok((msg, len)),
            },
            _ => return Ok((msg, len)),
        };
        let judgement = applied.policy.judge(text);
        for (action, field) in &judgement.actions {
            applied.count(*action, field);
        }
        match judgement.verdict {
            Verdict::Forward => Ok((msg, len)),
            Verdict::Rewritten(t) => {
                let len = t.len();
                Ok(match msg {
                    Message::Binary(_) => (Message::Binary(t.into()), len),
                    _ => (Message::Text(t.into()), len),
                })
            }
            Verdict::Refused(violation) => Err(violation),
        }
    }
}

/// Sends `event` to the client. Boxed: it is rare (a refusal), and its future is as large as
/// the rest of the client reader's.
fn answer(
    client: &mut actix_ws::Session,
    event: String,
) -> Pin<Box<dyn Future<Output = Result<(), actix_ws::Closed>> + '_>> {
    Box::pin(client.text(event))
}

/// A client event `ALLOWED_MODELS` refuses (`protection/client_events.rs`): it is answered with
/// its `error` event instead of being forwarded.
fn refused(msg: &Message, allowed: &AllowedModels) -> Option<Refusal> {
    match msg {
        Message::Text(t) => refuse_client_event(t, allowed),
        Message::Binary(b) => refuse_client_binary(b, allowed),
        _ => None,
    }
}

/// Whether a client message may be a `response.create`. Only asked once a budget is spent, so
/// it can afford to look at the whole message: a `type` placed late, repeated or written with
/// escapes must not start a response the first-bytes check would miss. Binary frames are JSON
/// to nobody.
fn may_start_a_response(msg: &Message) -> bool {
    matches!(msg, Message::Text(t) if t.contains("response.create") || t.contains("\\u"))
}

/// The `error` event a `response.create` gets once a budget is spent.
fn refusal(id: SessionId, budget: Budget) -> String {
    let reason = SessionEnd::BudgetExceeded { budget };
    error_event(
        &format!("relay_evt_{id}"),
        "budget_exceeded",
        &format!(
            "{} The response was not started; the session ends when the responses in flight finish.",
            reason.message()
        ),
    )
}

/// The client reader writes the upstream socket once it has no more client messages at hand, or
/// once this many bytes are queued.
const BATCH_BYTES: usize = 64 * 1024;

/// Writes what is queued for the upstream and waits until the kernel has it (a stalled upstream
/// stops the reading of the client here); false once the upstream is gone.
async fn flush(writer: &ToUpstream, shared: &Shared) -> bool {
    shared.upstream_write_blocked.set(true);
    let written = writer.flush().await;
    shared.upstream_write_blocked.set(false);
    written
}

/// How a flush of the batch went.
enum Flush {
    /// Written in one go: this task never gave up the thread, so nothing woke it meanwhile.
    Done,
    /// It had to wait for the upstream socket, during which the client may have woken the task.
    Waited,
    UpstreamGone,
}

/// [`flush`], telling whether it had to wait.
async fn flush_and_note_wait(writer: &ToUpstream, shared: &Shared) -> Flush {
    let mut waited = false;
    let mut flushing = std::pin::pin!(flush(writer, shared));
    let written = poll_fn(|cx| {
        let poll = flushing.as_mut().poll(cx);
        waited |= poll.is_pending();
        poll
    })
    .await;
    match (written, waited) {
        (false, _) => Flush::UpstreamGone,
        (true, false) => Flush::Done,
        (true, true) => Flush::Waited,
    }
}

/// The client's next item, when the stream was just polled in this same turn of the task and had
/// nothing ([`at_hand`], then a [`Flush::Done`]): that poll left this task's waker with the
/// stream, so the first poll here only waits for it, and the stream (actix-ws's decoder, the
/// frame guard, actix-http's payload) is polled again only once it has woken the task. One poll of
/// that stack less per relayed message.
async fn after_pending(
    stream: &mut AggregatedMessageStream,
) -> Option<Result<AggregatedMessage, ProtocolError>> {
    let mut first = true;
    poll_fn(|cx| {
        if std::mem::take(&mut first) {
            return Poll::Pending;
        }
        stream.poll_next_unpin(cx)
    })
    .await
}

/// The client's next item if it is already there (actix-ws decodes every frame of a read at
/// once), `None` if the reader would have to wait.
async fn at_hand(
    stream: &mut AggregatedMessageStream,
) -> Option<Option<Result<AggregatedMessage, ProtocolError>>> {
    poll_fn(|cx| {
        Poll::Ready(match stream.poll_next_unpin(cx) {
            Poll::Ready(item) => Some(item),
            Poll::Pending => None,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use actix_web::error::PayloadError;

    use super::*;

    #[test]
    fn a_response_create_is_seen_wherever_its_type_is() {
        let text = |t: &str| Message::Text(t.to_string().into());
        assert!(may_start_a_response(&text(r#"{"type":"response.create"}"#)));
        let late = format!(r#"{{"a":"{}","type":"response.create"}}"#, "x".repeat(300));
        assert!(may_start_a_response(&text(&late)));
        assert!(may_start_a_response(&text(
            r#"{"type":"response\u002ecreate"}"#
        )));
        assert!(!may_start_a_response(&text(
            r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#
        )));
        assert!(!may_start_a_response(&Message::Binary(
            b"response.create".to_vec().into()
        )));
    }

    #[test]
    fn queued_frame_cost_covers_a_queue_slot() {
        assert!(std::mem::size_of::<(Message, usize)>() <= QUEUED_FRAME_COST);
    }

    /// actix-ws's error for a failed payload: `io::Error::other(PayloadError)`.
    fn payload_error(e: PayloadError) -> io::Error {
        io::Error::other(e)
    }

    /// Each I/O-shaped error from actix-ws ends the session for the reason it stands for.
    #[test]
    fn io_errors_are_told_apart() {
        let max = 2048;
        let utf8 = String::from_utf8(vec![0xC3, 0x28])
            .expect_err("invalid")
            .utf8_error();
        let cases = [
            (
                payload_error(PayloadError::Incomplete(None)),
                SessionEnd::ClientGone,
            ),
            (
                payload_error(PayloadError::Io(io::ErrorKind::ConnectionReset.into())),
                SessionEnd::ClientGone,
            ),
            (
                io::Error::new(io::ErrorKind::InvalidData, "non-zero reserved bits"),
                SessionEnd::ClientProtocolError,
            ),
            (
                io::Error::new(io::ErrorKind::InvalidData, utf8),
                SessionEnd::ClientInvalidUtf8,
            ),
            (
                io::Error::new(io::ErrorKind::InvalidData, utf8.to_string()),
                SessionEnd::ClientInvalidUtf8,
            ),
            (
                io::Error::other("Exceeded maximum continuation size"),
                SessionEnd::ClientMessageTooLarge { limit: max },
            ),
        ];
        for (e, reason) in cases {
            assert_eq!(io_ending(&e, max), reason, "{e}");
        }
    }

    /// A frame the guard refused is recognised through the two layers actix-ws wraps it in.
    #[test]
    fn guard_refusals_come_through() {
        let refused = |r: wire::Refusal| {
            payload_error(PayloadError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                r,
            )))
        };
        assert_eq!(
            io_ending(&refused(wire::Refusal::TooLarge), 2048),
            SessionEnd::ClientMessageTooLarge { limit: 2048 }
        );
        assert_eq!(
            io_ending(&refused(wire::Refusal::TooManyFragments), 2048),
            SessionEnd::ClientTooManyFragments { limit: 1024 }
        );
        assert_eq!(
            io_ending(&refused(wire::Refusal::Invalid("reserved bits set")), 2048),
            SessionEnd::ClientProtocolError
        );
        assert_eq!(max_fragments(24 << 20), 393_216);
    }
}
