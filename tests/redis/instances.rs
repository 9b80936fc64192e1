//! The relays of one test: the binary as a child (`common::child::Process`), each in a directory
//! of its own (so a usage state file of its own), in front of the test's fake upstream and
//! sharing the test's Redis; the sessions a test opens on them, and what it expects to hear.

use std::time::Duration;

use fake_upstream::{FakeUpstream, Script};
use serde_json::Value;

use crate::common::{
    child::Process, connect_with, expect_failure, get, get_json, next_json, poll::poll,
    redis::RedisServer, send_text, start_fake, Ws, TEST_KEY,
};

/// Client tokens for two identities, `token:alice` and `token:bob`.
pub(crate) const TOKENS: &str = "alice:tok-alice-123,bob:tok-bob-456";
pub(crate) const ALICE: &str = "tok-alice-123";
pub(crate) const BOB: &str = "tok-bob-456";
/// The billable tokens of one demo response (`usage.total_tokens`).
pub(crate) const RESPONSE_TOKENS: u64 = 32;

/// A Redis for the test and the demo fake upstream the relays share (so response ids are unique
/// across them); `None` when redis-server is not installed (the test is skipped).
pub(crate) async fn redis_and_fake(name: &str) -> Option<(RedisServer, FakeUpstream)> {
    let redis = RedisServer::start(name).await?;
    Some((redis, start_fake(Script::demo()).await))
}

/// One relay binary sharing the test's Redis.
pub(crate) struct Instance {
    pub(crate) relay: Process,
    /// `127.0.0.1:PORT`
    pub(crate) addr: String,
    /// `ADMIN_TOKEN`, when the test set one.
    admin: Option<String>,
}

impl Instance {
    /// Starts the relay named `name` in front of `upstream` with `REDIS_URL=redis`,
    /// `REDIS_TIMEOUT=2000` and `extra` (which may override both), and waits until its `/health`
    /// says Redis is up.
    pub(crate) async fn start(
        name: &str,
        upstream: &str,
        redis: &str,
        extra: &[(&str, &str)],
    ) -> Instance {
        let instance = Instance::spawn(name, upstream, redis, extra).await;
        instance.wait_redis("up").await;
        instance
    }

    /// Like [`Instance::start`], without waiting for Redis.
    pub(crate) async fn spawn(
        name: &str,
        upstream: &str,
        redis: &str,
        extra: &[(&str, &str)],
    ) -> Instance {
        let mut env = vec![
            ("OPENAI_API_KEY", TEST_KEY),
            ("OPENAI_API_URL", upstream),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("REDIS_URL", redis),
            // Not the default 300 ms: a debug build on a busy machine may stall that long, and a
            // relay that thinks Redis is down refuses. The tests of a hung Redis set it back.
            ("REDIS_TIMEOUT", "2000"),
        ];
        // Later entries win.
        env.extend_from_slice(extra);
        let admin = extra
            .iter()
            .find(|(k, _)| *k == "ADMIN_TOKEN")
            .map(|(_, v)| v.to_string());
        let mut relay = Process::spawn(name, &[], &env);
        let addr = relay.listening().await;
        Instance { relay, addr, admin }
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        self.admin
            .iter()
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .collect()
    }

    /// GET `path` with the admin token (if any): status and body.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let auth = self.auth();
        let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get(&format!("{}{path}", self.http()), &headers).await
    }

    /// `GET /health`, which answers 200 whatever Redis does.
    pub(crate) async fn health(&self) -> Value {
        let (status, health) = get_json(&format!("{}/health", self.http()), &[]).await;
        assert_eq!(status, 200, "{health}");
        health
    }

    /// Waits until `/health` says `"redis": state` (`up` or `down`).
    pub(crate) async fn wait_redis(&self, state: &str) {
        poll(format!("/health of {} saying redis {state}", self.addr))
            .every(Duration::from_millis(50))
            .until(|| async {
                let health = self.health().await;
                if health["redis"] == state {
                    Ok(())
                } else {
                    Err(health.to_string())
                }
            })
            .await;
    }

    /// `GET /stats?scope=cluster`, which must answer 200 with JSON.
    pub(crate) async fn cluster(&self) -> Value {
        let (status, body) = self.get("/stats?scope=cluster").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// `GET /stats?scope=cluster` again until `holds` is true of it (within `within`).
    pub(crate) async fn wait_cluster(
        &self,
        what: &str,
        within: Duration,
        holds: impl Fn(&Value) -> bool,
    ) -> Value {
        let holds = &holds;
        poll(format!("/stats?scope=cluster with {what}"))
            .within(within)
            .every(Duration::from_millis(100))
            .until(|| async move {
                // Right after Redis comes back one answer may still be 503: poll on.
                let (status, body) = self.get("/stats?scope=cluster").await;
                if status != 200 {
                    return Err(format!("{status}: {body}"));
                }
                let stats: Value =
                    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
                if holds(&stats) {
                    Ok(stats)
                } else {
                    Err(stats.to_string())
                }
            })
            .await
    }

    /// `GET /metrics`.
    pub(crate) async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Kills the relay (SIGKILL) and returns every line it wrote.
    pub(crate) async fn kill(self) -> Vec<String> {
        self.relay.kill().await
    }
}

/// Today's billable tokens of everyone, from a `/stats?scope=cluster` answer.
pub(crate) fn today_tokens(cluster: &Value) -> u64 {
    cluster["usage"]["today"]["total_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage.today.total_tokens: {cluster}"))
}

/// Opens a WebSocket to `url` like a server SDK would: `Authorization: Bearer <token>` when a
/// token is given (identity `token:<name>`), else none (identity `ip:127.0.0.1`).
pub(crate) async fn open(url: &str, token: Option<&str>) -> Ws {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| ("Authorization", b))
        .into_iter()
        .collect();
    let (_, ws) = connect_with(url, &[], &headers)
        .await
        .unwrap_or_else(|e| panic!("upgrade to {url} failed: {e}"));
    ws
}

/// Opens a session that must be admitted: its first event is the upstream's `session.created`.
pub(crate) async fn admitted(url: &str, token: Option<&str>) -> Ws {
    let mut ws = open(url, token).await;
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{url}: {first}");
    ws
}

/// Opens a session that must be refused after the upgrade with an `error` event of `code` and
/// close 1008; returns the event.
pub(crate) async fn refused(url: &str, token: Option<&str>, code: &str) -> Value {
    let mut ws = open(url, token).await;
    expect_failure(&mut ws, code, 1008).await
}

/// Sends `response.create` and reads up to its `response.done`, which it returns.
pub(crate) async fn respond(ws: &mut Ws) -> Value {
    send_text(ws, r#"{"type":"response.create"}"#).await;
    for _ in 0..100 {
        let event = next_json(ws).await;
        assert_ne!(event["type"], "error", "{event}");
        if event["type"] == "response.done" {
            assert_eq!(
                event["response"]["usage"]["total_tokens"], RESPONSE_TOKENS,
                "{event}"
            );
            return event;
        }
    }
    panic!("no response.done within 100 events");
}

/// The sample `series` of a `/metrics` text (0 when absent).
pub(crate) fn metric(text: &str, series: &str) -> f64 {
    crate::common::prom::sample(text, series).unwrap_or(0.0)
}

/// An upgrade to `addr` answered before any WebSocket exists (a plain HTTP response): its status
/// and JSON body. Panics on a 101.
pub(crate) async fn refused_before_upgrade(addr: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /v1/realtime HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: realtime\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        // The relay closes the connection after a refusal.
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = crate::common::timed("an answer to the upgrade", exchange).await;
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    assert_ne!(status, 101, "the upgrade was accepted: {answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    (status, json)
}

/// How an upgrade the relay does not admit because Redis does not answer is refused: HTTP 503
/// before the upgrade when the relay already knows, else after it, during admission, with an
/// `error` event and close 1013. Either way the code is `service_unavailable`; returns whether it
/// was the HTTP 503.
pub(crate) async fn refused_unavailable(addr: &str, token: Option<&str>) -> bool {
    use awc::error::WsClientError;
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| ("Authorization", b))
        .into_iter()
        .collect();
    match connect_with(&format!("ws://{addr}/v1/realtime"), &[], &headers).await {
        Err(WsClientError::InvalidResponseStatus(s)) => {
            assert_eq!(s.as_u16(), 503);
            let (status, body) = refused_before_upgrade(addr).await;
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], "service_unavailable", "{body}");
            true
        }
        Err(other) => panic!("{addr}: {other:?}"),
        Ok((_, mut ws)) => {
            expect_failure(&mut ws, "service_unavailable", 1013).await;
            false
        }
    }
}
