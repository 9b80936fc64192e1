//! Which subprotocol the 101 selects: `realtime` when offered, never a credential, none when
//! none is offered.

use awc::http::header;
use fake_upstream::Script;

use crate::common::*;

/// The `Sec-WebSocket-Protocol` the relay selected in its 101, if any.
fn selected_protocol(res: &awc::ClientResponse) -> Option<String> {
    res.headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

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
