//! WebSocket spoken by hand, for what no well-behaved library sends: a client on a plain TCP
//! socket that writes frames byte by byte (masked, as a client must), and an upstream that answers
//! the relay's handshake and then writes whatever bytes a test scripts. Every read is bounded by
//! [`T`].

use std::time::Duration;

use base64::Engine;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
};

use crate::common::*;

/// The mask key of every client frame written here.
const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
/// The FIN bit, on the first byte.
pub const FIN: u8 = 0x80;

/// A masked client frame: first byte `first` (FIN, RSV and opcode), then `payload`.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = header(first, payload.len() as u64);
    bytes.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    bytes
}

/// The header of a masked client frame announcing `len` bytes of payload, without the payload.
pub fn header(first: u8, len: u64) -> Vec<u8> {
    let mut bytes = unmasked_header(first, len);
    bytes[1] |= 0x80;
    bytes.extend_from_slice(&MASK);
    bytes
}

/// The header of a server frame (never masked) announcing `len` bytes.
pub fn unmasked_header(first: u8, len: u64) -> Vec<u8> {
    match len {
        0..=125 => vec![first, len as u8],
        126..=0xFFFF => [vec![first, 126], (len as u16).to_be_bytes().to_vec()].concat(),
        _ => [vec![first, 127], len.to_be_bytes().to_vec()].concat(),
    }
}

/// A close frame's payload: `code`, then `reason`.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [code.to_be_bytes().as_slice(), reason].concat()
}

/// A message of `fragments` one-byte binary fragments (at least 2), as one buffer.
pub fn one_byte_fragments(fragments: usize) -> Vec<u8> {
    let mut bytes = frame(BINARY, b"x");
    let middle = frame(0x0, b"x");
    for _ in 2..fragments {
        bytes.extend_from_slice(&middle);
    }
    bytes.extend(frame(FIN, b"x"));
    bytes
}

/// One frame from the relay.
#[derive(Debug)]
pub struct Received {
    pub first: u8,
    pub payload: Vec<u8>,
}

impl Received {
    pub fn opcode(&self) -> u8 {
        self.first & 0x0F
    }
}

/// How a client's wait for the relay's close frame ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The close frame, first of all frames: its code and reason.
    Close(u16, String),
    /// A data frame came before any close (a relay `error` event, say): its payload's start.
    Data(String),
    /// The connection ended without a close frame.
    Dropped,
    /// Nothing ended in the time allowed.
    TimedOut,
}

/// A client on a raw TCP socket, past its WebSocket handshake.
pub struct RawClient {
    reader: FrameReader,
    write: OwnedWriteHalf,
}

struct FrameReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

impl RawClient {
    /// Upgrades on `/v1/realtime` at `addr` and waits for the upstream's first event.
    pub async fn connect(addr: &str) -> RawClient {
        let tcp = timed("the TCP connect", TcpStream::connect(addr))
            .await
            .expect("connect to the relay");
        let (read, write) = tcp.into_split();
        let mut client = RawClient {
            reader: FrameReader {
                read,
                buf: Vec::new(),
            },
            write,
        };
        let request = format!(
            "GET /v1/realtime HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        client.send(request.as_bytes()).await;
        let head = timed("the handshake's answer", client.reader.read_head()).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let first = client.next().await.expect("the upstream's first event");
        assert_eq!(first.opcode(), TEXT, "{first:?}");
        client
    }

    /// Writes `bytes`; panics if the relay does not take them within [`T`].
    pub async fn send(&mut self, bytes: &[u8]) {
        timed("a write to the relay", self.write.write_all(bytes))
            .await
            .expect("the relay takes the bytes");
    }

    /// The next frame from the relay; `None` once the connection has ended.
    pub async fn next(&mut self) -> Option<Received> {
        timed("a frame from the relay", self.reader.next()).await
    }

    /// Reads until the relay's close frame and returns its code and reason. Panics if a data
    /// frame comes first (a relay `error` event, say) or the connection ends without a close.
    pub async fn close_alone(&mut self) -> (u16, String) {
        match self.reader.ending(T).await {
            Ending::Close(code, reason) => (code, reason),
            other => panic!("expected a close frame alone, got {other:?}"),
        }
    }

    /// Writes `head`, then up to `zeros` zero bytes in 64 KiB writes, while waiting (at most
    /// `within`) for how the relay ends the connection; stops writing once it has, or when the
    /// relay has taken nothing for 2 s.
    pub async fn flood(&mut self, head: &[u8], zeros: usize, within: Duration) -> Ending {
        let done = std::cell::Cell::new(false);
        let write = &mut self.write;
        let writing = async {
            if write.write_all(head).await.is_err() {
                return;
            }
            let chunk = vec![0u8; 64 * 1024];
            let mut left = zeros;
            while left > 0 && !done.get() {
                let n = left.min(chunk.len());
                let wrote =
                    tokio::time::timeout(Duration::from_secs(2), write.write_all(&chunk[..n]));
                match wrote.await {
                    Ok(Ok(())) => left -= n,
                    _ => return,
                }
            }
        };
        let reading = async {
            let ending = self.reader.ending(within).await;
            done.set(true);
            ending
        };
        tokio::join!(writing, reading).1
    }
}

impl FrameReader {
    /// Reads more; false once the connection has ended. Callers bound the wait.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = self.read.read(&mut chunk).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(self.fill().await, "the relay closed during the handshake");
        }
    }

    async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some((first, len, at)) = parse_server_header(&self.buf) {
                if self.buf.len() >= at + len {
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some(Received { first, payload });
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads frames (skipping pings and pongs) until the relay ends the connection one way or
    /// another, within `within`.
    async fn ending(&mut self, within: Duration) -> Ending {
        let wait = async {
            loop {
                let Some(frame) = self.next().await else {
                    return Ending::Dropped;
                };
                let text = String::from_utf8_lossy(&frame.payload).into_owned();
                match frame.opcode() {
                    CLOSE if frame.payload.len() >= 2 => {
                        let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
                        let reason = String::from_utf8_lossy(&frame.payload[2..]).into_owned();
                        return Ending::Close(code, reason);
                    }
                    CLOSE => return Ending::Close(0, String::new()),
                    PING | 0xA => {}
                    _ => return Ending::Data(text.chars().take(200).collect()),
                }
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or(Ending::TimedOut)
    }
}

/// The first byte, payload length and payload offset of the unmasked frame at the start of `buf`.
pub fn parse_server_header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    assert_eq!(second & 0x80, 0, "the relay masked a frame");
    match second & 0x7F {
        126 => Some((
            first,
            u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize,
            4,
        )),
        127 => Some((
            first,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        )),
        n => Some((first, n as usize, 2)),
    }
}

/// What a [`RawUpstream`] writes after its handshake: these bytes, then `zeros` zero bytes in
/// 64 KiB writes (stopping early when the relay stops reading), then it waits for the relay to
/// hang up.
#[derive(Clone)]
pub struct Script {
    pub bytes: Vec<u8>,
    pub zeros: usize,
}

/// An upstream on 127.0.0.1:0 that answers every WebSocket handshake and then plays a [`Script`].
pub struct RawUpstream {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    pub async fn start(script: Script) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let url = format!(
            "ws://{}/v1/realtime",
            listener.local_addr().expect("bound address")
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(play(tcp, script.clone()));
            }
        });
        RawUpstream { url, task }
    }
}

async fn play(mut tcp: TcpStream, script: Script) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if tcp.write_all(answer.as_bytes()).await.is_err()
        || tcp.write_all(&script.bytes).await.is_err()
    {
        return;
    }
    let zeros = vec![0u8; 64 * 1024];
    let mut left = script.zeros;
    while left > 0 {
        let n = left.min(zeros.len());
        // A relay that refused the frame stops reading; give up rather than wait forever.
        match tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&zeros[..n])).await {
            Ok(Ok(())) => left -= n,
            _ => break,
        }
    }
    let _ = tokio::time::timeout(T, async {
        while !matches!(tcp.read(&mut chunk).await, Ok(0) | Err(_)) {}
    })
    .await;
}
