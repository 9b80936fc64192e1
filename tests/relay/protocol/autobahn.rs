//! The Autobahn testsuite's fuzzing client (cases 1.* to 10.*) against the relay in front of
//! Autobahn's own echo server, and against that echo server directly: no case may fail through
//! the relay that passes on the echo server. Autobahn|Testsuite (`wstest`, PyPI
//! `autobahntestsuite`) runs on Python 2.7 only, so this test is `#[ignore]`d and runs when asked:
//!
//! ```text
//! python2.7 -m pip install --target /opt/autobahn autobahntestsuite==25.10.1
//! AUTOBAHN_PYTHON=python2.7 AUTOBAHN_SITE=/opt/autobahn \
//!     cargo test --test relay protocol::autobahn -- --ignored
//! ```
//!
//! `AUTOBAHN_SITE` is the `--target` directory (left out when the suite is installed in the
//! interpreter's own site-packages). A run takes a few minutes: the fuzzing client waits up to a
//! second per case for the server to close the TCP connection.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::{poll::poll, tools::*, *};

/// How long the whole fuzzing run may take.
const RUN: Duration = Duration::from_secs(30 * 60);
/// Outcomes Autobahn counts as passing.
const PASSING: [&str; 3] = ["OK", "NON-STRICT", "INFORMATIONAL"];

/// `wstest` with `args`, through the Python named by `AUTOBAHN_PYTHON`.
fn wstest(args: &[&str]) -> Command {
    let python = std::env::var("AUTOBAHN_PYTHON").unwrap_or_else(|_| {
        panic!("AUTOBAHN_PYTHON is not set: install autobahntestsuite for Python 2.7 (see the module doc)")
    });
    let site = std::env::var("AUTOBAHN_SITE").unwrap_or_default();
    let boot = format!(
        "import site, sys; site.addsitedir({site:?}); sys.argv[0] = 'wstest'; \
         from autobahntestsuite.wstest import run; run()"
    );
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(boot).args(args).stdin(Stdio::null());
    cmd
}

/// Cases 1.* to 10.*: none fails through the relay that passes on Autobahn's echo server.
#[actix_web::test]
#[ignore = "needs Autobahn|Testsuite on Python 2.7 (AUTOBAHN_PYTHON); see the module doc"]
async fn autobahn_cases_pass_through_the_relay_as_on_an_echo_server() {
    let dir = TempDir::new("autobahn");
    let echo_port = free_port();
    let echo_url = format!("ws://127.0.0.1:{echo_port}");
    let _echo = Killed(
        wstest(&["-m", "echoserver", "-w", &echo_url, "-u", "0"])
            .stdout(Stdio::null())
            .spawn()
            .expect("wstest echoserver starts"),
    );
    poll("Autobahn's echo server listening")
        .until(|| async {
            std::net::TcpStream::connect(("127.0.0.1", echo_port))
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await;
    let relay = start_relay(config(&format!("{echo_url}/v1/realtime"), &[])).await;
    let spec = serde_json::json!({
        "outdir": dir.path().join("reports"),
        "servers": [
            {"agent": "echo", "url": echo_url},
            {"agent": "relay", "url": format!("ws://{}/v1/realtime", relay.local_addr())},
        ],
        "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    let spec_file = dir.path().join("fuzzingclient.json");
    std::fs::write(&spec_file, spec.to_string()).expect("write the spec");
    let mut fuzz = Killed(
        wstest(&[
            "-m",
            "fuzzingclient",
            "-s",
            &spec_file.display().to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("wstest fuzzingclient starts"),
    );
    let status = poll("the fuzzing client's run")
        .within(RUN)
        .every(Duration::from_secs(1))
        .until(|| {
            let done = fuzz.0.try_wait();
            async move {
                match done {
                    Ok(Some(status)) => Ok(status),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
    assert!(status.success(), "wstest fuzzingclient: {status}");
    let index = std::fs::read_to_string(dir.path().join("reports/index.json")).expect("report");
    let index: serde_json::Value = serde_json::from_str(&index).expect("report JSON");
    let behavior = |agent: &str| -> BTreeMap<String, String> {
        index[agent]
            .as_object()
            .unwrap_or_else(|| panic!("no results for {agent}"))
            .iter()
            .map(|(case, r)| {
                (
                    case.clone(),
                    r["behavior"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let (echo, through) = (behavior("echo"), behavior("relay"));
    assert!(echo.len() > 250, "{} cases ran", echo.len());
    let failed: Vec<String> = echo
        .iter()
        .filter(|(_, b)| PASSING.contains(&b.as_str()))
        .filter_map(|(case, _)| {
            let got = through.get(case).map_or("missing", String::as_str);
            (!PASSING.contains(&got)).then(|| format!("{case}: {got}"))
        })
        .collect();
    assert!(failed.is_empty(), "failed through the relay: {failed:?}");
    stop_relay(relay).await;
}
