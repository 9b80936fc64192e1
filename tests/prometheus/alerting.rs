//! A real Alertmanager receiving a real Prometheus's alerts and routing them to the shipped
//! receiver.

use crate::{
    common::{
        read_repo, repo,
        tools::{free_port, tool, TempDir},
    },
    server::{lay_out, spawn, start_prometheus, test_config, try_get, wait_for},
};

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
    let mut alerts = read_repo("config/alerts.yml");
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
