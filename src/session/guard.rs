//! The client's bytes on their way to actix-ws: [`guard_frames`] judges each frame header as it
//! arrives (a [`Scanner`]), so a frame that announces too much, too many fragments or reserved
//! bits is refused before its payload is buffered; [`guard_refusal`] finds such a refusal again in
//! the error actix-ws reports for it.

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use actix_web::{dev, error::PayloadError, web, FromRequest, HttpRequest};
use futures_util::Stream;

use crate::upstream::wire::{self, Scanner};

/// The guard's refusal inside actix-ws's error: `io::Error(PayloadError::Io(io::Error(Refusal)))`.
pub(crate) fn guard_refusal(e: &io::Error) -> Option<wire::Refusal> {
    let PayloadError::Io(inner) = e.get_ref()?.downcast_ref::<PayloadError>()? else {
        return None;
    };
    inner.get_ref()?.downcast_ref::<wire::Refusal>().copied()
}

/// At most this many fragments to one client message: one per 64 bytes of `MAX_MESSAGE_SIZE`,
/// and never fewer than 1,024 (393,216 at the default 24 MiB). actix-ws keeps a `Bytes` (32 bytes,
/// and the read buffer it points into) per fragment until the message is whole.
pub(crate) fn max_fragments(max_message_size: usize) -> usize {
    (max_message_size / 64).max(1024)
}

/// The client's request body with every frame header judged as it arrives (see
/// [`Scanner`]): hand this, not the raw body, to `actix_ws::handle_with_protocols`.
pub(crate) fn guard_frames(
    req: &HttpRequest,
    body: web::Payload,
    max_message_size: usize,
) -> actix_web::Result<web::Payload> {
    let guard = FrameGuard {
        inner: body.into_inner(),
        scanner: Scanner::new(max_message_size, max_fragments(max_message_size)),
        state: Guard::Open,
    };
    let mut payload: dev::Payload = dev::Payload::Stream {
        payload: Box::pin(guard),
    };
    web::Payload::from_request(req, &mut payload).into_inner()
}

/// The client's bytes on their way to actix-ws, each frame header judged by a [`Scanner`].
struct FrameGuard {
    inner: dev::Payload,
    scanner: Scanner,
    state: Guard,
}

enum Guard {
    Open,
    /// A frame was refused. actix-ws decodes what it has read only once the body pauses, so the
    /// body pauses once (and wakes itself) before its error: the whole frames sent before the
    /// refused one are still delivered, in order.
    Refused {
        refusal: wire::Refusal,
        paused: bool,
    },
    Done,
}

impl Stream for FrameGuard {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.state {
            Guard::Done => return Poll::Ready(None),
            Guard::Refused { refusal, paused } => {
                if paused {
                    this.state = Guard::Done;
                    let e = io::Error::new(io::ErrorKind::InvalidData, refusal);
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
                this.state = Guard::Refused {
                    refusal,
                    paused: true,
                };
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Guard::Open => {}
        }
        let chunk = match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            Some(Ok(chunk)) => chunk,
            other => return Poll::Ready(other),
        };
        match this.scanner.scan(&chunk) {
            Ok(()) => Poll::Ready(Some(Ok(chunk))),
            Err((at, refusal)) => {
                this.state = Guard::Refused {
                    refusal,
                    paused: false,
                };
                if at > 0 {
                    // The whole frames before the refused one; none of its own bytes.
                    Poll::Ready(Some(Ok(chunk.slice(..at))))
                } else {
                    Pin::new(this).poll_next(cx)
                }
            }
        }
    }
}
