//! The upstream socket once its handshake is done. awc hands the relay an `actix_codec::Framed`
//! whose read buffer grows to 8 KiB on the first read and never shrinks, and whose write buffer
//! keeps its capacity: most of an idle session's memory. Here the reader reads in `READ_CHUNK`
//! steps but lets go of its buffer whenever it is empty and the socket has nothing more (an idle
//! session holds no read buffer), and the writer encodes each batch into a buffer it keeps only
//! while it is small.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use actix_web::web::{Bytes, BytesMut};
use actix_ws::ProtocolError;
use awc::ws::Frame;
use awc::{
    ws::{Codec, Message},
    BoxedSocket,
};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio_util::codec::{Decoder, Encoder};

/// How much room a read gets (at least); a frame larger than that grows the buffer.
pub(crate) const READ_CHUNK: usize = 8 * 1024;
/// A write buffer up to this size is kept for the next batch; a larger one is released.
const KEEP_WRITE_CAPACITY: usize = 16 * 1024;

/// The upgraded socket, with the bytes the handshake read past the response head in front.
/// An upstream WebSocket as awc hands it over after the handshake.
pub(crate) type Socket = actix_codec::Framed<BoxedSocket, Codec>;

pub(crate) struct Prefixed {
    prefix: Bytes,
    io: BoxedSocket,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Upstream frames, decoded.
pub(crate) struct Reader {
    half: ReadHalf<Prefixed>,
    codec: Codec,
    buf: BytesMut,
    eof: bool,
}

impl Stream for Reader {
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.codec.decode(&mut this.buf) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            if this.eof {
                return Poll::Ready(None);
            }
            if this.buf.capacity() - this.buf.len() < READ_CHUNK / 8 {
                this.buf.reserve(READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.half), cx, &mut this.buf) {
                Poll::Pending => {
                    if this.buf.is_empty() {
                        // Nothing half-read: an idle session keeps no buffer.
                        this.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(ProtocolError::Io(e)))),
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

/// Writes client frames (and pongs, and the close) to the upstream, a batch per write.
pub(crate) struct Writer {
    half: WriteHalf<Prefixed>,
    codec: Codec,
    buf: BytesMut,
}

impl Writer {
    /// Queues one frame for the next `flush`.
    pub(crate) fn encode(&mut self, msg: Message) -> io::Result<()> {
        self.codec
            .encode(msg, &mut self.buf)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Writes every queued frame in one go.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.half.write_all(&self.buf).await?;
        self.half.flush().await?;
        if self.buf.capacity() > KEEP_WRITE_CAPACITY {
            self.buf = BytesMut::new();
        } else {
            self.buf.clear();
        }
        Ok(())
    }
}

/// Takes awc's socket apart into a lean reader and writer.
pub(crate) fn split(socket: Socket) -> (Reader, Writer) {
    let parts = socket.into_parts();
    // A copy, so awc's 8 KiB read buffer is released rather than kept alive by the prefix.
    let io = Prefixed {
        prefix: Bytes::copy_from_slice(&parts.read_buf),
        io: parts.io,
    };
    let (read, write) = tokio::io::split(io);
    let reader = Reader {
        half: read,
        codec: parts.codec.clone(),
        buf: BytesMut::new(),
        eof: false,
    };
    let writer = Writer {
        half: write,
        codec: parts.codec,
        // Anything awc had encoded but not written yet goes first.
        buf: BytesMut::from(&parts.write_buf[..]),
    };
    (reader, writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Bytes the handshake read early come out first, then the socket's own.
    #[actix_web::test]
    async fn prefix_is_read_before_the_socket() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = Prefixed {
            prefix: Bytes::from_static(b"early "),
            io: Box::new(near),
        };
        far.write_all(b"later").await.expect("write");
        drop(far);
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"early later");
    }
}
