//! `config/self-signed-cert.sh`: the pair it writes is served by Nginx, and a second run keeps it.

use std::process::Command;

use fake_upstream::Script;
use rustls::pki_types::{pem::PemObject, CertificateDer};

use crate::{
    common::{
        tools::{output, tool, TempDir},
        *,
    },
    server::{connect_tls, round_trip, serve, CertPair},
};

/// The pair `config/self-signed-cert.sh` writes is served by Nginx and accepted for localhost by a client that trusts it; a second run leaves it alone.
#[actix_web::test]
async fn self_signed_cert_script_makes_a_pair_nginx_serves() {
    let Some(bin) = tool("nginx") else { return };
    let Some(_) = tool("openssl") else { return };
    let dir = TempDir::new("nginx-script");
    let certs = dir.path().join("certs");
    let script = repo("config/self-signed-cert.sh");
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

    let fake = start_fake(Script::echo()).await;
    let relay = start_relay(config(&fake.url(), &[])).await;
    let nginx = serve(&bin, dir, pair, &[relay.local_addr()], "120s").await;
    let (protocol, mut ws) = connect_tls(&nginx, &[]).await;
    assert_eq!(protocol.as_deref(), Some("realtime"));
    round_trip(&mut ws, "self-signed").await;

    drop(nginx);
    stop_relay(relay).await;
    stop_fake(fake).await;
}
