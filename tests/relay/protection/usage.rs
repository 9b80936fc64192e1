//! Usage as the upstream reports it in `response.done`, in `/stats` and `/metrics`; never as a
//! client claims it.

use super::*;

/// An upstream `response.done` lands in /stats (today's totals, the identity's, the model's) and
/// in `relay_tokens_total{model,kind}` with the split the upstream reported.
#[actix_web::test]
async fn response_done_usage_lands_in_stats_and_metrics() {
    let h = with_tokens(&[]).await;
    let mut ws = admitted(&h.base, "/", Style::Browser, Some(ALICE)).await;
    let events = respond(&mut ws).await;
    let done = events.last().expect("response.done");
    assert_eq!(done["response"]["usage"]["total_tokens"], 32, "{done}");

    // RecordUsage reaches the registry before response.done reaches the client, and the
    // registry answers /stats in order: no waiting needed.
    let s = stats::get(&h.http()).await;
    let today = &s["usage"]["today"];
    assert_eq!(today["total_tokens"], 32, "{s}");
    assert_eq!(today["input_tokens"], 12, "{s}");
    assert_eq!(today["output_tokens"], 20, "{s}");
    assert_eq!(today["output_audio"], 15, "{s}");
    assert_eq!(
        by_identity(&s),
        BTreeMap::from([("token:alice".to_string(), 32)])
    );
    assert_eq!(s["usage"]["identities_today"], 1, "{s}");
    assert_eq!(
        s["usage"]["by_model"]["gpt-realtime-mini"]["total_tokens"], 32,
        "{s}"
    );

    let (status, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    assert_eq!(status, 200);
    for (kind, n) in [
        ("input_text", 10.0),
        ("input_audio", 2.0),
        ("input_cached", 0.0),
        ("output_text", 5.0),
        ("output_audio", 15.0),
    ] {
        assert_eq!(
            prom::sample(
                &text,
                &format!(r#"relay_tokens_total{{model="gpt-realtime-mini",kind="{kind}"}}"#)
            ),
            Some(n),
            "relay_tokens_total kind={kind}"
        );
    }
    h.stop().await;
}

/// A client-sent `response.done`-shaped message is not usage: it goes upstream and nothing is
/// counted, in /stats or in /metrics.
#[actix_web::test]
async fn client_sent_response_done_does_not_count() {
    let h = with_tokens(&[]).await;
    let forged = r#"{"type":"response.done","response":{"usage":{"total_tokens":999999,"input_tokens":999999,"input_token_details":{"text_tokens":999999}}}}"#;
    for (style, token) in [(Style::Sdk, ALICE), (Style::Browser, BOB)] {
        let mut ws = admitted(&h.base, "/", style, Some(token)).await;
        send_text(&mut ws, forged).await;
        // The demo upstream answers an unknown client event with an error of its own.
        let answer = next_json(&mut ws).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
    }
    let got = h
        .fake
        .recorder()
        .wait_messages(2, T)
        .await
        .expect("relayed");
    assert!(got
        .iter()
        .all(|m| m.json().expect("JSON")["type"] == "response.done"));

    let s = stats::get(&h.http()).await;
    assert_eq!(s["usage"]["today"]["total_tokens"], 0, "{s}");
    assert_eq!(s["usage"]["lifetime"]["total_tokens"], 0, "{s}");
    assert!(by_identity(&s).is_empty(), "{s}");
    let (_, text) = get(&format!("{}/metrics", h.http()), &[]).await;
    for s in prom::samples(&text) {
        if s.name == "relay_tokens_total" {
            assert_eq!(s.value, 0.0, "{s:?}");
        }
    }
    h.stop().await;
}
