//! config/admin-token.sh: one token, in secrets/admin-token and in .env, read by the relay.

use std::{os::unix::fs::PermissionsExt, process::Command};

use crate::common::{
    read_repo, repo,
    tools::{output, TempDir},
};

/// config/admin-token.sh writes one token to secrets/admin-token and as ADMIN_TOKEN in .env (replacing .env.example's empty line, the same token on a second run), and the relay reads it from there; without .env it says to make one.
#[test]
fn admin_token_script_writes_one_token_to_both_files() {
    let dir = TempDir::new("admin-token");
    let d = dir.path();
    let script = repo("config/admin-token.sh");
    let run = || output(Command::new("bash").arg(&script).arg(d));

    let out = run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cp .env.example .env"), "{stderr}");

    std::fs::write(d.join(".env"), read_repo(".env.example")).expect("write .env");
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
