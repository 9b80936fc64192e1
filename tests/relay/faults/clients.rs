//! Clients that misbehave, in numbers, against the relay binary (so its file descriptors and
//! memory can be read from `/proc`): a thousand sessions of which most break on purpose (dropped
//! mid-session, a reserved opcode, text that is not UTF-8, a frame over `MAX_MESSAGE_SIZE`, half a
//! frame, a client that stops reading), and connections that never finish their request headers.
//! What is pinned is what each client sees and what is left afterwards: nothing lost or doubled
//! for healthy sessions, and no session, upstream connection, descriptor or memory kept for the
//! broken ones. Frames are written by hand, with the raw client of `protocol::raw`. Malformed
//! upgrade requests are `malformed_upgrades`.

use std::collections::BTreeMap;

use fake_upstream::{FakeUpstream, Script};
use futures_util::{future::join_all, stream, StreamExt};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::{child::Process, poll::poll, stats::wait_until, *};
use crate::protocol::raw::{
    self, close_payload, frame, header, RawClient, BINARY, CLOSE, FIN, TEXT,
};

/// Sessions in the mixed run, and how many are open at once.
const SESSIONS: usize = 1000;
const AT_ONCE: usize = 100;
/// The PRNG's seed: the same mix of faults on every run.
const SEED: u64 = 0x5EED_0010_FA17_C11E;
/// Messages a healthy session sends and must get back, each once and in order.
const ECHOES: usize = 20;
/// `MAX_MESSAGE_SIZE` of the relay in the mixed run.
const MAX_MESSAGE: u64 = 64 * 1024;
/// A client that stops reading sends this many messages of this size first (256 KiB in all, which
/// the sockets on the way absorb, so its writes never wait on its own unread echoes).
const BURST: usize = 16;
const BURST_MESSAGE: usize = 16 * 1024;
/// Descriptors the relay may hold above its baseline once everything has ended: an admin
/// connection or two kept alive by the test's HTTP client.
const FD_TOLERANCE: usize = 4;
/// How far above its baseline the relay's resident memory may stay after the run: the allocator
/// keeps freed pages (and actix its per-worker buffers), but a leak of even 16 KiB per session
/// would exceed it.
const RSS_BOUND_KIB: u64 = 16 * 1024;
/// Connections that send part of a request line and then nothing.
const SLOW: usize = 200;

/// xorshift64: a tiny PRNG, so a fixed seed replays the same faults and values.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What one client of the mixed run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// Sends [`ECHOES`] messages, reads each back, closes with 1000.
    Healthy,
    /// Sends three messages, reads one echo, drops the TCP connection.
    Drop,
    /// Sends a frame with reserved opcode 3.
    ReservedOpcode,
    /// Sends a text frame that is not UTF-8.
    InvalidUtf8,
    /// Sends the header of a frame one byte over `MAX_MESSAGE_SIZE`, and a few bytes of it.
    Oversized,
    /// Sends the header of a 1,000-byte frame and 100 bytes of it, then drops.
    HalfFrame,
    /// Sends a burst the upstream echoes, reads none of it, drops.
    StopsReading,
}

impl Fault {
    /// 40% healthy, 10% each fault.
    fn draw(rng: &mut Rng) -> Fault {
        match rng.below(10) {
            0..=3 => Fault::Healthy,
            4 => Fault::Drop,
            5 => Fault::ReservedOpcode,
            6 => Fault::InvalidUtf8,
            7 => Fault::Oversized,
            8 => Fault::HalfFrame,
            _ => Fault::StopsReading,
        }
    }

    /// The `closed_by_reason` label the relay counts this session under.
    fn label(self) -> &'static str {
        match self {
            Fault::Healthy => "client_closed",
            Fault::Drop | Fault::HalfFrame | Fault::StopsReading => "client_gone",
            Fault::ReservedOpcode => "client_protocol_error",
            Fault::InvalidUtf8 => "client_invalid_utf8",
            Fault::Oversized => "client_message_too_large",
        }
    }
}

/// The relay binary in front of `upstream` on 127.0.0.1:0 with `extra` variables, and its address.
pub(super) async fn child_relay(
    test: &str,
    upstream: &str,
    extra: &[(&str, &str)],
) -> (Process, String) {
    let mut env = vec![
        ("OPENAI_API_KEY", TEST_KEY),
        ("OPENAI_API_URL", upstream),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
    ];
    env.extend_from_slice(extra);
    let mut relay = Process::spawn(test, &[], &env);
    let addr = relay.listening().await;
    (relay, addr)
}

/// The `n`th message of session `session`.
fn numbered(session: usize, n: usize) -> String {
    format!(r#"{{"type":"conversation.item.create","event_id":"s{session}-m{n}"}}"#)
}

/// The next data or close frame (pings answered by nobody: the relay's heartbeat is 30 s).
async fn next_frame(client: &mut RawClient, session: usize) -> raw::Received {
    client
        .next()
        .await
        .unwrap_or_else(|| panic!("session {session}: the connection ended without a close"))
}

/// Runs one client of the mixed run to its end, asserting what it must see.
async fn run(addr: &str, session: usize, fault: Fault) {
    let mut client = RawClient::connect(addr).await;
    match fault {
        Fault::Healthy => {
            for n in 0..ECHOES {
                let text = numbered(session, n);
                client.send(&frame(FIN | TEXT, text.as_bytes())).await;
            }
            for n in 0..ECHOES {
                let echo = next_frame(&mut client, session).await;
                assert_eq!(echo.opcode(), TEXT, "session {session}: {echo:?}");
                assert_eq!(
                    String::from_utf8_lossy(&echo.payload),
                    numbered(session, n),
                    "session {session}: echo {n} lost, doubled or out of order"
                );
            }
            client
                .send(&frame(FIN | CLOSE, &close_payload(1000, b"done")))
                .await;
            // Nothing but the close after the last echo: no message came back twice.
            let (code, reason) = client.close_alone().await;
            assert_eq!(code, 1000, "session {session}: {reason}");
        }
        Fault::Drop => {
            for n in 0..3 {
                let text = numbered(session, n);
                client.send(&frame(FIN | TEXT, text.as_bytes())).await;
            }
            let echo = next_frame(&mut client, session).await;
            assert_eq!(echo.payload, numbered(session, 0).as_bytes());
        }
        Fault::ReservedOpcode => {
            client.send(&frame(FIN | 0x3, b"")).await;
            assert_eq!(
                client.close_alone().await,
                (1002, "invalid_websocket_frame".into())
            );
        }
        Fault::InvalidUtf8 => {
            client
                .send(&frame(FIN | TEXT, &[0xCE, 0xBA, 0xED, 0xA0, 0x80]))
                .await;
            assert_eq!(client.close_alone().await, (1007, "invalid_utf8".into()));
        }
        Fault::Oversized => {
            let bytes = [header(FIN | BINARY, MAX_MESSAGE + 1), vec![b'x'; 64]].concat();
            client.send(&bytes).await;
            assert_eq!(
                client.close_alone().await,
                (1009, "message_too_large".into())
            );
        }
        Fault::HalfFrame => {
            let bytes = [header(FIN | TEXT, 1000), vec![b'x'; 100]].concat();
            client.send(&bytes).await;
        }
        Fault::StopsReading => {
            let payload = vec![b'y'; BURST_MESSAGE];
            for _ in 0..BURST {
                client.send(&frame(FIN | BINARY, &payload)).await;
            }
        }
    }
}

/// Waits until the relay at `http` has no live session and `fake` no open connection.
async fn settled(http: &str, fake: &FakeUpstream, sessions: u64) -> Value {
    let stats = wait_until(http, &format!("0 live of {sessions} sessions"), |s| {
        s["active_sessions"] == 0 && s["total_sessions"] == sessions
    })
    .await;
    let recorder = fake.recorder();
    let recorder = &recorder;
    poll("the fake upstream has no open connection")
        .until(|| async move {
            match recorder.open_connections() {
                0 => Ok(()),
                n => Err(format!("{n} open")),
            }
        })
        .await;
    stats
}

/// Waits until `relay` holds at most `baseline` + [`FD_TOLERANCE`] descriptors; returns the count.
async fn fds_back(relay: &Process, baseline: usize) -> usize {
    poll(format!("the relay's descriptors back near {baseline}"))
        .until(|| async move {
            let fds = relay.open_fds();
            if fds <= baseline + FD_TOLERANCE {
                Ok(fds)
            } else {
                Err(format!("{fds} open"))
            }
        })
        .await
}

/// 1,000 sessions, at most 100 at once, 60% with a client fault drawn by a seeded PRNG: every
/// healthy one gets each message back once and in order and its close, every faulted client still
/// there gets its close code alone, each ending is counted under its label, and afterwards the
/// relay has no session, the upstream no connection, and the relay's descriptors and memory are
/// back near their baseline.
#[actix_web::test]
async fn a_thousand_sessions_with_client_faults_leave_nothing_behind() {
    let fake = start_fake(Script::echo()).await;
    let max = MAX_MESSAGE.to_string();
    let (relay, addr) = child_relay(
        "faults-clients-mixed",
        &fake.url(),
        &[("MAX_CONNECTIONS", "2000"), ("MAX_MESSAGE_SIZE", &max)],
    )
    .await;
    let http = format!("http://{addr}");
    // Warm-up, so the baseline includes what the first session allocates once (worker buffers,
    // the upstream client, the dialer's TLS setup).
    run(&addr, 0, Fault::Healthy).await;
    settled(&http, &fake, 1).await;
    let (fds_before, rss_before) = (relay.open_fds(), relay.rss_kib());

    let mut rng = Rng::new(SEED);
    let plan: Vec<Fault> = (0..SESSIONS).map(|_| Fault::draw(&mut rng)).collect();
    let started = std::time::Instant::now();
    stream::iter(plan.iter().enumerate())
        .for_each_concurrent(AT_ONCE, |(n, fault)| run(&addr, n + 1, *fault))
        .await;
    let elapsed = started.elapsed();

    let stats = settled(&http, &fake, SESSIONS as u64 + 1).await;
    let fds_after = fds_back(&relay, fds_before).await;
    let (rss_after, peak) = (relay.rss_kib(), relay.peak_kib());
    let mut faults = BTreeMap::<Fault, u64>::new();
    for fault in &plan {
        *faults.entry(*fault).or_default() += 1;
    }
    eprintln!(
        "{SESSIONS} sessions in {elapsed:?}: {faults:?}; fds {fds_before} -> {fds_after}; \
         RSS {rss_before} KiB -> {rss_after} KiB (peak {peak} KiB); closed_by_reason {}",
        stats["closed_by_reason"]
    );

    let mut expected = BTreeMap::<&str, u64>::from([("client_closed", 1)]);
    for (fault, n) in &faults {
        *expected.entry(fault.label()).or_default() += n;
    }
    let closed: BTreeMap<&str, u64> = stats["closed_by_reason"]
        .as_object()
        .expect("closed_by_reason is a map")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_u64().expect("a count")))
        .collect();
    assert_eq!(closed, expected, "{stats}");
    assert_eq!(stats["rejected_sessions"], 0, "{stats}");
    assert!(
        rss_after <= rss_before + RSS_BOUND_KIB,
        "resident memory {rss_before} KiB -> {rss_after} KiB"
    );
    drop(relay);
    stop_fake(fake).await;
}

/// How a slow-header connection ended, read until the relay closes it.
async fn ending(tcp: &mut TcpStream) -> Result<String, String> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    match tokio::time::timeout(T, read).await {
        Ok(Ok(())) => Ok(String::from_utf8_lossy(&got).into_owned()),
        Ok(Err(e)) => Ok(format!("reset ({e})")),
        Err(_) => Err(format!(
            "still open after {T:?}, having sent {:?}",
            String::from_utf8_lossy(&got)
        )),
    }
}

/// 200 connections that send a few bytes of a request line and then nothing: while they are
/// held, `/health` answers 200 and a new session gets `session.created`; the relay then closes
/// every one of them itself (actix-web's client request timeout, 5 s by default, answering 408
/// at most), and its descriptors come back to their baseline.
#[actix_web::test]
async fn slow_header_connections_do_not_starve_the_relay() {
    let fake = start_fake(Script::echo()).await;
    let (relay, addr) = child_relay("faults-clients-slow", &fake.url(), &[]).await;
    let http = format!("http://{addr}");
    run(&addr, 0, Fault::Healthy).await;
    settled(&http, &fake, 1).await;
    let fds_before = relay.open_fds();

    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut tcp = timed("a slow connection", TcpStream::connect(&addr))
            .await
            .expect("connect to the relay");
        timed("a few bytes", tcp.write_all(b"GET /hea"))
            .await
            .expect("the relay takes them");
        slow.push(tcp);
    }
    let relay = &relay;
    // Within the tolerance: the baseline may include an admin connection since closed.
    poll("the relay holds every slow connection")
        .until(|| async move {
            let fds = relay.open_fds();
            if fds + FD_TOLERANCE >= fds_before + SLOW {
                Ok(())
            } else {
                Err(format!("{fds} descriptors, {fds_before} before"))
            }
        })
        .await;

    let (status, body) = get(&format!("{http}/health"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let (_, mut ws) = connect_with(&format!("ws://{addr}/realtime"), &["realtime"], &[])
        .await
        .expect("upgrade succeeds while the slow connections are held");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    close(&mut ws).await;

    let endings = join_all(slow.iter_mut().map(ending)).await;
    let mut seen = BTreeMap::<String, usize>::new();
    for ending in endings {
        let ending = ending.expect("the relay closes a connection that never sent its headers");
        let first_line = ending.lines().next().unwrap_or("").to_string();
        *seen.entry(first_line).or_default() += 1;
    }
    eprintln!("slow-header connections ended with: {seen:?}");
    for first_line in seen.keys() {
        assert!(
            first_line.is_empty()
                || first_line.starts_with("HTTP/1.1 408")
                || first_line.starts_with("reset"),
            "a slow-header connection got {first_line:?}"
        );
    }
    drop(slow);
    settled(&http, &fake, 2).await;
    let fds_after = fds_back(relay, fds_before).await;
    eprintln!("slow headers: fds {fds_before} -> {fds_after}");
    stop_fake(fake).await;
}
