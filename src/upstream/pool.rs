//! The warm upstream pool: upstream WebSockets opened before any client asks, so a new session
//! skips OpenAI's handshake. One pool per HTTP worker, owned by that worker's `Dialer` (an awc
//! socket cannot leave the thread that opened it), holding `per_worker` sockets for each pooled
//! model. A warm socket has already received `session.created`; the frames it received are kept
//! and replayed to the client that takes it. Each socket serves exactly one client. Sockets older
//! than `UPSTREAM_POOL_MAX_IDLE` are closed and replaced by the maintenance tick, which is also
//! the only retry after a failed dial (so a down upstream is not hammered). Dropping the pool
//! (worker shutdown) sends each warm socket a close frame, best effort.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use actix_ws::Message;
use awc::ws::{CloseCode, Frame};
use bytestring::ByteString;
use futures_util::{FutureExt, SinkExt, StreamExt};

use crate::upstream::wire::Socket;

/// Frames a warm socket may collect before it is handed out; OpenAI sends one (`session.created`).
const MAX_REPLAY_FRAMES: usize = 16;

/// An open upstream socket and the frames it received while waiting.
pub(crate) struct Warm {
    pub(crate) socket: Socket,
    pub(crate) replay: Vec<Message>,
    pub(crate) opened_at: Instant,
}

impl Warm {
    /// Collects frames that arrived while the socket sat in the pool, without waiting. Returns
    /// false if the upstream closed or broke it meanwhile.
    pub(crate) fn collect_ready(&mut self) -> bool {
        loop {
            match self.socket.next().now_or_never() {
                None => return true,
                Some(Some(Ok(Frame::Text(b)))) => match ByteString::try_from(b) {
                    Ok(text) => self.replay.push(Message::Text(text)),
                    Err(_) => return false,
                },
                Some(Some(Ok(Frame::Binary(b)))) => self.replay.push(Message::Binary(b)),
                Some(Some(Ok(Frame::Ping(p)))) => {
                    let _ = self.socket.send(Message::Pong(p)).now_or_never();
                }
                Some(Some(Ok(Frame::Pong(_)))) => {}
                _ => return false,
            }
            if self.replay.len() > MAX_REPLAY_FRAMES {
                return false;
            }
        }
    }

    /// Sends a close frame if the socket takes it right away, then drops the socket.
    pub(crate) fn discard(mut self) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .now_or_never();
    }
}

#[derive(Default)]
struct Shelf {
    warm: VecDeque<Warm>,
    dialing: usize,
}

/// Per-worker pool state. Decisions only; the dialing is done by the `Dialer` that owns it.
pub(crate) struct Pool {
    shelves: RefCell<HashMap<String, Shelf>>,
    per_worker: usize,
    max_idle: Duration,
}

impl Pool {
    pub(crate) fn new(models: &[String], per_worker: usize, max_idle: Duration) -> Pool {
        Pool {
            shelves: RefCell::new(
                models
                    .iter()
                    .map(|m| (m.clone(), Shelf::default()))
                    .collect(),
            ),
            per_worker,
            max_idle,
        }
    }

    pub(crate) fn max_idle(&self) -> Duration {
        self.max_idle
    }

    /// Whether `model` is pooled.
    pub(crate) fn pools(&self, model: &str) -> bool {
        self.shelves.borrow().contains_key(model)
    }

    pub(crate) fn models(&self) -> Vec<String> {
        self.shelves.borrow().keys().cloned().collect()
    }

    /// The oldest live warm socket for `model`, if any; dead ones are discarded on the way.
    /// Returns the socket and how many dead ones were dropped.
    pub(crate) fn take(&self, model: &str) -> (Option<Warm>, usize) {
        let mut shelves = self.shelves.borrow_mut();
        let Some(shelf) = shelves.get_mut(model) else {
            return (None, 0);
        };
        let mut dead = 0;
        while let Some(mut warm) = shelf.warm.pop_front() {
            if warm.opened_at.elapsed() < self.max_idle && warm.collect_ready() {
                return (Some(warm), dead);
            }
            dead += 1;
            warm.discard();
        }
        (None, dead)
    }

    /// How many dials to start for `model` to get back to `per_worker`; counts them as started.
    pub(crate) fn reserve_dials(&self, model: &str) -> usize {
        let mut shelves = self.shelves.borrow_mut();
        let Some(shelf) = shelves.get_mut(model) else {
            return 0;
        };
        let need = self
            .per_worker
            .saturating_sub(shelf.warm.len() + shelf.dialing);
        shelf.dialing += need;
        need
    }

    /// A reserved dial finished: shelve its socket, or just forget the reservation.
    pub(crate) fn dial_done(&self, model: &str, warm: Option<Warm>) -> bool {
        let mut shelves = self.shelves.borrow_mut();
        let Some(shelf) = shelves.get_mut(model) else {
            return false;
        };
        shelf.dialing = shelf.dialing.saturating_sub(1);
        match warm {
            Some(w) => {
                shelf.warm.push_back(w);
                true
            }
            None => false,
        }
    }

    /// Removes sockets past `max_idle` (or broken meanwhile); returns how many per model.
    pub(crate) fn expire(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for (model, shelf) in self.shelves.borrow_mut().iter_mut() {
            let before = shelf.warm.len();
            let mut keep = VecDeque::with_capacity(before);
            while let Some(mut w) = shelf.warm.pop_front() {
                if w.opened_at.elapsed() < self.max_idle && w.collect_ready() {
                    keep.push_back(w);
                } else {
                    w.discard();
                }
            }
            shelf.warm = keep;
            if shelf.warm.len() < before {
                out.push((model.clone(), before - shelf.warm.len()));
            }
        }
        out
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (_, shelf) in self.shelves.get_mut().drain() {
            for w in shelf.warm {
                w.discard();
            }
        }
    }
}

/// Sockets each worker keeps per model so that `size` are kept in all.
pub(crate) fn per_worker(size: usize, workers: usize) -> usize {
    size.div_ceil(workers.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_is_split_across_workers() {
        assert_eq!(per_worker(0, 2), 0);
        assert_eq!(per_worker(1, 2), 1);
        assert_eq!(per_worker(4, 2), 2);
        assert_eq!(per_worker(5, 2), 3);
    }

    #[test]
    fn reservations_stop_at_the_target() {
        let pool = Pool::new(&["m".to_string()], 3, Duration::from_secs(60));
        assert_eq!(pool.reserve_dials("m"), 3);
        assert_eq!(pool.reserve_dials("m"), 0);
        assert!(!pool.dial_done("m", None));
        assert_eq!(pool.reserve_dials("m"), 1);
        assert_eq!(pool.reserve_dials("other"), 0);
        assert!(pool.pools("m") && !pool.pools("other"));
        assert_eq!(pool.take("m").0.map(|_| ()), None);
    }
}
