//! `Reaper`: the relay's clock. Every sweep it asks the `Registry` for the live sessions and sends
//! each a `Tick`; every `HEARTBEAT_INTERVAL` that tick also asks for a ping. Each session
//! decides for itself whether it has been idle too long or missed its pongs (`Session::on_tick`),
//! so the reaper holds no per-session state. It lives as long as the relay.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::{
    admission::{msg::LiveSessions, registry::Registry},
    session::msg::Tick,
};

pub(crate) struct Reaper {
    registry: Addr<Registry>,
    heartbeat_interval: Duration,
    sweep_interval: Duration,
    last_heartbeat: Instant,
}

impl Reaper {
    pub(crate) fn new(
        registry: Addr<Registry>,
        heartbeat_interval: Duration,
        inactivity_timeout: Duration,
    ) -> Reaper {
        Reaper {
            registry,
            heartbeat_interval,
            sweep_interval: sweep_interval(heartbeat_interval, inactivity_timeout),
            last_heartbeat: Instant::now(),
        }
    }

    /// Whether this sweep is also a heartbeat.
    fn heartbeat_due(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last_heartbeat) + self.sweep_interval / 2
            >= self.heartbeat_interval
        {
            self.last_heartbeat = now;
            true
        } else {
            false
        }
    }
}

/// Sweeps often enough to place an idle eviction within a quarter of its timeout and a heartbeat
/// within a quarter of its period, but never more than once every 5 s.
pub(crate) fn sweep_interval(heartbeat: Duration, inactivity: Duration) -> Duration {
    (heartbeat.min(inactivity) / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

impl Actor for Reaper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.sweep_interval, |act, ctx| {
            let now = Instant::now();
            let heartbeat = act.heartbeat_due(now);
            let sessions = act.registry.send(LiveSessions);
            ctx.spawn(sessions.into_actor(act).map(move |sessions, _, _| {
                for s in sessions.unwrap_or_default() {
                    s.tick.do_send(Tick { now, heartbeat });
                }
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_interval_is_bounded() {
        let s = Duration::from_secs;
        assert_eq!(sweep_interval(s(30), s(300)), s(5));
        assert_eq!(
            sweep_interval(Duration::from_millis(200), s(300)),
            Duration::from_millis(50)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(1), Duration::from_millis(1)),
            Duration::from_millis(10)
        );
    }
}
