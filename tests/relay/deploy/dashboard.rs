//! The alerts (config/alerts.yml) and the Grafana dashboard (config/grafana-dashboard.json) name
//! only metrics a running relay exports, and the dashboard has a panel for every relay family.

use std::collections::BTreeSet;

use fake_upstream::Script;

use crate::common::*;

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
    for (name, kind) in prom::families(&exposition) {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
        exported.insert(name.clone());
        families.insert(name);
    }

    let dashboard_text = read_repo("config/grafana-dashboard.json");
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
    let alerts = read_repo("config/alerts.yml");
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
