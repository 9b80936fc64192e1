//! `calls`: N WebRTC calls made through a relay as a browser makes them, held idle beside whatever
//! else is measured, then hung up. Parsing is here and built always (bad usage is refused alike,
//! and its test runs in the plain build); the run (`run.rs`) needs fake-upstream's webrtc-rs
//! client peer and so the `webrtc` feature, without which `calls` says how to build it.

#[cfg(feature = "webrtc")]
mod run;
#[cfg(not(feature = "webrtc"))]
mod run {
    use super::{Failure, Plan};

    pub(super) fn run(plan: Plan) -> Result<(), Failure> {
        Err(Failure::Run(format!(
            "cannot open {} WebRTC calls: this relay-bench was built without them; \
             build it with `cargo build --release -p relay-bench --features webrtc`",
            plan.calls
        )))
    }
}

use std::time::Duration;

use crate::args::{loopback_http, parse_pids, Args, Failure};

/// What one `calls` run is: parsed from its command line.
// Without the `webrtc` feature the plan is parsed (and tested) but never run.
#[cfg_attr(not(feature = "webrtc"), allow(dead_code))]
#[derive(Debug, PartialEq)]
pub(crate) struct Plan {
    /// `http://host:port` of the relay.
    pub(crate) url: String,
    /// How many calls to open and hold.
    pub(crate) calls: usize,
    /// How many are being set up at once.
    pub(crate) concurrency: usize,
    /// How long to hold them once all are established (SIGTERM or SIGINT ends the hold sooner).
    pub(crate) hold: Duration,
    /// The `?model=` of each offer.
    pub(crate) model: String,
    /// The relay's processes, for its resident memory before and with the calls.
    pub(crate) pids: Vec<u32>,
    pub(crate) json: bool,
}

impl Plan {
    pub(crate) fn parse(rest: &[String]) -> Result<Plan, Failure> {
        let args = Args::parse(
            rest,
            &["url", "calls", "concurrency", "hold", "model", "pids"],
            &["json"],
        )?;
        let url = loopback_http(
            args.str("url")
                .ok_or_else(|| Failure::Usage("--url is required".into()))?,
        )?;
        let calls: usize = args.required("calls")?;
        if calls == 0 {
            return Err(Failure::Usage("--calls must be at least 1".into()));
        }
        Ok(Plan {
            url: url.trim_end_matches('/').to_owned(),
            calls,
            concurrency: args.num("concurrency")?.unwrap_or(4).clamp(1, calls),
            hold: Duration::from_secs(args.required("hold")?),
            model: args.str("model").unwrap_or("gpt-realtime").to_owned(),
            pids: parse_pids(args.str("pids"))?,
            json: args.flag("json"),
        })
    }
}

/// `calls` with the options after the subcommand.
pub(crate) fn calls(rest: &[String]) -> Result<(), Failure> {
    run::run(Plan::parse(rest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Plan, Failure> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        Plan::parse(&args)
    }

    fn usage_error(line: &str) -> String {
        match parse(line) {
            Err(Failure::Usage(why)) => why,
            other => panic!("{line}: {other:?}, not a usage error"),
        }
    }

    /// A full command line gives its plan; the model defaults to gpt-realtime, the concurrency to
    /// 4 but never more than the calls, and the URL loses a trailing slash.
    #[test]
    fn parses_a_calls_command_line() {
        let plan = parse(
            "--url http://127.0.0.1:8080/ --calls 20 --concurrency 8 --hold 600 --pids 7,9 --json",
        )
        .expect("a valid command line");
        assert_eq!(
            plan,
            Plan {
                url: "http://127.0.0.1:8080".into(),
                calls: 20,
                concurrency: 8,
                hold: Duration::from_secs(600),
                model: "gpt-realtime".into(),
                pids: vec![7, 9],
                json: true,
            }
        );
        let plan = parse("--url http://localhost:1 --calls 1 --hold 0 --model gpt-realtime-mini")
            .expect("a valid command line");
        assert_eq!(
            (plan.model.as_str(), plan.concurrency, plan.json),
            ("gpt-realtime-mini", 1, false)
        );
    }

    /// Missing or bad options are usage errors naming the option; only loopback http:// URLs.
    #[test]
    fn refuses_bad_calls_command_lines() {
        assert!(usage_error("--calls 2 --hold 1").contains("--url"));
        assert!(usage_error("--url http://127.0.0.1:1 --hold 1").contains("--calls"));
        assert!(usage_error("--url http://127.0.0.1:1 --calls 2").contains("--hold"));
        assert!(usage_error("--url http://127.0.0.1:1 --calls 0 --hold 1").contains("--calls"));
        assert!(usage_error("--url http://127.0.0.1:1 --calls x --hold 1").contains("--calls"));
        assert!(usage_error("--url http://10.0.0.1:1 --calls 2 --hold 1").contains("loopback"));
        assert!(usage_error("--url ws://127.0.0.1:1 --calls 2 --hold 1").contains("http://"));
        assert!(
            usage_error("--url http://127.0.0.1:1 --calls 2 --hold 1 --token t")
                .contains("--token")
        );
    }
}
