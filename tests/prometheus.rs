//! The shipped monitoring files against the real Prometheus tools: `promtool` checks
//! `config/prometheus.yml` and `config/alerts.yml` and unit-tests every alert, `amtool` checks
//! `config/alertmanager.yml`, the alerts and the Grafana dashboard name only metrics the relay
//! exports, a real `prometheus` running `config/prometheus.yml` (test values substituted on its
//! `# test:` lines) scrapes a live relay's admin port with its admin token, and a real
//! Alertmanager running `config/alertmanager.yml` receives that Prometheus's alerts.
//!
//! Needs `promtool` and `prometheus` (Debian's prometheus package) and `amtool` and
//! `prometheus-alertmanager` (Debian's prometheus-alertmanager): without them each test that runs
//! one says it is skipped, unless `RELAY_TESTS_REQUIRE` lists it; `bash tests/run.sh` installs
//! them.
mod common;

use std::{
    collections::BTreeSet,
    future::Future,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use awc::ws::Message;
use common::{
    tools::{free_port, output, tool, Killed, TempDir},
    *,
};
use fake_upstream::Script;
use futures_util::SinkExt;

/// Polling Prometheus takes a few scrape intervals; bounded well above them.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(30);
/// The relay's ADMIN_TOKEN in these tests, and what Prometheus's credentials file holds.
const ADMIN_TOKEN: &str = "admin-token-for-prometheus-4b1d";
/// Where config/prometheus.yml's `credentials_file` points, from the directory above config/:
/// the repository's secrets/admin-token (what `config/admin-token.sh` writes).
const TOKEN_FILE: &str = "secrets/admin-token";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the program `bin` with `args` in `dir` and returns its output once it exits.
fn run(bin: &Path, args: &[&str], dir: &Path) -> Output {
    output(Command::new(bin).args(args).current_dir(dir))
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

/// Lays out `dir` as the repository and the compose container do: `config/prometheus.yml`
/// (`config`), `config/alerts.yml` (`alerts`), and the admin token in `secrets/admin-token`.
/// Returns the path of prometheus.yml.
fn lay_out(dir: &Path, config: &str, alerts: &str) -> PathBuf {
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
fn test_config(target: &str, alertmanager: &str) -> String {
    let shipped = std::fs::read_to_string(repo("config/prometheus.yml")).expect("read config");
    rewrite(
        &shipped,
        &[
            ("scrape_interval", "scrape_interval: 1s".into()),
            ("evaluation_interval", "evaluation_interval: 1s".into()),
            ("targets", format!("- targets: [\"{target}\"]")),
            ("alertmanagers", format!("- targets: [\"{alertmanager}\"]")),
        ],
    )
}

/// Starts the program `bin` with `args` in `dir`, its stderr in `dir/{name}.log`.
fn spawn(bin: &Path, args: &[String], dir: &Path, name: &str) -> Killed {
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
fn start_prometheus(bin: &Path, config: &Path, dir: &Path) -> (Killed, String) {
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

/// Polls `check` until it returns `Ok`; panics with `what`, its last `Err` and the log `dir/{name}.log`
/// after [`PROMETHEUS_WAIT`], or as soon as `child` exits.
async fn wait_for<V, F, Fut>(
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
    let deadline = Instant::now() + PROMETHEUS_WAIT;
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "{name} exited with {status} while waiting for {what}:\n{}",
                log()
            );
        }
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "no {what} within {PROMETHEUS_WAIT:?}; last: {last}\n{name} log:\n{}",
            log()
        );
        // Polling interval between queries; what ends the loop is the answer.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the first sample PromQL `q` returns from the Prometheus at `api`, or why not.
async fn query(api: &str, q: &str) -> Result<f64, String> {
    let (status, body) = try_get(&format!("{api}/api/v1/query?query={}", encode(q)))
        .await
        .ok_or("Prometheus not answering yet")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| body.clone())?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|n| n.parse().ok())
        .ok_or(format!("{q}: {status} {body}"))
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

/// `promtool check config` accepts the shipped prometheus.yml laid out as in the repository (alerts.yml beside it, the admin token in secrets/), `promtool check rules` the alerts, and `amtool check-config` the Alertmanager config.
#[test]
fn shipped_configs_pass_promtool_and_amtool() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let Some(amtool) = tool("amtool") else { return };
    let dir = TempDir::new("prometheus-check");
    let read = |p: &str| std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let config = lay_out(
        dir.path(),
        &read("config/prometheus.yml"),
        &read("config/alerts.yml"),
    );
    let out = run(
        &promtool,
        &["check", "config", config.to_str().expect("UTF-8 path")],
        dir.path(),
    );
    assert_success("promtool check config", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 rule files found"), "{stdout}");
    // Without the token file the check fails, and says which file it wants.
    std::fs::remove_file(dir.path().join(TOKEN_FILE)).expect("remove token");
    let out = run(
        &promtool,
        &["check", "config", config.to_str().expect("UTF-8 path")],
        dir.path(),
    );
    assert!(
        !out.status.success(),
        "promtool ignored the credentials file"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(TOKEN_FILE),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let root = repo("");
    let out = run(&promtool, &["check", "rules", "config/alerts.yml"], &root);
    assert_success("promtool check rules", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("4 rules found"), "{stdout}");

    let out = run(&amtool, &["check-config", "config/alertmanager.yml"], &root);
    assert_success("amtool check-config", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 receivers"), "{stdout}");
}

/// Each alert fires on its condition for a failing relay, and none fires for a healthy one or for a single failed dial on an idle relay.
#[test]
fn alerts_fire_on_their_conditions_and_only_then() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = TempDir::new("prometheus-rules");
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
    let out = run(
        &promtool,
        &["test", "rules", path.to_str().expect("UTF-8 path")],
        dir.path(),
    );
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

/// A real Prometheus running config/prometheus.yml scrapes a relay's admin port (ADMIN_PORT) with the token in its credentials file (ADMIN_TOKEN): `up == 1`, a session counted, the alert rules loaded; with a wrong token its scrape gets 401.
#[actix_web::test]
async fn prometheus_scrapes_the_admin_port_with_the_token() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let h = start(
        Script::echo(),
        &[("ADMIN_PORT", "0"), ("ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    let admin = h
        .relay
        .admin_addr()
        .expect("ADMIN_PORT opens an admin listener");
    // What Prometheus must get past: the public port has no /metrics, the admin port wants the token.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(get(&format!("{}/metrics", h.http()), &auth).await.0, 404);
    assert_eq!(get(&format!("http://{admin}/metrics"), &[]).await.0, 401);

    let dir = TempDir::new("prometheus-scrape");
    let alerts = std::fs::read_to_string(repo("config/alerts.yml")).expect("read alerts");
    // No alert fires within this test; the Alertmanager address only has to be valid.
    let config = lay_out(
        dir.path(),
        &test_config(&admin.to_string(), "127.0.0.1:9093"),
        &alerts,
    );
    let (mut child, api) = start_prometheus(&prometheus, &config, dir.path());

    // One session, so the counter has something to show.
    let mut ws = connect(&h, "/realtime").await;
    send_text(&mut ws, r#"{"type":"response.create","event_id":"p1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "p1");
    tokio::time::timeout(T, ws.send(Message::Close(None)))
        .await
        .expect("close timed out")
        .expect("close sent");

    let api_ref = api.as_str();
    wait_for(
        "up == 1 and a session counted",
        &mut child,
        dir.path(),
        "prometheus",
        || async move {
            let up = query(api_ref, r#"up{job="openai-realtime-relay"}"#).await?;
            let opened = query(
                api_ref,
                r#"relay_sessions_opened_total{job="openai-realtime-relay"}"#,
            )
            .await?;
            if up == 1.0 && opened == 1.0 {
                Ok(())
            } else {
                Err(format!("up={up} relay_sessions_opened_total={opened}"))
            }
        },
    )
    .await;

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

    // Prometheus re-reads the credentials file on every scrape: a wrong token is refused.
    std::fs::write(dir.path().join(TOKEN_FILE), "not-the-admin-token\n").expect("write token");
    let targets = format!("{api}/api/v1/targets");
    let targets = targets.as_str();
    let error = wait_for(
        "a refused scrape",
        &mut child,
        dir.path(),
        "prometheus",
        || async move {
            let (_, body) = try_get(targets).await.ok_or("no answer")?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| body.clone())?;
            let target = &v["data"]["activeTargets"][0];
            match target["lastError"].as_str() {
                Some(e) if target["health"] == "down" && !e.is_empty() => Ok(e.to_string()),
                _ => Err(body),
            }
        },
    )
    .await;
    assert!(error.contains("401"), "{error}");

    drop(child);
    h.stop().await;
}

/// A real Alertmanager running config/alertmanager.yml receives the alerts of a real Prometheus running config/prometheus.yml (its `alerting:` block) and routes them to the configured receiver.
#[actix_web::test]
async fn prometheus_sends_alerts_to_alertmanager() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let Some(alertmanager) = tool("prometheus-alertmanager") else {
        return;
    };
    let dir = TempDir::new("prometheus-alerting");

    let am_port = free_port();
    let am_api = format!("http://127.0.0.1:{am_port}");
    let mut am = spawn(
        &alertmanager,
        &[
            format!(
                "--config.file={}",
                repo("config/alertmanager.yml").display()
            ),
            format!(
                "--storage.path={}",
                dir.path().join("alertmanager").display()
            ),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            // No cluster: it would listen on a fixed port (9094) on every interface.
            "--cluster.listen-address=".into(),
        ],
        dir.path(),
        "alertmanager",
    );
    let ready = format!("{am_api}/-/ready");
    let ready = ready.as_str();
    wait_for(
        "Alertmanager ready",
        &mut am,
        dir.path(),
        "alertmanager",
        || async move {
            match try_get(ready).await {
                Some((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // The shipped rules, plus one that fires at once: the relay's own need minutes of trouble.
    let mut alerts = std::fs::read_to_string(repo("config/alerts.yml")).expect("read alerts");
    alerts.push_str(
        "  - name: test\n    rules:\n      - alert: TestAlwaysFiring\n        expr: vector(1)\n",
    );
    // Nothing listens on the scrape target; only the alert matters here.
    let target = format!("127.0.0.1:{}", free_port());
    let config = lay_out(
        dir.path(),
        &test_config(&target, &format!("127.0.0.1:{am_port}")),
        &alerts,
    );
    let (mut child, _api) = start_prometheus(&prometheus, &config, dir.path());

    let alerts_url = format!("{am_api}/api/v2/alerts");
    let alerts_url = alerts_url.as_str();
    let alert = wait_for(
        "the alert in Alertmanager",
        &mut child,
        dir.path(),
        "prometheus",
        || async move {
            let (_, body) = try_get(alerts_url).await.ok_or("no answer")?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|_| body.clone())?;
            v.as_array()
                .and_then(|all| {
                    all.iter()
                        .find(|a| a["labels"]["alertname"] == "TestAlwaysFiring")
                        .cloned()
                })
                .ok_or(body)
        },
    )
    .await;
    assert_eq!(
        alert["receivers"][0]["name"], "relay-operators",
        "not routed to config/alertmanager.yml's receiver: {alert}"
    );

    drop(child);
    drop(am);
}
