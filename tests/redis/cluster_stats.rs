//! `GET /stats?scope=cluster`: every instance sharing the Redis, their live sessions per
//! instance and per identity, and today's usage, the same from each instance; admin-protected
//! like `/stats`; 404 `no_shared_state` without `REDIS_URL`.

use fake_upstream::Script;
use serde_json::{json, Value};

use super::instances::*;
use crate::common::{get_json, start};

const ADMIN: &str = "admin-token-for-cluster-stats";

/// Two instances with ADMIN_TOKEN: alice twice on A, bob once on B, and one response each:
/// `/stats?scope=cluster` (401 without the token) shows 3 live sessions, A with 2 and B with 1
/// (named by their pids), alice 2 and bob 1 live, today's 64 tokens with 32 for each identity and
/// in `by_model`, and `identities_today` 2; both instances answer the same, each naming itself.
#[actix_web::test]
async fn cluster_stats_show_every_instance() {
    let Some((redis, fake)) = redis_and_fake("cluster-stats").await else {
        return;
    };
    let env = [("RELAY_TOKENS", TOKENS), ("ADMIN_TOKEN", ADMIN)];
    let a = Instance::start("redis-stats-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-stats-b", &fake.url(), &redis.url(), &env).await;
    let mut alice = admitted(&a.url(), Some(ALICE)).await;
    let _alice2 = admitted(&a.url(), Some(ALICE)).await;
    let mut bob = admitted(&b.url(), Some(BOB)).await;
    respond(&mut alice).await;
    respond(&mut bob).await;

    let (status, body) = get_json(&format!("{}/stats?scope=cluster", a.http()), &[]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");

    let stats = a
        .wait_cluster("both responses", crate::common::T, |s| {
            today_tokens(s) == 2 * RESPONSE_TOKENS
        })
        .await;
    assert_eq!(stats["scope"], "cluster", "{stats}");
    assert_eq!(stats["live_sessions"], 3, "{stats}");
    let live_of = |pid: u32| -> Value {
        stats["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| {
                i["instance"]
                    .as_str()
                    .is_some_and(|n| n.contains(&format!("/{pid}/")))
            })
            .map(|i| i["live_sessions"].clone())
            .unwrap_or_else(|| panic!("no instance with pid {pid}: {stats}"))
    };
    assert_eq!(live_of(a.relay.pid()), 2, "{stats}");
    assert_eq!(live_of(b.relay.pid()), 1, "{stats}");
    assert_eq!(
        stats["instances"].as_array().map(Vec::len),
        Some(2),
        "{stats}"
    );
    for instance in stats["instances"].as_array().expect("instances") {
        assert!(
            instance["last_refresh_seconds_ago"]
                .as_u64()
                .is_some_and(|s| s <= 10),
            "{stats}"
        );
    }
    assert_eq!(
        stats["live_by_identity"],
        json!([
            {"identity": "token:alice", "live_sessions": 2},
            {"identity": "token:bob", "live_sessions": 1},
        ]),
        "{stats}"
    );
    let usage = &stats["usage"];
    assert_eq!(usage["identities_today"], 2, "{stats}");
    let mut by_identity = usage["by_identity"]
        .as_array()
        .expect("by_identity")
        .clone();
    by_identity.sort_by_key(|e| e["identity"].to_string());
    assert_eq!(
        by_identity,
        vec![
            json!({"identity": "token:alice", "billable_tokens": 32}),
            json!({"identity": "token:bob", "billable_tokens": 32}),
        ],
        "{stats}"
    );
    let by_model = usage["by_model"].as_object().expect("by_model");
    let model_tokens: u64 = by_model
        .values()
        .map(|u| u["total_tokens"].as_u64().expect("total_tokens"))
        .sum();
    assert_eq!(model_tokens, 64, "{stats}");
    assert!(usage["utc_day"].as_u64().is_some(), "{stats}");

    let from_b = b.cluster().await;
    assert_ne!(from_b["this_instance"], stats["this_instance"]);
    assert!(
        stats["this_instance"]
            .as_str()
            .is_some_and(|n| n.contains(&format!("/{}/", a.relay.pid()))),
        "{stats}"
    );
    for field in ["live_sessions", "live_by_identity", "usage"] {
        assert_eq!(from_b[field], stats[field], "{field}: {from_b}");
    }
}

/// Without REDIS_URL, `/stats?scope=cluster` answers 404 `no_shared_state`, and `/health` says
/// nothing about Redis.
#[actix_web::test]
async fn cluster_stats_need_redis_url() {
    let h = start(Script::demo(), &[]).await;
    let (status, body) = get_json(&format!("{}/stats?scope=cluster", h.http()), &[]).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "no_shared_state", "{body}");
    let (status, health) = get_json(&format!("{}/health", h.http()), &[]).await;
    assert_eq!(status, 200, "{health}");
    assert!(health.get("redis").is_none(), "{health}");
    h.stop().await;
}
