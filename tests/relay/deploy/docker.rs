//! The Dockerfile against the binary it runs, and what stays out of the build context and git.

use std::process::Command;

use crate::common::read_repo;

/// The Dockerfile builds with --locked in one stage, runs as a non-root user in another, and
/// checks health with the binary's own `healthcheck` subcommand, which the binary really has.
#[test]
fn dockerfile_matches_the_binary() {
    let d = read_repo("Dockerfile");
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
    let ignore = read_repo(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in ["target", ".env", ".git", "certs", "secrets"] {
        assert!(lines.contains(&entry), "{entry} missing from .dockerignore");
    }
}

/// The TLS key (certs/), the admin token (secrets/) and .env stay out of git.
#[test]
fn gitignore_keeps_secrets_out() {
    let ignore = read_repo(".gitignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in [".env", "/certs/", "/secrets/"] {
        assert!(lines.contains(&entry), "{entry} missing from .gitignore");
    }
}
