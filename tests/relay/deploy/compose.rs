//! docker-compose.yml: the relay service's settings against the drain, and what each profile
//! publishes.

use super::{list, service};
use crate::common::read_repo;

/// The default SHUTDOWN_TIMEOUT, in seconds, as the relay reads it.
fn default_shutdown_timeout_secs() -> u64 {
    let map: std::collections::HashMap<&str, &str> =
        [("OPENAI_API_KEY", "k")].into_iter().collect();
    openai_realtime_relay::config::Config::from_source(
        &map,
        openai_realtime_relay::config::KeyPolicy::Required,
    )
    .expect("defaults are valid")
    .shutdown_timeout
    .as_secs()
}

/// Compose gives the relay its .env, a restart policy, the binary's health check, and a stop
/// grace period longer than SHUTDOWN_TIMEOUT so a drain is never cut by SIGKILL.
#[test]
fn compose_waits_longer_than_the_drain() {
    let c = read_repo("docker-compose.yml");
    assert!(
        c.contains("\n  openai-realtime-relay: &relay\n"),
        "service name (anchored: the scale-out replicas reuse it)"
    );
    assert!(c.contains("env_file: .env"));
    assert!(c.contains("restart: unless-stopped"));
    assert!(c.contains(r#"test: ["CMD", "openai-realtime-relay", "healthcheck"]"#));
    let grace: u64 = c
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period:"))
        .and_then(|v| v.trim().strip_suffix('s'))
        .and_then(|v| v.parse().ok())
        .expect("stop_grace_period: Ns");
    let shutdown = c
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHUTDOWN_TIMEOUT:"))
        .map(|v| v.trim().trim_matches('"').parse::<u64>().expect("ms") / 1000)
        .unwrap_or_else(default_shutdown_timeout_secs);
    assert!(
        grace > shutdown,
        "stop_grace_period {grace}s <= SHUTDOWN_TIMEOUT {shutdown}s"
    );
    assert!(
        c.contains("./config/nginx.conf:"),
        "nginx profile uses config/nginx.conf"
    );
    assert!(
        c.contains("./config/prometheus.yml:"),
        "monitoring uses config/prometheus.yml"
    );
}

/// Only Nginx listens on every interface; the relay, Prometheus and Alertmanager are published on 127.0.0.1 only, and the relay's admin port not at all.
#[test]
fn compose_publishes_only_what_each_profile_needs() {
    let c = read_repo("docker-compose.yml");
    let ports = |name: &str| list(&service(&c, name), "ports");
    assert_eq!(ports("nginx"), ["80:80", "443:443"]);
    assert_eq!(ports("openai-realtime-relay"), ["127.0.0.1:8080:8080"]);
    assert_eq!(ports("prometheus"), ["127.0.0.1:9090:9090"]);
    assert_eq!(ports("alertmanager"), ["127.0.0.1:9093:9093"]);
    // Whatever services come later: nothing else on every interface, and never the admin port.
    let mut in_ports = false;
    for line in c.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if t.ends_with(':') {
            in_ports = t == "ports:";
            continue;
        }
        let Some(entry) = t.strip_prefix("- ").filter(|_| in_ports) else {
            continue;
        };
        let entry = entry.trim_matches('"');
        assert!(
            entry.starts_with("127.0.0.1:") || entry == "80:80" || entry == "443:443",
            "{entry} is published on every interface"
        );
        assert!(
            !entry.contains("9100"),
            "the admin port is published: {entry}"
        );
    }
}
