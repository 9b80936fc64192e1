//! TLS for a `wss://` upstream: webpki roots plus `UPSTREAM_CA_FILE`, the ring provider only,
//! ALPN pinned to HTTP/1.1. Built once at startup and shared by every worker's dialer.

use std::{io, path::Path, sync::Arc};

/// The TLS settings for a `wss://` upstream: webpki roots plus `UPSTREAM_CA_FILE`, the ring
/// provider only, and ALPN pinned to HTTP/1.1 (a WebSocket cannot ride an h2 connection here).
pub(crate) fn tls_config(ca_file: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| io::Error::other(format!("UPSTREAM_CA_FILE {}: {e}", path.display())))?
        {
            let cert = cert.map_err(|e| {
                io::Error::other(format!("UPSTREAM_CA_FILE {}: {e}", path.display()))
            })?;
            roots.add(cert).map_err(|e| {
                io::Error::other(format!("UPSTREAM_CA_FILE {}: {e}", path.display()))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(io::Error::other(format!(
                "UPSTREAM_CA_FILE {}: no PEM certificates found",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
