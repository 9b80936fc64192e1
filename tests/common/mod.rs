//! Shared test harness, for the `relay` test binary and for `nginx`, `prometheus` and `redis`
//! (each includes this folder with `#[path]`): the real relay on 127.0.0.1:0 in front of the
//! scriptable fake upstream (also on port 0), an awc WebSocket client, and awaits that always time
//! out.
//! Beside it: WebRTC signalling as a client does it (`calls`), the relay binary as a child (`child`), outside programs (`tools`), a real
//! redis-server (`redis`), Prometheus text (`prom`), `/stats` (`stats`), and waiting for what
//! announces itself nowhere (`poll`).
#![allow(dead_code)]

pub mod calls;
pub mod child;
pub mod poll;
pub mod prom;
pub mod redis;
pub mod stats;
pub mod tools;

use std::{collections::HashMap, future::Future, path::PathBuf, time::Duration};

use actix_codec::Framed;
use awc::{
    ws::{self, Codec, Frame, Message},
    BoxedSocket, ClientResponse,
};
use fake_upstream::{FakeUpstream, Script};
use futures_util::{SinkExt, StreamExt};
use openai_realtime_relay::{
    config::{Config, KeyPolicy},
    Relay,
};

/// Every await in a test is bounded by this.
pub const T: Duration = Duration::from_secs(10);
/// The server key the relay is configured with; it must never leak.
pub const TEST_KEY: &str = "sk-test-SERVERKEY-5f2b9c1e";

pub type Ws = Framed<BoxedSocket, Codec>;

static NEXT_FILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct Harness {
    pub relay: Relay,
    pub fake: FakeUpstream,
    /// `ws://127.0.0.1:PORT`
    pub base: String,
}

impl Harness {
    /// The relay's HTTP base URL.
    pub fn http(&self) -> String {
        http(&self.relay)
    }

    /// Stops the relay, then the fake.
    pub async fn stop(self) {
        stop_relay(self.relay).await;
        stop_fake(self.fake).await;
    }
}

/// `fut`, or a panic naming `what` if it has not finished within [`T`].
pub async fn timed<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(T, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {T:?}"))
}

/// `relay`'s HTTP base URL.
pub fn http(relay: &Relay) -> String {
    format!("http://{}", relay.local_addr())
}

/// Stops `relay` (a graceful stop, bounded by [`T`]).
pub async fn stop_relay(relay: Relay) {
    timed("the relay's stop", relay.stop()).await;
}

/// Stops `fake`, bounded by [`T`].
pub async fn stop_fake(fake: FakeUpstream) {
    timed("the fake upstream's stop", fake.stop()).await;
}

/// Starts a fake upstream with `script` on 127.0.0.1:0.
pub async fn start_fake(script: Script) -> FakeUpstream {
    timed("the fake upstream's start", FakeUpstream::start(script))
        .await
        .expect("fake starts")
}

/// `path` inside the repository.
pub fn repo(path: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The text of the repository's file `path`.
pub fn read_repo(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A config for a relay in front of `upstream_url`, with `extra` variables on top.
pub fn config(upstream_url: &str, extra: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert("OPENAI_API_KEY".into(), TEST_KEY.into());
    map.insert("OPENAI_API_URL".into(), upstream_url.into());
    map.insert("HOST".into(), "127.0.0.1".into());
    map.insert("PORT".into(), "0".into());
    // Each relay keeps its usage ledger in a file of its own, outside the repository.
    let usage_file = std::env::temp_dir().join(format!(
        "relay-test-usage-{}-{}.json",
        std::process::id(),
        NEXT_FILE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    map.insert("USAGE_STATE_FILE".into(), usage_file.display().to_string());
    for (k, v) in extra {
        map.insert((*k).into(), (*v).into());
    }
    Config::from_source(&map, KeyPolicy::Required).expect("test config is valid")
}

/// Starts the relay on 127.0.0.1:0.
pub async fn start_relay(config: Config) -> Relay {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    timed(
        "the relay's start",
        openai_realtime_relay::start(config, listener),
    )
    .await
    .expect("relay starts")
}

/// Starts a fake upstream with `script` and a relay in front of it.
pub async fn start(script: Script, extra: &[(&str, &str)]) -> Harness {
    let fake = start_fake(script).await;
    let relay = start_relay(config(&fake.url(), extra)).await;
    let base = format!("ws://{}", relay.local_addr());
    Harness { relay, fake, base }
}

/// A WebSocket client request to `url` offering `protocols`, with extra `headers`.
pub async fn connect_with(
    url: &str,
    protocols: &[&str],
    headers: &[(&str, &str)],
) -> Result<(ClientResponse, Ws), awc::error::WsClientError> {
    let client = awc::Client::builder()
        .max_http_version(awc::http::Version::HTTP_11)
        .finish();
    let mut req = client.ws(url).max_frame_size(64 * 1024 * 1024);
    if !protocols.is_empty() {
        req = req.protocols(protocols);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    tokio::time::timeout(T, req.connect())
        .await
        .expect("connect timed out")
}

/// Connects like a browser would (`new WebSocket(url, ['realtime'])`) and waits for the
/// upstream's `session.created`.
pub async fn connect(h: &Harness, path: &str) -> Ws {
    let (_, mut ws) = connect_with(&format!("{}{}", h.base, path), &["realtime"], &[])
        .await
        .expect("upgrade succeeds");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "first event: {first}");
    ws
}

/// The next frame that is not a ping or pong (pings are answered).
pub async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        let frame = tokio::time::timeout(T, ws.next())
            .await
            .expect("no frame within the timeout")
            .expect("stream ended without a close frame")
            .expect("frame decodes");
        match frame {
            Frame::Ping(p) => {
                let _ = timed("a pong", ws.send(Message::Pong(p))).await;
            }
            Frame::Pong(_) => {}
            other => return other,
        }
    }
}

/// The next text frame, parsed as JSON.
pub async fn next_json(ws: &mut Ws) -> serde_json::Value {
    match next_frame(ws).await {
        Frame::Text(b) => serde_json::from_slice(&b).expect("text frame is JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Reads until the close frame; returns the `error` event seen before it (if any) and the close.
pub async fn expect_close(ws: &mut Ws) -> (Option<serde_json::Value>, Option<ws::CloseReason>) {
    let mut error = None;
    loop {
        match next_frame(ws).await {
            Frame::Close(reason) => return (error, reason),
            Frame::Text(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON");
                if v["type"] == "error" {
                    error = Some(v);
                }
            }
            _ => {}
        }
    }
}

/// Asserts the session ends with an `error` event of `code` and a close with `close_code`.
pub async fn expect_failure(ws: &mut Ws, code: &str, close_code: u16) -> serde_json::Value {
    let (error, close) = expect_close(ws).await;
    let error = error.unwrap_or_else(|| panic!("no error event before the close ({close:?})"));
    assert_eq!(error["error"]["type"], "relay_error", "{error}");
    assert_eq!(error["error"]["code"], code, "{error}");
    let close = close.expect("close frame carries a code");
    assert_eq!(u16::from(close.code), close_code, "{close:?}");
    error
}

/// Asserts the `error` event's message contains `part`.
pub fn assert_message_contains(error: &serde_json::Value, part: &str) {
    let message = error["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(part),
        "{part:?} not in {message:?}: {error}"
    );
}

/// Sends a normal (1000) close frame.
pub async fn close(ws: &mut Ws) {
    tokio::time::timeout(
        T,
        ws.send(Message::Close(Some(ws::CloseCode::Normal.into()))),
    )
    .await
    .expect("send timed out")
    .expect("close sent");
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    tokio::time::timeout(T, ws.send(Message::Text(text.to_string().into())))
        .await
        .expect("send timed out")
        .expect("send succeeds");
}

/// GET `url` and return status and body.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client = awc::Client::default();
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = tokio::time::timeout(T, req.send())
        .await
        .expect("GET timed out")
        .expect("GET succeeds");
    let body = tokio::time::timeout(T, res.body())
        .await
        .expect("body timed out")
        .expect("body");
    (
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// GET `url` and parse the body as JSON; returns the status too.
pub async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let (status, body) = get(url, headers).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, json)
}
