//! `SAFETY_IDENTIFIER`: the `OpenAI-Safety-Identifier` header the relay sends upstream, a keyed
//! hash of the client's identity or address, so OpenAI can tell end users apart without learning
//! who they are. Built once at startup ([`Safety::load`]); the upgrade handler asks it per session.
//!
//! The key is `SAFETY_IDENTIFIER_SECRET` (or its old name `SAFETY_IDENTIFIER_SALT`), else a random
//! secret made on first use and kept beside the usage state file (`<USAGE_STATE_FILE>.safety-secret`,
//! mode 0600), so identifiers stay stable across restarts. Never the OpenAI key: OpenAI holds it,
//! and could hash every IPv4 address with it to undo an `address` identifier.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::{
    config::{Protection, SafetyIdentifier},
    protection::identity::Identity,
    secret::Secret,
};

/// Random bytes in a generated secret.
const SECRET_BYTES: usize = 32;

/// `SAFETY_IDENTIFIER`: how the `OpenAI-Safety-Identifier` header is made.
pub(crate) struct Safety {
    pub(crate) mode: SafetyIdentifier,
    /// HMAC key for the hash (see the module docs): stable across restarts and instances that
    /// share it, and not reversible to the identity without it.
    pub(crate) salt: Secret,
}

impl Safety {
    /// The mode and key from the settings. With the feature on and no secret configured, reads
    /// the secret kept beside `USAGE_STATE_FILE`, or makes and keeps one. Err: that file cannot
    /// be read or written, or does not hold a secret.
    pub(crate) fn load(p: &Protection) -> io::Result<Safety> {
        let salt = match (p.safety_identifier, &p.safety_identifier_salt) {
            // Never used: `identifier` answers None before it needs a key.
            (SafetyIdentifier::Off, _) => Secret::new(""),
            (_, Some(secret)) => secret.clone(),
            (_, None) => kept_secret(&secret_path(&p.usage_state_file))?,
        };
        Ok(Safety {
            mode: p.safety_identifier,
            salt,
        })
    }

    /// The header value for this client, if the feature is on: 32 hex digits of
    /// HMAC-SHA256(key, identity or address). `address` is the client's address identity
    /// (`Authenticator::address_identity`), used by `SAFETY_IDENTIFIER=address`.
    pub(crate) fn identifier(&self, identity: &Identity, address: &Identity) -> Option<String> {
        let subject = match self.mode {
            SafetyIdentifier::Off => return None,
            SafetyIdentifier::Identity => &identity.key,
            SafetyIdentifier::Address => &address.key,
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.salt.expose().as_bytes());
        let tag = ring::hmac::sign(&key, subject.as_bytes());
        Some(hex(&tag.as_ref()[..16]))
    }
}

/// Where the generated secret is kept: `<USAGE_STATE_FILE>.safety-secret`.
pub(crate) fn secret_path(usage_state_file: &Path) -> PathBuf {
    let mut name = usage_state_file.as_os_str().to_owned();
    name.push(".safety-secret");
    PathBuf::from(name)
}

/// The secret in `path`, made now if the file does not exist. Two relays starting at once on the
/// same file agree: each writes its own candidate to a fresh file and links it into place, and
/// the one that finds the place taken reads the winner's.
fn kept_secret(path: &Path) -> io::Result<Secret> {
    match fs::read_to_string(path) {
        Ok(text) => return parse_secret(path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(annotate(path, "cannot read", e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| annotate(dir, "cannot create the directory", e))?;
    }
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| io::Error::other("safety identifier: no random numbers from the system"))?;
    let secret = hex(&bytes);
    let candidate = candidate_path(path, &bytes);
    write_private(&candidate, &secret).map_err(|e| annotate(&candidate, "cannot write", e))?;
    // A hard link never replaces an existing file; where links are not supported, a rename
    // (which could replace a secret another relay kept a moment ago) is the fallback.
    let linked = match fs::hard_link(&candidate, path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => fs::rename(&candidate, path),
        linked => linked,
    };
    let _ = fs::remove_file(&candidate);
    match linked {
        Ok(()) => {
            log::info!(
                "safety identifier: made a new secret and kept it in {}",
                path.display()
            );
            Ok(Secret::new(secret))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(path).map_err(|e| annotate(path, "cannot read", e))?;
            parse_secret(path, &text)
        }
        Err(e) => Err(annotate(path, "cannot write", e)),
    }
}

/// A temporary name beside `path` that no other process picks: the candidate's own first bytes.
fn candidate_path(path: &Path, bytes: &[u8]) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}-{}", std::process::id(), hex(&bytes[..8])));
    PathBuf::from(name)
}

/// Creates `path` (it must not exist; symlinks are not followed into), readable by its owner
/// only, with `text` in it, synced to disk.
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    io::Write::write_all(&mut file, format!("{text}\n").as_bytes())?;
    file.sync_all()
}

/// A kept secret: 64 hex digits (whitespace around them ignored).
fn parse_secret(path: &Path, text: &str) -> io::Result<Secret> {
    let secret = text.trim();
    if secret.len() == 2 * SECRET_BYTES && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Secret::new(secret));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "safety identifier: {} does not hold a secret (64 hex digits); restore it, or delete it \
             to make a new one (every client's identifier then changes), or set \
             SAFETY_IDENTIFIER_SECRET",
            path.display()
        ),
    ))
}

fn annotate(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("safety identifier: {what} {}: {e}", path.display()),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::tests::parse;

    /// A fresh directory under the system's temporary one, removed by the caller.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "relay-safety-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn protection(
        mode: &'static str,
        usage_file: &Path,
        secret: Option<&'static str>,
    ) -> Protection {
        let usage: &'static str = Box::leak(usage_file.display().to_string().into_boxed_str());
        let mut vars = vec![
            ("OPENAI_API_KEY", "sk-the-openai-key"),
            ("SAFETY_IDENTIFIER", mode),
            ("USAGE_STATE_FILE", usage),
        ];
        if let Some(s) = secret {
            vars.push(("SAFETY_IDENTIFIER_SECRET", s));
        }
        parse(&vars).expect("valid").protection
    }

    fn address(ip: &str) -> Identity {
        Identity::address(Some(ip.parse::<IpAddr>().expect("ip")), 64)
    }

    fn hmac_hex(key: &str, subject: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
        hex(&ring::hmac::sign(&key, subject.as_bytes()).as_ref()[..16])
    }

    /// Without a configured secret, one is made, kept beside the usage file (0600), read back on
    /// the next start, and used in place of the OpenAI key.
    #[test]
    fn generated_secret_is_kept_and_never_the_api_key() {
        let dir = scratch("kept");
        let usage = dir.join("state").join("usage.json");
        let p = protection("address", &usage, None);
        let first = Safety::load(&p).expect("loads");
        let kept = secret_path(&usage);
        let text = fs::read_to_string(&kept).expect("kept beside the usage file");
        assert_eq!(text.trim().len(), 64);
        assert!(first.salt.matches(text.trim()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&kept).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let again = Safety::load(&p).expect("loads again");
        let who = address("198.51.100.7");
        let id = first.identifier(&who, &who).expect("on");
        assert_eq!(again.identifier(&who, &who), Some(id.clone()));
        assert_ne!(id, hmac_hex("sk-the-openai-key", "ip:198.51.100.7"));
        assert_eq!(id, hmac_hex(text.trim(), "ip:198.51.100.7"));
        let leftovers: Vec<_> = fs::read_dir(kept.parent().expect("dir"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = fs::remove_dir_all(dir);
    }

    /// A configured secret is used as is and nothing is written; off writes nothing either.
    #[test]
    fn configured_secret_and_off_write_nothing() {
        let dir = scratch("configured");
        let usage = dir.join("usage.json");
        let s = Safety::load(&protection("identity", &usage, Some("my-own-secret"))).expect("ok");
        let who = address("198.51.100.7");
        assert_eq!(
            s.identifier(&who, &who),
            Some(hmac_hex("my-own-secret", "ip:198.51.100.7"))
        );
        let off = Safety::load(&protection("off", &usage, None)).expect("ok");
        assert_eq!(off.identifier(&who, &who), None);
        assert!(!secret_path(&usage).exists());
        let _ = fs::remove_dir_all(dir);
    }

    /// A kept file that does not hold a secret stops the start with a message that says what to
    /// do; it is not replaced (identifiers would change silently).
    #[test]
    fn a_damaged_secret_file_is_an_error() {
        let dir = scratch("damaged");
        let usage = dir.join("usage.json");
        fs::write(secret_path(&usage), "not a secret\n").expect("write");
        let err = Safety::load(&protection("address", &usage, None))
            .err()
            .expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("SAFETY_IDENTIFIER_SECRET"),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(secret_path(&usage)).expect("kept"),
            "not a secret\n"
        );
        let _ = fs::remove_dir_all(dir);
    }

    /// Identity mode hashes the identity, address mode the address identity (an IPv6 client by
    /// its /64).
    #[test]
    fn identity_or_address() {
        let mut s = Safety {
            mode: SafetyIdentifier::Identity,
            salt: Secret::new("k"),
        };
        let identity = Identity {
            key: "token:alice".into(),
            kind: crate::protection::identity::IdentityKind::Token,
            models: None,
            policy: None,
            usd_budget: None,
            model: None,
            session: None,
        };
        let a = address("2001:db8:1:2::a");
        let b = address("2001:db8:1:2::b");
        assert_eq!(
            s.identifier(&identity, &a),
            Some(hmac_hex("k", "token:alice"))
        );
        s.mode = SafetyIdentifier::Address;
        assert_eq!(
            s.identifier(&identity, &a),
            Some(hmac_hex("k", "ip:2001:db8:1:2::/64"))
        );
        assert_eq!(s.identifier(&identity, &a), s.identifier(&identity, &b));
    }
}
