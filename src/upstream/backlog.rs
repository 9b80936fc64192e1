//! What waits for a client in bytes, not messages. actix-ws's channel to the client holds 32
//! messages whatever their size, and its body moves all of them into the connection's write
//! buffer at once: a client that stops reading while the upstream streams 6.4 KB deltas held
//! about 460 KiB. The upstream reader now hands actix-ws a message only while less than
//! [`CLIENT_BACKLOG`] bytes are waiting in that channel. Each relayed payload carries a counter
//! of its own ([`Backlog::hold`]) that gives its bytes back when actix-ws has encoded the message
//! (and dropped it); nothing else is done per frame.

use std::{
    future::poll_fn,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::Poll,
};

use actix_web::web::Bytes;
use futures_util::task::AtomicWaker;

/// The upstream reader waits while at least this many bytes wait in actix-ws's channel to the
/// client. A message larger than this still goes (alone), so the bound is this plus one message.
pub(crate) const CLIENT_BACKLOG: usize = 8 * 1024;

/// Bytes handed to actix-ws for one client and not yet encoded by it.
#[derive(Clone, Default)]
pub(crate) struct Backlog(Arc<Waiting>);

#[derive(Default)]
struct Waiting {
    bytes: AtomicUsize,
    /// The upstream reader, while it waits for room.
    reader: AtomicWaker,
}

/// A payload on its way to the client, counted in its backlog until dropped.
struct Held {
    bytes: Bytes,
    waiting: Arc<Waiting>,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.waiting
            .bytes
            .fetch_sub(self.bytes.len(), Ordering::Relaxed);
        self.waiting.reader.wake();
    }
}

impl Backlog {
    /// `bytes`, counted as waiting until the last handle to them is dropped.
    pub(crate) fn hold(&self, bytes: Bytes) -> Bytes {
        self.0.bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        Bytes::from_owner(Held {
            bytes,
            waiting: self.0.clone(),
        })
    }

    /// Bytes waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// Resolves once fewer than `limit` bytes are waiting.
    pub(crate) async fn room(&self, limit: usize) {
        if self.waiting() < limit {
            return;
        }
        poll_fn(|cx| {
            self.0.reader.register(cx.waker());
            if self.waiting() < limit {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// Bytes count until every handle is gone; the waiter is let through as soon as they are.
    #[actix_web::test]
    async fn bytes_count_until_dropped() {
        let backlog = Backlog::default();
        let a = backlog.hold(Bytes::from(vec![1u8; 6000]));
        let b = backlog.hold(Bytes::from_static(b"hello"));
        assert_eq!(&b[..], b"hello");
        assert_eq!(backlog.waiting(), 6005);
        assert!(backlog.room(6006).now_or_never().is_some());
        let mut wait = Box::pin(backlog.room(6000));
        assert!((&mut wait).now_or_never().is_none(), "6,005 waiting");
        let slice = a.slice(..10);
        drop(a);
        assert_eq!(backlog.waiting(), 6005, "a slice keeps the payload counted");
        drop(slice);
        assert_eq!(backlog.waiting(), 5);
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("room once the payload is dropped");
        drop(b);
        assert_eq!(backlog.waiting(), 0);
    }
}
