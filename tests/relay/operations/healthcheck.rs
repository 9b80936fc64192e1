//! The `healthcheck` subcommand (what Docker and Compose run) against a healthy, an absent and a
//! draining relay.

use std::process::ExitStatus;

use fake_upstream::Script;

use super::poll_once;
use crate::common::{child::Process, *};

/// Runs `openai-realtime-relay healthcheck` against 127.0.0.1:`port`; returns its exit status.
async fn healthcheck(test: &str, port: u16) -> (ExitStatus, Vec<String>) {
    let port = port.to_string();
    Process::spawn(
        test,
        &["healthcheck"],
        &[("PORT", &port), ("HOST", "127.0.0.1")],
    )
    .exit()
    .await
}

/// `healthcheck` exits 0 against a healthy relay, 1 where nothing listens, 1 while it drains.
#[actix_web::test]
async fn healthcheck_subcommand_follows_health() {
    let h = start(Script::echo(), &[("SHUTDOWN_TIMEOUT", "60000")]).await;
    let port = h.relay.local_addr().port();

    let (status, lines) = healthcheck("hc-ok", port).await;
    assert_eq!(status.code(), Some(0), "{lines:#?}");

    let (status, lines) = healthcheck("hc-nothing", tools::free_port()).await;
    assert_eq!(status.code(), Some(1), "{lines:#?}");

    {
        let mut drain = std::pin::pin!(h.relay.drain());
        assert!(poll_once(drain.as_mut()).await.is_pending());
        let (code, _) = get(&format!("{}/health", h.http()), &[]).await;
        assert_eq!(code, 503);
        let (status, lines) = healthcheck("hc-draining", port).await;
        assert_eq!(status.code(), Some(1), "{lines:#?}");
        assert!(
            lines.join("\n").contains("did not answer 200"),
            "{lines:#?}"
        );
        tokio::time::timeout(T, drain).await.expect("drain");
    }
    h.stop().await;
}
