//! Per-client limits before any dial: live connections, new connections a minute, models.

use super::*;
use crate::common::poll::poll;

/// MAX_CONNECTIONS_PER_CLIENT=1: alice's second session is `too_many_connections` + 1008 with
/// no dial, bob is still admitted, and once alice's first session closes she is admitted again.
#[actix_web::test]
async fn per_client_connection_limit() {
    let h = with_tokens(&[("MAX_CONNECTIONS_PER_CLIENT", "1")]).await;
    let mut first = admitted(&h.base, "/", Style::Sdk, Some(ALICE)).await;
    for style in STYLES {
        let error = refused(&h.base, "/", style, Some(ALICE), "too_many_connections").await;
        assert_message_contains(&error, "1");
    }
    let _bob = admitted(&h.base, "/", Style::Browser, Some(BOB)).await;
    dials(&h.fake, 2).await;

    close(&mut first).await;
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("alice's upstream closed");
    // The slot comes back through an async Release: try again until alice is admitted.
    let base = h.base.as_str();
    let _again = poll("alice admitted after her session closed")
        .until(|| async move {
            let (_, mut ws) = open(base, "/", Style::Browser, Some(ALICE)).await;
            let first = next_json(&mut ws).await;
            if first["type"] == "session.created" {
                return Ok(ws);
            }
            assert_eq!(first["error"]["code"], "too_many_connections", "{first}");
            Err(first.to_string())
        })
        .await;
    dials(&h.fake, 3).await;
    h.stop().await;
}

/// CONNECTION_RATE_PER_CLIENT=2: a client's third new session within the minute is
/// `rate_limited` + 1008 with no dial, in both styles, and one client's bucket is not another's.
#[actix_web::test]
async fn per_client_connection_rate() {
    let h = with_tokens(&[("CONNECTION_RATE_PER_CLIENT", "2")]).await;
    let mut live = Vec::new();
    for (style, token) in [(Style::Sdk, ALICE), (Style::Browser, BOB)] {
        for _ in 0..2 {
            live.push(admitted(&h.base, "/", style, Some(token)).await);
        }
        let error = refused(&h.base, "/", style, Some(token), "rate_limited").await;
        assert_message_contains(&error, "2 per minute");
    }
    // Closing sessions does not give new-session tokens back.
    for ws in &mut live {
        close(ws).await;
    }
    h.fake.recorder().wait_closes(4, T).await.expect("closed");
    refused(&h.base, "/", Style::Sdk, Some(ALICE), "rate_limited").await;
    assert_dials(&h.fake, 4);
    h.stop().await;
}

/// ALLOWED_MODELS=gpt-realtime-mini: gpt-realtime is `model_not_allowed` + 1008 with no dial,
/// gpt-realtime-mini (and the default) is admitted; a client without a credential hears
/// `unauthorized` first.
#[actix_web::test]
async fn allowed_models_refuse_other_models_before_dialing() {
    let h = with_tokens(&[("ALLOWED_MODELS", "gpt-realtime-mini")]).await;
    for style in STYLES {
        refused(
            &h.base,
            "/v1/realtime?model=gpt-realtime",
            style,
            Some(ALICE),
            "model_not_allowed",
        )
        .await;
        refused(
            &h.base,
            "/v1/realtime?model=gpt-realtime",
            style,
            None,
            "unauthorized",
        )
        .await;
    }
    let _a = admitted(
        &h.base,
        "/v1/realtime?model=gpt-realtime-mini",
        Style::Sdk,
        Some(ALICE),
    )
    .await;
    let _b = admitted(&h.base, "/v1/realtime", Style::Browser, Some(BOB)).await;
    let hs = dials(&h.fake, 2).await;
    for h in hs {
        assert_eq!(h.path_and_query, "/v1/realtime?model=gpt-realtime-mini");
    }
    let s = stats::get(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["model_not_allowed"], 2, "{s}");
    h.stop().await;
}
