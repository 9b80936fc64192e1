//! One client thread: its own actix `System` and `awc::Client`, the sessions given to it from
//! connect to close (`ws.rs`), and the load run of one session. Started by `drive.rs` and `admission.rs`
//! with `spawn_clients`; a thread reports `Event`s on a channel, follows the run's `Phase` on a
//! `watch` channel, returns its `Report` when its last session has ended. Every wait is bounded.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    fmt::Write as _,
    rc::Rc,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use actix_web::web::Bytes;
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Notify, Semaphore};

use crate::{
    args::Failure,
    plan::{Cfg, Event, Kind, Phase, Report},
    stats::micros,
    ws::{close, event_id_of, hold_until, open, probe_once, Ws, CLOSE_TIMEOUT, SETUP_TIMEOUT},
};

/// After the last send, how long the echoes of what is still in flight may take.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A session with nothing to read for this long during a run is given up.
pub(crate) const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Starting and joining client threads

/// Starts `threads` client threads sharing `cfg.sessions` sessions round robin.
pub(crate) fn spawn_clients(
    cfg: &Cfg,
    threads: usize,
    phase: &watch::Receiver<Phase>,
    events: &mpsc::Sender<Event>,
) -> Result<Vec<JoinHandle<Report>>, Failure> {
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<usize> = (t..cfg.sessions).step_by(threads).collect();
        let cfg = cfg.clone();
        let phase = phase.clone();
        let events = events.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-client-{t}"))
            .spawn(move || {
                actix_web::rt::System::new().block_on(client_thread(cfg, ids, phase, events))
            })
            .map_err(|e| Failure::Run(format!("cannot start a client thread: {e}")))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// How long setting up `sessions` may take: bounded per session, plus the connect concurrency
/// limit on top.
pub(crate) fn setup_bound(sessions: usize) -> Duration {
    SETUP_TIMEOUT + Duration::from_millis(20 * sessions as u64) + Duration::from_secs(10)
}

/// Waits for one event from each of `threads`, or until `deadline`.
pub(crate) fn wait_events(rx: &mpsc::Receiver<Event>, threads: usize, deadline: Instant) {
    let mut seen = 0;
    while seen < threads {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(_) => seen += 1,
            Err(_) => {
                eprintln!(
                    "relay-bench: gave up waiting for {} thread(s)",
                    threads - seen
                );
                return;
            }
        }
    }
}

/// Joins the client threads and merges what they measured.
pub(crate) fn join_clients(handles: Vec<JoinHandle<Report>>) -> Result<Report, Failure> {
    let mut report = Report::default();
    for handle in handles {
        match handle.join() {
            Ok(r) => report.merge(r),
            Err(_) => return Err(Failure::Run("a client thread panicked".into())),
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// One client thread

/// What the sessions of one thread share.
struct Ctx {
    cfg: Cfg,
    client: awc::Client,
    phase: watch::Receiver<Phase>,
    report: RefCell<Report>,
    connect: Semaphore,
    /// 'A' × bytes, sliced for padding.
    pad: String,
    setup_left: Cell<usize>,
    run_left: Cell<usize>,
    changed: Notify,
}

impl Ctx {
    fn setup_done(&self) {
        self.setup_left.set(self.setup_left.get() - 1);
        self.changed.notify_one();
    }

    fn run_done(&self) {
        self.run_left.set(self.run_left.get() - 1);
        self.changed.notify_one();
    }

    async fn until_zero(&self, counter: &Cell<usize>) {
        while counter.get() > 0 {
            self.changed.notified().await;
        }
    }
}

/// The sessions `ids` of one thread: tells `Ready` once each has `session.created` (or failed),
/// `RunDone` after a load run, and returns what it measured once every session has ended.
async fn client_thread(
    cfg: Cfg,
    ids: Vec<usize>,
    phase: watch::Receiver<Phase>,
    events: mpsc::Sender<Event>,
) -> Report {
    let connector = awc::Connector::new()
        .limit(0)
        .timeout(Duration::from_secs(10));
    let client = awc::Client::builder()
        .connector(connector)
        .max_http_version(awc::http::Version::HTTP_11)
        .timeout(SETUP_TIMEOUT)
        .finish();
    let bytes = match cfg.kind {
        Kind::Load { bytes, .. } => bytes,
        _ => 64,
    };
    let ctx = Rc::new(Ctx {
        connect: Semaphore::new(cfg.connect_concurrency),
        cfg,
        client,
        phase,
        report: RefCell::new(Report::default()),
        pad: "A".repeat(bytes),
        setup_left: Cell::new(ids.len()),
        run_left: Cell::new(ids.len()),
        changed: Notify::new(),
    });
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| actix_web::rt::spawn(session(id, Rc::clone(&ctx))))
        .collect();
    ctx.until_zero(&ctx.setup_left).await;
    let _ = events.send(Event::Ready);
    if matches!(ctx.cfg.kind, Kind::Load { .. }) {
        ctx.until_zero(&ctx.run_left).await;
        let _ = events.send(Event::RunDone);
    }
    for task in tasks {
        let _ = task.await;
    }
    ctx.report.take()
}

/// One session from connect to close; every outcome ends up in the thread's report.
async fn session(id: usize, ctx: Rc<Ctx>) {
    let opened = {
        let _permit = ctx.connect.acquire().await;
        let t0 = Instant::now();
        match tokio::time::timeout(SETUP_TIMEOUT, open(&ctx.client, &ctx.cfg.url)).await {
            Ok(Ok(ws)) => Ok((ws, t0.elapsed())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("no session.created within the setup timeout".to_owned()),
        }
    };
    let mut ws = match opened {
        Ok((ws, took)) => {
            let mut r = ctx.report.borrow_mut();
            r.ok += 1;
            r.setup_us.push(micros(took));
            drop(r);
            ctx.setup_done();
            ws
        }
        Err(why) => {
            ctx.report.borrow_mut().fail(why);
            ctx.setup_done();
            ctx.run_done();
            return;
        }
    };
    let mut phase = ctx.phase.clone();
    match ctx.cfg.kind.clone() {
        Kind::Slow { .. } => {
            // Never read again: the proxy's buffers toward us fill up.
            let _ = phase.wait_for(|p| *p >= Phase::Close).await;
            drop(ws);
        }
        Kind::Idle { probe, .. } => {
            let alive = hold_until(&mut ws, &mut phase, Phase::Probe).await;
            if alive {
                ctx.report.borrow_mut().open_at_end += 1;
                if probe {
                    match probe_once(&mut ws, id).await {
                        Ok(rtt) => {
                            let mut r = ctx.report.borrow_mut();
                            r.probe_ok += 1;
                            r.probe_rtt_us.push(micros(rtt));
                        }
                        Err(why) => {
                            let mut r = ctx.report.borrow_mut();
                            if r.errors.len() < 5 {
                                r.errors.push(format!("probe: {why}"));
                            }
                        }
                    }
                }
                close(&mut ws).await;
            }
        }
        Kind::Load {
            bytes,
            rate,
            window,
            duration,
            messages,
        } => {
            let _ = hold_until(&mut ws, &mut phase, Phase::Run).await;
            let plan = LoadPlan {
                id,
                bytes,
                rate,
                window,
                deadline: tokio::time::Instant::now() + duration,
                messages: messages.unwrap_or(u64::MAX),
            };
            let overall = duration + DRAIN_TIMEOUT + CLOSE_TIMEOUT + READ_IDLE_TIMEOUT;
            if tokio::time::timeout(overall, run_load(ws, plan, &ctx))
                .await
                .is_err()
            {
                ctx.report
                    .borrow_mut()
                    .fail(format!("session {id} wedged during the load run"));
            }
            ctx.run_done();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load run of one session

struct LoadPlan {
    id: usize,
    bytes: usize,
    rate: Option<f64>,
    window: usize,
    deadline: tokio::time::Instant,
    messages: u64,
}

/// State shared by a session's writer and reader (same task, never borrowed across an await).
#[derive(Default)]
struct InFlight {
    /// Sequence numbers sent and not yet echoed, with their send time, oldest first.
    pending: RefCell<VecDeque<(u64, Instant)>>,
    sender_done: Cell<bool>,
    /// Woken when an echo arrives (room in the window, or the drain finished).
    echoed: Notify,
}

async fn run_load(ws: Ws, plan: LoadPlan, ctx: &Ctx) {
    let (mut sink, mut stream) = ws.split();
    let flight = InFlight::default();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();

    let writer = async {
        let mut seq = 0u64;
        let mut ticker = plan.rate.map(|rate| {
            let period = Duration::from_secs_f64(1.0 / rate);
            // Spread sessions over the period so they do not all send in the same instant.
            let offset = period.mul_f64((plan.id % 997) as f64 / 997.0);
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut failed = None;
        while seq < plan.messages {
            let slot = async {
                match ticker.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => loop {
                        if flight.pending.borrow().len() < plan.window {
                            break;
                        }
                        flight.echoed.notified().await;
                    },
                }
            };
            tokio::select! {
                biased;
                Some(p) = pong_rx.recv() => {
                    if let Err(e) = sink.send(Message::Pong(p)).await {
                        failed = Some(format!("send pong: {e}"));
                        break;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(plan.deadline) => break,
                _ = slot => {}
            }
            let text = append_event(plan.id, seq, plan.bytes, &ctx.pad);
            flight.pending.borrow_mut().push_back((seq, Instant::now()));
            if let Err(e) = sink.send(Message::Text(text.into())).await {
                failed = Some(format!("send: {e}"));
                break;
            }
            seq += 1;
        }
        flight.sender_done.set(true);
        let drain = async {
            while !flight.pending.borrow().is_empty() {
                flight.echoed.notified().await;
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            sink.send(Message::Close(Some(CloseCode::Normal.into()))),
        )
        .await;
        (seq, failed)
    };

    let reader = async {
        let mut messages = 0u64;
        let mut bytes = 0u64;
        let mut rtts = Vec::new();
        let mut last = None;
        let mut failed = None;
        loop {
            let frame = match tokio::time::timeout(READ_IDLE_TIMEOUT, stream.next()).await {
                Err(_) => {
                    failed = Some("nothing to read for 30 s".to_owned());
                    break;
                }
                Ok(None) => {
                    if !flight.sender_done.get() {
                        failed = Some("connection ended during the run".to_owned());
                    }
                    break;
                }
                Ok(Some(Err(e))) => {
                    failed = Some(format!("protocol error: {e}"));
                    break;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Frame::Text(text) => {
                    let now = Instant::now();
                    let Some(seq) = event_id_of(&text).and_then(seq_of) else {
                        continue;
                    };
                    let mut pending = flight.pending.borrow_mut();
                    while let Some(&(s, sent)) = pending.front() {
                        if s > seq {
                            break;
                        }
                        pending.pop_front();
                        if s == seq {
                            rtts.push(micros(now - sent));
                            messages += 1;
                            bytes += text.len() as u64;
                            last = Some(now);
                        }
                    }
                    drop(pending);
                    flight.echoed.notify_one();
                }
                Frame::Ping(p) => {
                    let _ = pong_tx.send(p);
                }
                Frame::Close(_) => break,
                _ => {}
            }
        }
        flight.sender_done.set(true);
        flight.echoed.notify_one();
        (messages, bytes, rtts, last, failed)
    };

    let ((sent, write_failed), (messages, bytes, rtts, last, read_failed)) =
        futures_util::future::join(writer, reader).await;
    let mut r = ctx.report.borrow_mut();
    r.sent += sent;
    r.messages += messages;
    r.bytes += bytes;
    r.lost += sent.saturating_sub(messages);
    r.rtt_us.extend(rtts);
    r.last_echo = match (r.last_echo, last) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(why) = write_failed.or(read_failed) {
        if r.errors.len() < 5 {
            r.errors.push(format!("session {}: {why}", plan.id));
        }
    }
}

/// An `input_audio_buffer.append` event of `bytes` bytes (or the minimum shape if smaller)
/// whose `event_id` is `b<session>_<seq>`.
fn append_event(id: usize, seq: u64, bytes: usize, pad: &str) -> String {
    let mut s = String::with_capacity(bytes.max(96));
    s.push_str(r#"{"type":"input_audio_buffer.append","event_id":"b"#);
    let _ = write!(s, "{id}_{seq}");
    s.push_str(r#"","audio":""#);
    let need = bytes.saturating_sub(s.len() + 2).min(pad.len());
    s.push_str(&pad[..need]);
    s.push_str("\"}");
    s
}

/// The sequence number of `b<session>_<seq>`.
fn seq_of(event_id: &[u8]) -> Option<u64> {
    let underscore = event_id.iter().rposition(|&b| b == b'_')?;
    std::str::from_utf8(&event_id[underscore + 1..])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events have the asked size and their event_id round-trips to the sequence number.
    #[test]
    fn events_are_sized_and_matched() {
        let pad = "A".repeat(6400);
        let e = append_event(12, 345, 6400, &pad);
        assert_eq!(e.len(), 6400);
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["event_id"], "b12_345");
        assert_eq!(event_id_of(e.as_bytes()), Some(&b"b12_345"[..]));
        assert_eq!(seq_of(b"b12_345"), Some(345));
        assert!(append_event(1, 1, 10, &pad).len() > 10);
    }
}
