//! The upstream URL: `model` and `intent` forwarded, every other parameter dropped, the default
//! model, a model that would smuggle query syntax refused, and the three client paths.

use std::{collections::BTreeSet, time::Duration};

use fake_upstream::{Handshake, Script};

use crate::common::*;

/// Splits a recorded `path?query` into the path and its set of query pairs.
fn path_and_pairs(handshake: &Handshake) -> (String, BTreeSet<(String, String)>) {
    let (path, query) = handshake
        .path_and_query
        .split_once('?')
        .unwrap_or((handshake.path_and_query.as_str(), ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (path.to_owned(), pairs)
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Opens a session with `query` (after `/v1/realtime`) and returns the upstream handshake.
async fn handshake_for(h: &Harness, query: &str) -> Handshake {
    let ws = connect(h, &format!("/v1/realtime{query}")).await;
    let shakes = h
        .fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("the relay dials the upstream");
    drop(ws);
    shakes[0].clone()
}

/// Starts a relay with `extra`, opens one session with `query` and returns the upstream's path
/// and query pairs.
async fn forwarded(extra: &[(&str, &str)], query: &str) -> (String, BTreeSet<(String, String)>) {
    let h = start(Script::echo(), extra).await;
    let hs = handshake_for(&h, query).await;
    h.stop().await;
    path_and_pairs(&hs)
}

/// `model` and `intent` are forwarded; every other query parameter is dropped.
#[actix_web::test]
async fn only_model_and_intent_are_forwarded() {
    assert_eq!(
        forwarded(&[], "?model=gpt-realtime&api_key=x&foo=bar").await,
        ("/v1/realtime".into(), pairs(&[("model", "gpt-realtime")]))
    );
    assert_eq!(
        forwarded(
            &[],
            "?foo=bar&model=gpt-realtime-2&intent=transcription&api_key=x"
        )
        .await
        .1,
        pairs(&[("model", "gpt-realtime-2"), ("intent", "transcription")])
    );
}

/// With no model in the query, the upstream is asked for `gpt-realtime-mini`.
#[actix_web::test]
async fn default_model_is_gpt_realtime_mini() {
    assert_eq!(
        forwarded(&[], "").await,
        (
            "/v1/realtime".into(),
            pairs(&[("model", "gpt-realtime-mini")])
        )
    );
}

/// DEFAULT_MODEL replaces the built-in default, and a client's own model still wins over it.
#[actix_web::test]
async fn configured_default_model_is_used() {
    let default = [("DEFAULT_MODEL", "gpt-realtime-2")];
    assert_eq!(
        forwarded(&default, "?foo=bar").await.1,
        pairs(&[("model", "gpt-realtime-2")])
    );
    assert_eq!(
        forwarded(&default, "?model=gpt-realtime").await.1,
        pairs(&[("model", "gpt-realtime")])
    );
}

/// `intent=transcription` alone is forwarded alone: no default model is added.
#[actix_web::test]
async fn transcription_intent_is_forwarded_without_a_model() {
    assert_eq!(
        forwarded(&[], "?intent=transcription").await,
        ("/v1/realtime".into(), pairs(&[("intent", "transcription")]))
    );
}

/// A model that would smuggle query syntax upstream is refused (`invalid_request`, 1008) and
/// nothing is dialed.
#[actix_web::test]
async fn unsafe_model_is_refused_without_dialing() {
    let h = start(Script::echo(), &[]).await;
    let (_, mut ws) = connect_with(
        &format!("{}/v1/realtime?model=a%26b%3Dc", h.base),
        &["realtime"],
        &[],
    )
    .await
    .expect("upgrade succeeds; the refusal comes as an event and a close");
    let event = expect_failure(&mut ws, "invalid_request", 1008).await;
    assert_message_contains(&event, "model");
    // Proving an absence: the refusal above arrived after the relay decided not to dial, and a
    // dial would reach the fake on loopback within milliseconds, so 300 ms of silence from the
    // fake means none was made. This wait is expected to time out.
    let dialed = h
        .fake
        .recorder()
        .wait_handshakes(1, Duration::from_millis(300))
        .await;
    assert!(
        dialed.is_err(),
        "the relay dialed the upstream: {:?}",
        h.fake.recorder().handshakes()
    );
    h.stop().await;
}

/// `/`, `/realtime` and `/v1/realtime` all open a relayed session to the upstream's path.
#[actix_web::test]
async fn all_three_paths_relay() {
    let h = start(Script::echo(), &[]).await;
    for (i, path) in ["/", "/realtime", "/v1/realtime"].into_iter().enumerate() {
        let mut ws = connect(&h, &format!("{path}?model=gpt-realtime")).await;
        let id = format!("path{i}");
        send_text(&mut ws, &format!(r#"{{"type":"x","event_id":"{id}"}}"#)).await;
        assert_eq!(next_json(&mut ws).await["event_id"], id.as_str(), "{path}");
        let shakes = h
            .fake
            .recorder()
            .wait_handshakes(i + 1, T)
            .await
            .expect("dial");
        assert_eq!(
            shakes[i].path_and_query, "/v1/realtime?model=gpt-realtime",
            "{path}"
        );
        drop(ws);
    }
    h.stop().await;
}

/// Opens `query` on a relay that must refuse it with `model_not_allowed` (1008) naming `name`.
async fn refused_as(h: &Harness, query: &str, name: &str) {
    let (_, mut ws) = connect_with(
        &format!("{}/v1/realtime{query}", h.base),
        &["realtime"],
        &[],
    )
    .await
    .expect("upgrade succeeds; the refusal comes as an event and a close");
    let event = expect_failure(&mut ws, "model_not_allowed", 1008).await;
    assert_message_contains(&event, &format!("{name:?}"));
}

/// With ALLOWED_MODELS set, `?model=<allowed>&intent=transcription` is held to the list under
/// both names: refused (no dial) until `intent:transcription` is listed too, and a listed intent
/// does not let an unlisted model through; `?intent=transcription` alone needs the intent listed.
#[actix_web::test]
async fn model_and_intent_are_both_held_to_allowed_models() {
    let h = start(Script::echo(), &[("ALLOWED_MODELS", "gpt-realtime-mini")]).await;
    let both = "?model=gpt-realtime-mini&intent=transcription";
    refused_as(&h, both, "intent:transcription").await;
    refused_as(&h, "?intent=transcription", "intent:transcription").await;
    let _ws = connect(&h, "/v1/realtime?model=gpt-realtime-mini").await;
    let shakes = h.fake.recorder().wait_handshakes(1, T).await.expect("dial");
    assert_eq!(
        shakes.len(),
        1,
        "only the plain model was dialed: {shakes:?}"
    );
    let s = stats::get(&h.http()).await;
    assert_eq!(s["rejected_by_reason"]["model_not_allowed"], 2, "{s}");
    h.stop().await;

    let h = start(
        Script::echo(),
        &[("ALLOWED_MODELS", "gpt-realtime-mini,intent:transcription")],
    )
    .await;
    refused_as(
        &h,
        "?model=gpt-realtime&intent=transcription",
        "gpt-realtime",
    )
    .await;
    let hs = handshake_for(&h, both).await;
    assert_eq!(
        path_and_pairs(&hs).1,
        pairs(&[("model", "gpt-realtime-mini"), ("intent", "transcription")])
    );
    let hs = handshake_for_next(&h, "?intent=transcription", 2).await;
    assert_eq!(path_and_pairs(&hs).1, pairs(&[("intent", "transcription")]));
    h.stop().await;
}

/// Opens a session with `query` and returns the upstream handshake it made, the `n`th overall.
async fn handshake_for_next(h: &Harness, query: &str, n: usize) -> Handshake {
    let ws = connect(h, &format!("/v1/realtime{query}")).await;
    let shakes = h
        .fake
        .recorder()
        .wait_handshakes(n, T)
        .await
        .expect("the relay dials the upstream");
    drop(ws);
    shakes[n - 1].clone()
}
