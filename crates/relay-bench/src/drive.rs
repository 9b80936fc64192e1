//! `load`, `idle` and `slow`: parses their options, starts the client threads, moves them through
//! the phases (sleeping the hold, reading `/proc` for `--pids`), and prints the outcome as a table
//! or JSON. Runs on the main thread; it ends when every client thread has returned.

use std::{
    fmt::Write as _,
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{
    args::{loopback_url, parse_pids, Args, Failure},
    client::{join_clients, setup_bound, spawn_clients, wait_events, DRAIN_TIMEOUT},
    plan::{Cfg, Event, Kind, Phase, Report},
    procfs::proc_sample,
    stats::{fmt_ms, opt, pct_ms, print_report, round3},
};

/// `load`, `idle` or `slow` with the options after the subcommand.
pub(crate) fn drive(command: &str, rest: &[String]) -> Result<(), Failure> {
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
    let handles = spawn_clients(cfg, threads, &phase_rx, &events_tx)?;
    drop(events_tx);

    wait_events(&events_rx, threads, started + setup_bound(cfg.sessions));
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

    let report = join_clients(handles)?;
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
        print_report(&table, &out, as_json);
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
