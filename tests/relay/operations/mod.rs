//! Operations (issue 4): graceful drain in-process and on signals (`drain`), whom the relay
//! believes about the client's address (`client_address`), `ADMIN_TOKEN` and `ADMIN_PORT`
//! (`admin`), the `/stats` and `/metrics` extras (`stats_and_metrics`), the `healthcheck`
//! subcommand, and JSON logs that carry no secret (`json_logs`). The binary runs as a child with
//! a cleared environment in a fresh directory; its lines are read from threads with a deadline,
//! never by sleeping.

mod admin;
mod client_address;
mod drain;
mod healthcheck;
mod json_logs;
mod stats_and_metrics;

use std::{future::Future, pin::Pin, task::Poll};

use awc::error::WsClientError;

use crate::common::*;

/// Polls `fut` exactly once. `Relay::drain` marks the relay draining and posts `Drain` to the
/// registry on its first poll, then waits for the registry's answer on this thread: polling it
/// once and not again holds the drain open (server still up) while the test looks at it.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Connects to `url` with `headers` and waits for `session.created`.
async fn session(url: &str, headers: &[(&str, &str)]) -> Ws {
    let (_, mut ws) = connect_with(url, &["realtime"], headers)
        .await
        .expect("upgrade succeeds");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    ws
}

/// Asserts an upgrade attempt is answered with HTTP `status` instead of 101.
async fn expect_upgrade_refused(url: &str, status: u16) {
    match connect_with(url, &["realtime"], &[]).await {
        Err(WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), status, "{url}"),
        Err(other) => panic!("{url}: expected HTTP {status}, got {other:?}"),
        Ok((res, _)) => panic!("{url}: expected HTTP {status}, got {}", res.status()),
    }
}
