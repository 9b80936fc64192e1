//! WebRTC signalling as a client does it, for the tests of calls (`relay` and `redis`): a POST to
//! the relay with a body and a Bearer credential, and what came back (`Answered`), the offer of a
//! `fake_upstream::TestPeer` posted to `/v1/realtime/calls`.

use awc::http::StatusCode;
use fake_upstream::TestPeer;
use serde_json::Value;

use super::timed;

/// What the relay answered an offer: status, `Location`, the body as text.
pub struct Answered {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
    /// Every header, as `name: value` lines (to check nothing leaks).
    pub headers: String,
}

impl Answered {
    /// The call id of a 201's `Location`.
    pub fn call_id(&self) -> String {
        assert_eq!(self.status, StatusCode::CREATED, "{}", self.body);
        let location = self.location.as_deref().expect("a Location header");
        let id = location
            .strip_prefix("/v1/realtime/calls/")
            .unwrap_or_else(|| panic!("Location {location}"));
        assert!(id.starts_with("rtc_"), "{location}");
        id.to_string()
    }

    /// The JSON error of a refusal, checked for the relay's shape and `code`.
    pub fn refused(&self, status: u16, code: &str) -> Value {
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
pub async fn post(
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
pub async fn offer(http: &str, query: &str, token: Option<&str>, peer: &TestPeer) -> Answered {
    let path = if query.is_empty() {
        "/v1/realtime/calls".to_string()
    } else {
        format!("/v1/realtime/calls?{query}")
    };
    post(http, &path, token, "application/sdp", peer.offer.clone()).await
}
