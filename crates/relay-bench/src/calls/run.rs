//! A `calls` run (the `webrtc` feature): on one actix `System`, opens the plan's calls
//! (`--concurrency` at a time) through the relay as a browser does (a `fake_upstream::TestPeer` offers, the offer is
//! posted to the relay's `/v1/realtime/calls` with `$RELAY_BENCH_TOKEN` as the Bearer when set,
//! the answer applied, the data channel open, `session.created` on it), says so on stderr, holds
//! them idle until `--hold` has passed or SIGTERM/SIGINT arrives, then hangs each up through the
//! relay and closes its peer, and prints what it held. Every step is bounded; a step of
//! `TestPeer` (a test helper, which panics when it fails) runs as a task of its own, so that its
//! panic becomes a `Failure` naming the call and the step.

use std::{
    fmt::Write as _,
    future::Future,
    time::{Duration, Instant},
};

use fake_upstream::TestPeer;
use futures_util::{stream, StreamExt};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

use super::Plan;
use crate::{
    args::Failure,
    procfs::proc_sample,
    stats::{print_report, round3},
};

/// Bound on setting one call up: the offer (ICE gathering), the relay's answer (it makes the call
/// upstream), the answer applied, the data channel open and `session.created` on it.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one hangup through the relay (which hangs up upstream), and on one peer's close.
const END_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the HTTP requests to the relay (the offer, a hangup, `/stats`).
const HTTP_TIMEOUT: Duration = Duration::from_secs(12);
/// Largest answer body read (an SDP answer is a few KiB).
const MAX_BODY: usize = 1 << 20;

/// A call set up and held: its client peer and the id the relay gave it.
struct Held {
    peer: TestPeer,
    call_id: String,
}

/// What the run measured, printed at the end.
struct Outcome {
    established: usize,
    setup: Duration,
    held_for: Duration,
    /// `sessions_by_transport.webrtc` of the relay's `/stats` once all were set up, and at the
    /// end of the hold (None: `/stats` did not answer 200, e.g. it needs an admin token).
    webrtc_at_start: Option<u64>,
    webrtc_at_end: Option<u64>,
    /// Calls the relay still had, and hung up, at the end (its hangup answered 200).
    hung_up: usize,
    /// The relay's resident memory before the first call and with all of them set up.
    rss_kb: Option<(u64, u64)>,
}

pub(super) fn run(plan: Plan) -> Result<(), Failure> {
    actix_web::rt::System::new().block_on(run_calls(plan))
}

async fn run_calls(plan: Plan) -> Result<(), Failure> {
    let client = awc::Client::builder().timeout(HTTP_TIMEOUT).finish();
    let token = std::env::var("RELAY_BENCH_TOKEN").ok();
    let offer_url = format!("{}/v1/realtime/calls?model={}", plan.url, plan.model);
    let rss_before = (!plan.pids.is_empty()).then(|| proc_sample(&plan.pids).rss_kb);
    let started = Instant::now();
    let opened: Vec<(usize, Result<Held, String>)> = stream::iter(1..=plan.calls)
        .map(|n| {
            let opening = open_call(client.clone(), offer_url.clone(), token.clone());
            async move {
                (
                    n,
                    guarded(SETUP_TIMEOUT, opening).await.and_then(|call| call),
                )
            }
        })
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    let setup = started.elapsed();
    let mut held = Vec::with_capacity(plan.calls);
    let mut failed = None;
    for (n, call) in opened {
        match call {
            Ok(call) => held.push(call),
            Err(why) => failed = failed.or(Some((n, why))),
        }
    }
    if let Some((n, why)) = failed {
        end_calls(&client, &plan.url, token.as_deref(), held).await;
        return Err(Failure::Run(format!(
            "call {n} of {} through {}: {why}",
            plan.calls, plan.url
        )));
    }
    let rss_kb = rss_before.map(|before| (before, proc_sample(&plan.pids).rss_kb));
    let webrtc_at_start = webrtc_sessions(&client, &plan.url).await;
    eprintln!(
        "established {} calls through {} in {:.2} s; holding them {} s (SIGTERM ends the hold)",
        held.len(),
        plan.url,
        setup.as_secs_f64(),
        plan.hold.as_secs()
    );
    let holding = Instant::now();
    hold(plan.hold).await?;
    let held_for = holding.elapsed();
    let webrtc_at_end = webrtc_sessions(&client, &plan.url).await;
    let established = held.len();
    let hung_up = end_calls(&client, &plan.url, token.as_deref(), held).await;
    Outcome {
        established,
        setup,
        held_for,
        webrtc_at_start,
        webrtc_at_end,
        hung_up,
        rss_kb,
    }
    .print(&plan);
    Ok(())
}

/// One call, as a browser makes it, up to `session.created` on its data channel.
async fn open_call(
    client: awc::Client,
    url: String,
    token: Option<String>,
) -> Result<Held, String> {
    let peer = TestPeer::offer().await;
    let mut request = client
        .post(&url)
        .insert_header(("Content-Type", "application/sdp"));
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let mut answer = request
        .send_body(peer.offer.clone())
        .await
        .map_err(|e| format!("the relay did not answer the offer: {e}"))?;
    let body = answer
        .body()
        .limit(MAX_BODY)
        .await
        .map_err(|e| format!("the relay's answer to the offer broke off: {e}"))?;
    let body = String::from_utf8_lossy(&body);
    if answer.status().as_u16() != 201 {
        // A refusal is the relay's JSON error: its code and message, never a credential.
        return Err(format!(
            "the relay refused the offer with {}: {}",
            answer.status(),
            body.trim()
        ));
    }
    let call_id = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .filter(|id| !id.is_empty())
        .ok_or("the relay's 201 has no Location with the call's id")?
        .to_owned();
    peer.answer(&body).await;
    peer.opened().await;
    let first = peer.next_json().await;
    if first["type"] != "session.created" {
        return Err(format!(
            "call {call_id}: the first event on the data channel is {:?}, not session.created",
            first["type"]
        ));
    }
    Ok(Held { peer, call_id })
}

/// Waits `hold`, or less if SIGTERM or SIGINT arrives.
async fn hold(hold: Duration) -> Result<(), Failure> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Failure::Run(format!("cannot listen for SIGTERM: {e}")))?;
    tokio::select! {
        () = tokio::time::sleep(hold) => {}
        _ = term.recv() => eprintln!("SIGTERM: ending the hold"),
        _ = tokio::signal::ctrl_c() => eprintln!("SIGINT: ending the hold"),
    }
    Ok(())
}

/// Hangs each call up through the relay, then closes its peer; returns how many hangups the
/// relay answered 200 (the call was still live there). Failures are said, not fatal: the relay
/// ends a call whose peer is gone by itself.
async fn end_calls(
    client: &awc::Client,
    base: &str,
    token: Option<&str>,
    held: Vec<Held>,
) -> usize {
    let mut hung_up = 0;
    for call in held {
        let url = format!("{base}/v1/realtime/calls/{}/hangup", call.call_id);
        let mut request = client
            .post(url)
            .insert_header(("Content-Type", "application/json"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        match tokio::time::timeout(END_TIMEOUT, request.send()).await {
            Ok(Ok(answer)) if answer.status().as_u16() == 200 => hung_up += 1,
            Ok(Ok(answer)) => eprintln!(
                "call {}: the relay answered the hangup with {}",
                call.call_id,
                answer.status()
            ),
            Ok(Err(e)) => eprintln!("call {}: hangup failed: {e}", call.call_id),
            Err(_) => eprintln!("call {}: no answer to the hangup in time", call.call_id),
        }
        let call_id = call.call_id;
        let peer = call.peer;
        if let Err(why) = guarded(END_TIMEOUT, async move { peer.close().await }).await {
            eprintln!("call {call_id}: closing its peer: {why}");
        }
    }
    hung_up
}

/// `sessions_by_transport.webrtc` of the relay's `/stats`, if it answers 200.
async fn webrtc_sessions(client: &awc::Client, base: &str) -> Option<u64> {
    let mut answer = tokio::time::timeout(HTTP_TIMEOUT, client.get(format!("{base}/stats")).send())
        .await
        .ok()?
        .ok()?;
    if answer.status().as_u16() != 200 {
        return None;
    }
    let body = tokio::time::timeout(HTTP_TIMEOUT, answer.body().limit(MAX_BODY))
        .await
        .ok()?
        .ok()?;
    let stats: Value = serde_json::from_slice(&body).ok()?;
    stats["sessions_by_transport"]["webrtc"].as_u64()
}

/// Runs `step` as a task of its own for at most `limit`: a panic (a `TestPeer` step that failed)
/// or the timeout becomes an error saying which.
async fn guarded<T: 'static>(
    limit: Duration,
    step: impl Future<Output = T> + 'static,
) -> Result<T, String> {
    match actix_web::rt::spawn(tokio::time::timeout(limit, step)).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(_)) => Err(format!("did not finish within {} s", limit.as_secs())),
        Err(e) => Err(match e.try_into_panic() {
            Ok(payload) => {
                let why = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                format!("the WebRTC client peer failed: {why}")
            }
            Err(e) => format!("the WebRTC client task ended: {e}"),
        }),
    }
}

impl Outcome {
    fn print(&self, plan: &Plan) {
        let mut out = json!({
            "mode": "calls",
            "url": plan.url,
            "calls": plan.calls,
            "established": self.established,
            "setup_wall_s": round3(self.setup.as_secs_f64()),
            "held_s": round3(self.held_for.as_secs_f64()),
            "stats_webrtc_at_start": self.webrtc_at_start,
            "stats_webrtc_at_end": self.webrtc_at_end,
            "hung_up": self.hung_up,
        });
        let stat = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let mut table = format!(
            "url               {}\ncalls             {} established of {} in {:.2} s, held {:.1} s, {} still live and hung up at the end\nrelay /stats      webrtc sessions {} after setup, {} at the end\n",
            plan.url,
            self.established,
            plan.calls,
            self.setup.as_secs_f64(),
            self.held_for.as_secs_f64(),
            self.hung_up,
            stat(self.webrtc_at_start),
            stat(self.webrtc_at_end),
        );
        if let Some((before, held)) = self.rss_kb {
            let per = (held as f64 - before as f64) / self.established.max(1) as f64;
            out["proxy"] = json!({
                "pids": plan.pids,
                "rss_base_kb": before,
                "rss_held_kb": held,
                "rss_per_call_kb": round3(per),
            });
            let _ = writeln!(
                table,
                "proxy rss         {before} kB before, {held} kB held: {per:.1} kB per call"
            );
        }
        print_report(&table, &out, plan.json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client-peer step that panics (as `TestPeer` does when it fails) is an error carrying the
    /// panic's message, and one that overruns its limit an error saying so; neither ends the run.
    #[actix_web::test]
    async fn a_failing_peer_step_is_an_error_not_a_panic() {
        let panicked = guarded(Duration::from_secs(5), async {
            panic!("data channel open")
        })
        .await;
        assert!(
            panicked
                .as_ref()
                .is_err_and(|why| why.contains("data channel open")),
            "{panicked:?}"
        );
        let overran = guarded(Duration::from_millis(20), std::future::pending::<()>()).await;
        assert!(
            overran.as_ref().is_err_and(|why| why.contains("within")),
            "{overran:?}"
        );
        assert_eq!(guarded(Duration::from_secs(5), async { 7 }).await, Ok(7));
    }
}
