//! The deployment files, checked where no Docker engine runs (none on this machine): the
//! container files against the code they run (the healthcheck subcommand, the drain's
//! SHUTDOWN_TIMEOUT, the non-root user), what Compose publishes and to whom, that its monitoring
//! profile reaches the relay's admin port with the admin token, the certificate check before
//! Nginx starts, nothing secret in git or the build context; and the scripts beside them:
//! config/self-signed-cert.sh's pair is served by the real Nginx in tests/nginx.rs,
//! config/admin-token.sh and tests/run.sh run here.
mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::tools::{find_tool, output, TempDir};

fn repo(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The default SHUTDOWN_TIMEOUT, in seconds, as the relay reads it.
fn default_shutdown_timeout_secs() -> u64 {
    let map: std::collections::HashMap<&str, &str> =
        [("OPENAI_API_KEY", "k")].into_iter().collect();
    openai_realtime_relay::config::Config::from_source(
        &map,
        openai_realtime_relay::config::KeyPolicy::Required,
    )
    .expect("defaults are valid")
    .shutdown_timeout
    .as_secs()
}

/// The Dockerfile builds with --locked in one stage, runs as a non-root user in another, and
/// checks health with the binary's own `healthcheck` subcommand, which the binary really has.
#[test]
fn dockerfile_matches_the_binary() {
    let d = repo("Dockerfile");
    assert!(d.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(d.contains("cargo build --release --locked"));
    assert!(d.contains("\nUSER relay"), "non-root user");
    assert!(d.contains("\nEXPOSE 8080"));
    assert!(d.contains("\nSTOPSIGNAL SIGTERM"));
    assert!(d.contains(r#"CMD ["openai-realtime-relay", "healthcheck"]"#));
    let help = Command::new(env!("CARGO_BIN_EXE_openai-realtime-relay"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("healthcheck"));
}

/// Secrets and build output stay out of the Docker build context.
#[test]
fn dockerignore_keeps_secrets_out() {
    let ignore = repo(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in ["target", ".env", ".git", "certs", "secrets"] {
        assert!(lines.contains(&entry), "{entry} missing from .dockerignore");
    }
}

/// The TLS key (certs/), the admin token (secrets/) and .env stay out of git.
#[test]
fn gitignore_keeps_secrets_out() {
    let ignore = repo(".gitignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in [".env", "/certs/", "/secrets/"] {
        assert!(lines.contains(&entry), "{entry} missing from .gitignore");
    }
}

/// Compose gives the relay its .env, a restart policy, the binary's health check, and a stop
/// grace period longer than SHUTDOWN_TIMEOUT so a drain is never cut by SIGKILL.
#[test]
fn compose_waits_longer_than_the_drain() {
    let c = repo("docker-compose.yml");
    assert!(c.contains("\n  openai-realtime-relay:\n"), "service name");
    assert!(c.contains("env_file: .env"));
    assert!(c.contains("restart: unless-stopped"));
    assert!(c.contains(r#"test: ["CMD", "openai-realtime-relay", "healthcheck"]"#));
    let grace: u64 = c
        .lines()
        .find_map(|l| l.trim().strip_prefix("stop_grace_period:"))
        .and_then(|v| v.trim().strip_suffix('s'))
        .and_then(|v| v.parse().ok())
        .expect("stop_grace_period: Ns");
    let shutdown = c
        .lines()
        .find_map(|l| l.trim().strip_prefix("SHUTDOWN_TIMEOUT:"))
        .map(|v| v.trim().trim_matches('"').parse::<u64>().expect("ms") / 1000)
        .unwrap_or_else(default_shutdown_timeout_secs);
    assert!(
        grace > shutdown,
        "stop_grace_period {grace}s <= SHUTDOWN_TIMEOUT {shutdown}s"
    );
    assert!(
        c.contains("./config/nginx.conf:"),
        "nginx profile uses config/nginx.conf"
    );
    assert!(
        c.contains("./config/prometheus.yml:"),
        "monitoring uses config/prometheus.yml"
    );
}

/// The lines of service `name` in docker-compose.yml, without its own `  name:` line.
fn service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|l| *l != header);
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

/// Only Nginx listens on every interface; the relay, Prometheus and Alertmanager are published on 127.0.0.1 only, and the relay's admin port not at all.
#[test]
fn compose_publishes_only_what_each_profile_needs() {
    let c = repo("docker-compose.yml");
    let ports = |name: &str| list(&service(&c, name), "ports");
    assert_eq!(ports("nginx"), ["80:80", "443:443"]);
    assert_eq!(ports("openai-realtime-relay"), ["127.0.0.1:8080:8080"]);
    assert_eq!(ports("prometheus"), ["127.0.0.1:9090:9090"]);
    assert_eq!(ports("alertmanager"), ["127.0.0.1:9093:9093"]);
    // Whatever services come later: nothing else on every interface, and never the admin port.
    let mut in_ports = false;
    for line in c.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if t.ends_with(':') {
            in_ports = t == "ports:";
            continue;
        }
        let Some(entry) = t.strip_prefix("- ").filter(|_| in_ports) else {
            continue;
        };
        let entry = entry.trim_matches('"');
        assert!(
            entry.starts_with("127.0.0.1:") || entry == "80:80" || entry == "443:443",
            "{entry} is published on every interface"
        );
        assert!(
            !entry.contains("9100"),
            "the admin port is published: {entry}"
        );
    }
}

/// The monitoring profile works with ADMIN_PORT and ADMIN_TOKEN: the relay's admin listener is on every interface of its container at the port config/prometheus.yml scrapes, which the relay accepts; the token file compose mounts is the one prometheus.yml names; and the Alertmanager prometheus.yml sends to is a service running config/alertmanager.yml.
#[test]
fn compose_monitoring_reaches_the_admin_port_with_the_token() {
    let c = repo("docker-compose.yml");
    let p = repo("config/prometheus.yml");
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
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/alertmanager.yml")
        .is_file());
}

/// The Nginx service's command refuses to start without the certificate files (also when Docker left directories in their place), naming config/self-signed-cert.sh, and with them writes config/nginx.conf with the compose upstream.
#[test]
fn compose_nginx_checks_its_certificates_before_starting() {
    let c = repo("docker-compose.yml");
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
    let conf = repo("config/nginx.conf");
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
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nginx.conf"),
        d.join("relay.conf"),
    )
    .expect("copy nginx.conf");
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

/// config/admin-token.sh writes one token to secrets/admin-token and as ADMIN_TOKEN in .env (replacing .env.example's empty line, the same token on a second run), and the relay reads it from there; without .env it says to make one.
#[test]
fn admin_token_script_writes_one_token_to_both_files() {
    let dir = TempDir::new("admin-token");
    let d = dir.path();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/admin-token.sh");
    let run = || output(Command::new("bash").arg(&script).arg(d));

    let out = run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cp .env.example .env"), "{stderr}");

    std::fs::write(d.join(".env"), repo(".env.example")).expect("write .env");
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let out = run();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = std::fs::read_to_string(d.join("secrets/admin-token")).expect("token file");
        let token = file.trim().to_string();
        assert_eq!(token.len(), 64, "{file:?}");
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{file:?}");
        let env = std::fs::read_to_string(d.join(".env")).expect(".env");
        let lines: Vec<&str> = env
            .lines()
            .filter(|l| l.starts_with("ADMIN_TOKEN="))
            .collect();
        assert_eq!(lines, [format!("ADMIN_TOKEN={token}")]);
        tokens.push(token);
    }
    assert_eq!(tokens[0], tokens[1], "a second run made a new token");
    let mode = std::fs::metadata(d.join("secrets/admin-token"))
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "Prometheus's user in its container must read it"
    );

    // The relay reads .env the way dotenvy does.
    let mut map: std::collections::HashMap<String, String> =
        dotenvy::from_path_iter(d.join(".env"))
            .expect("parse .env")
            .map(|kv| kv.expect("a valid .env line"))
            .collect();
    map.insert("OPENAI_API_KEY".into(), "k".into());
    let config = openai_realtime_relay::config::Config::from_source(
        &map,
        openai_realtime_relay::config::KeyPolicy::Required,
    )
    .expect("the relay accepts the .env");
    let admin = config.admin_token.expect("ADMIN_TOKEN is set");
    assert!(admin.matches(&tokens[0]));
}

/// Whether these tests run as root.
fn is_root() -> bool {
    let out = output(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs a copy of tests/run.sh with RELAY_RUN_SH_DRY_RUN=1 and `args`, the programs looked for
/// only in a directory holding stubs named `present`; as `nobody` when `unprivileged` and these
/// tests run as root, else as this user.
fn dry_run(present: &[&str], unprivileged: bool, args: &[&str]) -> Output {
    let dir = TempDir::new("run-sh");
    let d = dir.path();
    std::fs::create_dir_all(d.join("tests")).expect("tests dir");
    std::fs::create_dir_all(d.join("bin")).expect("bin dir");
    std::fs::write(d.join("tests/run.sh"), repo("tests/run.sh")).expect("copy run.sh");
    for tool in present {
        std::fs::write(d.join("bin").join(tool), "#!/bin/sh\n").expect("stub");
        std::fs::set_permissions(d.join("bin").join(tool), PermissionsExt::from_mode(0o755))
            .expect("chmod stub");
    }
    // `nobody` must reach the copy.
    for sub in ["", "tests", "bin"] {
        std::fs::set_permissions(d.join(sub), PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    let vars = [
        format!("RELAY_TOOLS_PATH={}", d.join("bin").display()),
        "RELAY_RUN_SH_DRY_RUN=1".to_string(),
        "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
    ];
    let script = d.join("tests/run.sh");
    let mut cmd = if unprivileged && is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "env"]);
        c
    } else {
        Command::new("env")
    };
    cmd.args(&vars).arg("bash").arg(&script).args(args);
    output(&mut cmd)
}

/// The programs tests/run.sh looks for, in its order.
fn run_sh_tools() -> Vec<String> {
    let script = repo("tests/run.sh");
    let line = script
        .lines()
        .find_map(|l| l.strip_prefix("tools=("))
        .expect("tools=(...) in tests/run.sh");
    line.trim_end_matches(')')
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Without root, tests/run.sh runs `cargo test --workspace --locked ARGS` requiring only the programs it has, then lists the tests it could not run and the one command that installs their programs, and exits 1; it installs nothing.
#[test]
fn run_sh_without_root_runs_what_it_can_then_lists_the_rest() {
    let out = dry_run(&["nginx", "openssl"], true, &["--test", "nginx"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        stdout.contains(
            "dry run: env RELAY_TESTS_REQUIRE=nginx,openssl cargo test --workspace --locked --test nginx\n"
        ),
        "{all}"
    );
    assert!(!stdout.contains("apt-get"), "{all}");
    assert!(
        stderr.contains(
            "  tests/prometheus.rs (needs promtool prometheus prometheus-alertmanager amtool)"
        ),
        "{all}"
    );
    assert!(!stderr.contains("tests/nginx.rs"), "{all}");
    assert!(
        stderr.contains(
            "  sudo apt-get update && sudo apt-get install -y prometheus prometheus-alertmanager\n"
        ),
        "{all}"
    );

    // With every program there, it requires them all and its exit status is cargo's.
    let tools = run_sh_tools();
    let names: Vec<&str> = tools.iter().map(String::as_str).collect();
    let out = dry_run(&names, true, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "dry run: env RELAY_TESTS_REQUIRE={} cargo test --workspace --locked\n",
            tools.join(",")
        )),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// As root, tests/run.sh says what it installs and why before apt-get runs, then requires every program.
#[test]
fn run_sh_as_root_says_what_it_installs_first() {
    if !is_root() {
        eprintln!("skipped: needs root, as in CI");
        return;
    }
    let out = dry_run(&["nginx"], false, &["-p", "openai-realtime-relay"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tools = run_sh_tools().join(",");
    let steps = [
        "== installing openssl prometheus prometheus-alertmanager with apt-get (missing: openssl promtool prometheus prometheus-alertmanager amtool)\n".to_string(),
        "dry run: apt-get update\n".to_string(),
        "dry run: apt-get install -y --no-install-recommends openssl prometheus prometheus-alertmanager\n".to_string(),
        format!("dry run: env RELAY_TESTS_REQUIRE={tools} cargo test --workspace --locked -p openai-realtime-relay\n"),
    ];
    let mut at = 0;
    for step in &steps {
        let i = stdout[at..]
            .find(step.as_str())
            .unwrap_or_else(|| panic!("{step:?} not after byte {at} of:\n{stdout}"));
        at += i + step.len();
    }
}

/// Every program a test asks for with `tool(NAME)` is one tests/run.sh installs and requires, and it names no other.
#[test]
fn run_sh_knows_every_program_the_tests_run() {
    let mut asked = std::collections::BTreeSet::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for entry in std::fs::read_dir(&dir).expect("tests/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read test");
            for part in text.split("tool(\"").skip(1) {
                asked.insert(part.split('"').next().expect("name").to_string());
            }
        }
    }
    let known: std::collections::BTreeSet<String> = run_sh_tools().into_iter().collect();
    assert!(!asked.is_empty());
    assert_eq!(asked, known);
}

/// A missing program skips its test, unless RELAY_TESTS_REQUIRE lists it: then the test fails.
#[test]
fn missing_program_skips_unless_required() {
    let dir = TempDir::new("find-tool");
    let dirs: Vec<PathBuf> = vec![dir.path().to_path_buf()];
    assert_eq!(find_tool("nginx", &dirs, ""), None);
    assert_eq!(find_tool("nginx", &dirs, "promtool,prometheus"), None);
    let required = std::panic::catch_unwind(|| find_tool("nginx", &dirs, "promtool,nginx"));
    assert!(required.is_err(), "a required program was skipped");
    std::fs::write(dir.path().join("nginx"), "").expect("stub");
    assert_eq!(
        find_tool("nginx", &dirs, "nginx"),
        Some(dir.path().join("nginx"))
    );
}
