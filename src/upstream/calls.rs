//! WebRTC call signalling with the upstream, over HTTP with the server's key: `create` forwards a
//! browser's SDP offer to OpenAI's unified interface (`POST /v1/realtime/calls`, a
//! `multipart/form-data` body with the offer and the session the relay decides) and returns the
//! answer and the call's id; `hangup` ends a call (`POST /v1/realtime/calls/{id}/hangup`). Used by
//! the `Call` actor and the hangup endpoint; the media never comes near the relay. Every failure
//! becomes the `SessionEnd` a WebSocket session would end with, so both transports answer with
//! the same codes.

use std::time::Duration;

use actix_web::web::Bytes;
use awc::http::{header, StatusCode};

use crate::{close::SessionEnd, config::is_query_safe, upstream::dial::Dialer};

/// The largest SDP answer the relay takes from the upstream (a real one is a few KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most of an upstream error body the relay reads to explain a refusal.
const MAX_ERROR_BYTES: usize = 8 * 1024;

/// A call the upstream accepted: its id (`rtc_…`) and the SDP answer for the browser.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) call_id: String,
    pub(crate) answer: Bytes,
}

/// The upstream's calls endpoint for a Realtime WebSocket URL (`OPENAI_API_URL`): the same host,
/// over HTTP(S), at `/v1/realtime/calls`.
pub(crate) fn calls_url(ws_url: &str) -> Option<String> {
    let (scheme, rest) = ws_url.split_once("://")?;
    let scheme = match scheme {
        "wss" => "https",
        "ws" => "http",
        _ => return None,
    };
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}/v1/realtime/calls"))
}

/// The `multipart/form-data` body of a call: the offer as `sdp`, the session as `session`.
fn multipart(boundary: &str, offer: &str, session: &serde_json::Value) -> String {
    format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"sdp\"\r\n\
         Content-Type: application/sdp\r\n\r\n{offer}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"session\"\r\n\
         Content-Type: application/json\r\n\r\n{session}\r\n--{boundary}--\r\n"
    )
}

/// A boundary no SDP or JSON text contains: random, and checked.
fn boundary(offer: &str, session: &str) -> String {
    loop {
        let mut bytes = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        let b: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let b = format!("relay-{b}");
        if !offer.contains(&b) && !session.contains(&b) {
            return b;
        }
    }
}

/// The upstream's calls endpoint, or why there is none.
fn endpoint(dialer: &Dialer) -> Result<String, SessionEnd> {
    calls_url(&dialer.upstream().url).ok_or_else(|| SessionEnd::UpstreamUnavailable {
        detail: "OPENAI_API_URL has no host for /v1/realtime/calls".into(),
    })
}

/// A request to the upstream with the server's key and the relay's headers.
fn request(dialer: &Dialer, url: &str, safety_id: Option<&str>) -> awc::ClientRequest {
    let config = dialer.upstream();
    let mut req = dialer
        .http()
        .post(url)
        .timeout(config.connect_timeout)
        .insert_header((
            header::AUTHORIZATION,
            format!("Bearer {}", config.api_key.expose()),
        ));
    if let Some(org) = &config.organization {
        req = req.insert_header(("OpenAI-Organization", org.as_str()));
    }
    if let Some(project) = &config.project {
        req = req.insert_header(("OpenAI-Project", project.as_str()));
    }
    if let Some(id) = safety_id {
        req = req.insert_header(("OpenAI-Safety-Identifier", id));
    }
    req
}

/// Forwards the browser's offer; the answer and the call's id, or why there is none.
pub(crate) async fn create(
    dialer: &Dialer,
    offer: &str,
    session: &serde_json::Value,
    safety_id: Option<&str>,
) -> Result<Created, SessionEnd> {
    let timeout = dialer.upstream().connect_timeout;
    let url = endpoint(dialer)?;
    let session_text = session.to_string();
    let boundary = boundary(offer, &session_text);
    let body = multipart(&boundary, offer, session);
    let sent = request(dialer, &url, safety_id)
        .insert_header((
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        ))
        .send_body(body)
        .await;
    let mut res = sent.map_err(|e| send_error(e, timeout))?;
    let status = res.status();
    if status != StatusCode::CREATED && status != StatusCode::OK {
        let body = res.body().limit(MAX_ERROR_BYTES).await.unwrap_or_default();
        return Err(refused(status, &body));
    }
    let call_id = res
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(call_id_of)
        .ok_or_else(|| SessionEnd::UpstreamUnavailable {
            detail: "the upstream created a call without a usable Location header".into(),
        })?;
    let answer = tokio::time::timeout(timeout, res.body().limit(MAX_ANSWER_BYTES))
        .await
        .map_err(|_| SessionEnd::UpstreamTimeout {
            after_ms: timeout.as_millis(),
        })?
        .map_err(|e| SessionEnd::UpstreamUnavailable {
            detail: format!("the SDP answer could not be read ({e})"),
        })?;
    Ok(Created { call_id, answer })
}

/// Ends a call upstream; the upstream's status (a call it no longer knows is 404).
pub(crate) async fn hangup(dialer: &Dialer, call_id: &str) -> Result<StatusCode, SessionEnd> {
    let timeout = dialer.upstream().connect_timeout;
    let url = endpoint(dialer)?;
    let res = request(dialer, &format!("{url}/{call_id}/hangup"), None)
        .send()
        .await
        .map_err(|e| send_error(e, timeout))?;
    Ok(res.status())
}

/// The call id at the end of a `Location` (`/v1/realtime/calls/rtc_…`), if it is a plain name.
fn call_id_of(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let id = path.trim_end_matches('/').rsplit('/').next()?;
    (!id.is_empty() && id.len() <= 128 && is_query_safe(id)).then(|| id.to_string())
}

/// An upstream that answered with something else than a call.
fn refused(status: StatusCode, body: &[u8]) -> SessionEnd {
    match status.as_u16() {
        401 | 403 => SessionEnd::UpstreamAuthFailed {
            status: status.as_u16(),
        },
        429 => SessionEnd::UpstreamRateLimited,
        // The offer itself was refused: the client's to fix, in the upstream's words.
        400 | 422 => SessionEnd::InvalidRequest {
            detail: format!(
                "the upstream refused the SDP offer ({})",
                upstream_message(body).unwrap_or_else(|| format!("HTTP {status}"))
            ),
        },
        s => SessionEnd::UpstreamRejected { status: s },
    }
}

/// `error.message` of an OpenAI-shaped error body, shortened.
fn upstream_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let m = v.get("error")?.get("message")?.as_str()?;
    Some(crate::close::truncate_utf8(m, 200).to_string())
}

fn send_error(e: awc::error::SendRequestError, timeout: Duration) -> SessionEnd {
    use awc::error::{ConnectError, SendRequestError};
    if matches!(
        e,
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout)
    ) {
        SessionEnd::UpstreamTimeout {
            after_ms: timeout.as_millis(),
        }
    } else {
        SessionEnd::UpstreamUnavailable {
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_url_is_the_same_host_over_http() {
        assert_eq!(
            calls_url("wss://api.openai.com/v1/realtime").as_deref(),
            Some("https://api.openai.com/v1/realtime/calls")
        );
        assert_eq!(
            calls_url("ws://127.0.0.1:9000/v1/realtime").as_deref(),
            Some("http://127.0.0.1:9000/v1/realtime/calls")
        );
        assert_eq!(
            calls_url("ws://[::1]:9000").as_deref(),
            Some("http://[::1]:9000/v1/realtime/calls")
        );
        assert_eq!(calls_url("https://x/v1/realtime"), None);
        assert_eq!(calls_url("wss:///v1/realtime"), None);
    }

    #[test]
    fn call_id_from_location() {
        assert_eq!(
            call_id_of("/v1/realtime/calls/rtc_abc123").as_deref(),
            Some("rtc_abc123")
        );
        assert_eq!(
            call_id_of("https://api.openai.com/v1/realtime/calls/rtc_1?x=y").as_deref(),
            Some("rtc_1")
        );
        assert_eq!(call_id_of("/v1/realtime/calls/a&b"), None);
        assert_eq!(call_id_of(""), None);
    }

    #[test]
    fn multipart_body_has_both_parts() {
        let session = serde_json::json!({"type":"realtime","model":"m"});
        let b = boundary("v=0", &session.to_string());
        let body = multipart(&b, "v=0\r\n", &session);
        assert!(body.starts_with(&format!("--{b}\r\n")));
        assert!(body.contains("name=\"sdp\"\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"));
        assert!(body.contains(r#"{"type":"realtime","model":"m"}"#));
        assert!(body.ends_with(&format!("--{b}--\r\n")));
    }

    #[test]
    fn upstream_refusals_keep_their_side() {
        assert_eq!(
            refused(StatusCode::UNAUTHORIZED, b"").label(),
            "upstream_auth_failed"
        );
        assert_eq!(
            refused(StatusCode::TOO_MANY_REQUESTS, b"").label(),
            "upstream_rate_limited"
        );
        assert_eq!(
            refused(StatusCode::BAD_GATEWAY, b"").label(),
            "upstream_rejected"
        );
        let bad = refused(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"message":"Invalid SDP offer"}}"#,
        );
        assert_eq!(bad.label(), "invalid_request");
        assert!(bad.message().contains("Invalid SDP offer"));
    }
}
