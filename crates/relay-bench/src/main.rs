//! `relay-bench`: the load generator and standalone fake upstream behind `bench/compare.sh` and
//! `bench/admission.sh`.
//!
//! - `fake` runs the crate's fake Realtime server on loopback (echo by default, nothing recorded
//!   but counts) until killed; built with the `webrtc` feature it also answers WebRTC calls.
//! - `load` opens S sessions against any loopback URL (the fake directly, Nginx, the relay),
//!   waits for `session.created` on each, then sends `input_audio_buffer.append`-shaped events
//!   paced (`--rate`) or flat out with a window (`--window`); the echo fake returns each one and
//!   round trips are matched by `event_id`.
//! - `idle` holds S sessions open (memory per session), optionally exchanging one message on each
//!   at the end (`--probe`).
//! - `slow` opens S sessions and then never reads them (slow consumers), sampling memory.
//! - `admission` holds S idle sessions on the relay and measures the admission latency of M new
//!   ones, first quiet, then while P pollers fetch `/stats?sessions=true` and `/metrics`.
//! - `calls` (the `webrtc` feature) opens N WebRTC calls through the relay as a browser does,
//!   holds them idle beside another run's sessions, then hangs them up.
//!
//! Sessions are spread over several client threads, each its own actix `System` with its own
//! `awc::Client` (which is not `Send`); the main thread only coordinates phases (a `watch`
//! channel), reads `/proc` for `--pids` and, for `admission`, measures. Every wait is bounded,
//! and only loopback URLs are accepted.
//!
//! The files, leaves first: `args` (command line, loopback check, `Failure`), `stats`
//! (percentiles), `procfs` (`/proc`), `plan` (what a run is made of), `ws` (one client WebSocket),
//! `client` (one client thread and its sessions), `poll` (the `/stats` pollers), then one file per
//! subcommand: `fake`, `drive` (`load`, `idle`, `slow`), `admission` (with `admission/outcome`),
//! `calls` (with `calls/run`).

#![forbid(unsafe_code)]

mod admission;
mod args;
mod calls;
mod client;
mod drive;
mod fake;
mod plan;
mod poll;
mod procfs;
mod stats;
mod ws;

use std::process::ExitCode;

use args::Failure;

const USAGE: &str = "usage:
  relay-bench fake [--port 0] [--mode echo|demo|stream|silent] [--handshake-delay-ms N]
                   [--stream-bytes B] [--stream-interval-ms MS]
  relay-bench load --url ws://127.0.0.1:P/v1/realtime?model=x --sessions S --bytes B
                   (--rate R | --window W) --duration SECS [--messages N] [--json]
                   [--threads T] [--pids PID,..]
  relay-bench idle --url URL --sessions S --hold SECS [--probe] [--json] [--threads T]
                   [--pids PID,..]
  relay-bench slow --url URL --sessions S --hold SECS [--json] [--threads T] [--pids PID,..]
  relay-bench admission --url URL [--sessions 5000] [--measure 300] [--concurrency 1]
                   [--pollers 4] [--warmup 20] [--phase-timeout 120] [--admin-url URL]
                   [--stats-query sessions=true] [--poll-interval-ms 0] [--json] [--threads T]
                   [--connect-concurrency N] [--pids PID]
  relay-bench calls --url http://127.0.0.1:P --calls N --hold SECS [--concurrency 4]
                   [--model gpt-realtime] [--json] [--pids PID,..]   (built with --features webrtc)
  relay-bench free-port          prints a free TCP port on 127.0.0.1 (for scripts)

Only loopback URLs (127.0.0.1, localhost, ::1) are accepted. --pids names processes (and their
direct children, e.g. Nginx workers) whose CPU time and resident memory are read from /proc.
--json prints one JSON object on stdout and the human table on stderr. With RELAY_BENCH_TOKEN set,
every client sends it as `Authorization: Bearer` (a relay with RELAY_TOKENS).

admission: holds S idle sessions (each waits for session.created), then opens M new sessions
--concurrency at a time, each closed right after, timing connect -> 101 and connect ->
session.created: first quiet, then while --pollers clients fetch /stats?sessions=true and
/metrics in a loop from --admin-url (default: http:// and the host and port of --url);
--stats-query '' polls plain /stats; --poll-interval-ms paces each poller (0: back to back).
Each phase stops starting admissions after --phase-timeout seconds. --pids adds the relay's CPU time per phase.

calls: opens N WebRTC calls through the relay, --concurrency at a time (a webrtc-rs peer offers,
the offer is posted to /v1/realtime/calls, each is set up once session.created arrives on its data
channel), prints `established N calls` on stderr, holds them idle for --hold seconds or until
SIGTERM/SIGINT, then hangs each up through the relay and closes its peer. --pids adds the relay's
memory per call. It, and a `relay-bench fake` that answers calls (without the feature the fake
answers them 501), need relay-bench built with --features webrtc.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "fake" => fake::fake(rest),
        "load" | "idle" | "slow" => drive::drive(command, rest),
        "admission" => admission::admission(rest),
        "calls" => calls::calls(rest),
        "free-port" => fake::free_port(),
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
