//! The shipped monitoring files against the real Prometheus tools: `promtool` checks
//! `config/prometheus.yml` and `config/alerts.yml` and unit-tests every alert, the alerts and the
//! Grafana dashboard name only metrics the relay exports, and a real `prometheus` running
//! `config/prometheus.yml` (test values substituted on its `# test:` lines) scrapes a live relay.
//!
//! Needs `promtool` and `prometheus` (Debian's prometheus package); `bash tests/run.sh`
//! installs them.
mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use awc::ws::Message;
use common::*;
use fake_upstream::Script;
use futures_util::SinkExt;

/// Polling Prometheus takes a few scrape intervals; bounded well above them.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(30);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "relay-prometheus-{}-{test}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop (also when the test panics).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The absolute path of `name` on PATH, or a panic that says how to install it.
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run the tests with `bash tests/run.sh`, which installs \
                 Debian's nginx and prometheus packages (apt-get install -y nginx prometheus)"
            )
        })
}

/// Runs `promtool args..` and returns its output once it exits.
fn promtool(args: &[&str]) -> Output {
    let child = Command::new(program("promtool"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    // promtool only reads local files; a hang would be a bug worth seeing, so bound it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(T)
        .expect("promtool did not finish in time")
        .expect("promtool output")
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A port that was free a moment ago (bound on 127.0.0.1:0, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Rewrites every non-comment line of `text` that ends in `# test:NAME` with the replacement for
/// NAME; panics if a marker or a replacement is left over, so the file and the test stay in step.
fn rewrite(text: &str, replacements: &[(&str, String)]) -> String {
    let mut used = vec![false; replacements.len()];
    let mut out = String::new();
    for line in text.lines() {
        let marker = line.split_once("# test:").map(|(_, m)| m.trim());
        let Some(marker) = marker.filter(|_| !line.trim_start().starts_with('#')) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let i = replacements
            .iter()
            .position(|(name, _)| *name == marker)
            .unwrap_or_else(|| panic!("no test replacement for marker {marker:?}"));
        used[i] = true;
        let indent = &line[..line.len() - line.trim_start().len()];
        out.push_str(indent);
        out.push_str(&replacements[i].1);
        out.push('\n');
    }
    for (i, (name, _)) in replacements.iter().enumerate() {
        assert!(
            used[i],
            "config/prometheus.yml lost its `# test:{name}` line"
        );
    }
    out
}

/// Every `relay_*` and `process_*` metric name in `text` (in PromQL or in a description).
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    let mut start = 0;
    while start < bytes.len() {
        if !word(bytes[start]) || (start > 0 && word(bytes[start - 1])) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        let token = &text[start..end];
        if token.starts_with("relay_") || token.starts_with("process_") {
            names.insert(token.to_string());
        }
        start = end;
    }
    names
}

/// GET `url`; `None` while nothing listens there yet.
async fn try_get(url: &str) -> Option<(u16, String)> {
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

/// `promtool check config` and `promtool check rules` accept the shipped files (prometheus.yml
/// finds alerts.yml relative to itself).
#[test]
fn shipped_config_and_rules_pass_promtool() {
    let out = promtool(&["check", "config", "config/prometheus.yml"]);
    assert_success("promtool check config", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 rule files found"), "{stdout}");
    let out = promtool(&["check", "rules", "config/alerts.yml"]);
    assert_success("promtool check rules", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 rules found"), "{stdout}");
}

/// Each alert fires on its condition for a failing relay, and none fires for a healthy one or for a single failed dial on an idle relay.
#[test]
fn alerts_fire_on_their_conditions_and_only_then() {
    let dir = TempDir::new("rules");
    let alerts = repo("config/alerts.yml");
    // Counters as `start+increment_per_minute x steps`: "bad" admits 1 session/s with half of the
    // dials failing, refuses 1 connection/s and sits at 90 sessions; "good" is the same relay
    // with a healthy share of everything; "idle" had one session a minute, each failing.
    let series = [
        (r#"up{instance="bad"}"#, "0x20"),
        (r#"relay_sessions_active{instance="bad"}"#, "90x20"),
        (r#"relay_sessions_max{instance="bad"}"#, "100x20"),
        (r#"relay_sessions_opened_total{instance="bad"}"#, "0+60x20"),
        (
            r#"relay_upstream_connect_failures_total{instance="bad",reason="upstream_auth_failed"}"#,
            "0+30x20",
        ),
        (
            r#"relay_sessions_rejected_total{instance="bad",reason="capacity_exceeded"}"#,
            "0+60x20",
        ),
        (r#"up{instance="good"}"#, "1x20"),
        (r#"relay_sessions_active{instance="good"}"#, "40x20"),
        (r#"relay_sessions_max{instance="good"}"#, "100x20"),
        (r#"relay_sessions_opened_total{instance="good"}"#, "0+60x20"),
        (
            r#"relay_upstream_connect_failures_total{instance="good",reason="upstream_timeout"}"#,
            "0+1x20",
        ),
        (
            r#"relay_sessions_rejected_total{instance="good",reason="origin_not_allowed"}"#,
            "0+1x20",
        ),
        (r#"up{instance="idle"}"#, "1x20"),
        (r#"relay_sessions_active{instance="idle"}"#, "0x20"),
        (r#"relay_sessions_max{instance="idle"}"#, "100x20"),
        (r#"relay_sessions_opened_total{instance="idle"}"#, "0+1x20"),
        (
            r#"relay_upstream_connect_failures_total{instance="idle",reason="upstream_unavailable"}"#,
            "0+1x20",
        ),
    ];
    let mut input = String::new();
    for (name, values) in series {
        let labelled = name.replacen('{', r#"{job="openai-realtime-relay","#, 1);
        input.push_str(&format!(
            "      - series: '{labelled}'\n        values: '{values}'\n"
        ));
    }
    let expected = [
        "RelayDown",
        "RelayRejectionsSpiking",
        "RelaySessionsNearCapacity",
        "RelayUpstreamFailureRatioHigh",
    ]
    .iter()
    .map(|a| {
        format!(
            "          - labels: '{{alertname=\"{a}\",instance=\"bad\"}}'\n            value: 1\n"
        )
    })
    .collect::<String>();
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    \
         input_series:\n{input}    promql_expr_test:\n      \
         - expr: count by (alertname, instance) (ALERTS{{alertstate=\"firing\"}})\n        \
         eval_time: 15m\n        exp_samples:\n{expected}",
        alerts.display()
    );
    let path = dir.0.join("alerts_test.yml");
    std::fs::write(&path, &test).expect("write rule test");
    let out = promtool(&["test", "rules", path.to_str().expect("UTF-8 path")]);
    assert_success(&format!("promtool test rules\n{test}"), &out);
}

/// The alerts and the Grafana dashboard use only metric names a running relay exports.
#[actix_web::test]
async fn alerts_and_dashboard_name_only_exported_metrics() {
    // A pool, so the pool metrics (labelled by pooled model) are exported too.
    let h = start(Script::echo(), &[("UPSTREAM_POOL_SIZE", "1")]).await;
    let (status, exposition) = get(&format!("{}/metrics", h.http()), &[]).await;
    assert_eq!(status, 200);
    // Family names, and the series names a histogram family adds.
    let mut families = BTreeSet::new();
    let mut exported = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        families.insert(name.to_string());
        exported.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }

    let dashboard_text =
        std::fs::read_to_string(repo("config/grafana-dashboard.json")).expect("read dashboard");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("the dashboard is valid JSON");
    assert!(dashboard["title"].is_string(), "no title");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut exprs = String::new();
    for p in panels {
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{p}"));
        assert!(!targets.is_empty(), "panel without queries: {}", p["title"]);
        for t in targets {
            exprs.push_str(t["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    let alerts = std::fs::read_to_string(repo("config/alerts.yml")).expect("read alerts");
    let used_dashboard: BTreeSet<String> = metric_names(&exprs)
        .into_iter()
        .map(|m| {
            let base = m.trim_end_matches("_bucket").trim_end_matches("_count");
            base.trim_end_matches("_sum").to_string()
        })
        .collect();

    for (file, text) in [
        ("config/grafana-dashboard.json", exprs.as_str()),
        ("config/alerts.yml", alerts.as_str()),
    ] {
        let used = metric_names(text);
        assert!(!used.is_empty(), "{file} names no relay metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the relay does not export: {unknown:?}\n{exposition}"
        );
    }
    // Every relay metric family is on the dashboard (a new metric needs a panel).
    let missing: Vec<_> = families
        .iter()
        .filter(|f| f.starts_with("relay_") && !used_dashboard.contains(f.as_str()))
        .collect();
    assert!(missing.is_empty(), "no dashboard panel for {missing:?}");
    h.stop().await;
}

/// A real Prometheus running config/prometheus.yml scrapes a relay: `up == 1`, a non-zero session counter after one session, and the alert rules loaded.
#[actix_web::test]
async fn prometheus_scrapes_a_running_relay() {
    let prometheus = program("prometheus");
    let h = start(Script::echo(), &[]).await;
    let dir = TempDir::new("scrape");
    let shipped = std::fs::read_to_string(repo("config/prometheus.yml")).expect("read config");
    let config = rewrite(
        &shipped,
        &[
            ("scrape_interval", "scrape_interval: 1s".into()),
            ("evaluation_interval", "evaluation_interval: 1s".into()),
            (
                "targets",
                format!("- targets: [\"{}\"]", h.relay.local_addr()),
            ),
        ],
    );
    std::fs::write(dir.0.join("prometheus.yml"), config).expect("write config");
    // rule_files names alerts.yml relative to the config, as in docker-compose.yml.
    std::fs::copy(repo("config/alerts.yml"), dir.0.join("alerts.yml")).expect("copy alerts");

    let port = free_port();
    let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log file");
    let mut child = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus"),
    );
    let api = format!("http://127.0.0.1:{port}");
    let prom_log = || std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();

    // One session, so the counter has something to show.
    let mut ws = connect(&h, "/realtime").await;
    send_text(&mut ws, r#"{"type":"response.create","event_id":"p1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "p1");
    tokio::time::timeout(T, ws.send(Message::Close(None)))
        .await
        .expect("close timed out")
        .expect("close sent");

    // Poll the query API until both answers are in: readiness, then a few scrapes.
    let deadline = Instant::now() + PROMETHEUS_WAIT;
    let query = |q: &str| format!("{api}/api/v1/query?query={}", encode(q));
    let value = |body: &str| -> Option<f64> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let mut last = String::new();
    let (mut up, mut opened) = (None, None);
    while up != Some(1.0) || !opened.is_some_and(|n| n > 0.0) {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("prometheus exited with {status}:\n{}", prom_log());
        }
        assert!(
            Instant::now() < deadline,
            "within {PROMETHEUS_WAIT:?}: up={up:?} relay_sessions_opened_total={opened:?}\n\
             last answer: {last}\n{}",
            prom_log()
        );
        if let Some((200, body)) = try_get(&query(r#"up{job="openai-realtime-relay"}"#)).await {
            up = value(&body);
            last = body;
        }
        if let Some((200, body)) = try_get(&query(
            r#"relay_sessions_opened_total{job="openai-realtime-relay"}"#,
        ))
        .await
        {
            opened = value(&body);
            last = body;
        }
        // Polling interval between queries; what ends the loop is Prometheus's answer.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(opened, Some(1.0));

    let (status, rules) = try_get(&format!("{api}/api/v1/rules"))
        .await
        .expect("rules API answers");
    assert_eq!(status, 200, "{rules}");
    let rules: serde_json::Value = serde_json::from_str(&rules).expect("JSON");
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(loaded, 4, "{rules}");

    drop(child);
    h.stop().await;
}
