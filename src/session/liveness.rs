//! Whether a client answers the relay's heartbeat pings. Each ping carries a payload the client
//! cannot guess: a sequence number and a random nonce (16 bytes). A pong counts only when it
//! echoes one of the recent pings exactly; an unsolicited pong, or one a client made up, changes
//! nothing. So a client that never reads (and never sees a ping) is found out at its second
//! missed heartbeat however many pongs it sends on its own.
//!
//! The session's actor calls [`Liveness::ping`] on each heartbeat `Tick` and sends the payload;
//! the client pump calls [`Liveness::pong`] with every pong's payload; the actor's tick reads
//! [`Liveness::missed`]. Both run on the session's thread, so plain `Cell`s. Lives in the
//! session's `Shared` as long as the session.

use std::cell::Cell;

/// How many of the latest pings a pong may still answer. RFC 6455 §5.5.3 lets a peer answer only
/// the most recent of several pings; a slow one may answer one of the last few. A session ends at
/// two missed heartbeats, so more than this never matters.
const RECENT: usize = 4;

/// A ping's payload: its sequence number and nonce, big-endian.
pub(crate) type PingPayload = [u8; 16];

/// The relay's pings to one client and the newest one it answered.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// Pings sent; the last one's sequence number.
    sent: Cell<u64>,
    /// The sequence number of the newest ping answered.
    answered: Cell<u64>,
    /// `(sequence, nonce)` of the latest pings, at `sequence % RECENT`.
    recent: Cell<[(u64, u64); RECENT]>,
}

impl Liveness {
    /// The next ping's payload, with `nonce` (random; see [`nonce`]). Counts it as unanswered.
    pub(crate) fn ping(&self, nonce: u64) -> PingPayload {
        let seq = self.sent.get() + 1;
        self.sent.set(seq);
        let mut recent = self.recent.get();
        recent[slot(seq)] = (seq, nonce);
        self.recent.set(recent);
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..].copy_from_slice(&nonce.to_be_bytes());
        payload
    }

    /// A pong arrived with `payload`. True when it answers one of the recent pings that is newer
    /// than the last one answered; then the pings up to it count as answered.
    pub(crate) fn pong(&self, payload: &[u8]) -> bool {
        let Ok(payload) = <PingPayload>::try_from(payload) else {
            return false;
        };
        let (seq, nonce) = split(&payload);
        let fresh = seq > self.answered.get() && seq <= self.sent.get();
        if !fresh || self.recent.get()[slot(seq)] != (seq, nonce) {
            return false;
        }
        self.answered.set(seq);
        true
    }

    /// Pings sent since the newest one the client answered.
    pub(crate) fn missed(&self) -> u64 {
        self.sent.get() - self.answered.get()
    }
}

fn slot(seq: u64) -> usize {
    // RECENT is tiny: the remainder always fits.
    (seq % RECENT as u64) as usize
}

fn split(payload: &PingPayload) -> (u64, u64) {
    let mut seq = [0u8; 8];
    let mut nonce = [0u8; 8];
    seq.copy_from_slice(&payload[..8]);
    nonce.copy_from_slice(&payload[8..]);
    (u64::from_be_bytes(seq), u64::from_be_bytes(nonce))
}

/// A random nonce for a ping, from the system's generator (`ring`, already in the build). Should
/// the generator ever fail, the time stands in: still unknown to a client that reads nothing.
pub(crate) fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return nanos as u64;
    }
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pong that echoes the ping resets the count; missed pings add up until then.
    #[test]
    fn an_echoed_ping_is_an_answer() {
        let l = Liveness::default();
        assert_eq!(l.missed(), 0);
        let p = l.ping(7);
        assert_eq!(l.missed(), 1);
        assert!(l.pong(&p));
        assert_eq!(l.missed(), 0);
        l.ping(8);
        l.ping(9);
        assert_eq!(l.missed(), 2);
    }

    /// Unsolicited pongs (empty, made up, a guessed sequence with the wrong nonce, a ping not yet
    /// sent) are not answers.
    #[test]
    fn unsolicited_pongs_do_not_count() {
        let l = Liveness::default();
        assert!(!l.pong(b""));
        let p = l.ping(0x1234);
        let mut guessed = p;
        guessed[15] ^= 1;
        assert!(!l.pong(&guessed));
        let mut ahead = p;
        ahead[7] = 2;
        assert!(!l.pong(&ahead));
        assert!(!l.pong(&p[..8]));
        assert!(!l.pong(&[p.as_slice(), b"x"].concat()));
        assert!(!l.pong(b"keepalive"));
        assert_eq!(l.missed(), 1);
    }

    /// A pong for an older ping counts for the pings up to it; the same pong twice, or an
    /// older one after a newer, counts once.
    #[test]
    fn late_and_repeated_pongs() {
        let l = Liveness::default();
        let first = l.ping(1);
        let second = l.ping(2);
        l.ping(3);
        assert_eq!(l.missed(), 3);
        assert!(l.pong(&first));
        assert_eq!(l.missed(), 2);
        assert!(!l.pong(&first));
        assert!(l.pong(&second));
        assert_eq!(l.missed(), 1);
        assert!(!l.pong(&first));
        assert_eq!(l.missed(), 1);
    }

    /// Only the latest few pings can be answered: an old payload from before is refused even if
    /// its sequence was never answered.
    #[test]
    fn only_recent_pings_can_be_answered() {
        let l = Liveness::default();
        let old = l.ping(11);
        for n in 0..RECENT as u64 {
            l.ping(100 + n);
        }
        assert!(!l.pong(&old));
        assert_eq!(l.missed(), RECENT as u64 + 1);
    }

    /// Nonces differ from one ping to the next.
    #[test]
    fn nonces_are_random() {
        let a = nonce();
        assert!((0..8).any(|_| nonce() != a));
    }
}
