//! The console's WebRTC transport (issue 14), end to end: Chromium's real peer connection, with
//! its fake microphone and the `oai-events` data channel, calls through the relay's
//! `/v1/realtime/calls` the fake upstream's real WebRTC peer; the relay meters the call on its
//! sideband, ends it by hanging up, and refuses in JSON what the page then says in words. Each
//! test is one run of `call.mjs`; where the test acts while the call is live, the page holds the
//! call until the test pushes an event down its data channel through the fake.

use fake_upstream::{CallEnd, CallScript, Script, Source};
use serde_json::{json, Value};

use crate::{
    common::{self, poll::poll, stats, timed, T},
    Browser,
};

const TOKENS: (&str, &str) = ("RELAY_TOKENS", "alice:tok-alice-123");
const ALICE: &str = "tok-alice-123";
const CONSOLE: (&str, &str) = ("CONSOLE", "true");

/// The requests the page made to `path`, as call.mjs recorded them.
fn requests<'a>(r: &'a Value, method: &str, path: &str) -> Vec<&'a Value> {
    r["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|q| q["method"] == method && q["path"] == path)
        .collect()
}

/// The event types the page logged, both ways, oldest first.
fn logged(r: &Value) -> Vec<&str> {
    r["eventTypes"]
        .as_array()
        .expect("event types")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The session `/stats?sessions=true` lists for call `call_id`.
async fn listed_call(http: &str, call_id: &str) -> Option<Value> {
    stats::sessions(http)
        .await
        .into_iter()
        .find(|s| s["call_id"] == call_id)
}

/// Usage tokens `/stats` counts today for `identity`.
fn tokens_of(stats: &Value, identity: &str) -> u64 {
    stats["usage"]["by_identity"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["identity"] == identity)
        .and_then(|e| e["usage"]["total_tokens"].as_u64())
        .unwrap_or(0)
}

/// Picking WebRTC in the console with a relay token: the page trades the token for a relay
/// client secret, offers with the secret, gets `session.created` first on its data channel, is
/// answered by push to talk and by text over it (its microphone reaching the fake as media), and
/// hangs up through the relay with the token, which the fake records with the server key.
#[actix_web::test]
async fn a_console_call_made_with_a_client_secret_talks_and_hangs_up() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[CONSOLE, TOKENS]).await;
    let rec = h.fake.recorder();
    let r = browser
        .call("talk", &format!("{}/console", h.http()), &[ALICE])
        .await;
    let calls = rec.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call_id = calls[0].call_id.clone();
    timed("the fake's hangup", rec.wait_for_hangup(&call_id, T))
        .await
        .expect("the call was hung up upstream");
    let end = timed("the call's end", rec.wait_for_call_end(&call_id, T))
        .await
        .expect("the call ended");
    let http = h.http();
    // The call's actor has stopped, so every hangup it sent has been answered.
    let closed = stats::wait_until(&http, "no live session", |s| s["active_sessions"] == 0).await;
    let hangups: Vec<_> = rec
        .hangups()
        .into_iter()
        .filter(|h| h.call_id == call_id)
        .collect();
    let audio = rec.audio_packets(&call_id);
    let events: Vec<(Source, Value)> = rec
        .call_events(&call_id)
        .iter()
        .map(|e| (e.source, e.json().unwrap_or(Value::Null)))
        .collect();
    h.stop().await;

    let s = &r["stats"];
    assert_eq!(s["transport"], "webrtc", "{r:#}");
    assert_eq!(s["credential"], "client_secret", "{r:#}");
    assert_eq!(s["callId"], call_id.as_str(), "{r:#}");
    assert_eq!(s["callEnd"], "hangup", "{r:#}");
    assert_eq!(s["hangupStatus"], 200, "{r:#}");
    assert_eq!(s["dataChannelOpen"], false, "{r:#}");
    assert_eq!(s["state"], "disconnected", "{r:#}");
    assert!(s["lastError"].is_null(), "{r:#}");
    assert_eq!(s["usage"]["responses"], 2, "{r:#}");
    assert!(s["usage"]["total_tokens"].as_u64() > Some(0), "{r:#}");
    assert_eq!(logged(&r).first(), Some(&"session.created"), "{r:#}");

    let minted = requests(&r, "POST", "/v1/realtime/client_secrets");
    assert_eq!(minted.len(), 1, "{r:#}");
    assert_eq!(minted[0]["authorization"], format!("Bearer {ALICE}"));
    assert_eq!(minted[0]["status"], 200, "{r:#}");
    let offered = requests(&r, "POST", "/v1/realtime/calls");
    assert_eq!(offered.len(), 1, "{r:#}");
    let offered_with = offered[0]["authorization"].as_str().unwrap_or_default();
    assert!(offered_with.starts_with("Bearer rcs_"), "{r:#}");
    assert_eq!(offered[0]["status"], 201, "{r:#}");
    let hung = requests(&r, "POST", &format!("/v1/realtime/calls/{call_id}/hangup"));
    assert_eq!(hung.len(), 1, "{r:#}");
    assert_eq!(hung[0]["authorization"], format!("Bearer {ALICE}"));

    let key = format!("Bearer {}", common::TEST_KEY);
    assert_eq!(calls[0].authorization.as_deref(), Some(key.as_str()));
    assert_eq!(calls[0].session["model"], "gpt-realtime-mini", "{calls:?}");
    // The page's hangup is the only one upstream, and the call closed as the client's.
    assert_eq!(
        (hangups.len(), &closed["closed_by_reason"]),
        (1, &json!({"client_closed": 1})),
        "{hangups:?}"
    );
    assert_eq!(hangups[0].authorization.as_deref(), Some(key.as_str()));
    assert_eq!(hangups[0].status, 200, "{hangups:?}");
    assert_eq!(end, CallEnd::HungUp);
    assert!(audio > 0, "the microphone's RTP reached the fake: {audio}");
    let from_page: Vec<&str> = events
        .iter()
        .filter(|(source, _)| *source == Source::DataChannel)
        .filter_map(|(_, e)| e["type"].as_str())
        .collect();
    for sent in [
        "session.update",
        "input_audio_buffer.clear",
        "input_audio_buffer.commit",
        "conversation.item.create",
        "response.create",
    ] {
        assert!(
            from_page.contains(&sent),
            "{sent} not on the data channel: {from_page:?}"
        );
    }
    assert!(
        !from_page.contains(&"input_audio_buffer.append"),
        "over WebRTC the audio is media: {from_page:?}"
    );
    let echoed = r["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .any(|l| {
            l["className"] == "assistant"
                && l["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("hello over webrtc"))
        });
    assert!(echoed, "{r:#}");
}

/// A response the page never asked for (`call_respond` on the fake) is counted by the relay
/// from its sideband under the call's client in `/stats`, which lists the live call with
/// `"transport":"webrtc"`; with `MAX_CONNECTIONS=1` the call fills the relay, so a WebSocket
/// session is refused with `capacity_exceeded`.
#[actix_web::test]
async fn a_calls_usage_comes_from_the_sideband_and_the_call_is_a_session() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[CONSOLE, TOKENS, ("MAX_CONNECTIONS", "1")]).await;
    let rec = h.fake.recorder();
    let http = h.http();
    let url = format!("{http}/console");
    let page = browser.call("held", &url, &[ALICE]);
    let test = async {
        let calls = timed("the call's request", rec.wait_for_calls(1, T))
            .await
            .expect("the page made a call");
        let call_id = calls[0].call_id.clone();
        timed("the data channel", rec.wait_for_data_channel(&call_id, T))
            .await
            .expect("the data channel opened");
        // The relay's sideband is the fake's only WebSocket: once open, it gets every event.
        poll("the relay's sideband attached")
            .until(|| async {
                let open = rec.open_connections();
                (open == 1).then_some(()).ok_or(format!("{open} open"))
            })
            .await;
        let before = tokens_of(&stats::get(&http).await, "token:alice");
        timed("the fake's response", h.fake.call_respond(&call_id))
            .await
            .expect("the call is open");
        let counted = stats::wait_until(&http, "alice's tokens", |s| {
            tokens_of(s, "token:alice") > before
        })
        .await;
        let listed = listed_call(&http, &call_id).await;
        let (_, mut ws) = common::connect_with(
            &format!("{}/realtime?model=gpt-realtime-mini", h.base),
            &["realtime", &format!("openai-insecure-api-key.{ALICE}")],
            &[],
        )
        .await
        .expect("the upgrade is answered");
        let refused = common::expect_failure(&mut ws, "capacity_exceeded", 1013).await;
        timed(
            "the finish event",
            h.fake
                .call_event(&call_id, json!({"type": "relay_test.finish"})),
        )
        .await
        .expect("the call is open");
        (call_id, before, counted, listed, refused)
    };
    let (r, (call_id, before, counted, listed, refused)) = tokio::join!(page, test);
    h.stop().await;

    assert_eq!(before, 0, "{counted:#}");
    assert_eq!(tokens_of(&counted, "token:alice"), 32, "{counted:#}");
    assert_eq!(
        counted["usage"]["by_model"]["gpt-realtime-mini"]["total_tokens"], 32,
        "{counted:#}"
    );
    let listed = listed.unwrap_or_else(|| panic!("call {call_id} not in /stats?sessions=true"));
    assert_eq!(listed["transport"], "webrtc", "{listed:#}");
    assert_eq!(listed["identity"], "token:alice", "{listed:#}");
    assert_eq!(listed["model"], "gpt-realtime-mini", "{listed:#}");
    assert_eq!(refused["error"]["code"], "capacity_exceeded", "{refused:#}");
    // The page saw the same response.done on its data channel.
    assert_eq!(r["heldStats"]["usage"]["responses"], 1, "{r:#}");
    assert_eq!(r["heldStats"]["usage"]["total_tokens"], 32, "{r:#}");
    assert_eq!(r["stats"]["callEnd"], "hangup", "{r:#}");
}

/// With `MAX_SESSION_DURATION=2000` the relay ends the call by hanging it up upstream (the fake
/// records it, with the server key), and the page sees its data channel close and says so.
#[actix_web::test]
async fn max_session_duration_ends_the_call_with_a_hangup() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(
        Script::demo(),
        &[CONSOLE, TOKENS, ("MAX_SESSION_DURATION", "2000")],
    )
    .await;
    let rec = h.fake.recorder();
    let r = browser
        .call("expire", &format!("{}/console", h.http()), &[ALICE])
        .await;
    let calls = rec.calls();
    let call_id = calls.first().expect("a call was made").call_id.clone();
    let hangup = timed("the fake's hangup", rec.wait_for_hangup(&call_id, T))
        .await
        .expect("the relay hung up");
    let end = rec.call_end(&call_id);
    let http = h.http();
    let s = stats::wait_until(&http, "the call closed", |s| s["active_sessions"] == 0).await;
    let hangups = rec.hangups();
    h.stop().await;

    let key = format!("Bearer {}", common::TEST_KEY);
    assert_eq!(hangup.authorization.as_deref(), Some(key.as_str()));
    assert_eq!(hangup.status, 200, "{hangup:?}");
    assert_eq!(hangups.len(), 1, "one hangup upstream: {hangups:?}");
    assert_eq!(end, Some(CallEnd::HungUp));
    assert_eq!(
        s["closed_by_reason"],
        json!({"session_max_duration": 1}),
        "{s:#}"
    );
    let stats = &r["stats"];
    assert_eq!(stats["callEnd"], "remote", "{r:#}");
    assert_eq!(stats["dataChannelOpen"], false, "{r:#}");
    assert!(
        stats["hangupStatus"].is_null(),
        "the page did not hang up: {r:#}"
    );
    let ended = r["endedAfterMs"].as_u64().expect("endedAfterMs");
    assert!(
        ended < 8000,
        "ended {ended} ms after session.created: {r:#}"
    );
    let explain = r["explain"].as_str().unwrap_or_default();
    assert!(explain.starts_with("the call ended"), "{r:#}");
}

/// What `call.mjs refused` saw, checked: the page's own offer refused with `status` and the
/// JSON error `code`, the console's attempt refused with the same code, explained with `words`.
fn assert_refused(r: &Value, status: u16, code: &str, words: &str) {
    let offer = &r["offer"];
    assert_eq!(offer["status"], status, "{r:#}");
    assert_eq!(offer["body"]["error"]["type"], "relay_error", "{r:#}");
    assert_eq!(offer["body"]["error"]["code"], code, "{r:#}");
    assert!(offer["body"]["error"]["message"].is_string(), "{r:#}");
    assert!(offer["location"].is_null(), "{r:#}");
    let stats = &r["stats"];
    assert_eq!(stats["callEnd"], "refused", "{r:#}");
    assert_eq!(stats["lastError"]["status"], status, "{r:#}");
    assert_eq!(stats["lastError"]["code"], code, "{r:#}");
    let explain = r["explain"].as_str().unwrap_or_default();
    assert!(explain.starts_with(words), "{r:#}");
    // Both refusals, and nothing else, in Chromium's console.
    assert_eq!(r["failedLoads"], json!([status, status]), "{r:#}");
}

/// A wrong relay token on the offer is `401 unauthorized` in JSON, and a client secret the
/// relay never minted, typed in the console, is explained as a missing or wrong token.
#[actix_web::test]
async fn a_wrong_credential_is_refused_with_401() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[CONSOLE, TOKENS]).await;
    let r = browser
        .call(
            "refused",
            &format!("{}/console", h.http()),
            &["tok-wrong-999", "gpt-realtime-mini", "rcs_not-one-of-ours"],
        )
        .await;
    let calls = h.fake.recorder().calls();
    h.stop().await;

    assert_refused(&r, 401, "unauthorized", "token missing or wrong");
    assert_eq!(r["stats"]["credential"], "client_secret", "{r:#}");
    assert!(requests(&r, "POST", "/v1/realtime/client_secrets").is_empty());
    assert!(calls.is_empty(), "nothing reached the upstream: {calls:?}");
}

/// A model outside `ALLOWED_MODELS` is `403 model_not_allowed`, in JSON and in words.
#[actix_web::test]
async fn a_model_not_allowed_is_refused_with_403() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(
        Script::demo(),
        &[CONSOLE, ("ALLOWED_MODELS", "gpt-realtime-mini")],
    )
    .await;
    let r = browser
        .call(
            "refused",
            &format!("{}/console", h.http()),
            &["-", "gpt-realtime"],
        )
        .await;
    let calls = h.fake.recorder().calls();
    h.stop().await;

    assert_refused(&r, 403, "model_not_allowed", "this model is not allowed");
    assert_eq!(r["stats"]["credential"], "none", "{r:#}");
    assert!(calls.is_empty(), "nothing reached the upstream: {calls:?}");
}

/// With `MAX_CONNECTIONS=1` and a WebSocket session open, a call is `503 capacity_exceeded`,
/// and the console says the relay is full.
#[actix_web::test]
async fn a_full_relay_refuses_a_call_with_503() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[CONSOLE, ("MAX_CONNECTIONS", "1")]).await;
    let mut first = common::connect(&h, "/realtime?model=gpt-realtime-mini").await;
    let r = browser
        .call(
            "refused",
            &format!("{}/console", h.http()),
            &["-", "gpt-realtime-mini"],
        )
        .await;
    common::close(&mut first).await;
    let calls = h.fake.recorder().calls();
    h.stop().await;

    assert_refused(&r, 503, "capacity_exceeded", "the relay is full");
    assert!(calls.is_empty(), "nothing reached the upstream: {calls:?}");
}

/// An upstream without WebRTC, as the relay's built-in demo upstream is (it answers a call with
/// 501), is `502 upstream_rejected`, and the console says to use WebSocket.
#[actix_web::test]
async fn the_demo_upstream_without_webrtc_is_explained() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let demo = Script {
        calls: CallScript {
            reject_status: Some(501),
            ..CallScript::default()
        },
        ..Script::demo()
    };
    let h = common::start(demo, &[CONSOLE]).await;
    let r = browser
        .call(
            "refused",
            &format!("{}/console", h.http()),
            &["-", "gpt-realtime-mini"],
        )
        .await;
    let calls = h.fake.recorder().calls();
    h.stop().await;

    assert_refused(
        &r,
        502,
        "upstream_rejected",
        "this relay's demo upstream does not do WebRTC; use WebSocket",
    );
    assert_eq!(
        calls.len(),
        2,
        "both offers reached the upstream: {calls:?}"
    );
}
