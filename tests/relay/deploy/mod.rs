//! The deployment files, checked where no Docker engine runs (none on this machine): the
//! container files against the code they run (`docker`: the healthcheck subcommand, the non-root
//! user, what stays out of the image and out of git), Compose (`compose`: the drain's
//! SHUTDOWN_TIMEOUT, what it publishes and to whom; `monitoring`: its monitoring profile reaches
//! the relay's admin port with the admin token; `nginx_service`: the certificate check before
//! Nginx starts), the alerts and the Grafana dashboard against the metrics the relay exports
//! (`dashboard`); and the scripts beside them: config/admin-token.sh (`admin_token`) and
//! tests/run.sh (`run_sh`) run here, config/self-signed-cert.sh's pair is served by the real Nginx
//! in tests/nginx/. Here: reading docker-compose.yml.

mod admin_token;
mod compose;
mod dashboard;
mod docker;
mod monitoring;
mod nginx_service;
mod run_sh;

/// The lines of service `name` in docker-compose.yml, without its own `  name:` line.
fn service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    let anchored = format!("{header} &");
    let mut lines = compose
        .lines()
        .skip_while(|l| *l != header && !l.starts_with(&anchored));
    assert!(lines.next().is_some(), "no service {name}");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect()
}

/// The `- item` entries of the list under `key:` in a service's `block`, unquoted, without
/// comments.
fn list(block: &[&str], key: &str) -> Vec<String> {
    let header = format!("    {key}:");
    let mut lines = block.iter().skip_while(|l| **l != header);
    assert!(lines.next().is_some(), "no {key}: in {block:?}");
    lines
        .take_while(|l| l.starts_with("      "))
        .map(|l| l.trim())
        .filter_map(|l| l.strip_prefix("- "))
        .map(|l| l.trim_matches('"').to_string())
        .collect()
}

/// The value of `key:` in `block` (the first line that has it), unquoted.
fn value(block: &[&str], key: &str) -> Option<String> {
    block.iter().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// `a/b/../c` as `a/c`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "." => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}
