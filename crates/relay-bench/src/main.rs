//! `relay-bench`: the load generator and standalone fake upstream behind `bench/compare.sh`.
//!
//! - `fake` runs the crate's fake Realtime server on loopback (echo by default, nothing recorded
//!   but counts) until killed.
//! - `load` opens S sessions against any loopback URL (the fake directly, Nginx, the relay),
//!   waits for `session.created` on each, then sends `input_audio_buffer.append`-shaped events
//!   paced (`--rate`) or flat out with a window (`--window`); the echo fake returns each one and
//!   round trips are matched by `event_id`.
//! - `idle` holds S sessions open (memory per session), optionally exchanging one message on each
//!   at the end (`--probe`).
//! - `slow` opens S sessions and then never reads them (slow consumers), sampling memory.
//!
//! Sessions are spread over several client threads, each its own actix `System` with its own
//! `awc::Client` (which is not `Send`); the main thread only coordinates phases (a `watch`
//! channel) and reads `/proc` for `--pids`. Every wait is bounded, and only loopback URLs are
//! accepted.

#![forbid(unsafe_code)]

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    io::Write as _,
    process::ExitCode,
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use actix_codec::Framed;
use actix_web::web::Bytes;
use awc::{
    ws::{CloseCode, Codec, Frame, Message},
    BoxedSocket,
};
use fake_upstream::{FakeUpstream, Mode, Script};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify, Semaphore};

const USAGE: &str = "usage:
  relay-bench fake [--port 0] [--mode echo|demo|stream|silent] [--handshake-delay-ms N]
                   [--stream-bytes B] [--stream-interval-ms MS]
  relay-bench load --url ws://127.0.0.1:P/v1/realtime?model=x --sessions S --bytes B
                   (--rate R | --window W) --duration SECS [--messages N] [--json]
                   [--threads T] [--pids PID,..]
  relay-bench idle --url URL --sessions S --hold SECS [--probe] [--json] [--threads T]
                   [--pids PID,..]
  relay-bench slow --url URL --sessions S --hold SECS [--json] [--threads T] [--pids PID,..]
  relay-bench free-port          prints a free TCP port on 127.0.0.1 (for scripts)

Only loopback URLs (127.0.0.1, localhost, ::1) are accepted. --pids names processes (and their
direct children, e.g. Nginx workers) whose CPU time and resident memory are read from /proc.
--json prints one JSON object on stdout and the human table on stderr.";

/// Bound on connecting and receiving `session.created`.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// After the last send, how long the echoes of what is still in flight may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on sending our Close and receiving the answer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A session with nothing to read for this long during a run is given up.
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest frame the client accepts.
const MAX_FRAME: usize = 64 * 1024 * 1024;

type Ws = Framed<BoxedSocket, Codec>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "fake" => fake(rest),
        "load" | "idle" | "slow" => drive(command, rest),
        "free-port" => free_port(),
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(Failure::Usage(format!("unknown subcommand {other:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(why)) => {
            eprintln!("relay-bench: {why}\n\n{USAGE}");
            ExitCode::from(64)
        }
        Err(Failure::Run(why)) => {
            eprintln!("relay-bench: {why}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// Bad command line (exit 64).
    Usage(String),
    /// The run itself failed.
    Run(String),
}

// ---------------------------------------------------------------------------------------------
// Command line

/// `--name value` options and `--flag` flags, by name without the dashes.
struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: &[String], options: &[&str], flags: &[&str]) -> Result<Args, Failure> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(Failure::Usage(format!("unexpected argument {arg:?}")));
            };
            if flags.contains(&name) {
                map.insert(name.to_owned(), String::new());
            } else if options.contains(&name) {
                let value = it
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("--{name} needs a value")))?;
                map.insert(name.to_owned(), value.clone());
            } else {
                return Err(Failure::Usage(format!("unknown option {arg:?}")));
            }
        }
        Ok(Args(map))
    }

    fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Failure> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Failure::Usage(format!("--{name}: {v:?} is not a number"))),
        }
    }

    fn required<T: std::str::FromStr>(&self, name: &str) -> Result<T, Failure> {
        self.num(name)?
            .ok_or_else(|| Failure::Usage(format!("--{name} is required")))
    }
}

/// Refuses any URL that would leave the machine.
fn loopback_url(url: &str) -> Result<String, Failure> {
    let uri: awc::http::Uri = url
        .parse()
        .map_err(|_| Failure::Usage(format!("{url:?} is not a URL")))?;
    if uri.scheme_str() != Some("ws") {
        return Err(Failure::Usage(format!(
            "{url:?}: only ws:// URLs are supported"
        )));
    }
    match uri.host() {
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1") => Ok(url.to_owned()),
        other => Err(Failure::Usage(format!(
            "{url:?}: host {other:?} is not loopback; relay-bench only talks to 127.0.0.1, localhost or ::1"
        ))),
    }
}

fn parse_pids(list: Option<&str>) -> Result<Vec<u32>, Failure> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    list.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| Failure::Usage(format!("--pids: {p:?} is not a process id")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// fake

fn fake(rest: &[String]) -> Result<(), Failure> {
    let args = Args::parse(
        rest,
        &[
            "port",
            "mode",
            "handshake-delay-ms",
            "stream-bytes",
            "stream-interval-ms",
        ],
        &[],
    )?;
    let port: u16 = args.num("port")?.unwrap_or(0);
    let stream_bytes: usize = args.num("stream-bytes")?.unwrap_or(6400);
    let interval_ms: u64 = args.num("stream-interval-ms")?.unwrap_or(0);
    let mode = match args.str("mode").unwrap_or("echo") {
        "echo" => Mode::Echo,
        "demo" => Mode::Demo,
        "silent" => Mode::Silent,
        "stream" => Mode::Stream {
            message_bytes: stream_bytes,
            interval: (interval_ms > 0).then(|| Duration::from_millis(interval_ms)),
            count: None,
        },
        other => return Err(Failure::Usage(format!("--mode: unknown mode {other:?}"))),
    };
    let script = Script {
        handshake_delay: Duration::from_millis(args.num("handshake-delay-ms")?.unwrap_or(0)),
        // A benchmark sends millions of messages; keeping them would be a memory leak.
        record_messages: false,
        ..Script::with_mode(mode)
    };
    actix_web::rt::System::new().block_on(async move {
        let fake = FakeUpstream::start_on_port(script, port)
            .await
            .map_err(|e| Failure::Run(format!("cannot start the fake upstream: {e}")))?;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening {}", fake.url());
        let _ = out.flush();
        // Runs until the process is killed.
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn free_port() -> Result<(), Failure> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Failure::Run(format!("cannot bind 127.0.0.1:0: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::Run(format!("no local address: {e}")))?
        .port();
    println!("{port}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// load / idle / slow: configuration and coordination

#[derive(Clone, Debug)]
enum Kind {
    Load {
        bytes: usize,
        /// Messages per second per session; None = flat out with `window` in flight.
        rate: Option<f64>,
        window: usize,
        duration: Duration,
        messages: Option<u64>,
    },
    Idle {
        hold: Duration,
        probe: bool,
    },
    Slow {
        hold: Duration,
    },
}

#[derive(Clone, Debug)]
struct Cfg {
    url: String,
    sessions: usize,
    kind: Kind,
    /// Connection attempts in progress at once, per thread (a burst of 10,000 SYNs would only
    /// overflow the accept backlog and measure the kernel).
    connect_concurrency: usize,
}

/// Where the whole run is; the main thread moves it forward, sessions follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Setup,
    Run,
    Probe,
    Close,
}

/// What a client thread tells the main thread.
enum Event {
    /// Every session of this thread has its `session.created` (or failed).
    Ready,
    /// Every session of this thread finished its load run.
    RunDone,
}

/// What one thread measured.
#[derive(Default)]
struct Report {
    ok: u64,
    failed: u64,
    errors: Vec<String>,
    setup_us: Vec<u32>,
    rtt_us: Vec<u32>,
    sent: u64,
    messages: u64,
    bytes: u64,
    /// Echoes that never came back (sent but not seen before the drain timeout).
    lost: u64,
    last_echo: Option<Instant>,
    open_at_end: u64,
    probe_ok: u64,
    probe_rtt_us: Vec<u32>,
}

impl Report {
    fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.errors.len() < 5 {
            self.errors.push(why);
        }
    }

    fn merge(&mut self, other: Report) {
        self.ok += other.ok;
        self.failed += other.failed;
        for e in other.errors {
            if self.errors.len() < 5 {
                self.errors.push(e);
            }
        }
        self.setup_us.extend(other.setup_us);
        self.rtt_us.extend(other.rtt_us);
        self.sent += other.sent;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.lost += other.lost;
        self.last_echo = match (self.last_echo, other.last_echo) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.open_at_end += other.open_at_end;
        self.probe_ok += other.probe_ok;
        self.probe_rtt_us.extend(other.probe_rtt_us);
    }
}

fn drive(command: &str, rest: &[String]) -> Result<(), Failure> {
    let args = Args::parse(
        rest,
        &[
            "url",
            "sessions",
            "bytes",
            "rate",
            "window",
            "duration",
            "messages",
            "hold",
            "threads",
            "pids",
            "connect-concurrency",
        ],
        &["json", "probe"],
    )?;
    let url = loopback_url(
        args.str("url")
            .ok_or_else(|| Failure::Usage("--url is required".into()))?,
    )?;
    let sessions: usize = args.required("sessions")?;
    if sessions == 0 {
        return Err(Failure::Usage("--sessions must be at least 1".into()));
    }
    let threads: usize = args.num("threads")?.unwrap_or(2).clamp(1, 64).min(sessions);
    let pids = parse_pids(args.str("pids"))?;
    let concurrency: usize = args.num("connect-concurrency")?.unwrap_or(128).max(1);
    let kind = match command {
        "load" => {
            let rate: Option<f64> = args.num("rate")?;
            let window: Option<usize> = args.num("window")?;
            if rate.is_some() == window.is_some() {
                return Err(Failure::Usage(
                    "load needs exactly one of --rate and --window".into(),
                ));
            }
            if rate.is_some_and(|r| !(r > 0.0 && r <= 100_000.0)) {
                return Err(Failure::Usage("--rate must be in (0, 100000]".into()));
            }
            let duration: f64 = args.required("duration")?;
            if !(duration > 0.0 && duration <= 3600.0) {
                return Err(Failure::Usage(
                    "--duration must be in (0, 3600] seconds".into(),
                ));
            }
            Kind::Load {
                bytes: args.required("bytes")?,
                rate,
                window: window.unwrap_or(1).max(1),
                duration: Duration::from_secs_f64(duration),
                messages: args.num("messages")?,
            }
        }
        "idle" => Kind::Idle {
            hold: hold_arg(&args)?,
            probe: args.flag("probe"),
        },
        _ => Kind::Slow {
            hold: hold_arg(&args)?,
        },
    };
    let cfg = Cfg {
        url,
        sessions,
        kind,
        connect_concurrency: concurrency.div_ceil(threads).max(1),
    };
    let outcome = coordinate(&cfg, threads, &pids)?;
    outcome.print(&cfg, &pids, args.flag("json"));
    Ok(())
}

fn hold_arg(args: &Args) -> Result<Duration, Failure> {
    let hold: f64 = args.required("hold")?;
    if !(0.0..=3600.0).contains(&hold) {
        return Err(Failure::Usage("--hold must be in [0, 3600] seconds".into()));
    }
    Ok(Duration::from_secs_f64(hold))
}

/// What the main thread measured around the run.
struct Outcome {
    report: Report,
    /// From the start of the run phase to the last echo (load).
    elapsed: Duration,
    /// From starting the threads until every session had `session.created` or failed.
    setup_wall: Duration,
    cpu_s: Option<f64>,
    rss_base_kb: Option<u64>,
    rss_held_kb: Option<u64>,
    rss_samples_kb: Vec<u64>,
}

/// Starts the client threads and moves them through the phases.
fn coordinate(cfg: &Cfg, threads: usize, pids: &[u32]) -> Result<Outcome, Failure> {
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (events_tx, events_rx) = mpsc::channel::<Event>();
    let rss_base_kb = (!pids.is_empty()).then(|| proc_sample(pids).rss_kb);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<usize> = (t..cfg.sessions).step_by(threads).collect();
        let cfg = cfg.clone();
        let phase = phase_rx.clone();
        let events = events_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-client-{t}"))
            .spawn(move || {
                actix_web::rt::System::new().block_on(client_thread(cfg, ids, phase, events))
            })
            .map_err(|e| Failure::Run(format!("cannot start a client thread: {e}")))?;
        handles.push(handle);
    }
    drop(events_tx);

    // Setup is bounded per session; allow for the connect concurrency limit on top.
    let setup_bound =
        SETUP_TIMEOUT + Duration::from_millis(20 * cfg.sessions as u64) + Duration::from_secs(10);
    wait_events(&events_rx, threads, started + setup_bound);
    let setup_wall = started.elapsed();
    eprintln!(
        "relay-bench: sessions set up in {:.1}s; running",
        setup_wall.as_secs_f64()
    );

    let mut cpu_s = None;
    let mut rss_held_kb = None;
    let mut rss_samples_kb = Vec::new();
    let go = Instant::now();
    match &cfg.kind {
        Kind::Load {
            duration, messages, ..
        } => {
            let before = (!pids.is_empty()).then(|| proc_sample(pids));
            let _ = phase_tx.send(Phase::Run);
            // Sessions stop sending at `duration` (or after `messages`) and drain for at most
            // DRAIN_TIMEOUT; the bound here only protects against a wedged thread.
            let bound = if messages.is_some() {
                *duration + Duration::from_secs(3600)
            } else {
                *duration
            };
            wait_events(&events_rx, threads, go + bound + DRAIN_TIMEOUT * 2);
            if let Some(before) = before {
                let after = proc_sample(pids);
                cpu_s = Some(after.cpu_s - before.cpu_s);
                rss_held_kb = Some(after.rss_kb);
            }
            let _ = phase_tx.send(Phase::Close);
        }
        Kind::Idle { hold, probe } => {
            let _ = phase_tx.send(Phase::Run);
            // Let the proxy settle the last handshakes before reading its memory.
            let settle = (*hold / 2).min(Duration::from_secs(2));
            std::thread::sleep(settle);
            if !pids.is_empty() {
                rss_held_kb = Some(proc_sample(pids).rss_kb);
            }
            std::thread::sleep(hold.saturating_sub(settle));
            let _ = phase_tx.send(if *probe { Phase::Probe } else { Phase::Close });
        }
        Kind::Slow { hold } => {
            let _ = phase_tx.send(Phase::Run);
            let end = go + *hold;
            while Instant::now() < end {
                if !pids.is_empty() {
                    rss_samples_kb.push(proc_sample(pids).rss_kb);
                }
                std::thread::sleep(Duration::from_secs(1).min(end - Instant::now()));
            }
            if !pids.is_empty() {
                rss_samples_kb.push(proc_sample(pids).rss_kb);
                rss_held_kb = rss_samples_kb.iter().copied().max();
            }
            let _ = phase_tx.send(Phase::Close);
        }
    }

    let mut report = Report::default();
    for handle in handles {
        match handle.join() {
            Ok(r) => report.merge(r),
            Err(_) => return Err(Failure::Run("a client thread panicked".into())),
        }
    }
    let elapsed = report
        .last_echo
        .map_or_else(|| go.elapsed(), |t| t.saturating_duration_since(go));
    Ok(Outcome {
        report,
        elapsed,
        setup_wall,
        cpu_s,
        rss_base_kb,
        rss_held_kb,
        rss_samples_kb,
    })
}

/// Waits for one event from each of `threads`, or until `deadline`.
fn wait_events(rx: &mpsc::Receiver<Event>, threads: usize, deadline: Instant) {
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

/// Connects offering `realtime` and waits for `session.created`.
async fn open(client: &awc::Client, url: &str) -> Result<Ws, String> {
    let (_, mut ws) = client
        .ws(url)
        .protocols(["realtime"])
        .max_frame_size(MAX_FRAME)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Frame::Text(text))) => {
                let event: Value = serde_json::from_slice(&text)
                    .map_err(|e| format!("first event is not JSON: {e}"))?;
                return if event["type"] == "session.created" {
                    Ok(ws)
                } else {
                    Err(format!(
                        "first event is {}, not session.created",
                        event["type"]
                    ))
                };
            }
            Some(Ok(Frame::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Some(Ok(Frame::Close(reason))) => {
                return Err(format!("closed before session.created: {reason:?}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("protocol error before session.created: {e}")),
            None => return Err("connection ended before session.created".into()),
        }
    }
}

/// Reads (answering pings, dropping data) until the run reaches `until`; false if the
/// connection ended meanwhile.
async fn hold_until(ws: &mut Ws, phase: &mut watch::Receiver<Phase>, until: Phase) -> bool {
    let mut alive = true;
    loop {
        if *phase.borrow_and_update() >= until {
            return alive;
        }
        if !alive {
            let _ = phase.wait_for(|p| *p >= until).await;
            return false;
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return alive;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Frame::Ping(p))) => {
                    let _ = ws.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => alive = false,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends one event and waits for its echo.
async fn probe_once(ws: &mut Ws, id: usize) -> Result<Duration, String> {
    let event_id = format!("p{id}_0");
    let text =
        format!(r#"{{"type":"input_audio_buffer.append","event_id":"{event_id}","audio":"AAAA"}}"#);
    let t0 = Instant::now();
    let exchange = async {
        ws.send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Frame::Text(b))) if event_id_of(&b) == Some(event_id.as_bytes()) => {
                    return Ok(t0.elapsed())
                }
                Some(Ok(Frame::Ping(p))) => {
                    let _ = ws.send(Message::Pong(p)).await;
                }
                Some(Ok(Frame::Close(r))) => return Err(format!("closed: {r:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("protocol error: {e}")),
                None => return Err("connection ended".into()),
            }
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, exchange)
        .await
        .map_err(|_| "no echo within the timeout".to_owned())?
}

/// Sends a normal Close and reads until the answer (bounded).
async fn close(ws: &mut Ws) {
    let closing = async {
        if ws
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .is_err()
        {
            return;
        }
        while let Some(Ok(frame)) = ws.next().await {
            if matches!(frame, Frame::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
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

/// The value of the `event_id` field near the start of an event, without parsing the JSON.
fn event_id_of(text: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = br#""event_id":""#;
    let head = &text[..text.len().min(160)];
    let start = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = head[start..].iter().position(|&b| b == b'"')?;
    Some(&head[start..start + len])
}

/// The sequence number of `b<session>_<seq>`.
fn seq_of(event_id: &[u8]) -> Option<u64> {
    let underscore = event_id.iter().rposition(|&b| b == b'_')?;
    std::str::from_utf8(&event_id[underscore + 1..])
        .ok()?
        .parse()
        .ok()
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// /proc

struct ProcSample {
    cpu_s: f64,
    rss_kb: u64,
}

/// CPU seconds (user + system) and resident memory of `pids` and their direct children.
fn proc_sample(pids: &[u32]) -> ProcSample {
    let mut all: Vec<u32> = pids.to_vec();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = read_stat(pid) {
                if pids.contains(&stat.ppid) && !all.contains(&pid) {
                    all.push(pid);
                }
            }
        }
    }
    let ticks = clock_ticks();
    let mut sample = ProcSample {
        cpu_s: 0.0,
        rss_kb: 0,
    };
    for pid in all {
        if let Some(stat) = read_stat(pid) {
            sample.cpu_s += stat.cpu_ticks as f64 / ticks;
        }
        sample.rss_kb += read_rss_kb(pid).unwrap_or(0);
    }
    sample
}

struct Stat {
    ppid: u32,
    cpu_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    })
}

fn read_rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------------
// Output

/// Nearest-rank percentile of sorted micros, in milliseconds.
fn pct_ms(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, |v| json!(round3(v)))
}

impl Outcome {
    fn print(mut self, cfg: &Cfg, pids: &[u32], as_json: bool) {
        let r = &mut self.report;
        r.setup_us.sort_unstable();
        r.rtt_us.sort_unstable();
        r.probe_rtt_us.sort_unstable();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut out = json!({
            "url": cfg.url,
            "sessions": cfg.sessions,
            "sessions_ok": r.ok,
            "sessions_failed": r.failed,
            "setup_ms": {"p50": opt(pct_ms(&r.setup_us, 50.0)), "p99": opt(pct_ms(&r.setup_us, 99.0))},
            "setup_wall_s": round3(self.setup_wall.as_secs_f64()),
            "errors": r.errors,
        });
        let mut table = format!(
            "url               {}\nsessions          {} ok, {} failed\nsetup ms          p50 {} p99 {} (all set up in {:.2} s)\n",
            cfg.url,
            r.ok,
            r.failed,
            fmt_ms(pct_ms(&r.setup_us, 50.0)),
            fmt_ms(pct_ms(&r.setup_us, 99.0)),
            self.setup_wall.as_secs_f64(),
        );
        match &cfg.kind {
            Kind::Load {
                bytes,
                rate,
                window,
                ..
            } => {
                let mps = r.messages as f64 / secs;
                let mbps = r.bytes as f64 / secs / 1e6;
                out["mode"] = json!("load");
                out["bytes"] = json!(bytes);
                out["rate"] = json!(rate);
                out["window"] = json!(rate.is_none().then_some(*window));
                out["rtt_ms"] = json!({
                    "p50": opt(pct_ms(&r.rtt_us, 50.0)),
                    "p90": opt(pct_ms(&r.rtt_us, 90.0)),
                    "p99": opt(pct_ms(&r.rtt_us, 99.0)),
                    "max": opt(pct_ms(&r.rtt_us, 100.0)),
                });
                out["sent"] = json!(r.sent);
                out["messages"] = json!(r.messages);
                out["lost"] = json!(r.lost);
                out["elapsed_s"] = json!(round3(secs));
                out["messages_per_sec"] = json!(round3(mps));
                out["mb_per_sec"] = json!(round3(mbps));
                let _ = write!(
                    table,
                    "round trip ms     p50 {} p90 {} p99 {} max {}\nmessages          {} echoed of {} sent ({} lost) in {:.2} s\nthroughput        {:.0} msg/s, {:.2} MB/s (echoed payload, one direction)\n",
                    fmt_ms(pct_ms(&r.rtt_us, 50.0)),
                    fmt_ms(pct_ms(&r.rtt_us, 90.0)),
                    fmt_ms(pct_ms(&r.rtt_us, 99.0)),
                    fmt_ms(pct_ms(&r.rtt_us, 100.0)),
                    r.messages,
                    r.sent,
                    r.lost,
                    secs,
                    mps,
                    mbps
                );
                if let Some(cpu) = self.cpu_s {
                    let per_100k = (r.messages > 0).then(|| cpu / r.messages as f64 * 100_000.0);
                    out["proxy"] = json!({
                        "pids": pids,
                        "cpu_s": round3(cpu),
                        "cpu_s_per_100k": opt(per_100k),
                        "rss_before_kb": self.rss_base_kb,
                        "rss_after_kb": self.rss_held_kb,
                    });
                    let _ = writeln!(
                        table,
                        "proxy cpu         {:.2} s, {} s per 100k round trips",
                        cpu,
                        fmt_ms(per_100k)
                    );
                }
            }
            Kind::Idle { probe, .. } => {
                out["mode"] = json!("idle");
                out["open_at_end"] = json!(r.open_at_end);
                let _ = writeln!(table, "open at the end   {}", r.open_at_end);
                if *probe {
                    out["probe_ok"] = json!(r.probe_ok);
                    out["probe_rtt_ms"] = json!({
                        "p50": opt(pct_ms(&r.probe_rtt_us, 50.0)),
                        "p99": opt(pct_ms(&r.probe_rtt_us, 99.0)),
                        "max": opt(pct_ms(&r.probe_rtt_us, 100.0)),
                    });
                    let _ = writeln!(
                        table,
                        "probe             {} echoed; ms p50 {} p99 {} max {}",
                        r.probe_ok,
                        fmt_ms(pct_ms(&r.probe_rtt_us, 50.0)),
                        fmt_ms(pct_ms(&r.probe_rtt_us, 99.0)),
                        fmt_ms(pct_ms(&r.probe_rtt_us, 100.0))
                    );
                }
                self.memory(&mut out, &mut table, pids);
            }
            Kind::Slow { .. } => {
                out["mode"] = json!("slow");
                out["rss_samples_kb"] = json!(self.rss_samples_kb);
                self.memory(&mut out, &mut table, pids);
                let _ = writeln!(table, "rss samples kB    {:?}", self.rss_samples_kb);
            }
        }
        if !self.report.errors.is_empty() {
            let _ = writeln!(table, "first errors      {:?}", self.report.errors);
        }
        if as_json {
            eprint!("{table}");
            println!("{out}");
        } else {
            print!("{table}");
        }
    }

    fn memory(&self, out: &mut Value, table: &mut String, pids: &[u32]) {
        let (Some(base), Some(held)) = (self.rss_base_kb, self.rss_held_kb) else {
            return;
        };
        let ok = self.report.ok.max(1);
        let per = (held as f64 - base as f64) / ok as f64;
        out["proxy"] = json!({
            "pids": pids,
            "rss_base_kb": base,
            "rss_held_kb": held,
            "rss_per_session_kb": round3(per),
        });
        let _ = writeln!(
            table,
            "proxy rss         {base} kB before, {held} kB held: {per:.1} kB per session"
        );
    }
}

fn fmt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only loopback hosts are accepted.
    #[test]
    fn loopback_only() {
        assert!(loopback_url("ws://127.0.0.1:1/v1/realtime?model=x").is_ok());
        assert!(loopback_url("ws://localhost:1/realtime").is_ok());
        assert!(loopback_url("ws://[::1]:1/realtime").is_ok());
        assert!(loopback_url("ws://10.0.0.1:1/realtime").is_err());
        assert!(loopback_url("wss://api.openai.com/v1/realtime").is_err());
    }

    /// Events have the asked size and their event_id round-trips to the sequence number.
    #[test]
    fn events_are_sized_and_matched() {
        let pad = "A".repeat(6400);
        let e = append_event(12, 345, 6400, &pad);
        assert_eq!(e.len(), 6400);
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["event_id"], "b12_345");
        assert_eq!(event_id_of(e.as_bytes()), Some(&b"b12_345"[..]));
        assert_eq!(seq_of(b"b12_345"), Some(345));
        assert!(append_event(1, 1, 10, &pad).len() > 10);
    }

    /// Nearest-rank percentiles.
    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(pct_ms(&v, 50.0), Some(50.0));
        assert_eq!(pct_ms(&v, 99.0), Some(99.0));
        assert_eq!(pct_ms(&v, 100.0), Some(100.0));
        assert_eq!(pct_ms(&[], 50.0), None);
    }
}
