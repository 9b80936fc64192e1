//! The fake's HTTP face: [`FakeUpstream`] binds 127.0.0.1, runs a one-worker actix-web server,
//! routes `POST /v1/realtime/calls` and `…/calls/{call_id}/hangup` to `calls/`, and answers
//! every other request in [`upgrade`]: record it, wait or reject as the script says, then attach
//! it to a call (`?call_id=`) or upgrade it and hand the socket to a `Connection`. It stops with
//! [`FakeUpstream::stop`] or with the actix `System` that started it.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};

use crate::calls;
use crate::connection::Connection;
use crate::http_error::rejection;
use crate::recorder::Recorder;
use crate::request::{handshake_of, query_param, DEFAULT_MODEL};
use crate::script::Script;
use crate::shared::Shared;

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
        let shared = Arc::new(Shared::new(script));
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1/realtime/calls", web::post().to(calls::create))
                .route(
                    "/v1/realtime/calls/{call_id}/hangup",
                    web::post().to(calls::hangup),
                )
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

    /// `http://127.0.0.1:PORT/v1/realtime/calls`, or `https://localhost:PORT/…` for TLS: where
    /// WebRTC calls are made (`POST`) and hung up (`/{call_id}/hangup`).
    pub fn calls_url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/v1/realtime/calls", self.addr.port())
        } else {
            format!("http://{}/v1/realtime/calls", self.addr)
        }
    }

    pub fn recorder(&self) -> Arc<Recorder> {
        Arc::clone(&self.shared.recorder)
    }

    /// Replaces the script for connections and calls whose request arrives from now on.
    pub fn set_script(&self, script: Script) {
        self.shared.set_script(script);
    }

    /// Sends `event` on call `call_id` as if the model produced it (to its data channel, if
    /// open, and its sidebands); returns once it has been handed to them.
    #[cfg(feature = "webrtc")]
    pub async fn call_event(
        &self,
        call_id: &str,
        event: serde_json::Value,
    ) -> Result<(), crate::UnknownCall> {
        self.shared.calls.push(call_id, event).await
    }

    /// Runs one response on call `call_id` (`response.created` … `response.done` with usage)
    /// as if its browser had sent `response.create`; returns once `response.done` is sent.
    #[cfg(feature = "webrtc")]
    pub async fn call_respond(&self, call_id: &str) -> Result<(), crate::UnknownCall> {
        self.shared.calls.respond(call_id).await
    }

    /// Ids of the calls that are open now (made and neither hung up nor gone), oldest first.
    #[cfg(feature = "webrtc")]
    pub fn open_calls(&self) -> Vec<String> {
        self.shared.calls.ids()
    }

    /// Stops the server, dropping open connections.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Every request but the calls endpoints lands here: record it, then reject it, attach it to a
/// call (`?call_id=`) or upgrade it, as the script and the query say.
async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> actix_web::Result<HttpResponse> {
    let script = shared.script();
    let handshake = handshake_of(&req);
    let model = query_param(&req, "model").unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let call_id = query_param(&req, "call_id");
    let connection = shared.recorder.record_handshake(handshake);
    log::debug!("fake upstream got an upgrade request connection={connection}");

    if !script.handshake_delay.is_zero() {
        tokio::time::sleep(script.handshake_delay).await;
    }
    if let Some(status) = script.reject_status {
        log::debug!("fake upstream rejects the upgrade connection={connection} status={status}");
        return Ok(rejection(status));
    }
    if let Some(call_id) = call_id {
        return calls::attach(&req, body, &call_id, connection, &script, &shared).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client::{connect, next_frame, next_json, send, T};
    use actix_web::http::header;
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
