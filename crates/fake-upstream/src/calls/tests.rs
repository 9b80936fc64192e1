//! The calls endpoints end to end: a webrtc-rs client peer (`test_peer.rs`) makes real calls on
//! loopback, awc attaches sidebands and posts hangups, and the recorder is checked for what the
//! fake saw. Every await is bounded by [`T`].

use std::time::Duration;

use awc::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use awc::ws::{self, CloseCode};
use serde_json::{json, Value};

use super::test_peer::{form, TestPeer, BOUNDARY};
use crate::test_client::{connect, next_frame, next_json, of, send, until_done, T};
use crate::{CallEnd, CallScript, FakeUpstream, Script, Source};

/// The session the tests' calls ask for.
fn session() -> Value {
    json!({"type": "realtime", "model": "gpt-realtime-2", "instructions": "Be brief."})
}

/// What a POST was answered: status, `Location`, body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// POSTs `body` to `url` with `content_type` and, if given, `Authorization: Bearer <key>`.
async fn post(url: &str, content_type: &str, key: Option<&str>, body: String) -> Answer {
    let mut request = awc::Client::new()
        .post(url)
        .insert_header((CONTENT_TYPE, content_type));
    if let Some(key) = key {
        request = request.insert_header((AUTHORIZATION, format!("Bearer {key}")));
    }
    let mut response = tokio::time::timeout(T, request.send_body(body))
        .await
        .expect("answered in time")
        .expect("answered");
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = tokio::time::timeout(T, response.body().limit(1 << 20))
        .await
        .expect("body in time")
        .expect("body");
    Answer {
        status: response.status().as_u16(),
        location,
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    }
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// Makes a call from a new client peer with [`session`]: its peer, with the data channel
/// open, and the call id.
async fn call(fake: &FakeUpstream) -> (TestPeer, String) {
    let browser = TestPeer::offer().await;
    let body = form(&browser.offer, &session());
    let answer = post(&fake.calls_url(), &form_type(), Some("sk-test"), body).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let location = answer.location.expect("a Location header");
    let call_id = location
        .strip_prefix("/v1/realtime/calls/")
        .expect("Location names the call")
        .to_owned();
    browser.answer(&answer.body).await;
    browser.opened().await;
    (browser, call_id)
}

/// The status an upgrade to `url` is refused with.
async fn refused_upgrade(url: &str) -> u16 {
    let attempt = awc::Client::new().ws(url).connect();
    match tokio::time::timeout(T, attempt)
        .await
        .expect("answered in time")
    {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
        Err(other) => panic!("expected a refusal, got {other:?}"),
        Ok(_) => panic!("expected a refusal, the upgrade was accepted"),
    }
}

/// A call made with a form is answered 201 with a real SDP answer; its data channel gets
/// session.created with the session's model and fields, then a response to response.create with
/// usage and no audio deltas, which a sideband attached by call_id sees identically (and nothing
/// before it); the browser's audio arrives as RTP; the request and the sideband's upgrade are
/// recorded as sent.
#[actix_web::test]
async fn call_runs_a_response_its_sideband_sees() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let (browser, call_id) = call(&fake).await;
    let hex = call_id.strip_prefix("rtc_").expect("rtc_ prefix");
    assert!(hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    let created = browser.next_json().await;
    assert_eq!(created["type"], "session.created");
    assert!(created["event_id"].as_str().unwrap().starts_with("event_"));
    assert_eq!(created["session"]["object"], "realtime.session");
    assert!(created["session"]["id"]
        .as_str()
        .unwrap()
        .starts_with("sess_"));
    assert_eq!(created["session"]["model"], "gpt-realtime-2");
    assert_eq!(created["session"]["instructions"], "Be brief.");
    fake.recorder()
        .wait_for_data_channel(&call_id, T)
        .await
        .unwrap();
    let request = fake
        .recorder()
        .wait_for_calls(1, T)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(request.call_id, call_id);
    assert_eq!(request.authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(request.content_type, form_type());
    assert_eq!(request.session, session());
    assert_eq!(request.offer, browser.offer);

    let (_, mut sideband) = connect(&format!("{}?call_id={call_id}", fake.url())).await;
    browser.send(r#"{"type":"response.create"}"#).await;
    let on_channel = browser.until_done().await;
    let on_sideband = until_done(&mut sideband).await;
    assert_eq!(on_channel[0]["type"], "response.created");
    assert_eq!(on_channel, on_sideband);
    let usage = &on_channel.last().unwrap()["response"]["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert!(on_channel.last().unwrap()["response"]["id"].is_string());
    assert!(of(&on_channel, "response.output_audio_transcript.delta").len() >= 2);
    assert!(of(&on_channel, "response.output_audio.delta").is_empty());
    browser.speak(5).await;
    let heard = fake.recorder().wait_for_audio_packets(&call_id, 5, T).await;
    assert!(heard.unwrap() >= 5);

    let shakes = fake.recorder().handshakes();
    assert_eq!(
        shakes[0].path_and_query,
        format!("/v1/realtime?call_id={call_id}")
    );
    assert_eq!(shakes[0].header("authorization"), Some("Bearer sk-test"));
    let events = fake.recorder().call_events(&call_id);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].source, Source::DataChannel);
    assert_eq!(events[0].json().unwrap()["type"], "response.create");
    fake.stop().await;
}

/// A sideband's session.update is answered on the data channel and the sideband alike and is
/// recorded as from that sideband; call_event and call_respond reach both, in order.
#[actix_web::test]
async fn sideband_and_pushed_events_reach_both_sides() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let (browser, call_id) = call(&fake).await;
    assert_eq!(browser.next_json().await["type"], "session.created");
    let (_, mut sideband) = connect(&format!("{}?call_id={call_id}", fake.url())).await;
    let update = r#"{"type":"session.update","session":{"instructions":"Pinned."}}"#;
    send(&mut sideband, ws::Message::Text(update.into())).await;
    for updated in [browser.next_json().await, next_json(&mut sideband).await] {
        assert_eq!(updated["type"], "session.updated");
        assert_eq!(updated["session"]["instructions"], "Pinned.");
        assert_eq!(updated["session"]["model"], "gpt-realtime-2");
    }

    let changed = json!({"type": "session.updated", "session": {"instructions": "changed"}});
    tokio::time::timeout(T, fake.call_event(&call_id, changed))
        .await
        .unwrap()
        .unwrap();
    for pushed in [browser.next_json().await, next_json(&mut sideband).await] {
        assert_eq!(pushed["session"]["instructions"], "changed");
        assert!(pushed["event_id"].is_string());
    }
    tokio::time::timeout(T, fake.call_respond(&call_id))
        .await
        .unwrap()
        .unwrap();
    let on_channel = browser.until_done().await;
    assert_eq!(on_channel, until_done(&mut sideband).await);
    assert_eq!(
        on_channel.last().unwrap()["response"]["usage"]["total_tokens"],
        32
    );

    let events = fake.recorder().call_events(&call_id);
    assert_eq!(events.len(), 1, "call_respond is not a client event");
    assert_eq!(events[0].source, Source::Sideband);
    assert_eq!(events[0].connection, Some(1));
    assert_eq!(events[0].text, update);
    let messages = fake.recorder().messages();
    assert_eq!(messages[0].connection, 1);
    assert_eq!(fake.open_calls(), vec![call_id]);
    fake.stop().await;
}

/// A hangup with a key answers 200 `{}`, closes the call's sideband with 1000 and is recorded;
/// the call is gone after it: a second hangup, a new sideband and call_event find no call.
#[actix_web::test]
async fn hangup_ends_the_call_and_closes_its_sidebands() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let (_browser, call_id) = call(&fake).await;
    let (_, mut sideband) = connect(&format!("{}?call_id={call_id}", fake.url())).await;
    let hangup_url = format!("{}/{call_id}/hangup", fake.calls_url());
    let answer = post(
        &hangup_url,
        "application/json",
        Some("sk-hang"),
        String::new(),
    )
    .await;
    assert_eq!((answer.status, answer.json()), (200, json!({})));
    match next_frame(&mut sideband).await {
        Some(Ok(ws::Frame::Close(Some(reason)))) => assert_eq!(reason.code, CloseCode::Normal),
        other => panic!("expected a Close with 1000, got {other:?}"),
    }
    let hangup = fake.recorder().wait_for_hangup(&call_id, T).await.unwrap();
    assert_eq!(hangup.status, 200);
    assert_eq!(hangup.authorization.as_deref(), Some("Bearer sk-hang"));
    assert_eq!(fake.recorder().call_end(&call_id), Some(CallEnd::HungUp));
    let closes = fake.recorder().wait_closes(1, T).await.unwrap();
    assert!(!closes[0].abrupt, "{:?}", closes[0]);

    let again = post(
        &hangup_url,
        "application/json",
        Some("sk-hang"),
        String::new(),
    )
    .await;
    assert_eq!(again.status, 404);
    let late = format!("{}?call_id={call_id}", fake.url());
    assert_eq!(refused_upgrade(&late).await, 404);
    let pushed = fake.call_event(&call_id, json!({"type": "x"})).await;
    assert!(pushed.is_err());
    assert!(fake.open_calls().is_empty());
    fake.stop().await;
}

/// A browser that closes its peer connection ends the call: its sideband is closed with 1000
/// and the call is recorded as ended by the peer. The offer came as application/sdp, so the
/// model is the query's.
#[actix_web::test]
async fn browser_leaving_ends_the_call() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let browser = TestPeer::offer().await;
    let url = format!("{}?model=gpt-realtime-mini", fake.calls_url());
    let answer = post(
        &url,
        "application/sdp",
        Some("sk-test"),
        browser.offer.clone(),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let call_id = fake.open_calls().remove(0);
    browser.answer(&answer.body).await;
    browser.opened().await;
    assert_eq!(
        browser.next_json().await["session"]["model"],
        "gpt-realtime-mini"
    );
    let request = &fake.recorder().calls()[0];
    assert_eq!(request.content_type, "application/sdp");
    assert_eq!(request.session["model"], "gpt-realtime-mini");

    let (_, mut sideband) = connect(&format!("{}?call_id={call_id}", fake.url())).await;
    browser.close().await;
    let end = fake.recorder().wait_for_call_end(&call_id, T).await;
    assert_eq!(end.unwrap(), CallEnd::PeerGone);
    match next_frame(&mut sideband).await {
        Some(Ok(ws::Frame::Close(Some(reason)))) => assert_eq!(reason.code, CloseCode::Normal),
        other => panic!("expected a Close with 1000, got {other:?}"),
    }
    assert!(fake.recorder().hangups().is_empty());
    fake.stop().await;
}

/// A sideband or hangup naming no call is refused with 404 (no upgrade); a call or hangup
/// without a bearer key with 401, the call request still recorded without one.
#[actix_web::test]
async fn unknown_calls_and_missing_keys_are_refused() {
    let fake = FakeUpstream::start(Script::demo()).await.unwrap();
    let unknown = format!("{}?call_id=rtc_{}", fake.url(), "0".repeat(32));
    assert_eq!(refused_upgrade(&unknown).await, 404);
    assert_eq!(fake.recorder().open_connections(), 0);
    let hangup_url = format!("{}/rtc_nope/hangup", fake.calls_url());
    let answer = post(
        &hangup_url,
        "application/json",
        Some("sk-test"),
        String::new(),
    )
    .await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    let answer = post(&hangup_url, "application/json", None, String::new()).await;
    assert_eq!(answer.status, 401);

    let body = form("v=0\r\n", &session());
    let answer = post(&fake.calls_url(), &form_type(), None, body).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    let request = fake
        .recorder()
        .wait_for_calls(1, T)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(request.authorization, None);
    assert_eq!(request.offer, "v=0\r\n");
    let statuses: Vec<u16> = fake.recorder().hangups().iter().map(|h| h.status).collect();
    assert_eq!(statuses, [404, 401]);
    fake.stop().await;
}

/// The script refuses calls with its status and an OpenAI-shaped body after its delay; bodies
/// that hold no usable offer are refused with 400, 413 or 415, and every request is recorded.
#[actix_web::test]
async fn scripted_and_malformed_calls_are_refused() {
    let fake = FakeUpstream::start(Script {
        calls: CallScript {
            delay: Duration::from_millis(20),
            reject_status: Some(503),
        },
        ..Script::demo()
    })
    .await
    .unwrap();
    let body = form("v=0\r\n", &session());
    let answer = post(&fake.calls_url(), &form_type(), Some("sk-test"), body).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["error"]["type"], "server_error");
    fake.set_script(Script::demo());

    let no_sdp = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"session\"\r\n\r\n{{}}\r\n\
         --{BOUNDARY}--"
    );
    let cases = [
        (form_type(), no_sdp, 400, "missing_sdp"),
        (form_type(), form("v=0", &json!("x")), 400, "invalid_type"),
        (form_type(), form("", &session()), 400, "invalid_sdp"),
        (
            form_type(),
            form("v=0", &json!({"type": "transcription"})),
            400,
            "invalid_value",
        ),
        (
            "multipart/form-data".into(),
            form("v=0", &session()),
            400,
            "invalid_body",
        ),
        (
            "text/plain".into(),
            "v=0".into(),
            415,
            "unsupported_content_type",
        ),
        (
            form_type(),
            "x".repeat(300 * 1024),
            413,
            "request_too_large",
        ),
        (
            form_type(),
            form("v=0\r\ngarbage", &session()),
            400,
            "invalid_offer",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let answer = post(&fake.calls_url(), &content_type, Some("sk-test"), body).await;
        assert_eq!(answer.status, status, "{code}: {}", answer.body);
        assert_eq!(answer.json()["error"]["code"], code, "{}", answer.body);
    }
    assert_eq!(fake.recorder().calls().len(), 9);
    assert!(fake.open_calls().is_empty());
    fake.stop().await;
}
