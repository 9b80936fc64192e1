//! WebRTC calls through the relay (issue 14), against the fake upstream's real WebRTC peer and a
//! webrtc-rs client peer standing in for the browser (`fake_upstream::TestPeer`; the real
//! Chromium runs in `tests/browser`): the call's creation and what goes upstream (`create`), its
//! sideband's metering and policy (`sideband`), every way the relay ends a call (`ending`), the
//! refusals (`refusals`), and attaching a WebSocket to a call's events (`attach`).

mod attach;
mod binary;
mod create;
mod ending;
mod refusals;
mod sideband;

use awc::http::StatusCode;
use fake_upstream::{Script, TestPeer};
use serde_json::Value;

use crate::common::{poll::poll, *};

pub(crate) const ALICE: &str = "tok-alice-call-1";
pub(crate) const BOB: &str = "tok-bob-call-2";
pub(crate) const TOKENS: &str = "alice:tok-alice-call-1,bob:tok-bob-call-2";

/// What the relay answered an offer: status, `Location`, the body as text.
pub(crate) struct Answered {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
    /// Every header, as `name: value` lines (to check nothing leaks).
    pub(crate) headers: String,
}

impl Answered {
    /// The call id of a 201's `Location`.
    pub(crate) fn call_id(&self) -> String {
        assert_eq!(self.status, StatusCode::CREATED, "{}", self.body);
        let location = self.location.as_deref().expect("a Location header");
        let id = location
            .strip_prefix("/v1/realtime/calls/")
            .unwrap_or_else(|| panic!("Location {location}"));
        assert!(id.starts_with("rtc_"), "{location}");
        id.to_string()
    }

    /// The JSON error of a refusal, checked for the relay's shape and `code`.
    pub(crate) fn refused(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let error: Value = serde_json::from_str(&self.body).expect("a JSON refusal");
        assert_eq!(error["error"]["type"], "relay_error", "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        assert!(error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        error
    }
}

/// `POST {http}{path}` with `body` as `content_type`, presenting `token` as a Bearer.
pub(crate) async fn post(
    http: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: String,
) -> Answered {
    let mut req = awc::Client::default()
        .post(format!("{http}{path}"))
        .insert_header(("Content-Type", content_type));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = timed("the relay's answer", req.send_body(body))
        .await
        .expect("the relay answers");
    let body = timed("the answer's body", res.body().limit(1 << 20))
        .await
        .expect("a body");
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap_or("")))
        .collect();
    Answered {
        status: res.status(),
        location: res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
    }
}

/// Posts `peer`'s offer to the relay's calls endpoint (`query` after `?`, may be empty).
pub(crate) async fn offer(
    http: &str,
    query: &str,
    token: Option<&str>,
    peer: &TestPeer,
) -> Answered {
    let path = if query.is_empty() {
        "/v1/realtime/calls".to_string()
    } else {
        format!("/v1/realtime/calls?{query}")
    };
    post(http, &path, token, "application/sdp", peer.offer.clone()).await
}

/// A relay with `extra` (and alice's and bob's tokens) in front of the fake.
pub(crate) async fn relay(extra: &[(&str, &str)]) -> Harness {
    let mut vars = vec![("RELAY_TOKENS", TOKENS)];
    vars.extend_from_slice(extra);
    start(Script::demo(), &vars).await
}

/// A call alice makes through `h` with `query`, connected: the peer has the answer and its data
/// channel is open. Returns the peer and the call's id.
pub(crate) async fn connected_call(h: &Harness, query: &str) -> (TestPeer, String) {
    let peer = TestPeer::offer().await;
    let answered = offer(&h.http(), query, Some(ALICE), &peer).await;
    let call_id = answered.call_id();
    peer.answer(&answered.body).await;
    peer.opened().await;
    (peer, call_id)
}

/// `POST …/calls/{call_id}/hangup` on the relay with `token`.
pub(crate) async fn hang_up(http: &str, call_id: &str, token: Option<&str>) -> Answered {
    post(
        http,
        &format!("/v1/realtime/calls/{call_id}/hangup"),
        token,
        "application/json",
        String::new(),
    )
    .await
}
