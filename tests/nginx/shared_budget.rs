//! Two relays behind the real Nginx sharing one budget through the real Redis: a response through
//! one instance spends the client budget, the session on the other instance ends with
//! `budget_exceeded`, and Nginx finds no instance that admits the client again.

use std::net::SocketAddr;

use fake_upstream::Script;

use crate::{
    common::{redis::RedisServer, tools::tool, *},
    server::{connect_tls, start_nginx, tls_client},
};

/// `CLIENT_DAILY_TOKEN_BUDGET=20` on two relays sharing a Redis, one session on each through
/// Nginx: one 32-token response spends the budget, the other instance ends its session with
/// `budget_exceeded` (1008) after its 2 s check, and a new session through Nginx is refused.
#[actix_web::test]
async fn two_relays_behind_nginx_share_one_budget() {
    let Some(bin) = tool("nginx") else { return };
    let Some(redis) = RedisServer::start("nginx-shared-budget").await else {
        return;
    };
    let fake = start_fake(Script::demo()).await;
    let url = redis.url();
    let extra = [
        ("REDIS_URL", url.as_str()),
        ("CLIENT_DAILY_TOKEN_BUDGET", "20"),
        ("REDIS_TIMEOUT", "2000"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ];
    let a = start_relay(config(&fake.url(), &extra)).await;
    let b = start_relay(config(&fake.url(), &extra)).await;
    let nginx = start_nginx(
        &bin,
        "shared-budget",
        &[a.local_addr(), b.local_addr()],
        "120s",
    )
    .await;

    // least_conn with a shared zone: one session on each instance.
    let (_, mut first) = connect_tls(&nginx, &[]).await;
    let (_, mut second) = connect_tls(&nginx, &[]).await;
    stats::wait_until(&http(&a), "1 active", |s| s["active_sessions"] == 1).await;
    stats::wait_until(&http(&b), "1 active", |s| s["active_sessions"] == 1).await;

    send_text(&mut first, r#"{"type":"response.create"}"#).await;
    loop {
        let event = next_json(&mut first).await;
        if event["type"] == "response.done" {
            assert_eq!(event["response"]["usage"]["total_tokens"], 32, "{event}");
            break;
        }
    }
    // The session that spent it ends on its own instance at once ...
    let (error, _) = expect_close(&mut first).await;
    assert_eq!(
        error.expect("an error event")["error"]["code"],
        "budget_exceeded"
    );
    // ... and the one on the other instance when that instance reads the shared totals.
    let error = expect_failure(&mut second, "budget_exceeded", 1008).await;
    assert_message_contains(&error, "per-client");

    // Whichever instance Nginx picks now refuses the client.
    for _ in 0..2 {
        let (res, mut ws) = tokio::time::timeout(
            T,
            tls_client(&nginx)
                .ws(nginx.url("/realtime"))
                .address(SocketAddr::from(([127, 0, 0, 1], nginx.port)))
                .protocols(["realtime"])
                .connect(),
        )
        .await
        .expect("connect through nginx timed out")
        .expect("upgrade through nginx");
        assert_eq!(res.status().as_u16(), 101);
        expect_failure(&mut ws, "budget_exceeded", 1008).await;
    }
    for relay in [&a, &b] {
        stats::wait_until(&http(relay), "0 active", |s| s["active_sessions"] == 0).await;
    }

    drop(nginx);
    stop_relay(a).await;
    stop_relay(b).await;
    stop_fake(fake).await;
}
