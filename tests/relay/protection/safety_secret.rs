//! The safety identifier's key: SAFETY_IDENTIFIER_SECRET (or its old name SAFETY_IDENTIFIER_SALT),
//! else a random secret kept beside the usage state file; never the OpenAI key.

use std::path::PathBuf;

use super::*;

/// 32 hex digits of HMAC-SHA256(`key`, `subject`): how the relay makes the header.
fn hmac_hex(key: &str, subject: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    ring::hmac::sign(&key, subject.as_bytes()).as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `openai-safety-identifier` header of the upstream's `n`th dial.
async fn safety_id(h: &Harness, n: usize) -> String {
    let hs = h
        .fake
        .recorder()
        .wait_handshakes(n, T)
        .await
        .expect("dialed");
    hs[n - 1]
        .header("openai-safety-identifier")
        .expect("a safety identifier")
        .to_string()
}

/// A usage state file of this test's own, in a fresh directory.
fn usage_file(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "relay-test-safety-{test}-{}-{}",
        std::process::id(),
        unix_in(0)
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("usage.json")
}

/// With no secret configured, the identifier is keyed with a random secret the relay keeps in
/// `<USAGE_STATE_FILE>.safety-secret` (mode 0600), not with OPENAI_API_KEY; a restart on the same
/// file gives every client the same identifier again.
#[actix_web::test]
async fn generated_secret_is_kept_and_is_not_the_api_key() {
    let usage = usage_file("generated");
    let usage_str = usage.display().to_string();
    let env = [
        ("SAFETY_IDENTIFIER", "address"),
        ("USAGE_STATE_FILE", usage_str.as_str()),
    ];
    let h = start(Script::demo(), &env).await;
    let _ws = connect(&h, "/").await;
    let first = safety_id(&h, 1).await;
    h.stop().await;

    let kept_path = PathBuf::from(format!("{usage_str}.safety-secret"));
    let kept = std::fs::read_to_string(&kept_path).expect("the secret is kept beside the ledger");
    let kept = kept.trim();
    assert_eq!(kept.len(), 64, "{kept}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    assert_eq!(first, hmac_hex(kept, "ip:127.0.0.1"));
    assert_ne!(
        first,
        hmac_hex(TEST_KEY, "ip:127.0.0.1"),
        "keyed with the OpenAI key"
    );

    let h = start(Script::demo(), &env).await;
    let _ws = connect(&h, "/").await;
    assert_eq!(
        safety_id(&h, 1).await,
        first,
        "the identifier changed across a restart"
    );
    h.stop().await;
    let _ = std::fs::remove_dir_all(usage.parent().expect("dir"));
}

/// SAFETY_IDENTIFIER_SECRET is the key when set, and SAFETY_IDENTIFIER_SALT, its old name, still
/// works; neither writes a secret file.
#[actix_web::test]
async fn configured_secret_and_its_old_name() {
    for name in ["SAFETY_IDENTIFIER_SECRET", "SAFETY_IDENTIFIER_SALT"] {
        let usage = usage_file(name);
        let usage_str = usage.display().to_string();
        let h = start(
            Script::demo(),
            &[
                ("SAFETY_IDENTIFIER", "address"),
                (name, "operator-chosen-secret"),
                ("USAGE_STATE_FILE", usage_str.as_str()),
            ],
        )
        .await;
        let _ws = connect(&h, "/").await;
        assert_eq!(
            safety_id(&h, 1).await,
            hmac_hex("operator-chosen-secret", "ip:127.0.0.1"),
            "{name}"
        );
        h.stop().await;
        assert!(!PathBuf::from(format!("{usage_str}.safety-secret")).exists());
        let _ = std::fs::remove_dir_all(usage.parent().expect("dir"));
    }
}
