//! The real `openai-realtime-relay` binary as an operator runs it: config errors before binding,
//! `--demo` end to end, and a key that never reaches the log. Each child runs with a cleared
//! environment in a fresh directory (so no `.env` is read); its output is read line by line from
//! threads, with a deadline, never by sleeping.

use fake_upstream::Script;
use futures_util::SinkExt;

use crate::common::{child::Process, *};

/// Without OPENAI_API_KEY the binary prints the Node relay's message, then on the next line how
/// to run without a key and where the key goes, and exits non-zero.
#[actix_web::test]
async fn missing_key_exits_with_the_node_message() {
    let p = Process::spawn("missing-key", &[], &[("PORT", "0"), ("HOST", "127.0.0.1")]);
    let (status, lines) = p.exit().await;
    assert!(!status.success(), "{status:?} {lines:#?}");
    let at = lines
        .iter()
        .position(|l| l == "OPENAI_API_KEY environment variable is required")
        .unwrap_or_else(|| panic!("no missing-key line: {lines:#?}"));
    let hint = lines.get(at + 1).expect("a second line");
    assert!(
        hint.contains("--demo-if-no-key") && hint.contains(".env"),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("listening on")),
        "{lines:#?}"
    );
}

/// Several bad variables are all named in one report, and the exit code is 64.
#[actix_web::test]
async fn every_bad_variable_is_named_at_once() {
    let p = Process::spawn(
        "bad-vars",
        &[],
        &[
            ("OPENAI_API_KEY", "sk-test-bad-vars"),
            ("PORT", "abc"),
            ("MAX_CONNECTIONS", "0"),
            ("HEARTBEAT_INTERVAL", "x"),
            ("OPENAI_API_URL", "http://x"),
        ],
    );
    let (status, lines) = p.exit().await;
    assert_eq!(status.code(), Some(64), "{lines:#?}");
    let text = lines.join("\n");
    for name in [
        "PORT",
        "MAX_CONNECTIONS",
        "HEARTBEAT_INTERVAL",
        "OPENAI_API_URL",
    ] {
        assert!(text.contains(name), "{name} not reported: {text}");
    }
    assert!(!text.contains("listening on"), "{text}");
}

/// PORT out of range names the range, not "a whole number".
#[actix_web::test]
async fn port_out_of_range_names_the_range() {
    let p = Process::spawn(
        "port-range",
        &[],
        &[("OPENAI_API_KEY", "sk-test-port"), ("PORT", "99999")],
    );
    let (status, lines) = p.exit().await;
    assert_eq!(status.code(), Some(64), "{lines:#?}");
    let text = lines.join("\n");
    assert!(
        text.contains("PORT: must be a port number between 1 and 65535"),
        "{text}"
    );
    assert!(!text.contains("whole number"), "{text}");
}

/// A port already in use: one line that names HOST:PORT and the variable to change, exit 1,
/// and in demo mode the fake upstream never starts.
#[actix_web::test]
async fn port_in_use_is_one_line_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let p = Process::spawn(
        "port-in-use",
        &["--demo"],
        &[("PORT", &port), ("HOST", "127.0.0.1")],
    );
    let (status, lines) = p.exit().await;
    assert_eq!(status.code(), Some(1), "{lines:#?}");
    let addr = format!("127.0.0.1:{port}");
    let naming: Vec<&String> = lines.iter().filter(|l| l.contains(&addr)).collect();
    assert_eq!(naming.len(), 1, "{lines:#?}");
    assert!(naming[0].contains("PORT"), "{lines:#?}");
    assert!(
        naming[0].to_lowercase().contains("address already in use"),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("demo mode") || l.contains("fake")),
        "something started before the bind: {lines:#?}"
    );
    drop(taken);
}

/// Demo mode does not validate OPENAI_API_URL, which it does not use.
#[actix_web::test]
async fn demo_mode_ignores_a_bad_upstream_url() {
    let mut p = Process::spawn(
        "demo-bad-url",
        &["--demo"],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("OPENAI_API_URL", "http://not-a-websocket"),
        ],
    );
    let addr = p.listening().await;
    let (status, _) = get(&format!("http://{addr}/health"), &[]).await;
    assert_eq!(status, 200);
    p.kill().await;
}

/// A failed upstream dial is logged at WARN with its cause (never the key); repeats within the
/// window collapse into that one line.
#[actix_web::test]
async fn upstream_failures_are_logged_with_their_cause_once() {
    const KEY: &str = "sk-test-DIALSECRET-1";
    let mut script = Script::echo();
    script.reject_status = Some(401);
    let fake = start_fake(script).await;
    let url = fake.url();
    let mut p = Process::spawn(
        "dial-failures",
        &[],
        &[
            ("OPENAI_API_KEY", KEY),
            ("OPENAI_API_URL", &url),
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
        ],
    );
    let addr = p.listening().await;
    let base = format!("ws://{addr}/realtime");
    for n in 1..=3 {
        let (_, mut ws) = connect_with(&base, &["realtime"], &[])
            .await
            .expect("upgrade succeeds");
        expect_failure(&mut ws, "upstream_auth_failed", 1011).await;
        p.wait_line(&format!("session={n} closed")).await;
    }
    // A different cause is its own line: nothing listens on the fake's port once it is gone.
    stop_fake(fake).await;
    let (_, mut ws) = connect_with(&base, &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    expect_failure(&mut ws, "upstream_unavailable", 1011).await;
    p.wait_line("session=4 closed").await;

    let lines = p.kill().await;
    let text = lines.join("\n");
    let warns: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("upstream dial failed"))
        .collect();
    assert_eq!(warns.len(), 2, "{text}");
    assert!(
        warns[0].contains("reason=upstream_auth_failed") && warns[0].contains("HTTP 401"),
        "{text}"
    );
    assert!(
        warns[1].contains("reason=upstream_unavailable") && warns[1].contains("could not reach"),
        "{text}"
    );
    assert!(!text.contains("DIALSECRET"), "the key was logged: {text}");
}

/// A client that drops its TCP connection without a close frame is logged as `client_gone`
/// with `code=-`: no close frame was sent to it.
#[actix_web::test]
async fn client_gone_is_logged_without_a_close_code() {
    let mut p = Process::spawn(
        "client-gone",
        &["--demo"],
        &[("PORT", "0"), ("HOST", "127.0.0.1")],
    );
    let addr = p.listening().await;
    let (_, mut ws) = connect_with(&format!("ws://{addr}/realtime"), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    drop(ws);
    let line = p.wait_line("session=1 closed").await;
    assert!(line.contains("reason=client_gone"), "{line}");
    assert!(line.contains(" code=- "), "{line}");
    p.kill().await;
}

/// The session's close line names the policy that applied and what its usage cost: a demo
/// response under the `default` policy of SESSION_POLICY_FILE, priced by the shipped table.
#[actix_web::test]
async fn close_line_names_the_policy_and_the_cost() {
    let mut p = Process::spawn_with_files(
        "close-line-policy-cost",
        &["--demo"],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("SESSION_POLICY_FILE", "policy.toml"),
        ],
        &[(
            "policy.toml",
            "[policies.default]\nlocked = [\"instructions\"]\n",
        )],
    );
    let addr = p.listening().await;
    let (_, mut ws) = connect_with(
        &format!("ws://{addr}/v1/realtime?model=gpt-realtime-mini"),
        &["realtime"],
        &[],
    )
    .await
    .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    send_text(&mut ws, r#"{"type":"response.create"}"#).await;
    while next_json(&mut ws).await["type"] != "response.done" {}
    let _ = tokio::time::timeout(T, ws.close()).await;
    let line = p.wait_line("session=1 closed").await;
    assert!(line.contains(" policy=default "), "{line}");
    let cost = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("cost_usd="))
        .unwrap_or_else(|| panic!("no cost_usd: {line}"));
    let cost: f64 = cost.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(cost > 0.0, "{line}");
    p.kill().await;
}

/// `--demo` needs no key: a client gets session.created and a streamed response with usage.
#[actix_web::test]
async fn demo_mode_serves_a_full_session() {
    let mut p = Process::spawn("demo", &["--demo"], &[("PORT", "0"), ("HOST", "127.0.0.1")]);
    let addr = p.listening().await;
    let (_, mut ws) = connect_with(
        &format!("ws://{addr}/v1/realtime?model=gpt-realtime"),
        &["realtime"],
        &[],
    )
    .await
    .expect("upgrade succeeds");
    let created = next_json(&mut ws).await;
    assert_eq!(created["type"], "session.created", "{created}");
    send_text(&mut ws, r#"{"type":"response.create","event_id":"demo1"}"#).await;
    let mut types = Vec::new();
    let done = loop {
        let event = next_json(&mut ws).await;
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        assert_ne!(kind, "error", "{event}");
        types.push(kind.clone());
        if kind == "response.done" {
            break event;
        }
        assert!(types.len() < 500, "no response.done: {types:?}");
    };
    let usage = &done["response"]["usage"];
    assert!(usage["total_tokens"].is_u64(), "{done}");
    assert!(usage["input_tokens"].is_u64(), "{done}");
    assert!(usage["output_tokens"].is_u64(), "{done}");
    assert!(types.len() > 1, "no streamed deltas before response.done");

    let (status, body) = get(&format!("http://{addr}/health"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["connections"]["active"], 1, "{health}");
    let _ = tokio::time::timeout(T, ws.close()).await;
    p.kill().await;
}

/// With DEBUG=true the key is never logged, through a refused and a successful session; the
/// production warnings are.
#[actix_web::test]
async fn key_is_never_logged() {
    const KEY: &str = "sk-test-LOGSECRET-xyz";
    let mut script = Script::echo();
    script.reject_status = Some(401);
    let fake = start_fake(script).await;
    let url = fake.url();
    let mut p = Process::spawn(
        "key-never-logged",
        &[],
        &[
            ("OPENAI_API_KEY", KEY),
            ("DEBUG", "true"),
            ("NODE_ENV", "production"),
            ("OPENAI_API_URL", &url),
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
        ],
    );
    let addr = p.listening().await;
    let base = format!("ws://{addr}/realtime");

    let (_, mut refused) = connect_with(&base, &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    expect_failure(&mut refused, "upstream_auth_failed", 1011).await;
    p.wait_line("session=1 closed").await;

    fake.set_script(Script::echo());
    let (_, mut ws) = connect_with(&base, &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    send_text(&mut ws, r#"{"type":"session.update","event_id":"s1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "s1");
    close(&mut ws).await;
    p.wait_line("session=2 closed").await;

    // The key really was in play: the upstream saw it on both dials.
    let hs = fake.recorder().wait_handshakes(2, T).await.expect("dials");
    for h in &hs {
        assert_eq!(
            h.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }

    let lines = p.kill().await;
    let text = lines.join("\n");
    assert!(
        lines.iter().any(|l| l.contains("DEBUG")),
        "DEBUG=true logged nothing at debug level: {text}"
    );
    assert!(!text.contains("LOGSECRET"), "the key was logged: {text}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("ALLOWED_ORIGINS=*")),
        "no ALLOWED_ORIGINS=* warning: {text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("ws://") && l.contains("OPENAI_API_URL")),
        "no ws:// upstream warning: {text}"
    );
    stop_fake(fake).await;
}
