//! The upstream socket once its handshake is done, and the frame-header checks both sides apply.
//!
//! awc hands the relay an `actix_codec::Framed` whose read buffer grows to 8 KiB on the first read
//! and never shrinks, and whose write buffer keeps its capacity: most of an idle session's memory.
//! Here the reader reads in `READ_CHUNK` steps but lets go of its buffer whenever it is empty and
//! the socket has nothing more (an idle session holds no read buffer), and the writer encodes each
//! batch into a buffer it keeps only while it is small.
//!
//! actix-http's codec trusts a frame header until the payload it announces has arrived: a header
//! that announces 1 TiB is buffered for as long as bytes keep coming, and its size limit, the
//! 125-byte limit of control frames and reserved bits are only looked at afterwards. So each
//! header is judged here first ([`Header::check`]): the upstream reader before it decodes a frame,
//! the client's byte stream through a [`Scanner`] (`session/client.rs`).

use std::{
    cmp::min,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use actix_web::web::{Buf, Bytes, BytesMut};
use actix_ws::ProtocolError;
use awc::ws::Frame;
use awc::{
    ws::{Codec, Message},
    BoxedSocket,
};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
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
    /// Frames announcing more are refused from their header ([`Reader::refuse_frames_over`]).
    max_frame: usize,
}

/// Why the upstream's frames stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket failed (a reset, a TLS error): the upstream is gone.
    Gone,
    /// A frame over the limit, refused from its header.
    TooLarge,
    /// Something that is not valid WebSocket (reserved bits or opcodes, a bad control frame).
    Invalid,
}

impl From<Refusal> for ReadError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::TooLarge | Refusal::TooManyFragments => ReadError::TooLarge,
            Refusal::Invalid(_) => ReadError::Invalid,
        }
    }
}

impl Reader {
    /// Refuses any frame whose header announces more than `max` bytes, before its payload is read.
    pub(crate) fn refuse_frames_over(&mut self, max: usize) {
        self.max_frame = max;
    }
}

impl Stream for Reader {
    type Item = Result<Frame, ReadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // The buffer always starts at a frame boundary: judge the header before the codec
            // waits for (and buffers) the payload it announces.
            if let Some(Err(refusal)) = Header::parse(&this.buf).map(|h| h.check(this.max_frame)) {
                return Poll::Ready(Some(Err(refusal.into())));
            }
            match this.codec.decode(&mut this.buf) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(ProtocolError::Overflow) => return Poll::Ready(Some(Err(ReadError::TooLarge))),
                // Every other codec error is a bad frame, including its I/O-shaped ones.
                Err(_) => return Poll::Ready(Some(Err(ReadError::Invalid))),
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
                Poll::Ready(Err(_)) => return Poll::Ready(Some(Err(ReadError::Gone))),
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;
/// The longest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The first bytes of a WebSocket frame (RFC 6455 §5.2): enough to judge it before its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    fin: bool,
    /// RSV1 to RSV3; no extension is negotiated, so they must be 0.
    reserved: u8,
    opcode: u8,
    len: u64,
    /// Bytes the header takes, the mask key included.
    size: usize,
}

/// Why a frame is refused before its payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// A data frame announcing more than the limit (close 1009).
    #[error("the frame announces more than the size limit")]
    TooLarge,
    /// A message in more fragments than the client may send (close 1009).
    #[error("the message has more fragments than the limit")]
    TooManyFragments,
    /// Not valid WebSocket (close 1002).
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
}

impl Header {
    /// The header at the start of `buf`; `None` while it is incomplete.
    pub(crate) fn parse(buf: &[u8]) -> Option<Header> {
        let (&first, &second) = (buf.first()?, buf.get(1)?);
        let (len, mut size) = match second & 0x7F {
            126 => (
                u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
                4,
            ),
            127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
            n => (u64::from(n), 2),
        };
        if second & 0x80 != 0 {
            size += 4;
        }
        if buf.len() < size {
            return None;
        }
        Some(Header {
            fin: first & 0x80 != 0,
            reserved: first & 0x70,
            opcode: first & 0x0F,
            len,
            size,
        })
    }

    /// Whether a frame with this header may be read, judged by the header alone: no reserved
    /// bits, no reserved opcode, control frames whole and at most 125 bytes, data frames at most
    /// `max_frame` bytes.
    pub(crate) fn check(&self, max_frame: usize) -> Result<(), Refusal> {
        if self.reserved != 0 {
            return Err(Refusal::Invalid("reserved bits set"));
        }
        if self.len > i64::MAX as u64 {
            return Err(Refusal::Invalid("payload length with its top bit set"));
        }
        match self.opcode {
            0..=2 if self.len > max_frame as u64 => Err(Refusal::TooLarge),
            0..=2 => Ok(()),
            8..=10 if !self.fin => Err(Refusal::Invalid("fragmented control frame")),
            8..=10 if self.len > MAX_CONTROL_PAYLOAD => {
                Err(Refusal::Invalid("control frame over 125 bytes"))
            }
            8..=10 => Ok(()),
            _ => Err(Refusal::Invalid("reserved opcode")),
        }
    }
}

/// Follows frame boundaries through a client's byte stream and judges each header as soon as
/// it is complete: [`Header::check`], plus the order of fragments and their number. actix-ws
/// keeps one `Bytes` (and the bytes it shares) per fragment of a message it reassembles, so a
/// message of 1-byte fragments would cost tens of times its payload: `max_fragments` bounds that.
pub(crate) struct Scanner {
    max_frame: usize,
    max_fragments: usize,
    header: [u8; MAX_HEADER],
    /// Bytes of the next header seen so far.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// Frames of the fragmented message in progress; 0 when none is.
    fragments: usize,
}

impl Scanner {
    pub(crate) fn new(max_frame: usize, max_fragments: usize) -> Scanner {
        Scanner {
            max_frame,
            max_fragments,
            header: [0; MAX_HEADER],
            have: 0,
            payload_left: 0,
            fragments: 0,
        }
    }

    /// Follows `chunk`, the next bytes of the stream. On a refused frame, returns where its
    /// header starts in `chunk` (0 when it began in an earlier chunk): the bytes before it are
    /// whole frames.
    pub(crate) fn scan(&mut self, chunk: &[u8]) -> Result<(), (usize, Refusal)> {
        let mut at = 0;
        while at < chunk.len() {
            if self.payload_left > 0 {
                let n = min(self.payload_left, (chunk.len() - at) as u64);
                self.payload_left -= n;
                at += n as usize; // n <= chunk.len() - at
                continue;
            }
            let start = if self.have > 0 { 0 } else { at };
            let take = min(MAX_HEADER - self.have, chunk.len() - at);
            self.header[self.have..self.have + take].copy_from_slice(&chunk[at..at + take]);
            let Some(header) = Header::parse(&self.header[..self.have + take]) else {
                self.have += take;
                at += take;
                continue;
            };
            at += header.size - self.have;
            self.have = 0;
            self.judge(&header).map_err(|refusal| (start, refusal))?;
            self.payload_left = header.len;
        }
        Ok(())
    }

    fn judge(&mut self, header: &Header) -> Result<(), Refusal> {
        header.check(self.max_frame)?;
        match header.opcode {
            0 if self.fragments == 0 => Err(Refusal::Invalid("continuation without a message")),
            0 => {
                self.fragments += 1;
                if self.fragments > self.max_fragments {
                    return Err(Refusal::TooManyFragments);
                }
                if header.fin {
                    self.fragments = 0;
                }
                Ok(())
            }
            1 | 2 if self.fragments > 0 => {
                Err(Refusal::Invalid("new message inside a fragmented one"))
            }
            1 | 2 => {
                if !header.fin {
                    self.fragments = 1;
                }
                Ok(())
            }
            // Control frames may come between fragments.
            _ => Ok(()),
        }
    }
}

/// Writes client frames (and pongs, and the close) to the upstream: frames are encoded into
/// one buffer and written out together (`sender.rs` decides when).
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

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes queued.
    pub(crate) fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Writes what is queued until none is left (frames queued meanwhile included).
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            match ready!(Pin::new(&mut self.half).poll_write(cx, &self.buf))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.buf.advance(n),
            }
        }
        ready!(Pin::new(&mut self.half).poll_flush(cx))?;
        if self.buf.capacity() > KEEP_WRITE_CAPACITY {
            self.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
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
        // The codec's own limit applies until the caller sets this one.
        max_frame: usize::MAX,
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    /// A frame header: `first` byte, payload length `len`, masked or not (mask key 0).
    fn header(first: u8, len: u64, masked: bool) -> Vec<u8> {
        let mask = if masked { 0x80 } else { 0 };
        let mut h = match len {
            0..=125 => vec![first, mask | len as u8],
            126..=0xFFFF => [vec![first, mask | 126], (len as u16).to_be_bytes().to_vec()].concat(),
            _ => [vec![first, mask | 127], len.to_be_bytes().to_vec()].concat(),
        };
        if masked {
            h.extend_from_slice(&[0; 4]);
        }
        h
    }

    /// Lengths in all three forms, with and without a mask, and nothing before the header is whole.
    #[test]
    fn headers_parse_in_every_length_form() {
        for (len, masked, size) in [
            (5, false, 2),
            (5, true, 6),
            (300, true, 8),
            (1 << 40, true, 14),
        ] {
            let bytes = header(0x82, len, masked);
            let h = Header::parse(&bytes).expect("whole header");
            assert_eq!((h.len, h.size, h.opcode, h.fin), (len, size, 2, true));
            assert_eq!(Header::parse(&bytes[..size - 1]), None, "{len} {masked}");
        }
    }

    /// What a header alone refuses: reserved bits and opcodes, bad control frames, big data frames.
    #[test]
    fn headers_are_judged_before_the_payload() {
        let check = |first: u8, len: u64| {
            Header::parse(&header(first, len, true))
                .expect("whole header")
                .check(1024)
        };
        assert_eq!(check(0x81, 1024), Ok(()));
        assert_eq!(check(0x81, 1025), Err(Refusal::TooLarge));
        assert_eq!(check(0x00, 1 << 40), Err(Refusal::TooLarge));
        assert_eq!(check(0x89, 125), Ok(()));
        let invalid = [
            (0xC1, 1, "RSV1"),
            (0x83, 1, "opcode 3"),
            (0x8B, 1, "opcode 11"),
            (0x89, 126, "a ping of 126 bytes"),
            (0x09, 1, "a fragmented ping"),
            (0x82, 1 << 63, "the length's top bit"),
        ];
        for (first, len, what) in invalid {
            assert!(
                matches!(check(first, len), Err(Refusal::Invalid(_))),
                "{what}"
            );
        }
    }

    /// The scanner finds a header split across chunks, and says where the refused frame starts.
    #[test]
    fn scanner_follows_frames_across_chunks() {
        let good = [header(0x81, 3, true), b"abc".to_vec()].concat();
        let bad = header(0x82, 1 << 40, true);
        let mut scanner = Scanner::new(1024, 16);
        assert_eq!(scanner.scan(&good), Ok(()));
        // Two whole frames, then the first 3 bytes of the big one's header.
        let chunk = [good.clone(), good.clone(), bad[..3].to_vec()].concat();
        assert_eq!(scanner.scan(&chunk), Ok(()));
        assert_eq!(scanner.scan(&bad[3..]), Err((0, Refusal::TooLarge)));
        let mut scanner = Scanner::new(1024, 16);
        let chunk = [good.clone(), bad.clone()].concat();
        assert_eq!(scanner.scan(&chunk), Err((good.len(), Refusal::TooLarge)));
    }

    /// Fragments: in order, interleaved with pings, and at most `max_fragments` to a message.
    #[test]
    fn scanner_counts_and_orders_fragments() {
        let frame = |first: u8| [header(first, 1, true), vec![b'x']].concat();
        let mut scanner = Scanner::new(1024, 3);
        let message = [frame(0x01), frame(0x89), frame(0x00), frame(0x80)].concat();
        assert_eq!(scanner.scan(&message), Ok(()));
        assert_eq!(scanner.scan(&message), Ok(()), "the count starts again");
        let four = [frame(0x01), frame(0x00), frame(0x00), frame(0x80)].concat();
        assert_eq!(
            scanner.scan(&four),
            Err((3 * frame(0x00).len(), Refusal::TooManyFragments))
        );
        let orphan = Scanner::new(1024, 3).scan(&frame(0x80));
        assert!(
            matches!(orphan, Err((0, Refusal::Invalid(_)))),
            "{orphan:?}"
        );
        let nested = Scanner::new(1024, 3).scan(&[frame(0x01), frame(0x81)].concat());
        assert!(
            matches!(nested, Err((7, Refusal::Invalid(_)))),
            "{nested:?}"
        );
    }
}
