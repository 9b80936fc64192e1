//! The usage state file (`USAGE_STATE_FILE`) on disk: a saved [`Ledger`] read back (a corrupt one
//! moved aside), and a new one written atomically. The registry loads it at start; the usage
//! writer's thread saves it; the relay's lock (`lock.rs`) makes that thread the file's only
//! writer, which is also what lets the lock clear out temporary files a killed relay left behind.
//!
//! A save never leaves a half-written file and never writes through a name someone else
//! prepared: the JSON goes to a temporary file of its own next to the target, named
//! `<file>.tmp-<pid>-<random>` and created with `O_CREAT|O_EXCL` (so an existing name, a symlink
//! included, is never opened) and mode 0600, then fsynced, renamed over the target (the rename
//! replaces a symlink there rather than following it), and the directory fsynced.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use super::Ledger;

/// What a temporary file's name adds to the state file's name, before `<pid>-<random>`.
const TEMP_INFIX: &str = ".tmp-";

/// How many fresh names a save tries before giving up (a name is taken only by chance or by a
/// planted file).
const TEMP_ATTEMPTS: usize = 8;

impl Ledger {
    /// Writes the ledger as JSON to `path`, atomically (see the module); creates the directory
    /// if missing. Not safe to call concurrently for the same path: the writer thread is the
    /// only caller.
    pub(crate) fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(path, &json)
    }

    /// Loads a saved ledger; a missing file → Ok(Ledger::default()); a file that is not a ledger
    /// → Err of kind `InvalidData`; other read errors are passed on.
    pub fn load(path: &Path) -> io::Result<Ledger> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// [`Ledger::load`], never failing: a corrupt file is renamed to `<path>.corrupt-<unix>` and
    /// the ledger starts empty; an unreadable one is left alone and the ledger starts empty. The
    /// second value is a warning for the caller to log when either happened.
    pub(crate) fn load_or_quarantine(path: &Path) -> (Ledger, Option<String>) {
        match Ledger::load(path) {
            Ok(ledger) => (ledger, None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let aside = with_suffix(path, &format!(".corrupt-{}", unix_now().as_secs()));
                let warning = match fs::rename(path, &aside) {
                    Ok(()) => format!(
                        "usage state file {} is corrupt ({e}); moved it to {} and started usage totals from zero",
                        path.display(),
                        aside.display()
                    ),
                    Err(re) => format!(
                        "usage state file {} is corrupt ({e}) and could not be moved aside ({re}); started usage totals from zero",
                        path.display()
                    ),
                };
                (Ledger::default(), Some(warning))
            }
            Err(e) => (
                Ledger::default(),
                Some(format!(
                    "usage state file {} could not be read ({e}); started usage totals from zero",
                    path.display()
                )),
            ),
        }
    }
}

/// Replaces `path` with `bytes`, atomically and durably (see the module).
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = directory_of(path);
    create_dir(dir)?;
    let (tmp, mut file) = create_temp(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Makes the rename itself durable. Best effort: not every platform or filesystem can fsync a
    // directory, and the file's own data is already on disk.
    #[cfg(unix)]
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The directory `path` is in (`.` for a bare file name).
fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `dir` and its missing parents; new ones are private to the relay's user (0700).
pub(super) fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A new temporary file next to `path`, under a name nobody had: `create_new` is
/// `O_CREAT|O_EXCL`, so a name that exists (a planted symlink too) is refused, never opened, and
/// another name is tried.
fn create_temp(path: &Path) -> io::Result<(PathBuf, fs::File)> {
    let mut taken = None;
    for _ in 0..TEMP_ATTEMPTS {
        let tmp = with_suffix(
            path,
            &format!("{TEMP_INFIX}{}-{:016x}", std::process::id(), random_u64()),
        );
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => taken = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(taken.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// Removes the temporary files that saves of `path` left behind (a relay killed mid-save); only
/// safe while holding the lock on `path`, so that no save is under way. Returns how many.
pub(super) fn remove_stale_temps(path: &Path) -> usize {
    let (Some(name), Ok(entries)) = (path.file_name(), fs::read_dir(directory_of(path))) else {
        return 0;
    };
    let mut prefix = name.to_owned();
    prefix.push(TEMP_INFIX);
    let prefix = prefix.as_encoded_bytes();
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().as_encoded_bytes().starts_with(prefix))
        // remove_file on a symlink removes the link, not what it points to.
        .filter(|entry| fs::remove_file(entry.path()).is_ok())
        .count()
}

/// Random bits for a temporary file's name; the clock should the system's source fail (the name
/// need only be hard to guess and unlikely to repeat: `create_new` refuses it if taken).
fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => unix_now().as_nanos() as u64,
    }
}

fn unix_now() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `path` with `suffix` appended to its file name (`state.json` → `state.json.lock`).
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protection::usage::{
        parse_usage,
        tests::{tokens, RESPONSE_DONE},
        Usage,
    };

    /// `state.json` in a fresh directory unique to this test.
    pub(in crate::protection::usage) fn scratch_path(name: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!(
                "relay-usage-{}-{}-{name}",
                std::process::id(),
                unix_now().as_nanos()
            ))
            .join("state.json")
    }

    /// Every name in `path`'s directory.
    fn names_beside(path: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(directory_of(path))?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// save then load gives back the same ledger, through a directory save created, and no
    /// temporary file is left.
    #[test]
    fn ledger_save_load_round_trip() -> io::Result<()> {
        let path = scratch_path("roundtrip");
        let mut ledger = Ledger::default();
        ledger.record(
            "alice",
            "gpt-realtime",
            &parse_usage(RESPONSE_DONE)
                .map(|r| r.usage)
                .unwrap_or_default(),
            20_574,
        );
        ledger.record("bob", "gpt-realtime-mini", &tokens(9), 20_574);
        ledger.save(&path)?;
        ledger.record("bob", "gpt-realtime-mini", &tokens(1), 20_574);
        ledger.save(&path)?;
        assert_eq!(names_beside(&path)?, ["state.json"]);

        let loaded = Ledger::load(&path)?;
        assert_eq!(loaded.day, 20_574);
        assert_eq!(loaded.all, ledger.all);
        assert_eq!(loaded.lifetime, ledger.lifetime);
        assert_eq!(loaded.by_identity, ledger.by_identity);
        assert_eq!(loaded.by_model, ledger.by_model);
        assert_eq!(Ledger::load_or_quarantine(&path).1, None);

        fs::remove_dir_all(directory_of(&path))
    }

    /// The saved file is readable by the relay's user only (0600), even where an older file was
    /// world-readable (issue 10, 7).
    #[cfg(unix)]
    #[test]
    fn saved_file_is_private() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = scratch_path("mode");
        create_dir(directory_of(&path))?;
        fs::write(&path, b"{}")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        Ledger::default().save(&path)?;
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(directory_of(&path))
    }

    /// A symlink planted where the temporary file used to be (`<file>.tmp`), or at any other
    /// name beside the file, is never written through: its target keeps its bytes (issue 10, 7).
    #[cfg(unix)]
    #[test]
    fn save_never_writes_through_a_planted_symlink() -> io::Result<()> {
        let path = scratch_path("symlink");
        let dir = directory_of(&path).to_path_buf();
        create_dir(&dir)?;
        let victim = dir.join("victim");
        fs::write(&victim, b"precious")?;
        std::os::unix::fs::symlink(&victim, with_suffix(&path, ".tmp"))?;

        let mut ledger = Ledger::default();
        ledger.record("alice", "m", &tokens(5), 3);
        ledger.save(&path)?;
        assert_eq!(fs::read(&victim)?, b"precious");
        assert_eq!(Ledger::load(&path)?.all.billable(), 5);
        assert_eq!(
            names_beside(&path)?,
            ["state.json", "state.json.tmp", "victim"]
        );
        fs::remove_dir_all(&dir)
    }

    /// Each save picks a fresh temporary name with the pid in it, and a name that exists is
    /// refused rather than opened.
    #[test]
    fn temporary_files_are_new_and_unique() -> io::Result<()> {
        let path = scratch_path("unique");
        create_dir(directory_of(&path))?;
        let (first, a) = create_temp(&path)?;
        let (second, b) = create_temp(&path)?;
        drop((a, b));
        assert_ne!(first, second);
        let prefix = format!("state.json{TEMP_INFIX}{}-", std::process::id());
        for tmp in [&first, &second] {
            let name = tmp.file_name().map(|n| n.to_string_lossy().into_owned());
            assert!(name.is_some_and(|n| n.starts_with(&prefix)), "{tmp:?}");
        }
        let mut options = fs::OpenOptions::new();
        let again = options.write(true).create_new(true).open(&first);
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        fs::remove_dir_all(directory_of(&path))
    }

    /// Temporary files of this state file are cleared out (links removed, never followed);
    /// other files beside it are not.
    #[cfg(unix)]
    #[test]
    fn stale_temporary_files_are_removed() -> io::Result<()> {
        let path = scratch_path("stale");
        let dir = directory_of(&path).to_path_buf();
        create_dir(&dir)?;
        let victim = dir.join("victim");
        fs::write(&victim, b"precious")?;
        fs::write(with_suffix(&path, ".tmp-1-00ff"), b"half a ledg")?;
        std::os::unix::fs::symlink(&victim, with_suffix(&path, ".tmp-2-0a0a"))?;
        fs::write(dir.join("other.json.tmp-1-00ff"), b"not ours")?;
        Ledger::default().save(&path)?;

        assert_eq!(remove_stale_temps(&path), 2);
        assert_eq!(
            names_beside(&path)?,
            ["other.json.tmp-1-00ff", "state.json", "victim"]
        );
        assert_eq!(fs::read(&victim)?, b"precious");
        fs::remove_dir_all(&dir)
    }

    /// A missing state file is an empty ledger, not an error.
    #[test]
    fn ledger_load_missing_is_empty() -> io::Result<()> {
        let path = scratch_path("missing");
        let ledger = Ledger::load(&path)?;
        assert_eq!(ledger.day, 0);
        assert!(ledger.by_identity.is_empty());
        let (ledger, warning) = Ledger::load_or_quarantine(&path);
        assert_eq!(ledger.all, Usage::default());
        assert_eq!(warning, None);
        Ok(())
    }

    /// A corrupt state file is an error for load, and is moved aside by load_or_quarantine.
    #[test]
    fn ledger_corrupt_file_is_quarantined() -> io::Result<()> {
        let path = scratch_path("corrupt");
        let dir = directory_of(&path).to_path_buf();
        fs::create_dir_all(&dir)?;
        fs::write(&path, b"{\"day\": 3, \"all\": {\"input_tok")?;

        let err = Ledger::load(&path).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::InvalidData));

        let (ledger, warning) = Ledger::load_or_quarantine(&path);
        assert_eq!(ledger.day, 0);
        assert!(warning.is_some_and(|w| w.contains("corrupt")));
        assert!(!path.exists());
        let aside = names_beside(&path)?;
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("state.json.corrupt-"));

        // The next save starts a fresh file in the same place.
        ledger.save(&path)?;
        assert_eq!(Ledger::load(&path)?.day, 0);
        fs::remove_dir_all(&dir)
    }
}
