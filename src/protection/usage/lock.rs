//! One relay per usage state file: [`StateLock`], an advisory lock (`flock`, through std's
//! `File::try_lock`) on `<USAGE_STATE_FILE>.lock`. `relay::start` takes it before the registry
//! reads the file, and the `Relay` holds it for its life; the usage writer writes only while it is
//! held. A second relay pointed at the same file fails to start with an error that names the
//! setting and the path, instead of the two overwriting each other's counts.
//!
//! The kernel releases the lock when the holder's process ends, however it ends (`kill -9`
//! too), so a lock file left behind never blocks a restart. The lock file itself stays: removing
//! it on exit would let a relay that opened the old file and one that creates a new one both
//! hold "the" lock.

use std::{
    fs::{self, File, TryLockError},
    io,
    path::Path,
};

use super::store::{create_dir, remove_stale_temps, with_suffix};

/// Held for as long as the relay runs on its state file; released on drop.
pub(crate) struct StateLock {
    /// The locked file; None when the lock could not be taken for a reason other than another
    /// relay holding it (already logged).
    _file: Option<File>,
}

impl StateLock {
    /// Locks `state_file` for this relay, and clears out temporary files of earlier saves that a
    /// killed relay left behind. Err (kind `ResourceBusy`) when another relay holds the lock. A
    /// lock file that cannot be created or locked (a read-only directory, a filesystem without
    /// locks) is logged and the relay runs unlocked, as it ran before there was a lock: if the
    /// directory is not writable, the saves say so too.
    pub(crate) fn acquire(state_file: &Path) -> io::Result<StateLock> {
        let path = with_suffix(state_file, ".lock");
        let file = match open(&path) {
            Ok(file) => file,
            Err(e) => return Ok(StateLock::unlocked(&path, &e)),
        };
        match file.try_lock() {
            Ok(()) => {
                let removed = remove_stale_temps(state_file);
                if removed > 0 {
                    log::info!(
                        "usage state: removed {removed} temporary file(s) an interrupted save of {} left behind",
                        state_file.display()
                    );
                }
                Ok(StateLock { _file: Some(file) })
            }
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "USAGE_STATE_FILE {} is in use by another relay (it holds the lock on {}); \
                     give each relay a state file of its own",
                    state_file.display(),
                    path.display()
                ),
            )),
            Err(TryLockError::Error(e)) => Ok(StateLock::unlocked(&path, &e)),
        }
    }

    fn unlocked(path: &Path, e: &io::Error) -> StateLock {
        log::warn!(
            "usage state: cannot lock {} ({e}); a second relay on the same USAGE_STATE_FILE would not be stopped",
            path.display()
        );
        StateLock { _file: None }
    }
}

/// Opens (creating it, 0600, with its directory) the lock file; never truncates it.
fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protection::usage::store::tests::scratch_path;

    /// While one lock is held, a second on the same file is refused with an error naming the
    /// setting and both paths; once dropped, the file can be locked again. Other files are
    /// independent.
    #[test]
    fn one_lock_per_state_file() -> io::Result<()> {
        let path = scratch_path("lock");
        let first = StateLock::acquire(&path)?;
        assert!(first._file.is_some());
        let refused = StateLock::acquire(&path).err();
        assert_eq!(
            refused.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::ResourceBusy)
        );
        let message = refused.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.starts_with("USAGE_STATE_FILE "), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(".lock"), "{message}");

        let other = StateLock::acquire(&path.with_file_name("other.json"))?;
        drop(first);
        let again = StateLock::acquire(&path)?;
        assert!(again._file.is_some());
        drop((other, again));
        if let Some(dir) = path.parent() {
            fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// The lock file is private (0600) and the lock clears out stale temporary files.
    #[cfg(unix)]
    #[test]
    fn lock_file_is_private_and_clears_stale_temps() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = scratch_path("lockmode");
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        let stale = with_suffix(&path, ".tmp-42-0123456789abcdef");
        fs::write(&stale, b"half")?;
        let lock = StateLock::acquire(&path)?;
        let mode = fs::metadata(with_suffix(&path, ".lock"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!stale.exists());
        drop(lock);
        if let Some(dir) = path.parent() {
            fs::remove_dir_all(dir)?;
        }
        Ok(())
    }
}
