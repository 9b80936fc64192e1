//! The upstream's settings: where the Realtime API is (`OPENAI_API_URL`), the key and headers the
//! relay sends it, the extra CA roots, and the warm pool (`UPSTREAM_POOL_*`). Read by
//! `Config::from_source`; used by the upstream dialer and the pool.

use std::{path::PathBuf, time::Duration};

use super::{
    source::{ConfigError, Reader},
    KeyPolicy,
};
use crate::secret::ApiKey;

pub(super) const DEFAULT_UPSTREAM_URL: &str = "wss://api.openai.com/v1/realtime";

/// Where the relay's upstream is and how to reach it.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `ws://` or `wss://` URL of the Realtime endpoint, without a query string.
    pub url: String,
    pub api_key: ApiKey,
    pub organization: Option<String>,
    pub project: Option<String>,
    pub connect_timeout: Duration,
    /// Extra PEM roots trusted for a `wss://` upstream, on top of the webpki roots.
    pub ca_file: Option<PathBuf>,
}

impl UpstreamConfig {
    /// The settings read after the URL: `UPSTREAM_CONNECT_TIMEOUT`, `OPENAI_ORGANIZATION`,
    /// `OPENAI_PROJECT`, `UPSTREAM_CA_FILE`.
    pub(super) fn read(r: &mut Reader<'_>, url: String, api_key: ApiKey) -> UpstreamConfig {
        UpstreamConfig {
            url,
            api_key,
            connect_timeout: r.millis("UPSTREAM_CONNECT_TIMEOUT", 10_000),
            organization: header_value(r, "OPENAI_ORGANIZATION"),
            project: header_value(r, "OPENAI_PROJECT"),
            ca_file: ca_file(r),
        }
    }
}

/// `OPENAI_API_KEY`: required, except in demo mode where it is not used.
pub(super) fn api_key(r: &mut Reader<'_>, keys: KeyPolicy) -> ApiKey {
    match (r.raw("OPENAI_API_KEY"), keys) {
        (Some(k), _) => ApiKey::new(k),
        (None, KeyPolicy::Demo) => ApiKey::new("demo"),
        (None, KeyPolicy::Required) => {
            r.push(ConfigError::MissingApiKey);
            ApiKey::new("")
        }
    }
}

/// `OPENAI_API_URL`. Demo mode relays to the built-in fake and never uses it, so it is only
/// checked when a key is required.
pub(super) fn url(r: &mut Reader<'_>, keys: KeyPolicy) -> String {
    let url = r.string("OPENAI_API_URL", DEFAULT_UPSTREAM_URL);
    if keys == KeyPolicy::Required {
        check_url(r, &url);
    }
    url
}

fn check_url(r: &mut Reader<'_>, url: &str) {
    if !(url.starts_with("wss://") || url.starts_with("ws://")) {
        r.invalid("OPENAI_API_URL", url, "must start with wss:// or ws://");
    } else if url.contains('?') || url.contains('#') {
        r.invalid(
            "OPENAI_API_URL",
            url,
            "must not carry a query string; the relay adds ?model=",
        );
    } else if url.parse::<awc::http::Uri>().is_err() {
        r.invalid("OPENAI_API_URL", url, "is not a valid URL");
    }
}

/// A value the relay sends as an upstream header, so it must be a valid one.
fn header_value(r: &mut Reader<'_>, name: &'static str) -> Option<String> {
    let value = r.raw(name)?;
    if awc::http::header::HeaderValue::from_str(&value).is_err() {
        r.invalid(name, &value, "is not a valid HTTP header value");
    }
    Some(value)
}

/// `UPSTREAM_CA_FILE`, checked to hold at least one certificate.
fn ca_file(r: &mut Reader<'_>) -> Option<PathBuf> {
    let path = PathBuf::from(r.raw("UPSTREAM_CA_FILE")?);
    if let Err(problem) = check_pem_certificates(&path) {
        r.push(ConfigError::Unreadable {
            name: "UPSTREAM_CA_FILE",
            path: path.display().to_string(),
            problem,
        });
    }
    Some(path)
}

/// Checks that `path` holds at least one PEM certificate, so a bad file stops the relay before
/// it binds rather than at the first `wss://` dial.
fn check_pem_certificates(path: &std::path::Path) -> Result<(), String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut found = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
        cert.map_err(|e| e.to_string())?;
        found += 1;
    }
    if found == 0 {
        return Err("no PEM certificates found".into());
    }
    Ok(())
}

/// The warm upstream pool: sockets opened ahead of clients, per model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Warm sockets kept per pooled model (0 = no pool).
    pub size: usize,
    /// Models pooled besides `DEFAULT_MODEL`.
    pub models: Vec<String>,
    /// A warm socket older than this is closed and replaced.
    pub max_idle: Duration,
}

impl PoolConfig {
    /// `UPSTREAM_POOL_SIZE`, `UPSTREAM_POOL_MODELS`, `UPSTREAM_POOL_MAX_IDLE`.
    pub(super) fn read(r: &mut Reader<'_>) -> PoolConfig {
        PoolConfig {
            size: r.number::<usize>("UPSTREAM_POOL_SIZE", 0, 0),
            models: r.models("UPSTREAM_POOL_MODELS"),
            max_idle: r.millis("UPSTREAM_POOL_MAX_IDLE", 60_000),
        }
    }

    /// Every pooled model, the default first; empty when the pool is off.
    pub(crate) fn pooled_models(&self, default_model: &str) -> Vec<String> {
        if self.size == 0 {
            return Vec::new();
        }
        let mut models = vec![default_model.to_string()];
        for m in &self.models {
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
        models
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::{tests::parse, Config, KeyPolicy};

    /// The pool holds the default model first, then the listed ones; a bad name is refused.
    #[test]
    fn pool_models_start_with_the_default() {
        let c = parse(&[
            ("OPENAI_API_KEY", "k"),
            ("UPSTREAM_POOL_SIZE", "2"),
            ("UPSTREAM_POOL_MODELS", "gpt-realtime, gpt-realtime-mini"),
        ])
        .expect("valid");
        assert_eq!(
            c.pool.pooled_models(&c.default_model),
            vec!["gpt-realtime-mini".to_string(), "gpt-realtime".to_string()]
        );
        assert!(parse(&[("OPENAI_API_KEY", "k"), ("UPSTREAM_POOL_MODELS", "a&b")]).is_err());
    }

    /// Demo mode does not check OPENAI_API_URL, which it does not use; keyed mode does.
    #[test]
    fn demo_mode_ignores_the_upstream_url_it_does_not_use() {
        let map: HashMap<&str, &str> = [("OPENAI_API_URL", "http://not-a-websocket")].into();
        assert!(Config::from_source(&map, KeyPolicy::Demo).is_ok());
        let map: HashMap<&str, &str> = [
            ("OPENAI_API_KEY", "k"),
            ("OPENAI_API_URL", "http://not-a-websocket"),
        ]
        .into();
        assert!(Config::from_source(&map, KeyPolicy::Required).is_err());
    }

    /// UPSTREAM_CA_FILE must exist and hold at least one PEM certificate.
    #[test]
    fn ca_file_must_hold_certificates() {
        let path = std::env::temp_dir().join(format!("relay-ca-test-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate").expect("write temp file");
        let map: HashMap<&str, &str> = [
            ("OPENAI_API_KEY", "k"),
            ("UPSTREAM_CA_FILE", path.to_str().expect("utf-8 temp path")),
        ]
        .into_iter()
        .collect();
        let err = Config::from_source(&map, KeyPolicy::Required).unwrap_err();
        assert!(err.to_string().contains("UPSTREAM_CA_FILE"), "{err}");
        let _ = std::fs::remove_file(&path);
        assert!(parse(&[
            ("OPENAI_API_KEY", "k"),
            ("UPSTREAM_CA_FILE", "/nonexistent.pem")
        ])
        .is_err());
    }
}
