//! [`Writer`]: saves copies of the ledger to `USAGE_STATE_FILE` on a thread of its own, so the
//! registry, which admits every session, never waits on the disk (a save serializes and fsyncs).
//! The registry hands it a snapshot (a clone of its ledger) every few seconds while counts change
//! and once more on drain, where it awaits the write. The writer keeps one snapshot at most: a
//! newer one replaces one not yet written, since only the newest matters. It writes only while
//! the relay's lock is held; it stops when the registry drops it, after writing what it was
//! last given.

use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak},
    thread,
};

use tokio::sync::watch;

use super::{Ledger, StateLock};

/// The registry's end of the writer thread.
pub(crate) struct Writer {
    slot: Arc<Slot>,
    done: watch::Receiver<Done>,
    /// The number of the last snapshot handed over.
    submitted: u64,
    thread: Option<thread::JoinHandle<()>>,
}

/// What the thread last finished.
#[derive(Debug, Clone, Copy, Default)]
struct Done {
    /// The number of the snapshot written (or tried); every earlier one is covered by it.
    seq: u64,
    failed: bool,
}

/// The one snapshot waiting for the thread.
#[derive(Default)]
struct Slot {
    next: Mutex<Next>,
    wake: Condvar,
}

#[derive(Default)]
struct Next {
    snapshot: Option<(u64, Ledger)>,
    closed: bool,
}

impl Writer {
    /// Starts the thread that saves to `path` while `lock` is alive.
    pub(crate) fn spawn(path: PathBuf, lock: Weak<StateLock>) -> io::Result<Writer> {
        Writer::spawn_with(move |ledger| save_while_locked(&path, &lock, ledger))
    }

    /// Starts the thread with `write`, which returns false when the write failed.
    fn spawn_with(write: impl FnMut(&Ledger) -> bool + Send + 'static) -> io::Result<Writer> {
        let slot = Arc::new(Slot::default());
        let (tx, done) = watch::channel(Done::default());
        let thread = thread::Builder::new().name("usage-writer".into()).spawn({
            let slot = slot.clone();
            move || run(&slot, &tx, write)
        })?;
        Ok(Writer {
            slot,
            done,
            submitted: 0,
            thread: Some(thread),
        })
    }

    /// Hands `ledger` to the thread, replacing a snapshot it has not started on; returns at once
    /// with the snapshot's number, for [`Writer::written`].
    pub(crate) fn submit(&mut self, ledger: Ledger) -> u64 {
        self.submitted += 1;
        let replaced = lock(&self.slot.next)
            .snapshot
            .replace((self.submitted, ledger));
        self.slot.wake.notify_one();
        drop(replaced);
        self.submitted
    }

    /// Resolves once snapshot `seq`, or a newer one, has been written (true) or failed to be
    /// (false); false too if the thread is gone.
    pub(crate) fn written(&self, seq: u64) -> impl Future<Output = bool> + 'static {
        let mut done = self.done.clone();
        async move {
            match done.wait_for(|d| d.seq >= seq).await {
                Ok(d) => !d.failed,
                Err(_) => false,
            }
        }
    }

    /// Whether the last write the thread finished failed (the caller hands a new snapshot to
    /// try again).
    pub(crate) fn failed(&self) -> bool {
        self.done.borrow().failed
    }
}

impl Drop for Writer {
    /// Lets the thread write the snapshot it was last given, then waits for it to end.
    fn drop(&mut self) {
        lock(&self.slot.next).closed = true;
        self.slot.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: writes each snapshot it is given, newest only, until closed and empty.
fn run(slot: &Slot, done: &watch::Sender<Done>, mut write: impl FnMut(&Ledger) -> bool) {
    while let Some((seq, ledger)) = slot.take() {
        let failed = !write(&ledger);
        drop(ledger);
        done.send_replace(Done { seq, failed });
    }
}

impl Slot {
    /// Waits for a snapshot; None once closed with nothing left to write.
    fn take(&self) -> Option<(u64, Ledger)> {
        let mut next = lock(&self.next);
        loop {
            if let Some(snapshot) = next.snapshot.take() {
                return Some(snapshot);
            }
            if next.closed {
                return None;
            }
            next = self.wake.wait(next).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Saves `ledger` to `path` if the relay still holds the lock: once the relay is gone, another
/// may own the file (two relays in one process, as in tests). Logs a failure.
fn save_while_locked(path: &Path, lock: &Weak<StateLock>, ledger: &Ledger) -> bool {
    let Some(_held) = lock.upgrade() else {
        log::debug!(
            "usage state: the relay has stopped; not writing {}",
            path.display()
        );
        return true;
    };
    match ledger.save(path) {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "usage state: cannot write {}: {e}; counts since the last save are at risk",
                path.display()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, time::Duration};

    use super::*;
    use crate::protection::usage::{store::tests::scratch_path, tests::tokens};

    const T: Duration = Duration::from_secs(5);

    /// A ledger whose day is `day`, to tell snapshots apart.
    fn on_day(day: u64) -> Ledger {
        Ledger {
            day,
            ..Ledger::default()
        }
    }

    /// A writer whose writes wait for a go from the test; it reports each day it starts on.
    fn gated() -> (Writer, mpsc::Receiver<u64>, mpsc::Sender<bool>) {
        let (started_tx, started) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<bool>();
        let writer = Writer::spawn_with(move |ledger| {
            let _ = started_tx.send(ledger.day);
            go_rx.recv().unwrap_or(false)
        })
        .expect("the thread starts");
        (writer, started, go)
    }

    /// submit returns while a write is still under way: the caller (the registry, which admits
    /// sessions) never waits on the disk (issue 10, 7: the fsync ran on the registry's thread).
    /// Snapshots are handed over from a thread of their own, so a submit that waited would show
    /// as a timeout here rather than a hang.
    #[test]
    fn submit_does_not_wait_for_the_write() {
        let (mut writer, started, go) = gated();
        let (returned_tx, returned) = mpsc::channel();
        let (more_tx, more) = mpsc::channel::<()>();
        let submitter = thread::spawn(move || {
            let _ = returned_tx.send(writer.submit(on_day(1)));
            let _ = more.recv();
            writer.submit(on_day(2));
            let _ = returned_tx.send(writer.submit(on_day(3)));
            writer
        });
        assert_eq!(
            returned.recv_timeout(T),
            Ok(1),
            "submit waited for the write"
        );
        assert_eq!(started.recv_timeout(T), Ok(1));
        // The first write is blocked; handing over more returns at once all the same.
        let _ = more_tx.send(());
        assert_eq!(
            returned.recv_timeout(T),
            Ok(3),
            "submit waited for the write"
        );
        let _ = go.send(true);
        // Only the newest waiting snapshot is written: day 2 was replaced before it started.
        assert_eq!(started.recv_timeout(T), Ok(3));
        let _ = go.send(true);
        let writer = submitter.join().expect("the submitter ends");
        drop(writer);
        assert!(started.try_recv().is_err());
    }

    /// written() resolves only once the snapshot, or a newer one, is on disk, with its outcome;
    /// failed() reports the last write.
    #[actix_web::test]
    async fn written_waits_for_the_write() {
        let (mut writer, started, go) = gated();
        let seq = writer.submit(on_day(1));
        let mut written = Box::pin(writer.written(seq));
        assert_eq!(started.recv_timeout(T), Ok(1));
        let early = tokio::time::timeout(Duration::from_millis(50), &mut written).await;
        assert!(early.is_err(), "resolved before the write finished");
        let _ = go.send(false);
        assert_eq!(tokio::time::timeout(T, written).await, Ok(false));
        assert!(writer.failed());

        let seq = writer.submit(on_day(2));
        let _ = go.send(true);
        assert_eq!(tokio::time::timeout(T, writer.written(seq)).await, Ok(true));
        assert!(!writer.failed());
        assert_eq!(started.recv_timeout(T), Ok(2));
    }

    /// Dropping the writer still writes the snapshot it was last given.
    #[test]
    fn drop_writes_the_last_snapshot() -> io::Result<()> {
        let path = scratch_path("writer-drop");
        let lock = Arc::new(StateLock::acquire(&path)?);
        let mut writer = Writer::spawn(path.clone(), Arc::downgrade(&lock))?;
        let mut ledger = on_day(9);
        ledger.record("alice", "m", &tokens(7), 9);
        writer.submit(ledger);
        drop(writer);
        assert_eq!(Ledger::load(&path)?.all.billable(), 7);
        drop(lock);
        if let Some(dir) = path.parent() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// Once the relay's lock is gone, the writer leaves the file alone.
    #[test]
    fn no_write_without_the_lock() -> io::Result<()> {
        let path = scratch_path("writer-unlocked");
        let lock = Arc::new(StateLock::acquire(&path)?);
        let mut writer = Writer::spawn(path.clone(), Arc::downgrade(&lock))?;
        drop(lock);
        writer.submit(on_day(9));
        drop(writer);
        assert!(!path.exists());
        if let Some(dir) = path.parent() {
            std::fs::remove_dir_all(dir)?;
        }
        Ok(())
    }
}
