//! One Nginx running `config/nginx.conf` for a test: its files in a scratch directory, a
//! certificate made here (or given), the relays it fronts; and a client that trusts only that
//! certificate and connects from 127.0.0.2.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use fake_upstream::{FakeUpstream, Script};
use openai_realtime_relay::Relay;
use rustls::pki_types::CertificateDer;

use crate::common::{
    poll::poll,
    tools::{free_port, rewrite, TempDir},
    *,
};

/// The address the test client connects from, so it differs from Nginx's own 127.0.0.1.
pub(crate) const CLIENT_IP: &str = "127.0.0.2";

/// A running Nginx, stopped on drop (also when the test panics).
pub(crate) struct Nginx {
    child: Child,
    pub(crate) port: u16,
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
        let child = &mut self.child;
        let exited = poll("nginx's exit after SIGTERM")
            .within(Duration::from_secs(5))
            .every(Duration::from_millis(10))
            .try_blocking(|| match child.try_wait() {
                Ok(Some(status)) => Ok(status),
                other => Err(format!("{other:?}")),
            });
        if exited.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Nginx {
    /// `wss://localhost:PORT{path}`
    pub(crate) fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.port)
    }

    pub(crate) fn error_log(&self) -> String {
        error_log(&self.dir)
    }
}

/// The error log of the Nginx whose files are in `dir`.
fn error_log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
}

/// Where Nginx finds a certificate chain and its key, and the certificate a client trusts.
pub(crate) struct CertPair {
    pub(crate) chain: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) der: CertificateDer<'static>,
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
pub(crate) async fn start_nginx(
    bin: &Path,
    test: &str,
    relays: &[SocketAddr],
    read_timeout: &str,
) -> Nginx {
    let dir = TempDir::new(&format!("nginx-{test}"));
    let pair = rcgen_pair(dir.path());
    serve(bin, dir, pair, relays, read_timeout).await
}

/// Starts the Nginx at `bin` with `config/nginx.conf`, its files in `dir`, serving `pair` in front
/// of `relays`, and waits until its TLS port accepts connections.
pub(crate) async fn serve(
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
    let conf = rewrite(
        "config/nginx.conf",
        &read_repo("config/nginx.conf"),
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

    let (child, dir) = (&mut nginx.child, &nginx.dir);
    poll(format!("nginx listening on {port}"))
        .until(|| {
            // Checked before each try, so an Nginx that failed to start fails the test at once.
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    |name: &str| std::fs::read_to_string(dir.0.join(name)).unwrap_or_default();
                panic!(
                    "nginx exited with {status}:\n{}\n{}",
                    log("stderr.log"),
                    log("error.log")
                );
            }
            async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("{e}; error.log:\n{}", error_log(dir)))
            }
        })
        .await;
    nginx
}

/// An awc client that trusts only `nginx`'s certificate, speaks HTTP/1.1 (ALPN) and connects
/// from 127.0.0.2.
pub(crate) fn tls_client(nginx: &Nginx) -> awc::Client {
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
pub(crate) async fn connect_tls(nginx: &Nginx, headers: &[(&str, &str)]) -> (Option<String>, Ws) {
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
pub(crate) async fn round_trip(ws: &mut Ws, id: &str) {
    send_text(
        ws,
        &format!(r#"{{"type":"conversation.item.create","event_id":"{id}"}}"#),
    )
    .await;
    let echo = next_json(ws).await;
    assert_eq!(echo["event_id"], id, "{echo}");
}

/// Two relays in front of one echo fake.
pub(crate) async fn two_relays(extra: &[(&str, &str)]) -> (FakeUpstream, Relay, Relay) {
    let fake = start_fake(Script::echo()).await;
    let a = start_relay(config(&fake.url(), extra)).await;
    let b = start_relay(config(&fake.url(), extra)).await;
    (fake, a, b)
}
