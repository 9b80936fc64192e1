//! RELAY_TOKENS: who is admitted, by header and by subprotocol, and what reaches the upstream.

use super::*;

/// With RELAY_TOKENS, no credential and a wrong credential are `unauthorized` + 1008 in both
/// styles, and nothing is dialed upstream for them.
#[actix_web::test]
async fn tokens_refuse_missing_and_wrong_credentials() {
    let h = with_tokens(&[]).await;
    for style in STYLES {
        let error = refused(&h.base, "/v1/realtime", style, None, "unauthorized").await;
        assert_message_contains(&error, "Authorization: Bearer");
        refused(
            &h.base,
            "/v1/realtime",
            style,
            Some("tok-alice-124"),
            "unauthorized",
        )
        .await;
        // A key-shaped credential is not a pass either.
        refused(
            &h.base,
            "/v1/realtime",
            style,
            Some("sk-proj-someone-elses-key"),
            "unauthorized",
        )
        .await;
    }
    // An admitted session after the refusals: its dial is the first and only one.
    let _ws = admitted(&h.base, "/v1/realtime", Style::Sdk, Some(ALICE)).await;
    dials(&h.fake, 1).await;
    let s = stats::get(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["unauthorized"], 6, "{s}");
    h.stop().await;
}

/// A right token is admitted by header and by subprotocol; the 101 selects only `realtime`, the
/// session relays, and the upstream gets the server key and never the client's token.
#[actix_web::test]
async fn tokens_admit_by_header_and_by_subprotocol() {
    let h = with_tokens(&[]).await;
    let mut sdk = admitted(&h.base, "/v1/realtime", Style::Sdk, Some(ALICE)).await;
    let mut browser = admitted(&h.base, "/v1/realtime", Style::Browser, Some(BOB)).await;
    let done = respond(&mut sdk).await;
    assert_eq!(done.last().expect("events")["type"], "response.done");
    respond(&mut browser).await;
    dials(&h.fake, 2).await;

    let s = stats::sessions(&h.http()).await;
    let identities: Vec<&str> = s.iter().filter_map(|x| x["identity"].as_str()).collect();
    assert_eq!(identities, ["token:alice", "token:bob"], "{s:?}");
    h.stop().await;
}
