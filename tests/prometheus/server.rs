//! Running the Prometheus tools for a test: the shipped configs laid out in a scratch directory as
//! the repository and the compose container have them, the programs started there with their
//! logs beside them, and their HTTP APIs polled until they answer.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use crate::common::{
    poll::poll,
    tools::{free_port, output, rewrite, Killed},
    *,
};

/// Polling Prometheus takes a few scrape intervals; bounded well above them.
pub(crate) const PROMETHEUS_WAIT: Duration = Duration::from_secs(30);
/// The relay's ADMIN_TOKEN in these tests, and what Prometheus's credentials file holds.
pub(crate) const ADMIN_TOKEN: &str = "admin-token-for-prometheus-4b1d";
/// Where config/prometheus.yml's `credentials_file` points, from the directory above config/:
/// the repository's secrets/admin-token (what `config/admin-token.sh` writes).
pub(crate) const TOKEN_FILE: &str = "secrets/admin-token";

/// Runs the program `bin` with `args` in `dir` and returns its output once it exits.
pub(crate) fn run(bin: &Path, args: &[&str], dir: &Path) -> Output {
    output(Command::new(bin).args(args).current_dir(dir))
}

pub(crate) fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lays out `dir` as the repository and the compose container do: `config/prometheus.yml`
/// (`config`), `config/alerts.yml` (`alerts`), and the admin token in `secrets/admin-token`.
/// Returns the path of prometheus.yml.
pub(crate) fn lay_out(dir: &Path, config: &str, alerts: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("config")).expect("config dir");
    std::fs::create_dir_all(dir.join("secrets")).expect("secrets dir");
    let path = dir.join("config/prometheus.yml");
    std::fs::write(&path, config).expect("write prometheus.yml");
    std::fs::write(dir.join("config/alerts.yml"), alerts).expect("write alerts.yml");
    // As config/admin-token.sh writes it: the token and a newline.
    std::fs::write(dir.join(TOKEN_FILE), format!("{ADMIN_TOKEN}\n")).expect("write token");
    path
}

/// `config/prometheus.yml` for a Prometheus on this machine: 1 s intervals, the relay's admin
/// listener `target`, and the Alertmanager at `alertmanager`.
pub(crate) fn test_config(target: &str, alertmanager: &str) -> String {
    rewrite(
        "config/prometheus.yml",
        &read_repo("config/prometheus.yml"),
        &[
            ("scrape_interval", "scrape_interval: 1s".into()),
            ("evaluation_interval", "evaluation_interval: 1s".into()),
            ("targets", format!("- targets: [\"{target}\"]")),
            ("alertmanagers", format!("- targets: [\"{alertmanager}\"]")),
        ],
    )
}

/// Starts the program `bin` with `args` in `dir`, its stderr in `dir/{name}.log`.
pub(crate) fn spawn(bin: &Path, args: &[String], dir: &Path, name: &str) -> Killed {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    Killed(
        Command::new(bin)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
    )
}

/// Starts the Prometheus at `bin` on a free port with the config at `config` (data in `dir`);
/// returns it and its base URL.
pub(crate) fn start_prometheus(bin: &Path, config: &Path, dir: &Path) -> (Killed, String) {
    let port = free_port();
    let child = spawn(
        bin,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // A firing alert is sent again after this (1 m by default); the first send can come
            // before Prometheus has found its Alertmanager and be dropped.
            "--rules.alert.resend-delay=1s".into(),
        ],
        dir,
        "prometheus",
    );
    (child, format!("http://127.0.0.1:{port}"))
}

/// Polls `check` every 200 ms until it returns `Ok`; panics with `what`, its last `Err` and the
/// log `dir/{name}.log` after [`PROMETHEUS_WAIT`], or as soon as `child` exits.
pub(crate) async fn wait_for<V, F, Fut>(
    what: &str,
    child: &mut Killed,
    dir: &Path,
    name: &str,
    mut check: F,
) -> V
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<V, String>>,
{
    let log = || std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let log = &log;
    poll(what)
        .within(PROMETHEUS_WAIT)
        .every(Duration::from_millis(200))
        .until(|| {
            // Checked before each try, so a program that died fails the test at once.
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!(
                    "{name} exited with {status} while waiting for {what}:\n{}",
                    log()
                );
            }
            let answer = check();
            async move {
                answer
                    .await
                    .map_err(|last| format!("{last}\n{name} log:\n{}", log()))
            }
        })
        .await
}

/// The value of the first sample PromQL `q` returns from the Prometheus at `api`, or why not.
pub(crate) async fn query(api: &str, q: &str) -> Result<f64, String> {
    let (status, body) = try_get(&format!("{api}/api/v1/query?query={}", encode(q)))
        .await
        .ok_or("Prometheus not answering yet")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| body.clone())?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|n| n.parse().ok())
        .ok_or(format!("{q}: {status} {body}"))
}

/// GET `url`; `None` while nothing listens there yet.
pub(crate) async fn try_get(url: &str) -> Option<(u16, String)> {
    let client = awc::Client::default();
    let mut res = tokio::time::timeout(T, client.get(url).send())
        .await
        .expect("GET timed out")
        .ok()?;
    let body = tokio::time::timeout(T, res.body().limit(16 * 1024 * 1024))
        .await
        .expect("body timed out")
        .ok()?;
    Some((
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Percent-encodes a PromQL query for a URL query string.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
