//! The shared ledger counts a usage report once per key (the response id): `usage.lua`, run
//! straight against Redis the way the relay runs it. Through the relay, a report reaches Redis
//! twice only after a timeout; `outage::a_hung_redis_runs_late_reports_without_counting_twice`
//! makes that happen. And the other side of keying by response id: responses with the same id
//! from different upstreams (two `--demo` relays) count once.

use super::instances::{admitted, respond, RESPONSE_TOKENS};
use crate::common::{child::Process, get_json, poll::poll, read_repo, redis::RedisServer};

/// Runs `usage.lua` for `identity` with a report of `tokens` total tokens costing a millionth
/// of a dollar each, keyed by `key`; returns `[counted, day, all today, identity today]` (tokens)
/// followed by the same two in billionths of a dollar.
async fn report(
    redis: &RedisServer,
    script: &str,
    identity: &str,
    key: &str,
    tokens: u64,
) -> Vec<u64> {
    let mut cmd = ::redis::cmd("EVAL");
    cmd.arg(script)
        .arg(0)
        .arg("relay:")
        .arg(identity)
        .arg("gpt-realtime-mini")
        .arg(key)
        .arg(tokens)
        .arg("total_tokens")
        .arg(tokens)
        .arg("input_tokens")
        .arg(0)
        .arg("cost_nano_usd")
        .arg(tokens * 1_000);
    redis.query(&cmd).await
}

/// The same key twice is counted once (the second answers `counted` 0 and the same totals), a
/// new key is counted, a report without a key (`''`) is counted every time; the day's hashes hold
/// exactly what was counted, and a key is remembered for 48 h.
#[actix_web::test]
async fn usage_is_counted_once_per_key() {
    let Some(redis) = RedisServer::start("ledger").await else {
        return;
    };
    let script = read_repo("src/cluster/scripts/usage.lua");
    let first = report(&redis, &script, "token:alice", "response:resp_1", 32).await;
    assert_eq!((first[0], first[2], first[3]), (1, 32, 32), "{first:?}");
    let day = first[1];
    let again = report(&redis, &script, "token:alice", "response:resp_1", 32).await;
    assert_eq!(again, vec![0, day, 32, 32, 32_000, 32_000]);
    // The key is the response's, whoever reports it.
    let other = report(&redis, &script, "token:bob", "response:resp_1", 32).await;
    assert_eq!(other, vec![0, day, 32, 0, 32_000, 0]);
    let next = report(&redis, &script, "token:alice", "response:resp_2", 32).await;
    assert_eq!(next, vec![1, day, 64, 64, 64_000, 64_000]);
    for all in [96, 128] {
        let unkeyed = report(&redis, &script, "token:alice", "", 32).await;
        assert_eq!(unkeyed, vec![1, day, all, all, all * 1_000, all * 1_000]);
    }

    let hash = |suffix: &str| {
        let mut cmd = ::redis::cmd("HGET");
        cmd.arg(format!("relay:usage:{day}:{suffix}"))
            .arg("total_tokens");
        cmd
    };
    let all: u64 = redis.query(&hash("all")).await;
    let alice: u64 = redis.query(&hash("id:token:alice")).await;
    let model: u64 = redis.query(&hash("model:gpt-realtime-mini")).await;
    assert_eq!((all, alice, model), (128, 128, 128));
    let ttl: i64 = redis
        .query(::redis::cmd("TTL").arg("relay:seen:response:resp_1"))
        .await;
    assert!((172_000..=172_800).contains(&ttl), "{ttl}");
}

/// Two relays in `--demo` mode sharing one Redis (each with its own built-in fake upstream): one
/// response through each is two responses in the shared ledger (64 tokens), not one.
#[actix_web::test]
async fn demo_relays_sharing_a_redis_count_every_response() {
    let Some(redis) = RedisServer::start("demo-ledger").await else {
        return;
    };
    let url = redis.url();
    let env = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("REDIS_URL", url.as_str()),
    ];
    let mut first = Process::spawn("redis-demo-ledger-a", &["--demo"], &env);
    let first_addr = first.listening().await;
    let mut second = Process::spawn("redis-demo-ledger-b", &["--demo"], &env);
    let second_addr = second.listening().await;
    let mut ids = Vec::new();
    for addr in [&first_addr, &second_addr] {
        poll(format!("/health of {addr} saying redis up"))
            .until(|| async move {
                let (_, health) = get_json(&format!("http://{addr}/health"), &[]).await;
                if health["redis"] == "up" {
                    Ok(())
                } else {
                    Err(health.to_string())
                }
            })
            .await;
        let mut ws = admitted(&format!("ws://{addr}/v1/realtime"), None).await;
        let done = respond(&mut ws).await;
        ids.push(done["response"]["id"].as_str().unwrap_or("?").to_string());
    }
    let redis = &redis;
    poll(format!(
        "64 tokens in today's ledger (response ids {ids:?})"
    ))
    .until(|| async move {
        let keys: Vec<String> = redis
            .query(::redis::cmd("KEYS").arg("relay:usage:*:all"))
            .await;
        let mut total = 0;
        for key in keys {
            let tokens: Option<u64> = redis
                .query(::redis::cmd("HGET").arg(key).arg("total_tokens"))
                .await;
            total += tokens.unwrap_or(0);
        }
        if total == 2 * RESPONSE_TOKENS {
            Ok(())
        } else {
            Err(format!("{total} tokens"))
        }
    })
    .await;
}
