//! Faults the usage ledger must survive (issue 10, 7 and 9): a second relay on the same
//! USAGE_STATE_FILE (refused at start, in-process and as a process, and free again once the first
//! has gone, `kill -9` included), usage no upstream event can carry, and the Compose scale-out
//! recipe, which must give each replica a ledger of its own.

use super::*;
use crate::common::{child::Process, tools::TempDir};

/// A relay started on a state file another running relay holds is refused with an error that
/// names USAGE_STATE_FILE and the path; the first keeps serving; once it has stopped, the file
/// is free again.
#[actix_web::test]
async fn a_second_relay_on_the_same_state_file_does_not_start() {
    let dir = TempDir::new("lock-inproc");
    let file = dir.path().join("usage.json");
    let file = file.to_str().expect("UTF-8 temp path");
    let fake = start_fake(Script::demo()).await;
    let on_file = || config(&fake.url(), &[("USAGE_STATE_FILE", file)]);
    let first = start_relay(on_file()).await;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let second = timed(
        "the second relay's start",
        openai_realtime_relay::start(on_file(), listener),
    )
    .await;
    let message = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "USAGE_STATE_FILE {file} is in use by another relay"
        )),
        "{message:?}"
    );

    let mut ws = admitted(
        &format!("ws://{}", first.local_addr()),
        "/",
        Style::Sdk,
        None,
    )
    .await;
    respond(&mut ws).await;
    drop(ws);
    stop_relay(first).await;

    let third = start_relay(on_file()).await;
    let _ws = admitted(
        &format!("ws://{}", third.local_addr()),
        "/",
        Style::Sdk,
        None,
    )
    .await;
    stop_relay(third).await;
    stop_fake(fake).await;
}

/// As processes: a second relay on the same state file exits 1 with one line naming
/// USAGE_STATE_FILE and the path; after the first is killed with SIGKILL, the kernel has let go
/// of its lock and a new relay starts on the file.
#[actix_web::test]
async fn a_second_relay_process_exits_and_a_killed_one_leaves_no_lock() {
    let dir = TempDir::new("lock-process");
    let file = dir.path().join("usage.json");
    let file = file.to_str().expect("UTF-8 temp path");
    let env = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("USAGE_STATE_FILE", file),
    ];
    let mut first = Process::spawn("lock-first", &["--demo"], &env);
    let base = format!("ws://{}", first.listening().await);
    // Admitted means started: the lock is taken before the relay serves anything.
    let _ws = admitted(&base, "/", Style::Sdk, None).await;

    let (status, lines) = Process::spawn("lock-second", &["--demo"], &env)
        .exit()
        .await;
    assert_eq!(status.code(), Some(1), "{lines:#?}");
    let expected = format!("relay failed: USAGE_STATE_FILE {file} is in use by another relay");
    assert!(
        lines.iter().any(|l| l.contains(&expected)),
        "no {expected:?} in {lines:#?}"
    );

    first.kill().await;
    let mut third = Process::spawn("lock-third", &["--demo"], &env);
    let base = format!("ws://{}", third.listening().await);
    let _ws = admitted(&base, "/", Style::Sdk, None).await;
    third.finish().await;
}

/// An upstream usage with a count no event can carry (a u64::MAX total) is counted nowhere: not
/// today, not for the client, not against the budget; a plausible one after it counts as usual.
#[actix_web::test]
async fn implausible_upstream_usage_is_not_counted() {
    // The echo upstream sends the client's events back: to the relay, upstream events.
    let h = start(Script::echo(), &[("DAILY_TOKEN_BUDGET", "1000")]).await;
    let mut ws = admitted(&h.base, "/", Style::Browser, None).await;
    let done =
        |usage: String| format!(r#"{{"type":"response.done","response":{{"usage":{usage}}}}}"#);
    for usage in [
        format!(
            r#"{{"total_tokens":{},"input_tokens":1,"output_tokens":1}}"#,
            u64::MAX
        ),
        r#"{"total_tokens":7,"input_tokens":3,"output_tokens":4}"#.to_string(),
    ] {
        send_text(&mut ws, &done(usage)).await;
        let echoed = next_json(&mut ws).await;
        assert_eq!(echoed["type"], "response.done", "{echoed}");
    }
    let s = stats::wait_until(&h.http(), "the plausible usage", |s| {
        s["usage"]["lifetime"]["total_tokens"] != 0
    })
    .await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 7, "{s}");
    assert_eq!(s["usage"]["lifetime"]["total_tokens"], 7, "{s}");
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([("ip:127.0.0.1".to_string(), 7)])
    );
    // The day's budget is not spent: a new session is admitted.
    let _again = admitted(&h.base, "/", Style::Browser, None).await;
    h.stop().await;
}

/// Compose's scale-out replicas share Redis, never the `relay-data` ledger volume (one relay per
/// ledger file), and the deployment guide gives the same command.
#[test]
fn compose_scale_out_shares_redis_not_a_ledger() {
    let compose = read_repo("docker-compose.yml");
    let header = "  relay-replica:";
    let replica: Vec<&str> = compose
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect();
    assert!(!replica.is_empty(), "no relay-replica service");
    let has = |line: &str| replica.iter().any(|l| l.trim() == line);
    assert!(has("volumes: []"), "replicas must not inherit relay-data");
    assert!(has("ports: []"), "replicas publish nothing");
    assert!(has("REDIS_URL: redis://redis:6379"), "{replica:#?}");
    assert!(!replica.iter().any(|l| l.contains("relay-data:")));
    assert!(compose.contains("\n  redis:\n"), "a redis service");
    let guide = read_repo("docs/deploying.md");
    let recipe: Vec<String> = guide
        .split("\n\n")
        .map(|p| p.replace('\n', " "))
        .filter(|p| p.contains("--scale relay-replica"))
        .collect();
    assert_eq!(recipe.len(), 1, "{recipe:#?}");
    assert!(recipe[0].contains("REDIS_URL"), "{}", recipe[0]);
}
