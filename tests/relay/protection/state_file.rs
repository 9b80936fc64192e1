//! USAGE_STATE_FILE: the ledger saved while running and on drain, and read back on start; the
//! file private to the relay's user; a file saved on a day after today not taken for today's.

use std::{path::PathBuf, time::Duration};

use openai_realtime_relay::protection::usage::Ledger;

use super::*;
use crate::common::poll::poll;

/// A temp file path unique to this test; removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(test: &str) -> TempPath {
        let p = std::env::temp_dir().join(format!(
            "relay-protection-{}-{test}.json",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }

    fn as_str(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("json.lock"));
    }
}

/// Today's UTC day number, as the relay counts days.
fn today() -> u64 {
    unix_in(0) as u64 / 86_400
}

/// Usage survives a restart: a drained relay saved its ledger to USAGE_STATE_FILE, and a new
/// relay on the same file reports it and enforces the budget with it.
#[actix_web::test]
async fn usage_survives_a_restart() {
    let file = TempPath::new("restart");
    let fake = start_fake(Script::demo()).await;
    let relay = start_relay(config(
        &fake.url(),
        &[
            ("RELAY_TOKENS", TOKENS),
            ("USAGE_STATE_FILE", file.as_str()),
        ],
    ))
    .await;
    let base = format!("ws://{}", relay.local_addr());
    let mut ws = admitted(&base, "/", Style::Sdk, Some(ALICE)).await;
    respond(&mut ws).await;
    let report = tokio::time::timeout(T, relay.drain()).await.expect("drain");
    assert_eq!(report.sessions, 1);
    let saved = Ledger::load(&file.0).expect("the drain wrote the state file");
    assert_eq!(saved.all.total_tokens, 32, "{saved:?}");
    stop_relay(relay).await;

    let relay = start_relay(config(
        &fake.url(),
        &[
            ("RELAY_TOKENS", TOKENS),
            ("USAGE_STATE_FILE", file.as_str()),
            ("CLIENT_DAILY_TOKEN_BUDGET", "32"),
        ],
    ))
    .await;
    let http = format!("http://{}", relay.local_addr());
    let base = format!("ws://{}", relay.local_addr());
    let s = stats::get(&http).await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 32, "{s}");
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([("token:alice".to_string(), 32)])
    );
    refused(&base, "/", Style::Browser, Some(ALICE), "budget_exceeded").await;
    let _bob = admitted(&base, "/", Style::Browser, Some(BOB)).await;
    dials(&fake, 2).await;
    stop_relay(relay).await;
    stop_fake(fake).await;
}

/// Without any shutdown, the usage state file is written within a few seconds of the usage, so
/// a crash loses at most that much.
#[actix_web::test]
async fn usage_state_file_is_written_while_running() {
    let file = TempPath::new("periodic");
    let h = start(Script::demo(), &[("USAGE_STATE_FILE", file.as_str())]).await;
    let mut ws = admitted(&h.base, "/", Style::Browser, None).await;
    respond(&mut ws).await;
    // A save announces itself nowhere: poll the file, for at most 5 s (the interval is 2 s).
    let path = &file.0;
    let saved = poll("usage saved to the state file")
        .within(Duration::from_secs(5))
        .every(Duration::from_millis(50))
        .until(|| async move {
            match Ledger::load(path) {
                Ok(l) if l.all.total_tokens > 0 => Ok(l),
                Ok(l) => Err(format!("{l:?}")),
                Err(e) => Err(format!("{e:?}")),
            }
        })
        .await;
    assert_eq!(saved.all.total_tokens, 32, "{saved:?}");
    assert_eq!(
        saved.by_identity.keys().collect::<Vec<_>>(),
        ["ip:127.0.0.1"]
    );
    h.stop().await;
}

/// The state file is readable by the relay's user only (0600), also when it replaces a
/// world-readable one, and so is its lock file (issue 10, 7: the ledger file was 0644).
#[cfg(unix)]
#[actix_web::test]
async fn the_state_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let file = TempPath::new("private");
    std::fs::write(&file.0, "{}").expect("an older state file");
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let h = start(Script::demo(), &[("USAGE_STATE_FILE", file.as_str())]).await;
    let mut ws = admitted(&h.base, "/", Style::Browser, None).await;
    respond(&mut ws).await;
    timed("drain", h.relay.drain()).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode();
    assert_eq!(Ledger::load(&file.0).expect("saved").all.total_tokens, 32);
    assert_eq!(mode(&file.0) & 0o777, 0o600);
    assert_eq!(mode(&file.0.with_extension("json.lock")) & 0o777, 0o600);
    h.stop().await;
}

/// A state file saved on a day after today (a clock that was ahead) is not today's: the budget
/// it had spent does not refuse, today's usage shows as today's in /stats and in the next save,
/// and the lifetime totals are kept (issue 10, 9: a ledger dated in the future kept counting into
/// that day, /stats showed 0 while the budget refused, and the budget never reset).
#[actix_web::test]
async fn a_ledger_dated_in_the_future_is_not_today() {
    let file = TempPath::new("future");
    let today = today();
    let spent = r#"{"total_tokens":1000,"input_tokens":400,"output_tokens":600}"#;
    std::fs::write(
        &file.0,
        format!(
            r#"{{"day":{},"all":{spent},"by_identity":{{"token:alice":{spent}}},"by_model":{{"gpt-realtime-mini":{spent}}},"lifetime":{spent}}}"#,
            today + 5
        ),
    )
    .expect("a state file from the future");
    let h = with_tokens(&[
        ("USAGE_STATE_FILE", file.as_str()),
        ("CLIENT_DAILY_TOKEN_BUDGET", "100"),
    ])
    .await;
    let s = stats::get(&h.http()).await;
    assert_eq!(s["usage"]["utc_day"], today, "{s}");
    assert_eq!(s["usage"]["today"]["total_tokens"], 0, "{s}");
    assert_eq!(s["usage"]["lifetime"]["total_tokens"], 1000, "{s}");

    let mut ws = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    respond(&mut ws).await;
    let s = stats::wait_until(&h.http(), "alice's response", |s| {
        s["usage"]["today"]["total_tokens"] == 32
    })
    .await;
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([("token:alice".to_string(), 32)])
    );
    assert_eq!(s["usage"]["lifetime"]["total_tokens"], 1032, "{s}");

    timed("drain", h.relay.drain()).await;
    let saved = Ledger::load(&file.0).expect("the drain wrote the state file");
    assert_eq!(saved.day, today, "{saved:?}");
    assert_eq!(saved.all.total_tokens, 32, "{saved:?}");
    h.stop().await;
}
