//! `admission`: admission latency while `/stats` is polled (issue 10). Client threads
//! (`client.rs`, held like `idle`) open S sessions and hold them; then the main thread measures M
//! admissions (connect → 101, connect → `session.created`, each session closed right after) in
//! two phases: quiet, then while P pollers (`poll.rs`, a thread of their own) fetch
//! `/stats?sessions=true` and `/metrics` in a loop. Prints percentiles per phase and polled ÷
//! quiet. Each phase stops starting admissions at its deadline; the held sessions are closed at
//! the end, and the run ends when every thread has returned. `outcome.rs` holds what it measured
//! and prints it.

mod outcome;

use std::{
    cell::{Cell, RefCell},
    sync::mpsc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use serde_json::Value;
use tokio::sync::watch;

use crate::{
    args::{http_base, loopback_http, loopback_url, parse_pids, Args, Failure},
    client::{join_clients, setup_bound, spawn_clients, wait_events},
    plan::{Cfg, Event, Kind, Phase},
    poll::Pollers,
    procfs::proc_sample,
    stats::micros,
    ws::{await_created, close, upgrade, SETUP_TIMEOUT},
};
use outcome::{AdmissionCfg, Outcome, PhaseReport};

/// How long the pollers may take to deliver their first `/stats` answer before the polled phase
/// starts anyway (and the report says so).
const FIRST_POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// `admission` with the options after the subcommand.
pub(crate) fn admission(rest: &[String]) -> Result<(), Failure> {
    let args = Args::parse(
        rest,
        &[
            "url",
            "admin-url",
            "sessions",
            "measure",
            "concurrency",
            "pollers",
            "warmup",
            "phase-timeout",
            "threads",
            "connect-concurrency",
            "stats-query",
            "poll-interval-ms",
            "pids",
        ],
        &["json"],
    )?;
    let url = loopback_url(
        args.str("url")
            .ok_or_else(|| Failure::Usage("--url is required".into()))?,
    )?;
    let admin = match args.str("admin-url") {
        Some(a) => loopback_http(a.trim_end_matches('/'))?,
        None => http_base(&url)?,
    };
    let sessions: usize = args.num("sessions")?.unwrap_or(5000);
    let measure: usize = args.num("measure")?.unwrap_or(300);
    if measure == 0 {
        return Err(Failure::Usage("--measure must be at least 1".into()));
    }
    let phase_timeout: f64 = args.num("phase-timeout")?.unwrap_or(120.0);
    if !(phase_timeout > 0.0 && phase_timeout <= 3600.0) {
        return Err(Failure::Usage(
            "--phase-timeout must be in (0, 3600] seconds".into(),
        ));
    }
    let threads: usize = args
        .num("threads")?
        .unwrap_or(2)
        .clamp(1, 64)
        .min(sessions.max(1));
    let cfg = AdmissionCfg {
        url,
        admin,
        stats_query: args
            .str("stats-query")
            .unwrap_or("sessions=true")
            .to_owned(),
        pids: parse_pids(args.str("pids"))?,
        sessions,
        measure,
        concurrency: args.num("concurrency")?.unwrap_or(1).clamp(1, measure),
        pollers: args.num("pollers")?.unwrap_or(4).clamp(1, 64),
        poll_interval: Duration::from_millis(args.num("poll-interval-ms")?.unwrap_or(0)),
        warmup: args.num("warmup")?.unwrap_or(20),
        phase_timeout: Duration::from_secs_f64(phase_timeout),
        threads,
        connect_concurrency: args.num("connect-concurrency")?.unwrap_or(128).max(1),
    };
    let outcome = run(&cfg)?;
    outcome.print(&cfg, args.flag("json"));
    Ok(())
}

/// Sets up the held sessions, runs the warm-up, the quiet and the polled phase, then closes the
/// held sessions and joins every thread.
fn run(cfg: &AdmissionCfg) -> Result<Outcome, Failure> {
    // The held sessions: `idle` sessions that stay open until the phase reaches `Close`.
    let hold = Cfg {
        url: cfg.url.clone(),
        sessions: cfg.sessions,
        kind: Kind::Idle {
            hold: Duration::ZERO,
            probe: false,
        },
        connect_concurrency: cfg.connect_concurrency.div_ceil(cfg.threads).max(1),
    };
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let (events_tx, events_rx) = mpsc::channel::<Event>();
    let started = Instant::now();
    let handles = if cfg.sessions > 0 {
        spawn_clients(&hold, cfg.threads, &phase_rx, &events_tx)?
    } else {
        Vec::new()
    };
    drop(events_tx);
    wait_events(
        &events_rx,
        handles.len(),
        started + setup_bound(cfg.sessions),
    );
    let setup_wall = started.elapsed();
    let _ = phase_tx.send(Phase::Run);
    eprintln!(
        "relay-bench: {} sessions set up in {:.1}s; measuring {} admissions per phase",
        cfg.sessions,
        setup_wall.as_secs_f64(),
        cfg.measure
    );

    let rt = actix_web::rt::System::new();
    if cfg.warmup > 0 {
        let warm = rt.block_on(phase(cfg, cfg.warmup));
        if warm.failed > 0 {
            eprintln!(
                "relay-bench: {} of {} warm-up admissions failed: {:?}",
                warm.failed, cfg.warmup, warm.errors
            );
        }
    }
    let cpu = Cpu::start(&cfg.pids);
    let mut quiet = rt.block_on(phase(cfg, cfg.measure));
    quiet.cpu = cpu.stop();
    eprintln!(
        "relay-bench: quiet phase done; starting {} pollers",
        cfg.pollers
    );

    let query = match cfg.stats_query.as_str() {
        "" => String::new(),
        q => format!("?{q}"),
    };
    let urls = (
        format!("{}/stats{query}", cfg.admin),
        format!("{}/metrics", cfg.admin),
    );
    let cpu = Cpu::start(&cfg.pids);
    let pollers = Pollers::start(urls, cfg.pollers, cfg.poll_interval)?;
    let polls_late = pollers.first.recv_timeout(FIRST_POLL_TIMEOUT).is_err();
    let mut polled = rt.block_on(phase(cfg, cfg.measure));
    let polls = pollers.stop()?;
    polled.cpu = cpu.stop();

    let _ = phase_tx.send(Phase::Close);
    let held = join_clients(handles)?;
    Ok(Outcome {
        held,
        setup_wall,
        quiet,
        polled,
        polls,
        polls_late,
    })
}

/// The relay's CPU time over a stretch of the run, when `--pids` names it.
struct Cpu<'a> {
    pids: &'a [u32],
    start: Option<(f64, Instant)>,
}

impl<'a> Cpu<'a> {
    fn start(pids: &'a [u32]) -> Cpu<'a> {
        let start = (!pids.is_empty()).then(|| (proc_sample(pids).cpu_s, Instant::now()));
        Cpu { pids, start }
    }

    /// CPU seconds and wall time since `start`.
    fn stop(self) -> Option<(f64, Duration)> {
        let (cpu_s, at) = self.start?;
        Some((proc_sample(self.pids).cpu_s - cpu_s, at.elapsed()))
    }
}

/// `count` admissions, `cfg.concurrency` at a time, none begun after the phase deadline.
async fn phase(cfg: &AdmissionCfg, count: usize) -> PhaseReport {
    let report = RefCell::new(PhaseReport {
        live_at_start: live_sessions(&cfg.admin).await,
        ..PhaseReport::default()
    });
    // Its own client, with no idle keep-alive connection in its pool: every admission is a fresh
    // TCP connection, as a browser's WebSocket is. (An upgrade on a reused connection waited
    // 40 ms for `session.created`: the relay's Nagle against this side's delayed ACK.)
    let connector = awc::Connector::new()
        .limit(0)
        .timeout(Duration::from_secs(10));
    let client = awc::Client::builder()
        .connector(connector)
        .max_http_version(awc::http::Version::HTTP_11)
        .timeout(SETUP_TIMEOUT)
        .finish();
    let next = Cell::new(0usize);
    let started = Instant::now();
    let deadline = started + cfg.phase_timeout;
    let worker = || async {
        loop {
            let i = next.get();
            if i >= count {
                return;
            }
            next.set(i + 1);
            if Instant::now() >= deadline {
                report.borrow_mut().not_started += 1;
                continue;
            }
            let outcome = tokio::time::timeout(SETUP_TIMEOUT, admit(&client, &cfg.url)).await;
            let mut r = report.borrow_mut();
            match outcome {
                Ok(Ok((upgraded, created))) => {
                    r.ok += 1;
                    r.upgrade_us.push(micros(upgraded));
                    r.created_us.push(micros(created));
                }
                Ok(Err(why)) => r.fail(why),
                Err(_) => r.fail("no session.created within the setup timeout".into()),
            }
        }
    };
    join_all((0..cfg.concurrency).map(|_| worker())).await;
    let mut report = report.into_inner();
    report.elapsed = started.elapsed();
    report
}

/// One admission: connect → 101, connect → `session.created`; the session is then closed (not
/// timed).
async fn admit(client: &awc::Client, url: &str) -> Result<(Duration, Duration), String> {
    let t0 = Instant::now();
    let mut ws = upgrade(client, url).await?;
    let upgraded = t0.elapsed();
    await_created(&mut ws).await?;
    let created = t0.elapsed();
    close(&mut ws).await;
    Ok((upgraded, created))
}

/// `connections.active` from the relay's `/health`, if it answers.
async fn live_sessions(admin: &str) -> Option<u64> {
    let client = awc::Client::default();
    let ask = async {
        let mut response = client.get(format!("{admin}/health")).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        body["connections"]["active"].as_u64()
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .ok()
        .flatten()
}
