//! The relay behind the real Nginx running `config/nginx.conf` (test ports, a certificate, and two
//! relay instances substituted on its `# test:` lines): `wss://` through TLS termination, the
//! `realtime` subprotocol, the client's own address, heartbeats against Nginx's read timeout, a
//! drained instance while the other keeps serving, and the pair `config/self-signed-cert.sh`
//! makes for a first try.
//!
//! Needs `nginx` (Debian's package): without it each test says it is skipped, unless
//! `RELAY_TESTS_REQUIRE` lists it; `bash tests/run.sh` installs it.
mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use awc::ws::{Frame, Message};
use common::{
    tools::{free_port, output, tool, TempDir},
    *,
};
use fake_upstream::{FakeUpstream, Script};
use futures_util::{SinkExt, StreamExt};
use openai_realtime_relay::Relay;
use rustls::pki_types::{pem::PemObject, CertificateDer};

/// The address the test client connects from, so it differs from Nginx's own 127.0.0.1.
const CLIENT_IP: &str = "127.0.0.2";

/// A running Nginx, stopped on drop (also when the test panics).
struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
    cert_der: CertificateDer<'static>,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Not SIGKILL first: that orphans the worker processes, which keep the ports. SIGTERM makes
        // the master stop its workers, then exit; SIGKILL only if that does not happen in time.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// `wss://localhost:PORT{path}`
    fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

/// Rewrites every directive line of `conf` that ends in `# test:NAME` with the replacement for NAME (an
/// empty replacement drops the line). Panics when a marker has no replacement or a replacement
/// finds no marker, so the shipped file and this test cannot drift apart unnoticed.
fn rewrite(conf: &str, replacements: &[(&str, String)]) -> String {
    let mut used = vec![false; replacements.len()];
    let mut out = String::new();
    for line in conf.lines() {
        let marker = line.split_once("# test:").map(|(_, m)| m);
        let Some(marker) = marker.filter(|_| !line.trim_start().starts_with('#')) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let marker = marker.trim();
        let i = replacements
            .iter()
            .position(|(name, _)| *name == marker)
            .unwrap_or_else(|| panic!("no test replacement for marker {marker:?}"));
        used[i] = true;
        let indent = &line[..line.len() - line.trim_start().len()];
        for new in replacements[i].1.lines() {
            out.push_str(indent);
            out.push_str(new);
            out.push('\n');
        }
    }
    for (i, (name, _)) in replacements.iter().enumerate() {
        assert!(used[i], "config/nginx.conf lost its `# test:{name}` line");
    }
    out
}

/// Where Nginx finds a certificate chain and its key, and the certificate a client trusts.
struct CertPair {
    chain: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

/// A fresh self-signed pair for localhost, written to `dir`.
fn rcgen_pair(dir: &Path) -> CertPair {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let pair = CertPair {
        chain: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        der: cert.cert.der().clone(),
    };
    std::fs::write(&pair.chain, cert.cert.pem()).expect("write cert");
    std::fs::write(&pair.key, cert.key_pair.serialize_pem()).expect("write key");
    pair
}

/// Starts the Nginx at `bin` with `config/nginx.conf` in front of `relays`, with
/// `proxy_read_timeout` `read_timeout` and a certificate made here.
async fn start_nginx(bin: &Path, test: &str, relays: &[SocketAddr], read_timeout: &str) -> Nginx {
    let dir = TempDir::new(&format!("nginx-{test}"));
    let pair = rcgen_pair(dir.path());
    serve(bin, dir, pair, relays, read_timeout).await
}

/// Starts the Nginx at `bin` with `config/nginx.conf`, its files in `dir`, serving `pair` in front
/// of `relays`, and waits until its TLS port accepts connections.
async fn serve(
    bin: &Path,
    dir: TempDir,
    pair: CertPair,
    relays: &[SocketAddr],
    read_timeout: &str,
) -> Nginx {
    let d = dir.0.display().to_string();

    let port = free_port();
    let http_port = free_port();
    let servers: String = relays.iter().map(|a| format!("server {a};\n")).collect();
    let conf =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nginx.conf"))
            .expect("read config/nginx.conf");
    let conf = rewrite(
        &conf,
        &[
            // Workers must read this test's files; ignored (with a warning) when not root.
            ("user", "user root;".into()),
            ("pid", format!("pid {d}/nginx.pid;")),
            (
                "access_log",
                format!(
                    "access_log {d}/access.log;\n\
                     client_body_temp_path {d}/body;\n\
                     proxy_temp_path {d}/proxy;\n\
                     fastcgi_temp_path {d}/fastcgi;\n\
                     uwsgi_temp_path {d}/uwsgi;\n\
                     scgi_temp_path {d}/scgi;"
                ),
            ),
            ("error_log", format!("error_log {d}/error.log info;")),
            ("servers", servers),
            ("listen_http", format!("listen 127.0.0.1:{http_port};")),
            ("listen_http6", String::new()),
            ("listen_tls", format!("listen 127.0.0.1:{port} ssl;")),
            ("listen_tls6", String::new()),
            ("cert", format!("ssl_certificate {};", pair.chain.display())),
            (
                "key",
                format!("ssl_certificate_key {};", pair.key.display()),
            ),
            (
                "read_timeout",
                format!("proxy_read_timeout {read_timeout};"),
            ),
        ],
    );
    let conf_path = dir.0.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");

    let stderr = std::fs::File::create(dir.0.join("stderr.log")).expect("stderr file");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(&dir.0)
        .arg("-e")
        .arg(dir.0.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn nginx");
    let mut nginx = Nginx {
        child,
        port,
        dir,
        cert_der: pair.der,
    };

    let deadline = Instant::now() + T;
    loop {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let stderr =
                std::fs::read_to_string(nginx.dir.0.join("stderr.log")).unwrap_or_default();
            panic!(
                "nginx exited with {status}:\n{stderr}\n{}",
                nginx.error_log()
            );
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return nginx;
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {port} within {T:?}:\n{}",
            nginx.error_log()
        );
        // Polling interval while Nginx starts; readiness is the port accepting, not this pause.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An awc client that trusts only `nginx`'s certificate, speaks HTTP/1.1 (ALPN) and connects
/// from 127.0.0.2.
fn tls_client(nginx: &Nginx) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(nginx.cert_der.clone())
        .expect("certificate is a valid trust anchor");
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = awc::Connector::new()
        .rustls_0_23(Arc::new(tls))
        .local_address(CLIENT_IP.parse().expect("IP"));
    // Not ClientBuilder::max_http_version: it rebuilds the TLS config and drops these roots.
    awc::Client::builder().connector(connector).finish()
}

/// Opens `wss://localhost:PORT/realtime` through Nginx offering `realtime`, with extra `headers`;
/// returns the negotiated subprotocol and the socket after `session.created`.
async fn connect_tls(nginx: &Nginx, headers: &[(&str, &str)]) -> (Option<String>, Ws) {
    let mut req = tls_client(nginx)
        .ws(nginx.url("/realtime"))
        // Resolve "localhost" to the address Nginx listens on, whatever /etc/hosts prefers.
        .address(SocketAddr::from(([127, 0, 0, 1], nginx.port)))
        .protocols(["realtime"])
        .max_frame_size(1024 * 1024);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (res, mut ws) = tokio::time::timeout(T, req.connect())
        .await
        .expect("connect through nginx timed out")
        .unwrap_or_else(|e| panic!("upgrade through nginx failed: {e}\n{}", nginx.error_log()));
    assert_eq!(res.status().as_u16(), 101);
    let protocol = res
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    (protocol, ws)
}

/// Sends `id` in an event and expects the echo fake to send it back.
async fn round_trip(ws: &mut Ws, id: &str) {
    send_text(
        ws,
        &format!(r#"{{"type":"conversation.item.create","event_id":"{id}"}}"#),
    )
    .await;
    let echo = next_json(ws).await;
    assert_eq!(echo["event_id"], id, "{echo}");
}

/// Two relays in front of one echo fake.
async fn two_relays(extra: &[(&str, &str)]) -> (FakeUpstream, Relay, Relay) {
    let fake = FakeUpstream::start(Script::echo()).await.expect("fake");
    let a = start_relay(config(&fake.url(), extra)).await;
    let b = start_relay(config(&fake.url(), extra)).await;
    (fake, a, b)
}

/// `GET /stats?sessions=true` of `relay`.
async fn sessions(relay: &Relay) -> Vec<serde_json::Value> {
    let (status, body) = get(
        &format!("http://{}/stats?sessions=true", relay.local_addr()),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    stats["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("/stats?sessions=true has no sessions list: {stats}"))
        .clone()
}

/// Waits until `relay` reports `n` active sessions (bookkeeping lags the socket by a message).
async fn wait_active(relay: &Relay, n: u64) {
    let url = format!("http://{}/stats", relay.local_addr());
    let deadline = Instant::now() + T;
    loop {
        let (_, body) = get(&url, &[]).await;
        let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        if stats["active_sessions"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} active: {stats}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Through Nginx's TLS front end the `realtime` subprotocol is selected and messages flow both ways.
#[actix_web::test]
async fn wss_through_nginx_keeps_subprotocol_and_messages() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[]).await;
    let nginx = start_nginx(
        &bin,
        "flow",
        &[a.local_addr(), b.local_addr()],
        "120s", // as shipped
    )
    .await;

    let (protocol, mut ws) = connect_tls(&nginx, &[]).await;
    assert_eq!(protocol.as_deref(), Some("realtime"));
    for i in 0..3 {
        round_trip(&mut ws, &format!("flow{i}")).await;
    }
    let hs = fake.recorder().wait_handshakes(1, T).await.expect("dialed");
    assert_eq!(
        hs[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );

    drop(nginx);
    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

/// The relay records the client's address from Nginx's X-Forwarded-For, not Nginx's, and a forged header does not change it.
#[actix_web::test]
async fn relay_sees_the_client_address_not_nginx() {
    let Some(bin) = tool("nginx") else { return };
    // Only Nginx (127.0.0.1) is trusted: the client's 127.0.0.2 is loopback too, and the default
    // 127.0.0.0/8 would make every hop trusted.
    let (fake, a, b) = two_relays(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let nginx = start_nginx(&bin, "client-ip", &[a.local_addr(), b.local_addr()], "120s").await;

    let (_, mut plain) = connect_tls(&nginx, &[]).await;
    let (_, mut forged) = connect_tls(&nginx, &[("X-Forwarded-For", "203.0.113.9")]).await;
    round_trip(&mut plain, "ip1").await;
    round_trip(&mut forged, "ip2").await;

    let mut all = sessions(&a).await;
    all.extend(sessions(&b).await);
    assert_eq!(all.len(), 2, "{all:?}");
    for s in &all {
        assert_eq!(s["client"], CLIENT_IP, "{all:?}");
    }

    drop(nginx);
    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

/// A session idle for longer than Nginx's proxy_read_timeout survives, because the relay's pings cross Nginx.
#[actix_web::test]
async fn idle_session_survives_nginx_read_timeout_through_heartbeats() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[("HEARTBEAT_INTERVAL", "300")]).await;
    let nginx = start_nginx(&bin, "heartbeat", &[a.local_addr(), b.local_addr()], "1s").await;
    let (_, mut ws) = connect_tls(&nginx, &[]).await;

    // The idle period is the behaviour under test, not a readiness wait: 2.5 s is well past
    // Nginx's 1 s read timeout. The client answers pings (as browsers do) and sends no data.
    let idle = Duration::from_millis(2500);
    let deadline = tokio::time::Instant::now() + idle;
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Frame::Ping(p)))) => {
                pings += 1;
                let _ = ws.send(Message::Pong(p)).await;
            }
            Ok(other) => panic!(
                "idle session got {other:?} after {pings} pings\n{}",
                nginx.error_log()
            ),
        }
    }
    assert!(pings >= 4, "only {pings} pings in {idle:?}");
    round_trip(&mut ws, "after-idle").await;

    drop(nginx);
    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

/// Without heartbeats within Nginx's proxy_read_timeout, the same idle session is cut (so the test above can fail).
#[actix_web::test]
async fn idle_session_without_heartbeats_is_cut_by_nginx() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[("HEARTBEAT_INTERVAL", "60000")]).await;
    let nginx = start_nginx(
        &bin,
        "no-heartbeat",
        &[a.local_addr(), b.local_addr()],
        "1s",
    )
    .await;
    let (_, mut ws) = connect_tls(&nginx, &[]).await;
    let started = Instant::now();
    loop {
        match tokio::time::timeout(T, ws.next())
            .await
            .expect("nginx never cut the idle session")
        {
            Some(Ok(Frame::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            None | Some(Err(_)) | Some(Ok(Frame::Close(_))) => break,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut after {:?}, before the read timeout",
        started.elapsed()
    );

    drop(nginx);
    a.stop().await;
    b.stop().await;
    fake.stop().await;
}

/// Draining one relay closes its clients with 1012 through Nginx; the other instance keeps its sessions and takes new ones.
#[actix_web::test]
async fn draining_one_relay_closes_its_clients_and_nginx_uses_the_other() {
    let Some(bin) = tool("nginx") else { return };
    let (fake, a, b) = two_relays(&[("SHUTDOWN_TIMEOUT", "3000")]).await;
    let nginx = start_nginx(&bin, "drain", &[a.local_addr(), b.local_addr()], "120s").await;

    // least_conn with a shared zone: the second session goes to the instance without one.
    let (_, mut first) = connect_tls(&nginx, &[]).await;
    let (_, second) = connect_tls(&nginx, &[]).await;
    wait_active(&a, 1).await;
    wait_active(&b, 1).await;
    // Which client is on `a`: the one whose session `a` lists after a message from it.
    round_trip(&mut first, "which").await;
    let a_sessions = sessions(&a).await;
    let first_on_a = a_sessions[0]["client_to_upstream_bytes"]
        .as_u64()
        .is_some_and(|b| b > 0);
    let (mut on_a, mut on_b) = if first_on_a {
        (first, second)
    } else {
        (second, first)
    };

    tokio::time::timeout(T, a.drain())
        .await
        .expect("drain timed out");

    let (error, close) = expect_close(&mut on_a).await;
    let error = error.expect("an error event before the close");
    assert_eq!(error["error"]["code"], "server_shutting_down", "{error}");
    let close = close.expect("close frame with a code");
    assert_eq!(u16::from(close.code), 1012, "{close:?}");

    round_trip(&mut on_b, "still-here").await;
    let (_, mut newcomer) = connect_tls(&nginx, &[]).await;
    round_trip(&mut newcomer, "new").await;
    wait_active(&b, 2).await;

    drop(nginx);
    b.stop().await;
    fake.stop().await;
}

/// The pair `config/self-signed-cert.sh` writes is served by Nginx and accepted for localhost by a client that trusts it; a second run leaves it alone.
#[actix_web::test]
async fn self_signed_cert_script_makes_a_pair_nginx_serves() {
    let Some(bin) = tool("nginx") else { return };
    let Some(_) = tool("openssl") else { return };
    let dir = TempDir::new("nginx-script");
    let certs = dir.path().join("certs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/self-signed-cert.sh");
    let run = || output(Command::new("bash").arg(&script).arg(&certs));
    let out = run();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let pair = CertPair {
        chain: certs.join("fullchain.pem"),
        key: certs.join("privkey.pem"),
        der: CertificateDer::from_pem_file(certs.join("fullchain.pem"))
            .expect("fullchain.pem holds a PEM certificate"),
    };

    let again = run();
    assert!(!again.status.success(), "a second run overwrote the pair");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    let kept = CertificateDer::from_pem_file(&pair.chain).expect("still a certificate");
    assert_eq!(kept, pair.der, "the certificate changed");

    let fake = FakeUpstream::start(Script::echo()).await.expect("fake");
    let relay = start_relay(config(&fake.url(), &[])).await;
    let nginx = serve(&bin, dir, pair, &[relay.local_addr()], "120s").await;
    let (protocol, mut ws) = connect_tls(&nginx, &[]).await;
    assert_eq!(protocol.as_deref(), Some("realtime"));
    round_trip(&mut ws, "self-signed").await;

    drop(nginx);
    relay.stop().await;
    fake.stop().await;
}
