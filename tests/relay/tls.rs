//! A `wss://` upstream: a CA and a `localhost` certificate generated in the test, trusted only
//! through `UPSTREAM_CA_FILE`.

use std::{path::PathBuf, sync::Arc};

use fake_upstream::{FakeUpstream, Script};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::common::*;

/// A fresh CA, a server config for `localhost` signed by it, and the CA's PEM.
fn pki() -> (rustls::ServerConfig, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "relay test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca.self_signed(&ca_key).expect("CA cert");

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).expect("leaf cert");

    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("server config");
    (server, ca.pem())
}

/// Writes `pem` to a temp file unique to this process and test.
fn write_ca(test: &str, pem: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("relay-tls-{}-{test}.pem", std::process::id()));
    std::fs::write(&path, pem).expect("write CA file");
    path
}

/// A `wss://` upstream whose CA is given in UPSTREAM_CA_FILE carries an echo round trip.
#[actix_web::test]
async fn wss_upstream_trusted_through_ca_file() {
    let (server, ca_pem) = pki();
    let fake = timed(
        "the TLS fake's start",
        FakeUpstream::start_tls(Script::echo(), server),
    )
    .await
    .expect("TLS fake starts");
    assert!(fake.url().starts_with("wss://localhost:"), "{}", fake.url());
    let ca_file = write_ca("trusted", &ca_pem);
    let ca = ca_file.to_str().expect("UTF-8 path");
    let relay = start_relay(config(&fake.url(), &[("UPSTREAM_CA_FILE", ca)])).await;

    let (_, mut ws) = connect_with(
        &format!("ws://{}/realtime", relay.local_addr()),
        &["realtime"],
        &[],
    )
    .await
    .expect("upgrade succeeds");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    send_text(&mut ws, r#"{"type":"session.update","event_id":"tls1"}"#).await;
    assert_eq!(next_json(&mut ws).await["event_id"], "tls1");
    let hs = fake
        .recorder()
        .wait_handshakes(1, T)
        .await
        .expect("handshake");
    assert_eq!(
        hs[0].header("authorization"),
        Some(format!("Bearer {TEST_KEY}").as_str())
    );

    stop_relay(relay).await;
    stop_fake(fake).await;
    let _ = std::fs::remove_file(ca_file);
}

/// The same `wss://` upstream without UPSTREAM_CA_FILE is not trusted: `upstream_unavailable`.
#[actix_web::test]
async fn wss_upstream_untrusted_without_ca_file() {
    let (server, _) = pki();
    let fake = timed(
        "the TLS fake's start",
        FakeUpstream::start_tls(Script::echo(), server),
    )
    .await
    .expect("TLS fake starts");
    let relay = start_relay(config(&fake.url(), &[])).await;

    let (_, mut ws) = connect_with(
        &format!("ws://{}/realtime", relay.local_addr()),
        &["realtime"],
        &[],
    )
    .await
    .expect("upgrade succeeds");
    expect_failure(&mut ws, "upstream_unavailable", 1011).await;
    assert!(
        fake.recorder().handshakes().is_empty(),
        "an untrusted certificate must stop the dial before any HTTP request"
    );

    stop_relay(relay).await;
    stop_fake(fake).await;
}
