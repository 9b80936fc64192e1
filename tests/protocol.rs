//! Protocol behaviour of the relay, end to end: subprotocol selection, what the upstream handshake
//! carries, the query it forwards, paths, message flow (order, size, fragments, early messages),
//! size limits, close propagation both ways, abrupt client drops and ping answering. Every test
//! runs the real relay on 127.0.0.1:0 in front of the scriptable fake upstream.

mod common;

use std::{collections::BTreeSet, time::Duration};

use actix_web::web::Bytes;
use awc::{
    http::header,
    ws::{CloseCode, CloseReason, Frame, Message},
};
use common::*;
use fake_upstream::{Frame as Got, Handshake, Mode, Script};
use futures_util::{SinkExt, StreamExt};

/// How long the relay gets to react to a client leaving, for checks that must be prompt.
const PROMPT: Duration = Duration::from_secs(3);

async fn send(ws: &mut Ws, msg: Message) {
    tokio::time::timeout(T, ws.send(msg))
        .await
        .expect("send timed out")
        .expect("send succeeds");
}

/// The `Sec-WebSocket-Protocol` the relay selected in its 101, if any.
fn selected_protocol(res: &awc::ClientResponse) -> Option<String> {
    res.headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

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

/// Text of `len` bytes that is not one repeated character, so a shifted or dropped chunk shows.
fn varied_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    (0..len)
        .map(|i| ALPHABET[(i * 7 + i / 61) % ALPHABET.len()] as char)
        .collect()
}

fn varied_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Subprotocols

/// A browser offering `realtime` gets `realtime` selected in the 101.
#[actix_web::test]
async fn realtime_subprotocol_is_selected() {
    let h = start(Script::echo(), &[]).await;
    let (res, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    assert_eq!(res.status().as_u16(), 101);
    assert_eq!(selected_protocol(&res).as_deref(), Some("realtime"));
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    h.stop().await;
}

/// Of `realtime` plus credential tokens, only `realtime` is echoed; the tokens never come back.
#[actix_web::test]
async fn credential_subprotocols_are_never_echoed() {
    let h = start(Script::echo(), &[]).await;
    let (res, mut ws) = connect_with(
        &format!("{}/v1/realtime", h.base),
        &[
            "realtime",
            "openai-insecure-api-key.sk-client-secret",
            "openai-beta.realtime-v1",
        ],
        &[],
    )
    .await
    .expect("upgrade succeeds");
    let selected = res
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
        .collect::<Vec<_>>();
    assert_eq!(selected, vec!["realtime".to_owned()]);
    for (name, value) in res.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains("sk-client-secret") && !value.contains("openai-beta"),
            "response header {name} echoes a client token: {value}"
        );
    }
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    h.stop().await;
}

/// An SDK-style client offering no subprotocol gets none selected and still talks upstream.
#[actix_web::test]
async fn no_subprotocol_offered_none_selected() {
    let h = start(Script::echo(), &[]).await;
    let (res, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &[], &[])
        .await
        .expect("upgrade succeeds");
    assert_eq!(res.status().as_u16(), 101);
    assert_eq!(selected_protocol(&res), None);
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    send_text(&mut ws, r#"{"type":"ping.test","event_id":"sdk1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "sdk1");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Upstream handshake

/// The upstream gets the server key and none of the client's credentials, beta markers or
/// subprotocols; without org/project configured, no such headers either.
#[actix_web::test]
async fn upstream_handshake_carries_only_the_server_credentials() {
    let h = start(Script::echo(), &[]).await;
    let (_, mut ws) = connect_with(
        &format!("{}/v1/realtime?model=gpt-realtime", h.base),
        &[
            "realtime",
            "openai-insecure-api-key.sk-client-secret",
            "openai-beta.realtime-v1",
        ],
        &[
            ("Authorization", "Bearer sk-client-own"),
            ("api-key", "sk-client-azure"),
            ("OpenAI-Beta", "realtime=v1"),
            ("OpenAI-Organization", "org-client"),
            ("OpenAI-Project", "proj_client"),
        ],
    )
    .await
    .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    let shakes = h.fake.recorder().wait_handshakes(1, T).await.expect("dial");
    let hs = &shakes[0];

    let auth: Vec<_> = hs
        .headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auth, vec![format!("Bearer {TEST_KEY}").as_str()]);
    for absent in [
        "openai-beta",
        "api-key",
        "openai-organization",
        "openai-project",
    ] {
        assert_eq!(hs.header(absent), None, "{absent} reached the upstream");
    }
    for (name, value) in &hs.headers {
        assert!(
            !value.contains("sk-client") && !value.contains("realtime=v1"),
            "client credential forwarded in {name}: {value}"
        );
    }
    assert!(
        hs.protocols_offered
            .iter()
            .all(|p| !p.starts_with("openai-insecure-api-key.") && !p.starts_with("openai-beta.")),
        "client subprotocols forwarded: {:?}",
        hs.protocols_offered
    );
    h.stop().await;
}

/// With OPENAI_ORGANIZATION and OPENAI_PROJECT set, the upstream gets exactly those values.
#[actix_web::test]
async fn upstream_handshake_carries_configured_org_and_project() {
    let h = start(
        Script::echo(),
        &[
            ("OPENAI_ORGANIZATION", "org-server"),
            ("OPENAI_PROJECT", "proj_server"),
        ],
    )
    .await;
    let (_, mut ws) = connect_with(
        &format!("{}/v1/realtime", h.base),
        &["realtime"],
        &[
            ("OpenAI-Organization", "org-client"),
            ("OpenAI-Project", "proj_client"),
        ],
    )
    .await
    .expect("upgrade succeeds");
    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    let shakes = h.fake.recorder().wait_handshakes(1, T).await.expect("dial");
    let values = |name: &str| -> Vec<String> {
        shakes[0]
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(values("openai-organization"), vec!["org-server"]);
    assert_eq!(values("openai-project"), vec!["proj_server"]);
    assert_eq!(
        shakes[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );
    assert_eq!(shakes[0].header("openai-beta"), None);
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Query

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

// ---------------------------------------------------------------------------------------------
// Paths

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

// ---------------------------------------------------------------------------------------------
// Message flow

/// 100 numbered messages, alternating text and binary, reach the upstream and come back in
/// order, each unchanged and of its own type.
#[actix_web::test]
async fn text_and_binary_flow_both_ways_in_order() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let expected: Vec<Got> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                Got::Text(format!(r#"{{"type":"t","n":{i},"s":"héllo €{i}"}}"#))
            } else {
                let mut b = format!("bin-{i}-").into_bytes();
                b.extend([0u8, 0xff, 0x80, i as u8]);
                Got::Binary(b)
            }
        })
        .collect();
    for msg in &expected {
        let out = match msg {
            Got::Text(t) => Message::Text(t.clone().into()),
            Got::Binary(b) => Message::Binary(Bytes::from(b.clone())),
        };
        send(&mut ws, out).await;
    }
    for (i, want) in expected.iter().enumerate() {
        let got = match next_frame(&mut ws).await {
            Frame::Text(b) => Got::Text(String::from_utf8(b.to_vec()).expect("UTF-8")),
            Frame::Binary(b) => Got::Binary(b.to_vec()),
            other => panic!("message {i}: expected data, got {other:?}"),
        };
        assert_eq!(&got, want, "message {i} came back changed or out of order");
    }
    let received = h
        .fake
        .recorder()
        .wait_messages(100, T)
        .await
        .expect("upstream got all");
    let frames: Vec<Got> = received.into_iter().map(|r| r.frame).collect();
    assert_eq!(
        frames, expected,
        "upstream saw them changed or out of order"
    );
    h.stop().await;
}

/// A 5 MiB text message and a 5 MiB binary message round trip byte-identical.
#[actix_web::test]
async fn five_mib_messages_both_ways() {
    const SIZE: usize = 5 * 1024 * 1024;
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;

    let text = varied_text(SIZE);
    send(&mut ws, Message::Text(text.clone().into())).await;
    match next_frame(&mut ws).await {
        Frame::Text(b) => {
            assert_eq!(b.len(), SIZE);
            assert!(b == text.as_bytes(), "5 MiB text came back changed");
        }
        other => panic!("expected the text back, got {:?}", frame_kind(&other)),
    }

    let binary = varied_bytes(SIZE);
    send(&mut ws, Message::Binary(Bytes::from(binary.clone()))).await;
    match next_frame(&mut ws).await {
        Frame::Binary(b) => {
            assert_eq!(b.len(), SIZE);
            assert!(b == binary, "5 MiB binary came back changed");
        }
        other => panic!("expected the binary back, got {:?}", frame_kind(&other)),
    }

    let received = h.fake.recorder().wait_messages(2, T).await.expect("both");
    assert!(
        received[0].frame == Got::Text(text),
        "upstream got other text"
    );
    assert!(
        received[1].frame == Got::Binary(binary),
        "upstream got other bytes"
    );
    h.stop().await;
}

/// Debug output for a frame without dumping megabytes.
fn frame_kind(frame: &Frame) -> String {
    match frame {
        Frame::Text(b) => format!("Text({} bytes)", b.len()),
        Frame::Binary(b) => format!("Binary({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

/// Sends `items` as continuation frames, one after another.
async fn send_fragments(ws: &mut Ws, items: [actix_ws::Item; 3]) {
    for item in items {
        send(ws, Message::Continuation(item)).await;
    }
}

/// A text message sent as FirstText/Continue/Last fragments reaches the upstream as one message.
#[actix_web::test]
async fn fragmented_text_is_reassembled() {
    use actix_ws::Item;
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let parts = [
        r#"{"type":"conversation.item.create","#,
        r#""note":"é€"#,
        r#"","n":7}"#,
    ];
    send_fragments(
        &mut ws,
        [
            Item::FirstText(Bytes::from_static(parts[0].as_bytes())),
            Item::Continue(Bytes::from_static(parts[1].as_bytes())),
            Item::Last(Bytes::from_static(parts[2].as_bytes())),
        ],
    )
    .await;
    let whole = parts.concat();
    let received = h.fake.recorder().wait_messages(1, T).await.expect("one");
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].frame, Got::Text(whole.clone()));
    let echoed = next_json(&mut ws).await;
    assert_eq!(
        echoed,
        serde_json::from_str::<serde_json::Value>(&whole).unwrap()
    );
    h.stop().await;
}

/// A binary message sent as FirstBinary/Continue/Last fragments reaches the upstream as one.
#[actix_web::test]
async fn fragmented_binary_is_reassembled() {
    use actix_ws::Item;
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let chunks: [&'static [u8]; 3] = [&[0, 1, 2, 0xff], &[3, 4], &[0x80, 5]];
    send_fragments(
        &mut ws,
        [
            Item::FirstBinary(Bytes::from_static(chunks[0])),
            Item::Continue(Bytes::from_static(chunks[1])),
            Item::Last(Bytes::from_static(chunks[2])),
        ],
    )
    .await;
    let whole = chunks.concat();
    let received = h.fake.recorder().wait_messages(1, T).await.expect("one");
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].frame, Got::Binary(whole.clone()));
    match next_frame(&mut ws).await {
        Frame::Binary(b) => assert_eq!(&b[..], &whole[..]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    h.stop().await;
}

/// Messages sent right after the 101, while the upstream handshake is still pending, are
/// delivered to the upstream in order once it opens, after `session.created` reaches the client.
#[actix_web::test]
async fn early_messages_are_queued_and_delivered_in_order() {
    let h = start(
        Script {
            handshake_delay: Duration::from_millis(800),
            ..Script::echo()
        },
        &[],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    let early = ["early-1", "early-2", "early-3"]
        .map(|id| format!(r#"{{"type":"session.update","event_id":"{id}"}}"#));
    for text in &early {
        send_text(&mut ws, text).await;
    }
    // The dial has reached the fake, which holds it for 800 ms: the three messages above were
    // all sent before the upstream was open.
    h.fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("dial started");
    assert_eq!(
        h.fake.recorder().open_connections(),
        0,
        "upstream already open"
    );

    assert_eq!(next_json(&mut ws).await["type"], "session.created");
    for id in ["early-1", "early-2", "early-3"] {
        assert_eq!(next_json(&mut ws).await["event_id"], id);
    }
    let received = h.fake.recorder().wait_messages(3, T).await.expect("three");
    let frames: Vec<Got> = received.into_iter().map(|r| r.frame).collect();
    assert_eq!(frames, early.map(Got::Text).to_vec());
    h.stop().await;
}

/// More than MAX_MESSAGE_SIZE bytes sent before the upstream opens ends the session with
/// `client_queue_overflow` and close 1008, not a silent drop.
#[actix_web::test]
async fn pre_open_queue_overflow_is_reported() {
    let h = start(
        Script {
            handshake_delay: Duration::from_secs(2),
            ..Script::echo()
        },
        &[("MAX_MESSAGE_SIZE", "65536")],
    )
    .await;
    let (_, mut ws) = connect_with(&format!("{}/v1/realtime", h.base), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    let chunk = format!(
        r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
        "A".repeat(30_000)
    );
    for _ in 0..3 {
        send_text(&mut ws, &chunk).await;
    }
    let event = expect_failure(&mut ws, "client_queue_overflow", 1008).await;
    assert_message_contains(&event, "65536");
    assert!(h.fake.recorder().messages().is_empty());
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Size limits

/// A client message over MAX_MESSAGE_SIZE gets `message_too_large` and close 1009, and is not
/// forwarded.
#[actix_web::test]
async fn oversized_client_message_is_refused() {
    let h = start(Script::echo(), &[("MAX_MESSAGE_SIZE", "65536")]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    send_text(&mut ws, &"A".repeat(100_000)).await;
    let event = expect_failure(&mut ws, "message_too_large", 1009).await;
    assert_message_contains(&event, "65536");
    // The relay closes the upstream when the session ends; by then nothing was forwarded.
    h.fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    assert!(h.fake.recorder().messages().is_empty());
    h.stop().await;
}

/// An upstream message over MAX_MESSAGE_SIZE gets `upstream_message_too_large` and close 1009.
#[actix_web::test]
async fn oversized_upstream_message_is_refused() {
    let h = start(
        Script::with_mode(Mode::Stream {
            message_bytes: 100_000,
            interval: None,
            count: Some(1),
        }),
        &[("MAX_MESSAGE_SIZE", "65536")],
    )
    .await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let event = expect_failure(&mut ws, "upstream_message_too_large", 1009).await;
    assert_message_contains(&event, "65536");
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Closes

/// A client close (4001, "bye") reaches the upstream with its code and reason, and the client
/// gets its close answered.
#[actix_web::test]
async fn client_close_code_reaches_upstream() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    send(
        &mut ws,
        Message::Close(Some(CloseReason {
            code: CloseCode::from(4001),
            description: Some("bye".into()),
        })),
    )
    .await;
    let closes = h
        .fake
        .recorder()
        .wait_closes(1, T)
        .await
        .expect("upstream closed");
    assert_eq!(closes[0].code, Some(4001), "{:?}", closes[0]);
    assert_eq!(closes[0].reason, "bye");
    assert!(!closes[0].abrupt);
    let (error, close) = expect_close(&mut ws).await;
    assert_eq!(error, None, "a client close is not a failure");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4001));
    h.stop().await;
}

/// Starts an upstream that closes with 4000 and `reason` right after opening, and returns the
/// reason the client's close carried, after asserting it came with code 4000 and no `error`.
async fn upstream_close_reason(reason: &str) -> Option<String> {
    let h = start(
        Script {
            close_after_open: Some((4000, reason.into())),
            ..Script::echo()
        },
        &[],
    )
    .await;
    let mut ws = connect(&h, "/v1/realtime").await;
    let (error, close) = expect_close(&mut ws).await;
    assert_eq!(
        error, None,
        "a clean upstream close is passed on, not an error"
    );
    let close = close.expect("close carries a code");
    assert_eq!(u16::from(close.code), 4000);
    h.stop().await;
    close.description
}

/// An upstream close (4000, beta_api_shape_disabled) reaches the client with the same code and
/// reason and no `error` event.
#[actix_web::test]
async fn upstream_close_code_and_reason_reach_client() {
    let reason = "invalid_request_error.beta_api_shape_disabled";
    assert_eq!(upstream_close_reason(reason).await.as_deref(), Some(reason));
}

/// An upstream that drops without a close frame gives the client an `upstream_gone` event and
/// close 1011 (a lost connection is 1006, which must not go on the wire).
#[actix_web::test]
async fn upstream_drop_is_reported_as_1011() {
    let h = start(
        Script {
            drop_after_open: true,
            ..Script::echo()
        },
        &[],
    )
    .await;
    let mut ws = connect(&h, "/v1/realtime").await;
    expect_failure(&mut ws, "upstream_gone", 1011).await;
    h.stop().await;
}

/// A 123-byte multibyte upstream close reason (the RFC maximum) reaches the client intact.
#[actix_web::test]
async fn maximal_multibyte_close_reason_passes_intact() {
    let reason = "€".repeat(41); // 123 bytes
    assert_eq!(reason.len(), 123);
    assert_eq!(
        upstream_close_reason(&reason).await.as_deref(),
        Some(reason.as_str())
    );
}

/// An upstream close reason over 123 bytes reaches the client cut to at most 123 bytes on a
/// UTF-8 boundary, with the upstream's code and no `error` event.
///
/// End to end only: the fake's actix-ws already cuts reasons it sends (actix-ws 0.4), so the
/// relay's own cut (`close::truncate_utf8`) is pinned by the unit tests in `close.rs`; this
/// pins what the client finally sees.
#[actix_web::test]
async fn overlong_upstream_close_reason_is_cut() {
    // 4-byte characters: 123 bytes would split the 31st, so the cut must back off to 120.
    let reason = "🎧".repeat(40);
    let text = upstream_close_reason(&reason).await.unwrap_or_default();
    assert!(text.len() <= 123, "reason of {} bytes", text.len());
    assert!(
        reason.starts_with(&text),
        "not a prefix on a char boundary: {text:?}"
    );
    assert_eq!(text, "🎧".repeat(30), "cut shorter than needed");
}

/// A client that vanishes without a close frame gets its upstream closed promptly and its slot
/// freed in /stats.
#[actix_web::test]
async fn abrupt_client_drop_closes_upstream_and_frees_slot() {
    let h = start(Script::echo(), &[]).await;
    let ws = connect(&h, "/v1/realtime").await;
    let stats = fetch_stats(&h).await;
    assert_eq!(stats["active_sessions"], 1, "{stats}");
    drop(ws);
    let closes = h
        .fake
        .recorder()
        .wait_closes(1, PROMPT)
        .await
        .expect("upstream closed within 3 s of the client vanishing");
    assert_eq!(closes.len(), 1);
    assert!(
        !closes[0].abrupt,
        "the relay sent no close frame upstream: {:?}",
        closes[0]
    );
    // The registry hears of the end by message, so /stats may lag the upstream close by a
    // moment: poll briefly (bounded) rather than assume an order.
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        let stats = fetch_stats(&h).await;
        if stats["active_sessions"] == 0 {
            assert_eq!(stats["closed_by_reason"]["client_gone"], 1, "{stats}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot not freed: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}

async fn fetch_stats(h: &Harness) -> serde_json::Value {
    let (status, body) = get(&format!("{}/stats", h.http()), &[]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}

// ---------------------------------------------------------------------------------------------
// Pings

/// A client's ping is answered by the relay with a pong carrying the same payload.
#[actix_web::test]
async fn client_ping_gets_matching_pong() {
    let h = start(Script::echo(), &[]).await;
    let mut ws = connect(&h, "/v1/realtime").await;
    send(
        &mut ws,
        Message::Ping(Bytes::from_static(b"are-you-there-42")),
    )
    .await;
    let pong = loop {
        let frame = tokio::time::timeout(T, ws.next())
            .await
            .expect("no pong within the timeout")
            .expect("stream ended")
            .expect("frame decodes");
        match frame {
            Frame::Pong(p) => break p,
            Frame::Ping(_) => continue,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are-you-there-42");
    // The ping is the relay's to answer, not a data message for the upstream.
    send_text(&mut ws, "after-ping").await;
    let received = h.fake.recorder().wait_messages(1, T).await.expect("one");
    assert_eq!(received[0].frame, Got::Text("after-ping".into()));
    h.stop().await;
}
