//! SAFETY_IDENTIFIER: the `OpenAI-Safety-Identifier` header, a hash of the identity or the
//! address, or none.

use super::*;

/// The `openai-safety-identifier` header of each upstream dial, in order.
fn safety_ids(fake: &FakeUpstream) -> Vec<Option<String>> {
    fake.recorder()
        .handshakes()
        .iter()
        .map(|h| h.header("openai-safety-identifier").map(str::to_string))
        .collect()
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// SAFETY_IDENTIFIER=identity: every dial carries 32 hex digits, the same for two sessions of
/// alice, another for bob, never the identity itself.
#[actix_web::test]
async fn safety_identifier_hashes_the_identity() {
    let h = with_tokens(&[("SAFETY_IDENTIFIER", "identity")]).await;
    let _a1 = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    let _a2 = admitted(&h.base, "/", Style::Browser, Some(ALICE)).await;
    let _b = admitted(&h.base, "/", Style::Sdk, Some(BOB)).await;
    dials(&h.fake, 3).await;
    let ids: Vec<String> = safety_ids(&h.fake)
        .into_iter()
        .map(|id| id.expect("a safety identifier on every dial"))
        .collect();
    for id in &ids {
        assert!(is_hex32(id), "{id}");
        for word in ["alice", "bob", "token", ALICE, BOB] {
            assert!(!id.contains(word), "{id}");
        }
    }
    assert_eq!(ids[0], ids[1], "alice's two sessions");
    assert_ne!(ids[0], ids[2], "alice and bob");
    h.stop().await;
}

/// SAFETY_IDENTIFIER=address hashes the client address: two identities from one address share
/// it. Off (the default) sends no header.
#[actix_web::test]
async fn safety_identifier_by_address_and_off() {
    let h = with_tokens(&[("SAFETY_IDENTIFIER", "address")]).await;
    let _a = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    let _b = admitted(&h.base, "/", Style::Browser, Some(BOB)).await;
    dials(&h.fake, 2).await;
    let ids = safety_ids(&h.fake);
    let first = ids[0].clone().expect("a safety identifier");
    assert!(is_hex32(&first), "{first}");
    assert_eq!(ids[1].as_deref(), Some(first.as_str()), "same address");
    h.stop().await;

    let h = with_tokens(&[]).await;
    let _a = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    dials(&h.fake, 1).await;
    assert_eq!(safety_ids(&h.fake), [None]);
    h.stop().await;
}

/// With a warm pool, a session that needs a safety identifier dials its own upstream (with the
/// header) instead of taking a warm socket opened without one.
#[actix_web::test]
async fn safety_identifier_bypasses_the_warm_pool() {
    let h = with_tokens(&[
        ("SAFETY_IDENTIFIER", "identity"),
        ("UPSTREAM_POOL_SIZE", "1"),
        ("WORKERS", "1"),
    ])
    .await;
    // The pool's own socket: dialed at startup, without a header.
    h.fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("pool dial");
    let _a = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    let ids = safety_ids(&h.fake);
    assert_eq!(ids[0], None, "the warm socket is nobody's");
    assert!(
        ids[1..]
            .iter()
            .any(|id| id.as_deref().is_some_and(is_hex32)),
        "the session dialed its own upstream with the header: {ids:?}"
    );
    assert_dials(&h.fake, ids.len());
    h.stop().await;
}
