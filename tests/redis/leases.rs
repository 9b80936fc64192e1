//! Leases: an instance that dies without a word (SIGKILL) cannot give its sessions' slots back;
//! Redis drops them when their lease runs out (`LEASE_TTL`, 30 s after the last renewal). The
//! one slow test of this target: it waits up to 35 s.

use std::time::{Duration, Instant};

use super::instances::*;

/// The longest a dead instance's slot may outlive it: `LEASE_TTL` (30 s), and a margin for the
/// polls.
const LEASE_BOUND: Duration = Duration::from_secs(35);

/// MAX_CONNECTIONS_PER_CLIENT=2 and both of the client's sessions on A: after `kill -9` of A, B
/// still refuses the client (`too_many_connections`: the leases outlive A), then admits it once
/// the leases expire, within 35 s; `/stats?scope=cluster` counts no live session then.
#[actix_web::test]
async fn a_killed_instance_frees_its_slots_when_its_leases_expire() {
    let Some((redis, fake)) = redis_and_fake("lease").await else {
        return;
    };
    let env = [("MAX_CONNECTIONS_PER_CLIENT", "2")];
    let a = Instance::start("redis-lease-a", &fake.url(), &redis.url(), &env).await;
    let b = Instance::start("redis-lease-b", &fake.url(), &redis.url(), &env).await;
    let _first = admitted(&a.url(), None).await;
    let _second = admitted(&a.url(), None).await;
    refused(&b.url(), None, "too_many_connections").await;
    let a_pid = a.relay.pid();

    let killed_at = Instant::now();
    a.kill().await;
    refused(&b.url(), None, "too_many_connections").await;
    let stats = b
        .wait_cluster("no live session after A's death", LEASE_BOUND, |s| {
            s["live_sessions"] == 0
        })
        .await;
    let freed_after = killed_at.elapsed();
    let _again = admitted(&b.url(), None).await;
    eprintln!("a killed instance's leases expired {freed_after:?} after the kill");
    // A stays listed (for 10 leases) with nothing live.
    let dead = stats["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| {
            i["instance"]
                .as_str()
                .is_some_and(|n| n.contains(&format!("/{a_pid}/")))
        })
        .unwrap_or_else(|| panic!("A is not listed: {stats}"));
    assert_eq!(dead["live_sessions"], 0, "{stats}");
}
