//! The monitoring profile: Prometheus reaches the relay's admin port with the admin token, and
//! sends its alerts to an Alertmanager running config/alertmanager.yml.

use super::{list, normalize, service, value};
use crate::common::{read_repo, repo};

/// The monitoring profile works with ADMIN_PORT and ADMIN_TOKEN: the relay's admin listener is on every interface of its container at the port config/prometheus.yml scrapes, which the relay accepts; the token file compose mounts is the one prometheus.yml names; and the Alertmanager prometheus.yml sends to is a service running config/alertmanager.yml.
#[test]
fn compose_monitoring_reaches_the_admin_port_with_the_token() {
    let c = read_repo("docker-compose.yml");
    let p = read_repo("config/prometheus.yml");
    let relay = service(&c, "openai-realtime-relay");
    let admin_host = value(&relay, "ADMIN_HOST").expect("compose sets ADMIN_HOST");
    let admin_port = value(&relay, "ADMIN_PORT").expect("compose sets ADMIN_PORT");
    assert_eq!(
        admin_host, "0.0.0.0",
        "Prometheus scrapes from another container"
    );
    let map: std::collections::HashMap<&str, &str> = [
        ("OPENAI_API_KEY", "k"),
        ("ADMIN_HOST", admin_host.as_str()),
        ("ADMIN_PORT", admin_port.as_str()),
        ("ADMIN_TOKEN", "t"),
    ]
    .into_iter()
    .collect();
    let config = openai_realtime_relay::config::Config::from_source(
        &map,
        openai_realtime_relay::config::KeyPolicy::Required,
    )
    .expect("the relay accepts compose's admin settings");
    let listen = config.admin_listen.expect("an admin listener");
    assert_eq!(listen.host, "0.0.0.0");
    assert!(
        p.contains(&format!(
            r#"- targets: ["openai-realtime-relay:{}"]"#,
            listen.port
        )),
        "config/prometheus.yml does not scrape the admin port {}",
        listen.port
    );

    // prometheus.yml's relative paths, resolved where compose mounts it.
    let prometheus = service(&c, "prometheus");
    let volumes = list(&prometheus, "volumes");
    let mount = |source: &str| -> String {
        let short = volumes
            .iter()
            .find_map(|v| v.strip_prefix(&format!("{source}:")))
            .map(|rest| rest.trim_end_matches(":ro").to_string());
        // Long syntax: `source:` on one line, `target:` on the next.
        short.unwrap_or_else(|| {
            let i = prometheus
                .iter()
                .position(|l| l.trim() == format!("source: {source}"))
                .unwrap_or_else(|| panic!("prometheus does not mount {source}"));
            prometheus[i + 1]
                .trim()
                .strip_prefix("target: ")
                .expect("target: after source:")
                .to_string()
        })
    };
    let config_target = mount("./config/prometheus.yml");
    let config_dir = config_target.rsplit_once('/').expect("a directory").0;
    assert!(list(&prometheus, "command").contains(&format!("--config.file={config_target}")));
    assert_eq!(
        mount("./config/alerts.yml"),
        format!("{config_dir}/alerts.yml")
    );
    assert!(p.contains("\n  - alerts.yml\n"), "rule_files: [alerts.yml]");
    let credentials = value(&p.lines().collect::<Vec<_>>(), "credentials_file")
        .expect("config/prometheus.yml sends a credentials_file");
    assert_eq!(
        mount("./secrets/admin-token"),
        normalize(&format!("{config_dir}/{credentials}")),
        "the token file is not where prometheus.yml looks for it"
    );
    // The same file on the host: what config/admin-token.sh writes, next to config/.
    assert_eq!(
        normalize(&format!("config/{credentials}")),
        "secrets/admin-token"
    );
    assert!(
        c.contains("        source: ./secrets/admin-token\n        target: /etc/prometheus/secrets/admin-token\n        read_only: true\n        bind:\n          create_host_path: false\n"),
        "a missing token file must stop compose, not become a directory"
    );

    assert!(p.contains(r#"- targets: ["alertmanager:9093"]"#));
    let am = service(&c, "alertmanager");
    assert_eq!(value(&am, "profiles").as_deref(), Some(r#"["monitoring"]"#));
    let am_config = list(&am, "command")
        .iter()
        .find_map(|a| a.strip_prefix("--config.file=").map(str::to_string))
        .expect("--config.file");
    assert!(
        list(&am, "volumes").contains(&format!("./config/alertmanager.yml:{am_config}:ro")),
        "alertmanager runs config/alertmanager.yml"
    );
    assert!(repo("config/alertmanager.yml").is_file());
}
