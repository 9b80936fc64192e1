//! The container files cannot be built here (no Docker engine on this machine), so these tests
//! pin what they promise against the code they run: the healthcheck subcommand, the drain's
//! SHUTDOWN_TIMEOUT, the non-root user, and no secrets in the build context.

use std::process::Command;

fn repo(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

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

/// The Dockerfile builds with --locked in one stage, runs as a non-root user in another, and
/// checks health with the binary's own `healthcheck` subcommand, which the binary really has.
#[test]
fn dockerfile_matches_the_binary() {
    let d = repo("Dockerfile");
    assert!(d.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(d.contains("cargo build --release --locked"));
    assert!(d.contains("\nUSER relay"), "non-root user");
    assert!(d.contains("\nEXPOSE 8080"));
    assert!(d.contains("\nSTOPSIGNAL SIGTERM"));
    assert!(d.contains(r#"CMD ["openai-realtime-relay", "healthcheck"]"#));
    let help = Command::new(env!("CARGO_BIN_EXE_openai-realtime-relay"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("healthcheck"));
}

/// Secrets and build output stay out of the Docker build context.
#[test]
fn dockerignore_keeps_secrets_out() {
    let ignore = repo(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in ["target", ".env", ".git"] {
        assert!(lines.contains(&entry), "{entry} missing from .dockerignore");
    }
}

/// Compose gives the relay its .env, a restart policy, the binary's health check, and a stop
/// grace period longer than SHUTDOWN_TIMEOUT so a drain is never cut by SIGKILL.
#[test]
fn compose_waits_longer_than_the_drain() {
    let c = repo("docker-compose.yml");
    assert!(c.contains("\n  openai-realtime-relay:\n"), "service name");
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
