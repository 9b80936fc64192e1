//! What a session may hold, whatever shape a client gives its frames (issue 10): frames waiting
//! before the upstream opens count their bookkeeping, not just their payload, and many sessions
//! flooded at once hold no more than a bound per session. The memory tests run the relay binary
//! as a child with `MAX_MESSAGE_SIZE` = [`MAX`], open [`SESSIONS`] sessions at once, push one
//! shape through all of them, and compare the growth of the child's peak resident memory
//! (`VmHWM`) with [`SESSIONS`] times the messages `docs/architecture.md` ("Backpressure and memory
//! per session") counts for the path, each at [`COST`] times its size, plus [`SLACK_KIB`]. The
//! upstream that stalls is written here: it answers the upgrade, sends `session.created`, and
//! never reads again.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use awc::ws::Message;
use base64::Engine;
use fake_upstream::{Mode, Script};
use futures_util::{future::join_all, SinkExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
};

use crate::{
    common::{child::Process, poll::poll, stats, *},
    protocol::raw::{frame, one_byte_fragments, parse_server_header, CLOSE, FIN, TEXT},
};

/// Empty frames sent before the upstream opens are not free: with MAX_MESSAGE_SIZE=1024 the
/// pre-open queue is full after 16 of them (64 bytes each), and the 17th ends the session with
/// `client_queue_overflow` and close 1008; nothing reaches the upstream.
#[actix_web::test]
async fn empty_frames_before_the_upstream_opens_fill_the_queue() {
    let h = start(
        Script {
            handshake_delay: Duration::from_secs(2),
            ..Script::echo()
        },
        &[("MAX_MESSAGE_SIZE", "1024")],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    for _ in 0..17 {
        send_text(&mut ws, "").await;
    }
    let event = expect_failure(&mut ws, "client_queue_overflow", 1008).await;
    assert_message_contains(&event, "1024");
    assert!(h.fake.recorder().messages().is_empty());
    h.stop().await;
}

/// How many sessions each memory test opens at once.
const SESSIONS: usize = 8;
/// The child relay's `MAX_MESSAGE_SIZE`: small, so the bounds are small next to the relay's own
/// memory but large next to its per-session buffers.
const MAX: usize = 256 * 1024;
/// The child relay's `HEARTBEAT_INTERVAL`, in ms: a stalled session ends 2 to 3 of these after
/// its last pong.
const HEARTBEAT_MS: &str = "1000";
/// Client → upstream, per session (architecture.md): the message being written into the upstream
/// socket (the client reader waits for the kernel to take it), and one partly received.
const CLIENT_TO_UPSTREAM: usize = 2;
/// Upstream → client, per session: one waiting in actix-ws's channel (the reader waits while 8 KiB
/// or more wait there), one moved into the connection's write buffer, the one the reader holds
/// while it waits, and one partly read or reassembled.
const UPSTREAM_TO_CLIENT: usize = 4;
/// What one of those messages may cost in resident memory, in times its size. A frame is a slice
/// of the buffer it was read into (actix-ws's on the client side, `upstream/wire.rs`'s on the
/// other), and keeps all of it alive; those buffers grow by doubling, so a message just over a
/// power of two (as here: MAX_MESSAGE_SIZE = 2^18, plus the frame header) pins a buffer twice its
/// size, written through by the start of the next frame. Towards the client, actix-http also
/// copies actix-ws's encoded message into its write buffer while the encoded one still exists.
/// Measured with 8 sessions (the relay's fixed cost included): 8.7 messages' worth a session
/// client → upstream, 7.6 upstream → client (31 and 55 to 70 before the client reader wrote the
/// upstream socket itself and the upstream reader counted bytes waiting for the client).
const COST: usize = 2;
/// What the peak may grow besides: the relay's cost that does not depend on the number of
/// sessions (the first upstream dial, the HTTP workers' allocator arenas, buffers that a flood
/// grows once), measured at 1.5 to 7.5 MiB by running these floods with 1 to 16 sessions, and
/// the idle cost of [`SESSIONS`] sessions (about 200 KiB each), with room to spare.
const SLACK_KIB: u64 = 16 * 1024;

/// Clients flood an upstream that completed its handshake and never reads: each session stops
/// taking the client's messages once the upstream socket takes no more, the child relay's peak
/// memory grows less than the client → upstream bound (2 messages of MAX_MESSAGE_SIZE, at twice
/// their size) per session, and every session ends by itself as `upstream_too_slow` with close 1011.
#[actix_web::test]
async fn flood_while_the_upstream_stalls_stays_bounded() {
    let upstream = StallingUpstream::start().await;
    let (relay, addr) = child_relay("upstream-stalls", &upstream.url, HEARTBEAT_MS).await;
    let before = relay.peak_kib();
    let mut clients = join_all((0..SESSIONS).map(|_| open(&addr))).await;
    poll("every upstream upgraded")
        .until(|| async {
            match upstream.opened() {
                SESSIONS => Ok(()),
                n => Err(format!("{n} upgraded")),
            }
        })
        .await;
    let event = big_event();
    let taken = join_all(clients.iter_mut().map(|ws| flood_until_stalled(ws, &event))).await;
    for ws in &mut clients {
        expect_failure(ws, "upstream_too_slow", 1011).await;
    }
    let stats = stats::wait_until(&format!("http://{addr}"), "every session ended", |s| {
        s["closed_by_reason"]["upstream_too_slow"] == SESSIONS && s["active_sessions"] == 0
    })
    .await;
    let relayed = stats["client_to_upstream"]["messages"]
        .as_u64()
        .expect("messages");
    eprintln!("messages of {MAX} bytes each client wrote before it stalled: {taken:?}");
    eprintln!("relayed to the upstream: {}", stats["client_to_upstream"]);
    // The flood went past what the relay holds: each client wrote more than its session passed
    // on and holds, and the rest waited in the kernel (TCP pushed back).
    for n in &taken {
        assert!(
            *n as u64 > relayed / SESSIONS as u64 + CLIENT_TO_UPSTREAM as u64,
            "a client wrote only {n} messages; {relayed} relayed"
        );
    }
    assert_grew_less(
        &relay,
        before,
        CLIENT_TO_UPSTREAM,
        "a flood while the upstream stalls",
    );
}

/// An upstream streams messages of MAX_MESSAGE_SIZE as fast as it can to clients that never read:
/// the relay stops reading the upstream once each client's path is full, its peak memory grows
/// less than the upstream → client bound (4 messages, at twice their size) per session, and
/// every session ends by itself as `client_too_slow`.
#[actix_web::test]
async fn flood_while_the_client_does_not_read_stays_bounded() {
    let fake = start_fake(Script {
        record_messages: false,
        ..Script::with_mode(Mode::Stream {
            message_bytes: MAX,
            interval: None,
            count: None,
        })
    })
    .await;
    let (relay, addr) = child_relay("client-does-not-read", &fake.url(), HEARTBEAT_MS).await;
    let before = relay.peak_kib();
    // Upgraded, then never read: not even `session.created`.
    let clients = join_all((0..SESSIONS).map(|_| async {
        let (_, ws) = connect_with(&format!("ws://{addr}/v1/realtime"), &["realtime"], &[])
            .await
            .expect("upgrade succeeds");
        ws
    }))
    .await;
    let stats = stats::wait_until(&format!("http://{addr}"), "every session ended", |s| {
        s["closed_by_reason"]["client_too_slow"] == SESSIONS && s["active_sessions"] == 0
    })
    .await;
    let relayed = stats["upstream_to_client"]["messages"]
        .as_u64()
        .expect("messages");
    eprintln!("relayed to the clients: {}", stats["upstream_to_client"]);
    // The flood went past what the relay holds: each session passed on more than that.
    assert!(
        relayed > (SESSIONS * UPSTREAM_TO_CLIENT) as u64,
        "only {relayed} messages relayed"
    );
    assert_grew_less(
        &relay,
        before,
        UPSTREAM_TO_CLIENT,
        "a flood while the client does not read",
    );
    drop(clients);
    drop(relay);
    stop_fake(fake).await;
}

/// Every session at once sends a message of one-byte fragments, far past the fragment limit
/// (MAX_MESSAGE_SIZE / 64): each gets close 1009 alone, and the child relay's peak memory grows
/// less than the client → upstream bound per session.
#[actix_web::test]
async fn one_byte_fragments_on_every_session_stay_bounded() {
    let fake = start_fake(Script::echo()).await;
    let (relay, addr) = child_relay("fragments-everywhere", &fake.url(), HEARTBEAT_MS).await;
    let before = relay.peak_kib();
    let mut clients = join_all((0..SESSIONS).map(|_| RawClient::connect(&addr))).await;
    for client in &mut clients {
        let first = timed(
            "session.created",
            next_frame(&mut client.read, &mut client.buf),
        )
        .await
        .expect("a frame");
        assert_eq!(first.0 & 0x0F, TEXT, "{first:?}");
    }
    let flood = Arc::new(one_byte_fragments(1 << 20));
    let endings = join_all(clients.into_iter().map(|c| c.flood(flood.clone()))).await;
    assert_grew_less(
        &relay,
        before,
        CLIENT_TO_UPSTREAM,
        "one-byte fragments on every session",
    );
    for ending in &endings {
        assert_eq!(ending.error, None, "{endings:?}");
        assert_eq!(
            ending.close,
            Some((1009, "message_too_large".into())),
            "{endings:?}"
        );
    }
    drop(relay);
    stop_fake(fake).await;
}

/// Every session at once floods empty frames before its upstream opens: each is ended with
/// `client_queue_overflow` and close 1008, and the child relay's peak memory grows less than the
/// pre-open queue's bound (MAX_MESSAGE_SIZE, counting 64 bytes a frame; at twice that) per
/// session.
#[actix_web::test]
async fn empty_frames_before_the_upstream_opens_on_every_session_stay_bounded() {
    let fake = start_fake(Script {
        handshake_delay: Duration::from_secs(5),
        ..Script::echo()
    })
    .await;
    let (relay, addr) = child_relay("empty-frames-everywhere", &fake.url(), HEARTBEAT_MS).await;
    let before = relay.peak_kib();
    let clients = join_all((0..SESSIONS).map(|_| RawClient::connect(&addr))).await;
    // A million empty frames (6 MiB on the wire): 256 times what the queue admits.
    let flood: Arc<Vec<u8>> = Arc::new((0..1 << 20).flat_map(|_| frame(FIN | TEXT, b"")).collect());
    let endings = join_all(clients.into_iter().map(|c| c.flood(flood.clone()))).await;
    assert_grew_less(&relay, before, 1, "empty frames before the upstream opens");
    for ending in &endings {
        assert_eq!(
            ending.error.as_deref(),
            Some("client_queue_overflow"),
            "{endings:?}"
        );
        assert_eq!(
            ending.close.as_ref().map(|c| c.0),
            Some(1008),
            "{endings:?}"
        );
    }
    assert!(fake.recorder().messages().is_empty());
    drop(relay);
    stop_fake(fake).await;
}

/// The relay binary with `MAX_MESSAGE_SIZE` = [`MAX`] and `HEARTBEAT_INTERVAL` = `heartbeat` in
/// front of `upstream`, and its address.
async fn child_relay(test: &str, upstream: &str, heartbeat: &str) -> (Process, String) {
    let max = MAX.to_string();
    let mut relay = Process::spawn(
        test,
        &[],
        &[
            ("OPENAI_API_KEY", TEST_KEY),
            ("OPENAI_API_URL", upstream),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("MAX_MESSAGE_SIZE", max.as_str()),
            ("HEARTBEAT_INTERVAL", heartbeat),
        ],
    );
    let addr = relay.listening().await;
    (relay, addr)
}

/// Asserts the child's peak memory grew less, since `before`, than [`SESSIONS`] times
/// `messages` messages of [`MAX`] bytes at [`COST`] times their size, plus [`SLACK_KIB`]; prints
/// the numbers.
fn assert_grew_less(relay: &Process, before: u64, messages: usize, what: &str) {
    let after = relay.peak_kib();
    let grown = after.saturating_sub(before);
    let per_session = (COST * messages * MAX / 1024) as u64;
    let bound = SESSIONS as u64 * per_session + SLACK_KIB;
    eprintln!(
        "{what}: peak {before} KiB -> {after} KiB (+{grown} KiB, {} KiB a session, {:.1} \
         messages of {MAX} bytes); bound {SESSIONS} x {per_session} KiB + {SLACK_KIB} KiB = \
         {bound} KiB",
        grown / SESSIONS as u64,
        (grown * 1024) as f64 / (SESSIONS * MAX) as f64
    );
    assert!(
        grown < bound,
        "{what} grew the relay's peak memory by {grown} KiB, over {bound} KiB"
    );
}

/// A client upgraded on `/v1/realtime` at `addr` that has read `session.created`.
async fn open(addr: &str) -> Ws {
    let (_, mut ws) = connect_with(&format!("ws://{addr}/v1/realtime"), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    ws
}

/// An `input_audio_buffer.append` of exactly [`MAX`] bytes.
fn big_event() -> String {
    let head = r#"{"type":"input_audio_buffer.append","audio":""#;
    let tail = r#""}"#;
    format!("{head}{}{tail}", "A".repeat(MAX - head.len() - tail.len()))
}

/// Sends `event` until a send has not gone through for [`STALLED`] (at most [`MOST`] sends);
/// returns how many went through.
async fn flood_until_stalled(ws: &mut Ws, event: &str) -> usize {
    let event = bytestring::ByteString::from(event);
    for n in 0..MOST {
        let send = ws.send(Message::Text(event.clone()));
        match tokio::time::timeout(STALLED, send).await {
            Ok(Ok(())) => {}
            _ => return n,
        }
    }
    MOST
}

/// A send that has not gone through for this long is stalled.
const STALLED: Duration = Duration::from_secs(1);
/// At most this many messages a client: 50 MiB, far more than a session and the kernel hold.
const MOST: usize = 200;

/// An upstream on 127.0.0.1:0 that answers every WebSocket upgrade, sends `session.created`, and
/// then holds the connection without reading, until it is dropped.
struct StallingUpstream {
    url: String,
    held: Arc<Mutex<Vec<TcpStream>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StallingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StallingUpstream {
    async fn start() -> StallingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let url = format!(
            "ws://{}/v1/realtime",
            listener.local_addr().expect("bound address")
        );
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    if let Some(tcp) = timed("the upstream handshake", handshake(tcp)).await {
                        keep.lock().expect("not poisoned").push(tcp);
                    }
                });
            }
        });
        StallingUpstream { url, held, task }
    }

    /// How many connections have been upgraded and are held.
    fn opened(&self) -> usize {
        self.held.lock().expect("not poisoned").len()
    }
}

/// Reads the upgrade request, answers 101 and sends `session.created` (unmasked, as a server
/// does); `None` if the relay went away first.
async fn handshake(mut tcp: TcpStream) -> Option<TcpStream> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let key = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    })?;
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept(&key)
    );
    let created = br#"{"type":"session.created","session":{"id":"sess_stalling"}}"#;
    let frame = [vec![FIN | TEXT, created.len() as u8], created.to_vec()].concat();
    tcp.write_all(answer.as_bytes()).await.ok()?;
    tcp.write_all(&frame).await.ok()?;
    Some(tcp)
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455): base64 of the SHA-1 of the key and the GUID.
/// (`actix_http::ws::hash_key` does the same, but actix-http is not a dependency of the tests.)
fn accept(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// How a flood ended: the `error` event's code, if one came, and the close frame's code and
/// reason, if one came.
#[derive(Debug, Default)]
struct Ending {
    error: Option<String>,
    close: Option<(u16, String)>,
}

/// A client on a raw TCP socket past its upgrade, for floods no WebSocket library sends.
struct RawClient {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl RawClient {
    /// Upgrades on `/v1/realtime` at `addr`; does not wait for any event.
    async fn connect(addr: &str) -> RawClient {
        let tcp = timed("the TCP connect", TcpStream::connect(addr))
            .await
            .expect("connect to the relay");
        let (mut read, mut write) = tcp.into_split();
        let request = format!(
            "GET /v1/realtime HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        timed("the upgrade request", write.write_all(request.as_bytes()))
            .await
            .expect("the relay takes the request");
        let mut buf = Vec::new();
        let end = timed("the upgrade's answer", async {
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return end;
                }
                let mut chunk = [0u8; 4096];
                let n = read.read(&mut chunk).await.unwrap_or(0);
                assert!(n > 0, "the relay closed during the upgrade");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buf.drain(..end + 4);
        RawClient { read, write, buf }
    }

    /// Writes `bytes` in 64 KiB writes (giving up on a write the relay has not taken in 2 s)
    /// while reading the relay's frames until its close frame or the connection's end, within
    /// [`T`]; returns how the relay ended the session.
    async fn flood(self, bytes: Arc<Vec<u8>>) -> Ending {
        let RawClient {
            mut read,
            mut write,
            mut buf,
        } = self;
        let writing = tokio::spawn(async move {
            for chunk in bytes.chunks(64 * 1024) {
                let wrote = tokio::time::timeout(Duration::from_secs(2), write.write_all(chunk));
                if !matches!(wrote.await, Ok(Ok(()))) {
                    return;
                }
            }
        });
        let mut ending = Ending::default();
        let _ = tokio::time::timeout(T, async {
            while let Some((first, payload)) = next_frame(&mut read, &mut buf).await {
                match first & 0x0F {
                    CLOSE if payload.len() >= 2 => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                        ending.close = Some((code, reason));
                        return;
                    }
                    TEXT => {
                        let v: serde_json::Value = serde_json::from_slice(&payload).expect("JSON");
                        if v["type"] == "error" {
                            ending.error = v["error"]["code"].as_str().map(str::to_string);
                        }
                    }
                    _ => {}
                }
            }
        })
        .await;
        writing.abort();
        ending
    }
}

/// The next frame in `buf`, reading more from `read` as needed; `None` once the connection ended.
async fn next_frame(read: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    loop {
        if let Some((first, len, at)) = parse_server_header(buf) {
            if buf.len() >= at + len {
                let payload = buf.drain(..at + len).skip(at).collect();
                return Some((first, payload));
            }
        }
        let mut chunk = [0u8; 4096];
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
