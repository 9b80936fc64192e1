//! [`ToUpstream`]: how frames reach an upstream socket. The client reader writes the client's
//! messages into the socket itself ([`ToUpstream::queue`] for each message it has at hand, then
//! one [`ToUpstream::flush`]) and waits until the kernel has them, so
//! a stalled upstream stops the reading of the client (TCP pushes back) and a message costs no
//! hop through a queue and no wake-up of another task. The rare frames sent from elsewhere (the
//! policy's pinned update, pongs, `response.cancel`, the close) are queued behind whatever is
//! being written ([`ToUpstream::try_send`]) and written by whoever is writing, or else by the
//! [`ToUpstream::background`] writer. Exactly one party writes the socket at a time.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    rc::Rc,
    task::{Poll, Waker},
};

use awc::ws::Message;

use crate::upstream::wire;

/// `try_send` refuses a frame (a close excepted) while this much waits (an upstream that reads
/// nothing).
const MAX_QUEUED: usize = 64 * 1024;

/// The writing half of an upstream socket, shared by everyone who sends on it.
#[derive(Clone)]
pub(crate) struct ToUpstream(Rc<Out>);

struct Out {
    writer: RefCell<wire::Writer>,
    /// Someone is writing the socket out.
    writing: Cell<bool>,
    state: Cell<State>,
    /// The client reader, waiting for another party's write to finish.
    sender: RefCell<Option<Waker>>,
    /// The background writer, waiting for frames nobody is writing.
    background: RefCell<Option<Waker>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame is queued: nothing more is taken.
    Closing,
    /// A write failed: the socket is gone.
    Failed,
}

impl Drop for ToUpstream {
    fn drop(&mut self) {
        // The background writer stops once it is the last holder.
        wake(&self.0.background);
    }
}

fn wake(slot: &RefCell<Option<Waker>>) {
    if let Some(w) = slot.borrow_mut().take() {
        w.wake();
    }
}

impl ToUpstream {
    pub(crate) fn new(writer: wire::Writer) -> ToUpstream {
        ToUpstream(Rc::new(Out {
            writer: RefCell::new(writer),
            writing: Cell::new(false),
            state: Cell::new(State::Open),
            sender: RefCell::new(None),
            background: RefCell::new(None),
        }))
    }

    /// Queues `msg`; false once the upstream is closing or gone, or too much waits already.
    pub(crate) fn try_send(&self, msg: Message) -> bool {
        let out = &self.0;
        let over = out.writer.borrow().queued() > MAX_QUEUED;
        if out.state.get() != State::Open || over && !matches!(msg, Message::Close(_)) {
            return false;
        }
        if !out.encode(msg) {
            return false;
        }
        if !out.writing.get() {
            wake(&out.background);
        }
        true
    }

    /// Queues `msg` behind what is queued, to be written by the next [`ToUpstream::flush`]: the
    /// client reader queues the messages it already has, then flushes once. False once the
    /// upstream is closing or gone.
    pub(crate) fn queue(&self, msg: Message) -> bool {
        self.0.state.get() == State::Open && self.0.encode(msg)
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.0.writer.borrow().queued()
    }

    /// Writes everything queued into the socket, and resolves once the kernel has it; false once
    /// the socket has failed.
    pub(crate) async fn flush(&self) -> bool {
        let out = &self.0;
        if out.writing.get() {
            // The background writer is at work and writes ours too.
            poll_fn(|cx| {
                if !out.writing.get() {
                    return Poll::Ready(());
                }
                *out.sender.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
        }
        out.write_out().await;
        out.state.get() != State::Failed
    }

    /// Writes the frames queued by `try_send` while nobody else writes; ends once a close frame
    /// is written, the socket fails, or every other holder is gone.
    pub(crate) async fn background(self) {
        let out = &self.0;
        loop {
            // Only when nobody writes: the writer in progress writes what is queued, and its end
            // wakes this one if anything is left to do.
            poll_fn(|cx| {
                let something = !out.writer.borrow().is_empty()
                    || out.state.get() != State::Open
                    || Rc::strong_count(&self.0) == 1;
                if something && !out.writing.get() {
                    return Poll::Ready(());
                }
                *out.background.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            out.write_out().await;
            if out.state.get() != State::Open || Rc::strong_count(&self.0) == 1 {
                return;
            }
        }
    }
}

impl Out {
    fn encode(&self, msg: Message) -> bool {
        let closing = matches!(msg, Message::Close(_));
        if self.writer.borrow_mut().encode(msg).is_err() {
            return false;
        }
        if closing {
            self.state.set(State::Closing);
        }
        true
    }

    /// Writes until nothing is queued, as the only writer (the caller checked nobody else is).
    async fn write_out(&self) {
        if self.writer.borrow().is_empty() {
            return;
        }
        let guard = Writing::start(self);
        let written = poll_fn(|cx| self.writer.borrow_mut().poll_write_out(cx)).await;
        if written.is_err() {
            self.state.set(State::Failed);
        }
        drop(guard);
    }
}

/// Marks the socket as being written; when the write ends (or its future is dropped midway, as
/// when the session stops), whoever waits is told.
struct Writing<'a>(&'a Out);

impl<'a> Writing<'a> {
    fn start(out: &'a Out) -> Writing<'a> {
        out.writing.set(true);
        Writing(out)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing.set(false);
        wake(&self.0.sender);
        // Frames left (the write was cut short) or a close to report: the background writer's.
        if !self.0.writer.borrow().is_empty() || self.0.state.get() != State::Open {
            wake(&self.0.background);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future, pin::Pin, time::Duration};

    use actix_web::web::{Bytes, BytesMut};
    use awc::ws::{Codec, Frame};
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio_util::codec::Decoder;

    use super::*;

    /// A `ToUpstream` on one end of an in-memory pipe of `capacity` bytes, and the other end.
    fn pipe(capacity: usize) -> (ToUpstream, DuplexStream) {
        let (near, far) = tokio::io::duplex(capacity);
        let socket = actix_codec::Framed::new(
            Box::new(near) as awc::BoxedSocket,
            Codec::new().client_mode(),
        );
        (ToUpstream::new(wire::split(socket).1), far)
    }

    /// The next `n` frames the far end reads, as the upstream would decode them.
    async fn frames(far: &mut DuplexStream, buf: &mut BytesMut, n: usize) -> Vec<Frame> {
        let mut codec = Codec::new();
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(frame) = codec.decode(buf).expect("a valid frame") {
                out.push(frame);
                continue;
            }
            let read = tokio::time::timeout(Duration::from_secs(5), far.read_buf(buf))
                .await
                .expect("bytes in time")
                .expect("read");
            assert!(read > 0, "the pipe closed after {} frames", out.len());
        }
        out
    }

    /// A batch of 4 KiB queued and its flush started on a pipe of 256 bytes: the flush waits
    /// for the far end to read. Returns the batch's text and the pending flush.
    fn stalled_flush(up: &ToUpstream) -> (String, Pin<Box<impl Future<Output = bool> + '_>>) {
        let big = "x".repeat(4096);
        assert!(up.queue(Message::Text(big.clone().into())));
        let mut flush = Box::pin(up.flush());
        assert!(
            (&mut flush).now_or_never().is_none(),
            "the pipe holds 256 bytes"
        );
        (big, flush)
    }

    /// Reads `n` frames at the far end while `flush` completes; both within 5 s.
    async fn flush_and_read(
        flush: impl Future<Output = bool>,
        far: &mut DuplexStream,
        n: usize,
    ) -> (bool, Vec<Frame>) {
        let reader = async {
            let mut buf = BytesMut::new();
            frames(far, &mut buf, n).await
        };
        tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(flush, reader)
        })
        .await
        .expect("the flush ends once the far end reads")
    }

    fn text(t: &'static str) -> Frame {
        Frame::Text(Bytes::from_static(t.as_bytes()))
    }

    /// A frame queued with `try_send` before the client's goes first; the client reader's
    /// batch goes in one flush; a pong sent while nobody writes is written by the background
    /// writer, which stops after the close frame.
    #[actix_web::test]
    async fn frames_go_out_in_order_and_the_background_writes_the_rest() {
        let (up, mut far) = pipe(64 * 1024);
        let background = actix_web::rt::spawn(up.clone().background());
        assert!(up.try_send(Message::Text("pinned".into())));
        assert!(up.queue(Message::Text("one".into())));
        assert!(up.queue(Message::Text("two".into())));
        assert!(up.flush().await);
        let mut buf = BytesMut::new();
        let got = frames(&mut far, &mut buf, 3).await;
        assert_eq!(got, [text("pinned"), text("one"), text("two")]);
        assert!(up.try_send(Message::Pong(Bytes::from_static(b"p"))));
        let got = frames(&mut far, &mut buf, 1).await;
        assert_eq!(got, [Frame::Pong(Bytes::from_static(b"p"))]);
        assert!(up.try_send(Message::Close(None)));
        assert!(
            !up.queue(Message::Text("late".into())),
            "nothing after the close"
        );
        assert!(!up.try_send(Message::Text("late".into())));
        let got = frames(&mut far, &mut buf, 1).await;
        assert_eq!(got, [Frame::Close(None)]);
        tokio::time::timeout(Duration::from_secs(5), background)
            .await
            .expect("the background writer stops after the close")
            .expect("no panic");
    }

    /// An upstream that does not read holds the client reader's flush (so it stops reading the
    /// client), and a frame sent meanwhile is written behind it once the upstream reads again.
    #[actix_web::test]
    async fn a_stalled_upstream_holds_the_flush() {
        let (up, mut far) = pipe(256);
        let _background = actix_web::rt::spawn(up.clone().background());
        let (big, flush) = stalled_flush(&up);
        assert!(up.try_send(Message::Pong(Bytes::from_static(b"p"))));
        let (flushed, got) = flush_and_read(flush, &mut far, 2).await;
        assert!(flushed);
        assert_eq!(got[0], Frame::Text(Bytes::from(big)));
        assert_eq!(got[1], Frame::Pong(Bytes::from_static(b"p")));
    }

    /// A close queued while the client reader's write waits for the upstream: the background
    /// writer waits for that write (it must not take its turn, nor spin), and ends once the
    /// close is out.
    #[actix_web::test]
    async fn a_close_during_a_stalled_write_waits_its_turn() {
        let (up, mut far) = pipe(256);
        let background = actix_web::rt::spawn(up.clone().background());
        let (big, flush) = stalled_flush(&up);
        assert!(up.try_send(Message::Close(None)));
        // Any holder going away wakes the background writer while the write is still stalled.
        drop(up.clone());
        tokio::task::yield_now().await;
        let (flushed, got) = flush_and_read(flush, &mut far, 2).await;
        assert!(flushed);
        assert_eq!(got, [Frame::Text(Bytes::from(big)), Frame::Close(None)]);
        tokio::time::timeout(Duration::from_secs(5), background)
            .await
            .expect("the background writer stops after the close")
            .expect("no panic");
    }

    /// The background writer stops once it is the only holder, after writing what was queued.
    #[actix_web::test]
    async fn the_background_writer_stops_with_its_last_sender() {
        let (up, mut far) = pipe(1024);
        let background = actix_web::rt::spawn(up.clone().background());
        assert!(up.try_send(Message::Text("last".into())));
        drop(up);
        tokio::time::timeout(Duration::from_secs(5), background)
            .await
            .expect("the background writer stops")
            .expect("no panic");
        let mut buf = BytesMut::new();
        assert_eq!(frames(&mut far, &mut buf, 1).await, [text("last")]);
    }
}
