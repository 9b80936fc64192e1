//! Redis going away under live relays: killed and started again on the same port, or hung
//! (SIGSTOP, so every call runs into `REDIS_TIMEOUT`). Under `REDIS_FAILURE_MODE=closed` new
//! sessions are refused with `service_unavailable` while live ones go on; under `open` they are
//! admitted on each instance's own limits; either way the usage counted meanwhile reaches Redis
//! once it answers, and nothing is counted twice.

use std::time::Duration;

use fake_upstream::Script;

use super::instances::*;
use crate::common::{
    poll::poll,
    redis::{Options, RedisServer},
    start_fake, T,
};

/// The lines of a relay's output that say it panicked.
fn panics(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.contains("panicked")).collect()
}

/// REDIS_FAILURE_MODE=closed, Redis killed: new sessions are refused with `service_unavailable`
/// (HTTP 503 JSON once /health says `"redis":"down"`), a live session still relays a response,
/// `relay_redis_up` is 0; Redis started again on the same port: /health says up, a new session
/// is admitted, the response counted during the outage reaches Redis, and nothing panicked.
#[actix_web::test]
async fn closed_mode_refuses_during_an_outage_and_recovers() {
    let Some((mut redis, fake)) = redis_and_fake("closed").await else {
        return;
    };
    let a = Instance::start("redis-closed-a", &fake.url(), &redis.url(), &[]).await;
    let mut live = admitted(&a.url(), None).await;

    redis.kill();
    // Before the relay has noticed, the refusal comes during admission (1013); after, as HTTP 503.
    let during_admission = !refused_unavailable(&a.addr, None).await;
    eprintln!("the first upgrade after the kill was refused during admission: {during_admission}");
    a.wait_redis("down").await;
    assert!(
        refused_unavailable(&a.addr, None).await,
        "not refused before the upgrade"
    );
    respond(&mut live).await;
    let metrics = a.metrics().await;
    assert_eq!(metric(&metrics, "relay_redis_up"), 0.0, "{metrics}");
    assert!(
        metric(
            &metrics,
            r#"relay_sessions_rejected_total{reason="service_unavailable"}"#
        ) >= 2.0,
        "{metrics}"
    );
    assert!(redis_errors(&metrics) >= 1.0, "{metrics}");

    redis.restart().await;
    let restarted_at = std::time::Instant::now();
    a.wait_redis("up").await;
    eprintln!(
        "/health said up {:?} after the restart",
        restarted_at.elapsed()
    );
    let _new = admitted(&a.url(), None).await;
    let stats = a
        .wait_cluster("the outage's usage", T, |s| {
            today_tokens(s) == RESPONSE_TOKENS
        })
        .await;
    assert_eq!(
        stats["usage"]["by_identity"][0]["billable_tokens"], 32,
        "{stats}"
    );
    respond(&mut live).await;

    let lines = a.kill().await;
    assert!(panics(&lines).is_empty(), "{lines:#?}");
    let text = lines.join("\n");
    assert!(text.contains("redis: no answer"), "{text}");
    assert!(text.contains("redis: answering"), "{text}");
}

/// REDIS_FAILURE_MODE=open, Redis (with an append-only file) killed after alice's first response:
/// B admits alice on its own count (one session, MAX_CONNECTIONS_PER_CLIENT=1, though A holds
/// one too) and refuses her second; after the restart the two responses of the outage reach
/// Redis, and the day's total is exactly three responses (96 tokens).
#[actix_web::test]
async fn open_mode_admits_during_an_outage_and_sends_the_usage_later() {
    let options = Options {
        persistent: true,
        ..Options::default()
    };
    let Some(mut redis) = RedisServer::start_with("open", options).await else {
        return;
    };
    let fake = start_fake(Script::demo()).await;
    let env = [
        ("REDIS_FAILURE_MODE", "open"),
        ("RELAY_TOKENS", TOKENS),
        ("MAX_CONNECTIONS_PER_CLIENT", "1"),
    ];
    let a = Instance::start("redis-open-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-open-b", &fake.url(), &redis.url(), &env).await;
    let mut on_a = admitted(&a.url(), Some(ALICE)).await;
    respond(&mut on_a).await;
    b.wait_cluster("the first response", T, |s| {
        today_tokens(s) == RESPONSE_TOKENS
    })
    .await;
    refused(&b.url(), Some(ALICE), "too_many_connections").await;

    redis.kill();
    let mut on_b = admitted(&b.url(), Some(ALICE)).await;
    b.wait_redis("down").await;
    refused(&b.url(), Some(ALICE), "too_many_connections").await;
    respond(&mut on_b).await;
    respond(&mut on_a).await;
    a.wait_redis("down").await;

    redis.restart().await;
    let stats = a
        .wait_cluster("the outage's usage", T, |s| {
            today_tokens(s) >= 3 * RESPONSE_TOKENS
        })
        .await;
    assert_eq!(today_tokens(&stats), 3 * RESPONSE_TOKENS, "{stats}");
    assert_eq!(
        stats["usage"]["by_identity"],
        serde_json::json!([{"identity": "token:alice", "billable_tokens": 96}]),
        "{stats}"
    );
    let seen: Vec<String> = redis
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("relay:seen:"))
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for instance in [a, b] {
        let lines = instance.kill().await;
        assert!(panics(&lines).is_empty(), "{lines:#?}");
    }
}

/// A hung Redis (SIGSTOP): a live session's response is relayed whole, its usage report runs
/// into REDIS_TIMEOUT (300 ms, the default) and waits in the backlog, and a new session is
/// refused with `service_unavailable`; once Redis runs again (SIGCONT) it runs that report at
/// least twice (the calls it had buffered, and the relay's retries), yet the day counts every
/// response once.
#[actix_web::test]
async fn a_hung_redis_runs_late_reports_without_counting_twice() {
    let options = Options {
        log_commands: true,
        ..Options::default()
    };
    let Some(redis) = RedisServer::start_with("hung", options).await else {
        return;
    };
    let fake = start_fake(Script::demo()).await;
    let env = [("RELAY_TOKENS", TOKENS), ("REDIS_TIMEOUT", "300")];
    let a = Instance::start("redis-hung-a", &fake.url(), &redis.url(), &env).await;
    let mut alice = admitted(&a.url(), Some(ALICE)).await;
    // Redis has the usage script: a late EVALSHA of it counts, rather than failing NOSCRIPT.
    respond(&mut alice).await;
    a.wait_cluster("the first response", T, |s| {
        today_tokens(s) == RESPONSE_TOKENS
    })
    .await;

    redis.pause();
    let done = respond(&mut alice).await;
    let key = format!("response:{}", done["response"]["id"].as_str().expect("id"));
    refused_unavailable(&a.addr, Some(BOB)).await;
    a.wait_redis("down").await;
    let metrics = a.metrics().await;
    assert!(
        metric(&metrics, r#"relay_redis_errors_total{op="usage"}"#) >= 1.0,
        "{metrics}"
    );

    redis.resume();
    a.wait_redis("up").await;
    let redis = &redis;
    let key = &key;
    let runs = poll(format!("{key} run twice by Redis"))
        .every(Duration::from_millis(100))
        .until(|| async move {
            let runs = redis
                .commands()
                .await
                .iter()
                .filter(|args| args.iter().any(|a| a == key))
                .count();
            if runs >= 2 {
                Ok(runs)
            } else {
                Err(format!("{runs} run(s)"))
            }
        })
        .await;
    eprintln!("the report of the response during the hang reached Redis {runs} times");
    // A new report goes out behind whatever still waits: once it is in, nothing is pending.
    respond(&mut alice).await;
    let stats = a
        .wait_cluster("the third response", T, |s| {
            today_tokens(s) >= 3 * RESPONSE_TOKENS
        })
        .await;
    assert_eq!(today_tokens(&stats), 3 * RESPONSE_TOKENS, "{stats}");
}

/// MAX_CONNECTIONS_PER_CLIENT=1 and a hung Redis: bob's upgrade is refused with
/// `service_unavailable` + 1013 after REDIS_TIMEOUT; once Redis runs again, bob is admitted: the
/// admission the relay gave up on holds no slot.
#[actix_web::test]
async fn an_admission_given_up_on_holds_no_slot() {
    let Some((redis, fake)) = redis_and_fake("given-up").await else {
        return;
    };
    let env = [
        ("RELAY_TOKENS", TOKENS),
        ("MAX_CONNECTIONS_PER_CLIENT", "1"),
        ("REDIS_TIMEOUT", "300"),
    ];
    let a = Instance::start("redis-given-up-a", &fake.url(), &redis.url(), &env).await;
    // Redis has the admission script (a late EVALSHA of it runs, rather than failing NOSCRIPT).
    let _alice = admitted(&a.url(), Some(ALICE)).await;

    redis.pause();
    let (_, mut ws) = crate::common::connect_with(
        &a.url(),
        &[],
        &[("Authorization", &format!("Bearer {BOB}"))],
    )
    .await
    .expect("upgraded: the relay does not know yet that Redis hangs");
    crate::common::expect_failure(&mut ws, "service_unavailable", 1013).await;
    redis.resume();
    a.wait_redis("up").await;
    let _bob = admitted(&a.url(), Some(BOB)).await;
    let stats = a.cluster().await;
    assert_eq!(stats["live_sessions"], 2, "{stats}");
}

/// Every `relay_redis_errors_total{op}` summed.
fn redis_errors(text: &str) -> f64 {
    crate::common::prom::samples(text)
        .into_iter()
        .filter(|s| s.name == "relay_redis_errors_total")
        .map(|s| s.value)
        .sum()
}
