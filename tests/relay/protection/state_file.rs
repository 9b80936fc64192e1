//! USAGE_STATE_FILE: the ledger saved while running and on drain, and read back on start.

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
        let _ = std::fs::remove_file(self.0.with_extension("json.tmp"));
    }
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
