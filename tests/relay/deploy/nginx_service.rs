//! The Nginx service's command: no start without certificates, and config/nginx.conf written
//! with the compose upstream.

use std::process::{Command, Output};

use super::service;
use crate::common::{
    read_repo, repo,
    tools::{output, TempDir},
};

/// The Nginx service's command refuses to start without the certificate files (also when Docker left directories in their place), naming config/self-signed-cert.sh, and with them writes config/nginx.conf with the compose upstream.
#[test]
fn compose_nginx_checks_its_certificates_before_starting() {
    let c = read_repo("docker-compose.yml");
    let nginx = service(&c, "nginx");
    let mut targets = Vec::new();
    for source in ["./certs/fullchain.pem", "./certs/privkey.pem"] {
        let i = nginx
            .iter()
            .position(|l| l.trim() == format!("source: {source}"))
            .unwrap_or_else(|| panic!("nginx does not mount {source} (long syntax)"));
        let target = nginx[i + 1]
            .trim()
            .strip_prefix("target: ")
            .expect("target");
        targets.push(target.to_string());
        assert_eq!(nginx[i + 2].trim(), "read_only: true");
        assert_eq!(nginx[i + 3].trim(), "bind:");
        assert_eq!(nginx[i + 4].trim(), "create_host_path: false");
    }
    // Where config/nginx.conf looks for them.
    let conf = read_repo("config/nginx.conf");
    for (directive, target) in [
        ("ssl_certificate", &targets[0]),
        ("ssl_certificate_key", &targets[1]),
    ] {
        assert!(
            conf.lines().any(|l| {
                l.split_whitespace().take(2).collect::<Vec<_>>()
                    == [directive, &format!("{target};")]
            }),
            "config/nginx.conf's {directive} is not {target}"
        );
    }
    // The command's shell script: the folded (`>-`) scalar, its lines joined by spaces.
    let start = nginx
        .iter()
        .position(|l| l.trim() == "- >-")
        .expect("command: ... - >-");
    let script: Vec<&str> = nginx[start + 1..]
        .iter()
        .take_while(|l| l.starts_with("        "))
        .map(|l| l.trim())
        .collect();
    let script = script.join(" ");
    assert!(
        !script.contains('$'),
        "compose would interpolate $ in: {script}"
    );

    // Run it here with the container's paths moved into a scratch directory.
    let dir = TempDir::new("compose-nginx");
    let d = dir.path();
    std::fs::copy(repo("config/nginx.conf"), d.join("relay.conf")).expect("copy nginx.conf");
    let mut local = script.clone();
    let swaps = [
        (targets[0].clone(), d.join("fullchain.pem")),
        (targets[1].clone(), d.join("privkey.pem")),
        ("/etc/nginx/relay.conf".into(), d.join("relay.conf")),
        ("/etc/nginx/nginx.conf".into(), d.join("nginx.conf")),
    ];
    for (from, to) in &swaps {
        assert!(local.contains(from.as_str()), "{from} not in {script}");
        local = local.replace(from.as_str(), &to.display().to_string());
    }
    let exec = "exec nginx -g 'daemon off;'";
    assert!(local.ends_with(exec), "{script}");
    local = local.replace(exec, "echo nginx would start");
    let run = || output(Command::new("sh").arg("-c").arg(&local));
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let out = run();
    assert!(!out.status.success(), "started without certificates");
    assert!(
        text(&out).contains("bash config/self-signed-cert.sh"),
        "{}",
        text(&out)
    );
    assert!(!d.join("nginx.conf").exists());

    // What Docker used to make of missing files.
    std::fs::create_dir(d.join("fullchain.pem")).expect("dir");
    std::fs::create_dir(d.join("privkey.pem")).expect("dir");
    let out = run();
    assert!(
        !out.status.success(),
        "started with directories for certificates"
    );
    assert!(
        text(&out).contains("config/self-signed-cert.sh"),
        "{}",
        text(&out)
    );

    std::fs::remove_dir(d.join("fullchain.pem")).expect("rmdir");
    std::fs::remove_dir(d.join("privkey.pem")).expect("rmdir");
    std::fs::write(d.join("fullchain.pem"), "cert").expect("write");
    std::fs::write(d.join("privkey.pem"), "key").expect("write");
    let out = run();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nginx would start"));
    let conf = std::fs::read_to_string(d.join("nginx.conf")).expect("nginx.conf written");
    assert!(
        conf.contains("server openai-realtime-relay:8080;"),
        "{conf}"
    );
    assert!(!conf.contains("server 127.0.0.1:8080;"), "{conf}");
}
