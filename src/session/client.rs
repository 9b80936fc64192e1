//! The client pump: reads the client's WebSocket until it ends, holding frames sent before the
//! upstream is open in a bounded queue, then handing each to the upstream writer in order with
//! backpressure. It answers pings, counts pongs, and turns the way the client ended into a
//! `CloseReason` for its session.

use std::{collections::VecDeque, io, rc::Rc};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, Message, ProtocolError};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use crate::{
    close::{error_event, CloseReason},
    ops::metrics::Flow,
    protection::usage::{top_level_type, Budget},
    session::{events::log_event, msg::SessionId, shared::Shared},
    upstream::pump::ToUpstream,
};

/// One client frame, sorted.
enum Step {
    Data(Message, usize),
    Skip,
    End(CloseReason),
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
        Some(Ok(AggregatedMessage::Pong(_))) => {
            shared.missed_pongs.set(0);
            Step::Skip
        }
        Some(Ok(AggregatedMessage::Close(reason))) => Step::End(CloseReason::ClientClosed {
            code: reason.as_ref().map_or(1000, |r| u16::from(r.code)),
            reason: reason.and_then(|r| r.description).unwrap_or_default(),
        }),
        Some(Err(ProtocolError::Overflow)) => Step::End(CloseReason::ClientMessageTooLarge {
            limit: max_message_size,
        }),
        Some(Err(ProtocolError::Io(e))) if is_continuation_overflow(&e) => {
            Step::End(CloseReason::ClientMessageTooLarge {
                limit: max_message_size,
            })
        }
        Some(Err(ProtocolError::Io(_))) | None => Step::End(CloseReason::ClientGone),
        Some(Err(_)) => Step::End(CloseReason::ClientProtocolError),
    }
}

/// actix-ws reports an oversized fragmented message as an I/O error with this text.
fn is_continuation_overflow(e: &io::Error) -> bool {
    e.to_string().contains("maximum continuation size")
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
}

/// Reads the client until it ends. Before the upstream is open, data frames wait in a queue of
/// at most `max_queued` bytes; after, each is handed to the upstream writer in order, waiting for
/// room (so a stalled upstream stops the reading, not the memory).
pub(crate) async fn read_client(
    mut stream: AggregatedMessageStream,
    mut opened: oneshot::Receiver<ToUpstream>,
    from: FromClient,
) -> CloseReason {
    let FromClient {
        id,
        mut client,
        shared,
        flow,
        max_queued,
        log_events,
    } = from;
    let mut queue: VecDeque<(Message, usize)> = VecDeque::new();
    let mut queued = 0usize;
    let writer = loop {
        tokio::select! {
            biased;
            writer = &mut opened => match writer {
                Ok(writer) => break writer,
                // The upstream failed to open; its `End` ends this session.
                Err(_) => return std::future::pending().await,
            },
            item = stream.next() => match classify(item, &mut client, &shared, max_queued) {
                Step::Data(msg, len) => {
                    // Each queued frame costs its bookkeeping too, so empty or tiny frames
                    // cannot queue without bound.
                    queued += len + QUEUED_FRAME_COST;
                    if queued > max_queued {
                        return CloseReason::ClientQueueOverflow { limit: max_queued };
                    }
                    queue.push_back((msg, len));
                }
                Step::Skip => {}
                Step::End(reason) => return reason,
            },
        }
    };
    for (msg, len) in queue {
        if log_events {
            log_event(id, "client_to_upstream", &msg);
        }
        if !forward(&writer, msg, len, &shared, &flow).await {
            return std::future::pending().await;
        }
    }
    loop {
        match classify(stream.next().await, &mut client, &shared, max_queued) {
            Step::Data(msg, len) => {
                if log_events {
                    log_event(id, "client_to_upstream", &msg);
                }
                if let Some(budget) = shared.budget_spent.get() {
                    // Only once a budget is spent: no new response may start on it.
                    if starts_a_response(&msg) {
                        let _ = client.text(refusal(id, budget)).await;
                        continue;
                    }
                }
                if !forward(&writer, msg, len, &shared, &flow).await {
                    // The upstream is closing; its `End` ends this session.
                    return std::future::pending().await;
                }
            }
            Step::Skip => {}
            Step::End(reason) => return reason,
        }
    }
}

/// Whether a client message is a `response.create` (type found in its first bytes).
fn starts_a_response(msg: &Message) -> bool {
    matches!(msg, Message::Text(t) if top_level_type(t) == Some("response.create"))
}

/// The `error` event a `response.create` gets once a budget is spent.
fn refusal(id: SessionId, budget: Budget) -> String {
    let reason = CloseReason::BudgetExceeded { budget };
    error_event(
        &format!("relay_evt_{id}"),
        "budget_exceeded",
        &format!(
            "{} The response was not started; the session ends when the responses in flight finish.",
            reason.message()
        ),
    )
}

#[inline]
async fn forward(
    writer: &ToUpstream,
    msg: Message,
    len: usize,
    shared: &Shared,
    flow: &Flow,
) -> bool {
    flow.record(len);
    shared.client_to_upstream.record(len);
    shared.upstream_write_blocked.set(true);
    let sent = writer.send(msg).await.is_ok();
    shared.upstream_write_blocked.set(false);
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_frame_cost_covers_a_queue_slot() {
        assert!(std::mem::size_of::<(Message, usize)>() <= QUEUED_FRAME_COST);
    }
}
