//! The relay's HTTP face: `/health`, `/stats`, `/metrics` (`admin`), the 426 hint on the
//! WebSocket paths and Origin checks before the upgrade (`origins`), CORS for dashboards
//! (`cors`), the browser console (`console`), and no key in any response (`secrets`). Here:
//! the requests these tests send, each with a timeout around it.

mod admin;
mod console;
mod cors;
mod origins;
mod secrets;

use awc::http::{header::HeaderMap, Method};

use crate::common::T;

const APP: &str = "https://app.example";
const EVIL: &str = "https://evil.example";

/// A response as the test sees it: status, headers, body.
struct Response {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Every header value and the body, for leak checks.
    fn everything(&self) -> String {
        let mut all = self.body.clone();
        for (name, value) in &self.headers {
            all.push_str(&format!(
                "\n{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        all
    }
}

/// Any request, with a timeout around send and body.
async fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> Response {
    let client = awc::Client::default();
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = tokio::time::timeout(T, req.send())
        .await
        .expect("request timed out")
        .expect("request succeeds");
    let body = tokio::time::timeout(T, res.body())
        .await
        .expect("body timed out")
        .expect("body");
    Response {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A WebSocket upgrade request sent as plain HTTP, so a refusal's body can be read.
async fn raw_upgrade(url: &str, origin: Option<&str>) -> Response {
    let mut headers = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", "realtime"),
    ];
    if let Some(o) = origin {
        headers.push(("Origin", o));
    }
    request(Method::GET, url, &headers).await
}

/// A GET written by hand over TCP. awc drops the body of any response that carries
/// `Connection: upgrade`, which a 426 must (RFC 9110 15.5.22, RFC 9110 7.8); browsers and curl
/// read it, so the test reads it the way they do.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tcp = actix_web::rt::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = &text[..end];
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .expect("content-length");
                if buf.len() >= end + 4 + length {
                    return (
                        head.to_string(),
                        text[end + 4..end + 4 + length].to_string(),
                    );
                }
            }
            let n = tcp.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed mid-response: {text}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (head, body) = tokio::time::timeout(T, exchange)
        .await
        .expect("raw GET timed out");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').expect("header line");
        headers.append(
            awc::http::header::HeaderName::from_bytes(k.trim().as_bytes()).expect("name"),
            awc::http::header::HeaderValue::from_str(v.trim()).expect("value"),
        );
    }
    Response {
        status,
        headers,
        body,
    }
}
