//! `MAX_CONNECTIONS_PER_CLIENT` and `CONNECTION_RATE_PER_CLIENT` held once across instances: a
//! client's sessions on every instance count against one limit, a clean end frees its slot at
//! once, and instances racing for the last slot give it to one session only.

use std::time::Duration;

use futures_util::future::join_all;

use super::instances::*;
use crate::common::{assert_message_contains, close, next_json, T};

/// MAX_CONNECTIONS_PER_CLIENT=2 over two instances: a session on A and one on B fill it, a third
/// is refused with `too_many_connections` + 1008 on either, and closing the one on A frees its
/// slot at once (seen in `/stats?scope=cluster` within T, well before the 30 s lease would expire),
/// so B admits again.
#[actix_web::test]
async fn per_client_limit_is_shared() {
    let Some((redis, fake)) = redis_and_fake("per-client").await else {
        return;
    };
    let env = [("MAX_CONNECTIONS_PER_CLIENT", "2")];
    let a = Instance::start("redis-per-client-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-per-client-b", &fake.url(), &redis.url(), &env).await;

    let mut on_a = admitted(&a.url(), None).await;
    let _on_b = admitted(&b.url(), None).await;
    for url in [a.url(), b.url()] {
        let error = refused(&url, None, "too_many_connections").await;
        assert_message_contains(&error, "already has 2 open sessions");
    }

    close(&mut on_a).await;
    let stats = b
        .wait_cluster("one live session after the close", T, |s| {
            s["live_sessions"] == 1
        })
        .await;
    assert_eq!(
        stats["live_by_identity"][0]["identity"], "ip:127.0.0.1",
        "{stats}"
    );
    let _again = admitted(&b.url(), None).await;
    refused(&a.url(), None, "too_many_connections").await;
    assert_eq!(
        fake.recorder().handshakes().len(),
        3,
        "a refusal dialed upstream"
    );
}

/// CONNECTION_RATE_PER_CLIENT=2 over two instances: a new session of alice's on A and one on B
/// spend her minute, and her third, on either instance, is refused with `rate_limited` + 1008;
/// bob has a minute of his own.
#[actix_web::test]
async fn connection_rate_is_shared() {
    let Some((redis, fake)) = redis_and_fake("rate").await else {
        return;
    };
    let env = [
        ("CONNECTION_RATE_PER_CLIENT", "2"),
        ("RELAY_TOKENS", TOKENS),
    ];
    let a = Instance::start("redis-rate-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-rate-b", &fake.url(), &redis.url(), &env).await;

    let mut first = admitted(&a.url(), Some(ALICE)).await;
    close(&mut first).await;
    let _second = admitted(&b.url(), Some(ALICE)).await;
    for url in [a.url(), b.url()] {
        let error = refused(&url, Some(ALICE), "rate_limited").await;
        assert_message_contains(&error, "limit of 2 per minute");
    }
    let _bob = admitted(&a.url(), Some(BOB)).await;
    assert_eq!(
        fake.recorder().handshakes().len(),
        3,
        "a refusal dialed upstream"
    );
}

/// MAX_CONNECTIONS_PER_CLIENT=1 and eight upgrades of one client at once, four on each of two
/// instances: exactly one is admitted, the seven others get `too_many_connections`.
#[actix_web::test]
async fn racing_instances_admit_one_session_for_the_last_slot() {
    let Some((redis, fake)) = redis_and_fake("race").await else {
        return;
    };
    let env = [("MAX_CONNECTIONS_PER_CLIENT", "1")];
    let a = Instance::start("redis-race-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-race-b", &fake.url(), &redis.url(), &env).await;

    let urls: Vec<String> = (0..8)
        .map(|i| if i % 2 == 0 { a.url() } else { b.url() })
        .collect();
    let outcomes = join_all(urls.iter().map(|url| async move {
        let mut ws = open(url, None).await;
        let first = next_json(&mut ws).await;
        let outcome = match first["type"].as_str() {
            Some("session.created") => "admitted".to_string(),
            Some("error") => first["error"]["code"].as_str().unwrap_or("?").to_string(),
            _ => panic!("{first}"),
        };
        // Held open until every upgrade has its answer.
        (outcome, ws)
    }))
    .await;
    let mut seen: Vec<&str> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    seen.sort();
    let mut expected = vec!["too_many_connections"; 7];
    expected.insert(0, "admitted");
    assert_eq!(seen, expected);
    let stats = a
        .wait_cluster("one live session", Duration::from_secs(2), |s| {
            s["live_sessions"] == 1
        })
        .await;
    assert_eq!(stats["live_sessions"], 1, "{stats}");
}
