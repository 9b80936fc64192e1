//! `promtool` and `amtool` on the shipped files: the configs check, and every alert fires on its
//! condition and only then.

use crate::{
    common::{
        read_repo, repo,
        tools::{tool, TempDir},
    },
    server::{assert_success, lay_out, run, TOKEN_FILE},
};

/// `promtool check config` accepts the shipped prometheus.yml laid out as in the repository (alerts.yml beside it, the admin token in secrets/), `promtool check rules` the alerts, and `amtool check-config` the Alertmanager config.
#[test]
fn shipped_configs_pass_promtool_and_amtool() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let Some(amtool) = tool("amtool") else { return };
    let dir = TempDir::new("prometheus-check");
    let config = lay_out(
        dir.path(),
        &read_repo("config/prometheus.yml"),
        &read_repo("config/alerts.yml"),
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
    let shipped = read_repo("config/alerts.yml").matches("- alert:").count();
    assert!(
        stdout.contains(&format!("{shipped} rules found")),
        "{stdout}"
    );

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
