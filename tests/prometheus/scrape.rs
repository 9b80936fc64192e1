//! A real Prometheus scraping the relay's admin port with the admin token from its credentials
//! file.

use awc::ws::Message;
use fake_upstream::Script;
use futures_util::SinkExt;

use crate::{
    common::{
        read_repo,
        tools::{tool, TempDir},
        *,
    },
    server::{
        lay_out, query, start_prometheus, test_config, try_get, wait_for, ADMIN_TOKEN, TOKEN_FILE,
    },
};

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
    let alerts = read_repo("config/alerts.yml");
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
    let shipped = read_repo("config/alerts.yml").matches("- alert:").count();
    assert_eq!(loaded, shipped, "{rules}");

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
