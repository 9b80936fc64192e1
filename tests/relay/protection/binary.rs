//! The binary: SIGHUP re-reads RELAY_TOKENS_FILE without dropping sessions, and no token ever
//! reaches its logs.

use std::path::Path;

use openai_realtime_relay::{config::Secret, protection::identity::mint_jwt};
use serde_json::json;

use super::*;
use crate::common::child::Process;

/// Starts `--demo` on 127.0.0.1:0 with only PATH and `env` set, in a fresh directory; `files`
/// are written into it first.
fn spawn_demo(test: &str, env: &[(&str, &str)], files: &[(&str, &str)]) -> Process {
    let env: Vec<(&str, &str)> = [("HOST", "127.0.0.1"), ("PORT", "0")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    Process::spawn_with_files(test, &["--demo"], &env, files)
}

/// `ws://host:port` from the startup line.
async fn base(p: &mut Process) -> String {
    format!("ws://{}", p.listening().await)
}

/// Rewrites `path` atomically, so the relay never reads half a file.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// SIGHUP re-reads RELAY_TOKENS_FILE without dropping sessions: alice's live session keeps
/// working (and its close line carries its tokens), a new alice session is `unauthorized`, bob
/// is admitted.
#[actix_web::test]
async fn sighup_reloads_tokens_without_dropping_sessions() {
    let mut p = spawn_demo(
        "sighup",
        &[("RELAY_TOKENS_FILE", "tokens.txt")],
        &[("tokens.txt", "# team\nalice:tok-alice-123\n")],
    );
    let base = base(&mut p).await;
    let mut alice = admitted(&base, "/", Style::Sdk, Some(ALICE)).await;
    refused(&base, "/", Style::Browser, Some(BOB), "unauthorized").await;

    rewrite(&p.path("tokens.txt"), "bob:tok-bob-456\n");
    p.signal("HUP");
    p.wait_line("SIGHUP: reloaded RELAY_TOKENS_FILE (1 tokens)")
        .await;

    respond(&mut alice).await;
    for style in STYLES {
        refused(&base, "/", style, Some(ALICE), "unauthorized").await;
    }
    let mut bob = admitted(&base, "/", Style::Browser, Some(BOB)).await;
    respond(&mut bob).await;

    close(&mut alice).await;
    let closed = p.wait_line("session=1 closed").await;
    assert!(closed.contains("identity=token:alice"), "{closed}");
    assert!(closed.contains("reason=client_closed"), "{closed}");
    assert!(closed.contains("input_tokens=12"), "{closed}");
    assert!(closed.contains("output_tokens=20"), "{closed}");
    assert!(closed.contains("total_tokens=32"), "{closed}");
    drop(bob);
    let lines = p.finish().await;
    let text = lines.join("\n");
    for secret in [ALICE, BOB] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }
}

/// With DEBUG=true, tokens presented by header and by subprotocol (right, wrong and JWT) never
/// appear in stdout or stderr.
#[actix_web::test]
async fn tokens_never_appear_in_logs() {
    let jwt = mint_jwt(
        &Secret::new(JWT_SECRET),
        &json!({"sub": "user-7", "exp": unix_in(600)}),
    );
    let mut p = spawn_demo(
        "nolog",
        &[
            ("RELAY_TOKENS", TOKENS),
            ("RELAY_JWT_SECRET", JWT_SECRET),
            ("DEBUG", "true"),
        ],
        &[],
    );
    let base = base(&mut p).await;
    let mut a = admitted(&base, "/", Style::Sdk, Some(ALICE)).await;
    let mut b = admitted(&base, "/", Style::Browser, Some(BOB)).await;
    let mut j = admitted(&base, "/", Style::Browser, Some(&jwt)).await;
    for style in STYLES {
        refused(&base, "/", style, Some("tok-wrong-999"), "unauthorized").await;
    }
    respond(&mut a).await;
    respond(&mut b).await;
    respond(&mut j).await;
    close(&mut a).await;
    p.wait_line("session=1 closed").await;
    let lines = p.finish().await;
    let text = lines.join("\n");
    assert!(text.contains("identity=token:bob"), "{text}");
    assert!(text.contains("identity=jwt:user-7"), "{text}");
    let signature = jwt.rsplit('.').next().expect("signature");
    for secret in [
        ALICE,
        BOB,
        "tok-wrong-999",
        JWT_SECRET,
        jwt.as_str(),
        signature,
        "openai-insecure-api-key",
    ] {
        assert!(!text.contains(secret), "{secret} was logged: {text}");
    }
}
