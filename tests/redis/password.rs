//! A password in `REDIS_URL`: it works, and it is never shown (not in the output, nor in
//! `/health`, `/stats`, `/stats?scope=cluster` or `/metrics`); a wrong one shows as Redis down.

use super::instances::*;
use crate::common::{
    poll::poll,
    redis::{Options, RedisServer},
    start_fake,
};
use fake_upstream::Script;

const PASSWORD: &str = "s3cret-Redis-PW-7f1d";
const WRONG: &str = "wrong-Redis-PW-0c9a";

async fn redis_with_password(name: &str) -> Option<RedisServer> {
    let options = Options {
        password: Some(PASSWORD.into()),
        ..Options::default()
    };
    RedisServer::start_with(name, options).await
}

/// Every admin body of `instance`, with `/stats?scope=cluster` only when it answers.
async fn bodies(instance: &Instance) -> Vec<String> {
    let mut out = Vec::new();
    for path in ["/health", "/stats", "/stats?scope=cluster", "/metrics"] {
        let (_, body) = instance.get(path).await;
        out.push(format!("{path}: {body}"));
    }
    out
}

/// Redis with `--requirepass` and the password in REDIS_URL: the relay admits and counts (Redis
/// up), the startup line names only `redis://127.0.0.1:PORT`, and the password appears in none of
/// its output, `/health`, `/stats`, `/stats?scope=cluster` or `/metrics`.
#[actix_web::test]
async fn a_password_in_redis_url_works_and_is_never_shown() {
    let Some(redis) = redis_with_password("password").await else {
        return;
    };
    assert!(redis.url().contains(PASSWORD));
    let fake = start_fake(Script::demo()).await;
    let a = Instance::start("redis-password-a", &fake.url(), &redis.url(), &[]).await;
    let mut ws = admitted(&a.url(), None).await;
    respond(&mut ws).await;
    a.wait_cluster("the response", crate::common::T, |s| {
        today_tokens(s) == RESPONSE_TOKENS
    })
    .await;

    let bodies = bodies(&a).await;
    for body in &bodies {
        assert!(!body.contains(PASSWORD), "{body}");
    }
    let lines = a.kill().await;
    let text = lines.join("\n");
    assert!(!text.contains(PASSWORD), "{text}");
    let startup = format!("shared state: redis at redis://127.0.0.1:{} ", redis.port());
    assert!(text.contains(&startup), "{text}");
}

/// A wrong password: the relay's pings fail (`relay_redis_errors_total{op="ping"}`), /health says
/// `"redis":"down"`, `relay_redis_up` is 0, upgrades get HTTP 503 `service_unavailable`, and
/// neither password appears in its output or admin bodies.
#[actix_web::test]
async fn a_wrong_password_shows_as_redis_down() {
    let Some(redis) = redis_with_password("wrong-password").await else {
        return;
    };
    let fake = start_fake(Script::demo()).await;
    let url = format!("redis://:{WRONG}@127.0.0.1:{}", redis.port());
    let a = Instance::spawn("redis-wrong-password-a", &fake.url(), &url, &[]).await;
    let a = &a;
    poll("a failed ping in /metrics")
        .until(|| async move {
            let metrics = a.metrics().await;
            if metric(&metrics, r#"relay_redis_errors_total{op="ping"}"#) >= 1.0 {
                Ok(metrics)
            } else {
                Err(metrics)
            }
        })
        .await;
    assert_eq!(a.health().await["redis"], "down");
    assert_eq!(metric(&a.metrics().await, "relay_redis_up"), 0.0);
    let (status, body) = refused_before_upgrade(&a.addr).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
    assert_eq!(fake.recorder().handshakes().len(), 0);

    for body in bodies(a).await {
        assert!(!body.contains(WRONG) && !body.contains(PASSWORD), "{body}");
    }
}

/// A Redis that never answered since the start (here, a wrong password) is said in the log:
/// `redis: no answer (...)` with its address and without the password, as troubleshooting.md
/// promises for `service_unavailable`.
#[actix_web::test]
async fn a_redis_that_never_answered_is_logged() {
    let Some(redis) = redis_with_password("never-answered").await else {
        return;
    };
    let fake = start_fake(Script::demo()).await;
    let url = format!("redis://:{WRONG}@127.0.0.1:{}", redis.port());
    let mut a = Instance::spawn("redis-never-answered-a", &fake.url(), &url, &[]).await;
    let line = a.relay.wait_line("redis: no answer").await;
    assert!(
        line.contains(&format!("127.0.0.1:{}", redis.port())),
        "{line}"
    );
    assert!(!line.contains(WRONG), "{line}");
}

/// With the default REDIS_TIMEOUT (300 ms), a wrong password is logged as what it is (an
/// authentication failure), so the operator knows to fix the password rather than the network.
#[actix_web::test]
async fn a_wrong_password_is_logged_as_an_authentication_failure() {
    let Some(redis) = redis_with_password("wrong-password-log").await else {
        return;
    };
    let fake = start_fake(Script::demo()).await;
    let url = format!("redis://:{WRONG}@127.0.0.1:{}", redis.port());
    let env = [("REDIS_TIMEOUT", "300")];
    let mut a = Instance::spawn("redis-wrong-password-log-a", &fake.url(), &url, &env).await;
    let line = a.relay.wait_line("redis: no answer").await;
    assert!(line.to_lowercase().contains("authentication"), "{line}");
    assert!(!line.contains(WRONG), "{line}");
}
