//! Failed authentication, throttled per address (`AUTH_FAILURES_PER_MINUTE`): after that many
//! failures from one address its next attempts are `rate_limited` before any credential is looked
//! at, a valid one included; other addresses are not affected. And refusal log lines are
//! collapsed: one per reason and address every few seconds, however many refusals.

use crate::common::child::Process;

use super::*;

/// Opens `/` with `token` as a client the proxy on loopback forwards for `address`, expecting
/// the refusal `code` (1008); returns its error event.
async fn refused_from(h: &Harness, address: &str, token: &str, code: &str) -> Value {
    let bearer = format!("Bearer {token}");
    let (_, mut ws) = connect_with(
        &format!("{}/", h.base),
        &["realtime"],
        &[("X-Forwarded-For", address), ("Authorization", &bearer)],
    )
    .await
    .expect("upgrade succeeds");
    expect_failure(&mut ws, code, 1008).await
}

/// Three bad tokens from 198.51.100.9 with AUTH_FAILURES_PER_MINUTE=3, then alice's good token
/// from there is `rate_limited` without a dial, while alice from another address is admitted.
#[actix_web::test]
async fn an_address_that_keeps_failing_is_refused_before_the_check() {
    let h = with_tokens(&[("AUTH_FAILURES_PER_MINUTE", "3")]).await;
    for i in 0..3 {
        refused_from(&h, "198.51.100.9", &format!("guess-{i}"), "unauthorized").await;
    }
    let error = refused_from(&h, "198.51.100.9", ALICE, "rate_limited").await;
    assert!(!error.to_string().contains(ALICE), "{error}");
    let bearer = format!("Bearer {ALICE}");
    let (_, mut ws) = connect_with(
        &format!("{}/", h.base),
        &["realtime"],
        &[
            ("X-Forwarded-For", "198.51.100.10"),
            ("Authorization", &bearer),
        ],
    )
    .await
    .expect("upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    dials(&h.fake, 1).await;
    let s = stats::get(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["unauthorized"], 3, "{s}");
    assert_eq!(s["rejected_by_reason"]["rate_limited"], 1, "{s}");
    h.stop().await;
}

/// An IPv6 client that rotates its address inside its /64 is throttled as one address.
#[actix_web::test]
async fn rotating_inside_a_64_does_not_reset_the_count() {
    let h = with_tokens(&[("AUTH_FAILURES_PER_MINUTE", "2")]).await;
    refused_from(&h, "2001:db8:7::1", "guess-1", "unauthorized").await;
    refused_from(&h, "2001:db8:7::2", "guess-2", "unauthorized").await;
    refused_from(&h, "2001:db8:7::3", ALICE, "rate_limited").await;
    h.stop().await;
}

/// Ten refusals of one address within a second write one `session refused` line, not ten (the
/// binary, whose log is read line by line).
#[actix_web::test]
async fn repeated_refusals_write_one_line() {
    let mut p = Process::spawn(
        "refusal-lines",
        &["--demo"],
        &[
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("RELAY_TOKENS", TOKENS),
            ("AUTH_FAILURES_PER_MINUTE", "0"),
        ],
    );
    let base = format!("ws://{}", p.listening().await);
    for i in 0..10 {
        refused(
            &base,
            "/",
            Style::Sdk,
            Some(&format!("guess-{i}")),
            "unauthorized",
        )
        .await;
    }
    let _ws = admitted(&base, "/", Style::Sdk, Some(ALICE)).await;
    p.wait_line("session=1 opened").await;
    let lines = p.finish().await;
    let refusals: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("session refused"))
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert!(
        refusals[0].contains("reason=unauthorized"),
        "{}",
        refusals[0]
    );
    assert!(refusals[0].contains("client=127.0.0.1"), "{}", refusals[0]);
}
