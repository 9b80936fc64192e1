//! The fake's HTTP face: [`FakeUpstream`] binds 127.0.0.1, runs a one-worker actix-web server,
//! and answers every request in [`upgrade`]: record it, wait or reject as the script says, or
//! upgrade it and hand the socket to a `Connection`. It stops with [`FakeUpstream::stop`] or
//! with the actix `System` that started it.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::{header, StatusCode};
use actix_web::web;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

use crate::connection::Connection;
use crate::recorder::{Handshake, Recorder};
use crate::script::Script;

/// The model named in `session.created` when the upgrade carried no `?model=`.
const DEFAULT_MODEL: &str = "gpt-realtime-mini";

/// State shared by the handle and the server's worker.
struct Shared {
    recorder: Arc<Recorder>,
    script: Mutex<Script>,
}

impl Shared {
    fn script(&self) -> Script {
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A running fake upstream; see the module docs.
pub struct FakeUpstream {
    handle: ServerHandle,
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
}

impl FakeUpstream {
    /// Binds 127.0.0.1:0 and starts serving `ws://`. Call from inside a running actix System.
    pub async fn start(script: Script) -> std::io::Result<FakeUpstream> {
        Self::start_inner(script, None, 0).await
    }

    /// Binds 127.0.0.1:`port` (0 = any free port) and starts serving `ws://`.
    pub async fn start_on_port(script: Script, port: u16) -> std::io::Result<FakeUpstream> {
        Self::start_inner(script, None, port).await
    }

    /// Binds 127.0.0.1:0 and starts serving `wss://` with `tls`.
    pub async fn start_tls(
        script: Script,
        tls: rustls::ServerConfig,
    ) -> std::io::Result<FakeUpstream> {
        Self::start_inner(script, Some(tls), 0).await
    }

    async fn start_inner(
        script: Script,
        tls: Option<rustls::ServerConfig>,
        port: u16,
    ) -> std::io::Result<FakeUpstream> {
        let shared = Arc::new(Shared {
            recorder: Arc::new(Recorder::new()),
            script: Mutex::new(script),
        });
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(upgrade))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .client_disconnect_timeout(Duration::from_millis(100));
        let is_tls = tls.is_some();
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        log::debug!("fake upstream listening addr={addr} tls={is_tls}");
        Ok(FakeUpstream {
            handle,
            addr,
            tls: is_tls,
            shared,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/v1/realtime`, or `wss://localhost:PORT/v1/realtime` for TLS.
    pub fn url(&self) -> String {
        if self.tls {
            format!("wss://localhost:{}/v1/realtime", self.addr.port())
        } else {
            format!("ws://{}/v1/realtime", self.addr)
        }
    }

    pub fn recorder(&self) -> Arc<Recorder> {
        Arc::clone(&self.shared.recorder)
    }

    /// Replaces the script for connections whose upgrade arrives from now on.
    pub fn set_script(&self, script: Script) {
        *self.shared.script.lock().unwrap_or_else(|e| e.into_inner()) = script;
    }

    /// Stops the server, dropping open connections.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Every request lands here: record it, then reject it or upgrade it as the script says.
async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> actix_web::Result<HttpResponse> {
    let script = shared.script();
    let handshake = handshake_of(&req);
    let model = query_model(&req);
    let connection = shared.recorder.record_handshake(handshake);
    log::debug!("fake upstream got an upgrade request connection={connection}");

    if !script.handshake_delay.is_zero() {
        tokio::time::sleep(script.handshake_delay).await;
    }
    if let Some(status) = script.reject_status {
        log::debug!("fake upstream rejects the upgrade connection={connection} status={status}");
        return Ok(rejection(status));
    }

    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &["realtime"])?;
    let stream = stream
        .max_frame_size(script.max_message_size)
        .aggregate_continuations()
        .max_continuation_size(script.max_message_size);
    let recorder = Arc::clone(&shared.recorder);
    recorder.opened();
    actix_web::rt::spawn(async move {
        let conn = Connection::new(connection, script, model, Arc::clone(&recorder), session);
        let closed = conn.run(stream).await;
        log::debug!(
            "fake upstream connection ended connection={connection} code={:?} abrupt={}",
            closed.code,
            closed.abrupt
        );
        recorder.record_close(closed);
    });
    Ok(response)
}

fn handshake_of(req: &HttpRequest) -> Handshake {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
    let headers = req
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let protocols_offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    Handshake {
        path_and_query,
        headers,
        protocols_offered,
    }
}

fn query_model(req: &HttpRequest) -> String {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("model").cloned())
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned())
}

fn rejection(status: u16) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match status {
        401 => json!({"error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "param": null,
        }}),
        429 => json!({"error": {
            "message": "Rate limit reached for requests. Please try again later.",
            "type": "requests",
            "code": "rate_limit_exceeded",
            "param": null,
        }}),
        _ => json!({"error": {
            "message": format!("The fake upstream rejected the upgrade with status {status}"),
            "type": "server_error",
            "code": null,
            "param": null,
        }}),
    };
    HttpResponse::build(code)
        .content_type("application/json")
        .body(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client::{connect, next_frame, next_json, send, T};
    use awc::ws;

    /// A scripted rejection reaches the client as that HTTP status, and is still recorded.
    #[actix_web::test]
    async fn reject_status_is_the_upgrade_answer() {
        let fake = FakeUpstream::start(Script {
            reject_status: Some(401),
            ..Script::demo()
        })
        .await
        .unwrap();
        let attempt = awc::Client::new().ws(fake.url()).connect();
        match tokio::time::timeout(T, attempt).await.unwrap() {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
                assert_eq!(status.as_u16(), 401)
            }
            Err(other) => panic!("expected a 401, got {other:?}"),
            Ok(_) => panic!("expected a 401, the upgrade was accepted"),
        }
        assert_eq!(
            fake.recorder().wait_handshakes(1, T).await.unwrap().len(),
            1
        );
        assert_eq!(fake.recorder().open_connections(), 0);
        fake.stop().await;
    }

    /// The upgrade is recorded with its path, query, headers and offered subprotocols, and
    /// `realtime` is selected.
    #[actix_web::test]
    async fn handshake_is_recorded() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let connecting = awc::Client::new()
            .ws(format!("{}?model=gpt-realtime-2", fake.url()))
            .protocols(["realtime", "openai-insecure-api-key.sk-x"])
            .header("OpenAI-Project", "proj_1")
            .connect();
        let (res, _framed) = tokio::time::timeout(T, connecting).await.unwrap().unwrap();
        assert_eq!(
            res.headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok()),
            Some("realtime")
        );
        let shakes = fake.recorder().wait_handshakes(1, T).await.unwrap();
        assert_eq!(
            shakes[0].path_and_query,
            "/v1/realtime?model=gpt-realtime-2"
        );
        assert_eq!(shakes[0].header("openai-project"), Some("proj_1"));
        assert_eq!(
            shakes[0].protocols_offered,
            vec!["realtime", "openai-insecure-api-key.sk-x"]
        );
        fake.stop().await;
    }

    /// set_script changes what the next connection gets; connections are numbered from 1.
    #[actix_web::test]
    async fn set_script_applies_to_new_connections() {
        let fake = FakeUpstream::start(Script::silent()).await.unwrap();
        let (_, mut first) = connect(&fake.url()).await;
        assert_eq!(next_json(&mut first).await["type"], "session.created");
        fake.set_script(Script {
            send_session_created: false,
            ..Script::echo()
        });
        let (_, mut second) = connect(&fake.url()).await;
        send(&mut second, ws::Message::Text("hi".into())).await;
        match next_frame(&mut second).await {
            Some(Ok(ws::Frame::Text(got))) => assert_eq!(&got[..], b"hi"),
            other => panic!("expected the echo first, got {other:?}"),
        }
        let got = fake.recorder().wait_messages(1, T).await.unwrap();
        assert_eq!(got[0].connection, 2);
        assert_eq!(fake.recorder().open_connections(), 2);
        fake.stop().await;
    }

    /// A wait that cannot be satisfied ends with WaitTimeout instead of hanging.
    #[actix_web::test]
    async fn wait_times_out() {
        let fake = FakeUpstream::start(Script::demo()).await.unwrap();
        let waited = fake
            .recorder()
            .wait_messages(1, Duration::from_millis(50))
            .await;
        assert!(waited.is_err());
        fake.stop().await;
    }

    /// start_tls serves wss:// on localhost with the given certificate.
    #[actix_web::test]
    async fn tls_serves_wss() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let fake = FakeUpstream::start_tls(Script::demo(), server)
            .await
            .unwrap();
        assert!(fake.url().starts_with("wss://localhost:"));

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = awc::Connector::new().rustls_0_23(Arc::new(client));
        let connecting = awc::Client::builder()
            .connector(connector)
            .finish()
            .ws(fake.url())
            .connect();
        let (_, mut framed) = tokio::time::timeout(T, connecting).await.unwrap().unwrap();
        assert_eq!(next_json(&mut framed).await["type"], "session.created");
        fake.stop().await;
    }
}
