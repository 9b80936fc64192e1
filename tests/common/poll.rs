//! Waiting for what announces itself nowhere: a count in `/stats` or `/metrics` that lags the
//! socket by a message, a file saved on a timer, a port a child process opens. Every such wait
//! in the tests is a [`Poll`]: a check tried again until it holds, with a deadline (by default
//! [`T`]) and a short pause between tries. Each try is bounded by the deadline too, and the
//! panic on timeout says what was awaited and what the last try saw.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use super::T;

/// The pause between tries unless [`Poll::every`] says otherwise.
const EVERY: Duration = Duration::from_millis(20);

/// A wait for `what`, within a deadline.
pub struct Poll {
    what: String,
    within: Duration,
    every: Duration,
}

/// A wait for `what` (said in the panic on timeout), within [`T`], trying every 20 ms.
pub fn poll(what: impl Into<String>) -> Poll {
    Poll {
        what: what.into(),
        within: T,
        every: EVERY,
    }
}

impl Poll {
    /// Gives up after `within` instead of [`T`].
    pub fn within(self, within: Duration) -> Poll {
        Poll { within, ..self }
    }

    /// Pauses `every` between tries instead of 20 ms.
    pub fn every(self, every: Duration) -> Poll {
        Poll { every, ..self }
    }

    /// Runs `check` until it returns `Ok`, and returns that value; `Err` says what it saw
    /// instead. Panics when the deadline passes first.
    pub async fn until<V, F, Fut>(self, mut check: F) -> V
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<V, String>>,
    {
        let deadline = Instant::now() + self.within;
        let mut last = "the first try did not finish".to_string();
        loop {
            match tokio::time::timeout_at(deadline, check()).await {
                Ok(Ok(v)) => return v,
                Ok(Err(seen)) => last = seen,
                Err(_) => {}
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "{} did not happen within {:?}; last try: {last}",
                self.what,
                self.within
            );
            // The pause between tries; what ends the wait is the check, never this.
            tokio::time::sleep(self.every.min(deadline - now)).await;
        }
    }

    /// [`Poll::until`] for code that cannot await (a `Drop`): blocks the thread, and when the
    /// deadline passes returns the last `Err` instead of panicking.
    pub fn try_blocking<V>(
        self,
        mut check: impl FnMut() -> Result<V, String>,
    ) -> Result<V, String> {
        let deadline = std::time::Instant::now() + self.within;
        loop {
            let last = match check() {
                Ok(v) => return Ok(v),
                Err(seen) => seen,
            };
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{} did not happen within {:?}; last try: {last}",
                    self.what, self.within
                ));
            }
            std::thread::sleep(self.every.min(deadline - now));
        }
    }
}
