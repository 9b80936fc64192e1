//! What an `admission` run is (`AdmissionCfg`), what it measured (`Outcome`, one `PhaseReport`
//! per phase, the pollers' `PollReport`) and how that is printed: a table, or JSON on stdout with
//! the table on stderr. Plain data and formatting.

use std::{fmt::Write as _, time::Duration};

use serde_json::{json, Value};

use crate::{
    plan::Report,
    poll::{Answers, PollReport},
    stats::{fmt_ms, opt, pct_ms, print_report, round3},
};

/// An `admission` run.
pub(crate) struct AdmissionCfg {
    pub(crate) url: String,
    /// `http://host:port` where `/stats`, `/metrics` and `/health` answer.
    pub(crate) admin: String,
    /// The query of the polled `/stats` (`sessions=true`; empty for plain `/stats`).
    pub(crate) stats_query: String,
    /// The relay's process, whose CPU time per phase is read from `/proc` (optional).
    pub(crate) pids: Vec<u32>,
    pub(crate) sessions: usize,
    pub(crate) measure: usize,
    pub(crate) concurrency: usize,
    pub(crate) pollers: usize,
    /// Each poller's pace: one `/stats` and one `/metrics` this often (zero: back to back).
    pub(crate) poll_interval: Duration,
    pub(crate) warmup: usize,
    pub(crate) phase_timeout: Duration,
    pub(crate) threads: usize,
    pub(crate) connect_concurrency: usize,
}

/// What the run measured.
pub(crate) struct Outcome {
    /// The held sessions (`open_at_end`: still open when the phases were over).
    pub(crate) held: Report,
    pub(crate) setup_wall: Duration,
    pub(crate) quiet: PhaseReport,
    pub(crate) polled: PhaseReport,
    pub(crate) polls: PollReport,
    /// The pollers' first `/stats` answer did not arrive before the polled phase began.
    pub(crate) polls_late: bool,
}

/// One phase of M admissions.
#[derive(Default)]
pub(crate) struct PhaseReport {
    /// `connections.active` of `/health` just before the phase.
    pub(crate) live_at_start: Option<u64>,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Admissions not begun because the phase deadline had passed.
    pub(crate) not_started: u64,
    /// Connect → 101 and connect → `session.created`, of the admissions that succeeded.
    pub(crate) upgrade_us: Vec<u32>,
    pub(crate) created_us: Vec<u32>,
    pub(crate) elapsed: Duration,
    /// The relay's CPU seconds (`--pids`) and the wall time they were read over: the admissions
    /// alone when quiet; from starting the pollers to stopping them when polled.
    pub(crate) cpu: Option<(f64, Duration)>,
    pub(crate) errors: Vec<String>,
}

impl PhaseReport {
    pub(crate) fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.errors.len() < 5 {
            self.errors.push(why);
        }
    }
}

/// p50/p90/p99/max of sorted micros, in ms.
fn spread(sorted: &[u32]) -> Value {
    json!({
        "p50": opt(pct_ms(sorted, 50.0)),
        "p90": opt(pct_ms(sorted, 90.0)),
        "p99": opt(pct_ms(sorted, 99.0)),
        "max": opt(pct_ms(sorted, 100.0)),
    })
}

fn spread_text(sorted: &[u32]) -> String {
    format!(
        "p50 {} p90 {} p99 {} max {}",
        fmt_ms(pct_ms(sorted, 50.0)),
        fmt_ms(pct_ms(sorted, 90.0)),
        fmt_ms(pct_ms(sorted, 99.0)),
        fmt_ms(pct_ms(sorted, 100.0))
    )
}

/// polled ÷ quiet of one percentile.
fn ratio(polled: &[u32], quiet: &[u32], p: f64) -> Option<f64> {
    let (a, b) = (pct_ms(polled, p)?, pct_ms(quiet, p)?);
    (b > 0.0).then(|| a / b)
}

impl PhaseReport {
    fn json(&self) -> Value {
        json!({
            "live_at_start": self.live_at_start,
            "ok": self.ok,
            "failed": self.failed,
            "not_started": self.not_started,
            "elapsed_s": round3(self.elapsed.as_secs_f64()),
            "upgrade_ms": spread(&self.upgrade_us),
            "created_ms": spread(&self.created_us),
            "relay_cpu_s": self.cpu.map(|(cpu, _)| round3(cpu)),
            "relay_cores_busy": self.cpu.map(|(cpu, wall)| round3(cpu / wall.as_secs_f64().max(1e-9))),
            "errors": self.errors,
        })
    }

    fn text(&self, name: &str) -> String {
        let live = self
            .live_at_start
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let mut t = format!(
            "{name:<8}{} live at start; {} ok, {} failed, {} not started, in {:.2} s\n",
            live,
            self.ok,
            self.failed,
            self.not_started,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            t,
            "  to 101 ms              {}",
            spread_text(&self.upgrade_us)
        );
        let _ = writeln!(
            t,
            "  to session.created ms  {}",
            spread_text(&self.created_us)
        );
        if let Some((cpu, wall)) = self.cpu {
            let _ = writeln!(
                t,
                "  relay cpu              {cpu:.2} s in {:.2} s ({:.2} cores busy)",
                wall.as_secs_f64(),
                cpu / wall.as_secs_f64().max(1e-9)
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(t, "  first errors          {:?}", self.errors);
        }
        t
    }
}

fn answers_json(a: &Answers) -> Value {
    json!({
        "ok": a.ok,
        "failed": a.failed,
        "ms": {
            "p50": opt(pct_ms(&a.us, 50.0)),
            "p99": opt(pct_ms(&a.us, 99.0)),
            "max": opt(pct_ms(&a.us, 100.0)),
        },
        "bytes": a.bytes,
        "errors": a.errors,
    })
}

fn answers_text(name: &str, a: &Answers, secs: f64) -> String {
    format!(
        "{name:<22}{} answered ({:.1}/s), {} failed; ms p50 {} p99 {} max {}\n",
        a.ok,
        a.ok as f64 / secs,
        a.failed,
        fmt_ms(pct_ms(&a.us, 50.0)),
        fmt_ms(pct_ms(&a.us, 99.0)),
        fmt_ms(pct_ms(&a.us, 100.0))
    )
}

impl Outcome {
    pub(crate) fn print(mut self, cfg: &AdmissionCfg, as_json: bool) {
        for v in [
            &mut self.quiet.upgrade_us,
            &mut self.quiet.created_us,
            &mut self.polled.upgrade_us,
            &mut self.polled.created_us,
            &mut self.polls.stats.us,
            &mut self.polls.metrics.us,
        ] {
            v.sort_unstable();
        }
        self.polls.listed.sort_unstable();
        let (q, p) = (&self.quiet, &self.polled);
        let ratios = |a: &[u32], b: &[u32]| {
            json!({
                "p50": opt(ratio(a, b, 50.0)),
                "p90": opt(ratio(a, b, 90.0)),
                "p99": opt(ratio(a, b, 99.0)),
                "max": opt(ratio(a, b, 100.0)),
            })
        };
        let poll_secs = self.polls.elapsed.as_secs_f64().max(1e-9);
        let listed_min = self.polls.listed.first().copied();
        let listed_max = self.polls.listed.last().copied();
        let out = json!({
            "mode": "admission",
            "url": cfg.url,
            "admin_url": cfg.admin,
            "sessions": cfg.sessions,
            "sessions_ok": self.held.ok,
            "sessions_failed": self.held.failed,
            "held_open_at_end": self.held.open_at_end,
            "setup_wall_s": round3(self.setup_wall.as_secs_f64()),
            "measure": cfg.measure,
            "concurrency": cfg.concurrency,
            "warmup": cfg.warmup,
            "pollers": cfg.pollers,
            "stats_query": cfg.stats_query,
            "quiet": q.json(),
            "polled": p.json(),
            "ratio_created": ratios(&p.created_us, &q.created_us),
            "ratio_upgrade": ratios(&p.upgrade_us, &q.upgrade_us),
            "admitted": q.ok + p.ok,
            "admission_failures": q.failed + p.failed + q.not_started + p.not_started,
            "stats_answers": self.polls.stats.ok,
            "stats": answers_json(&self.polls.stats),
            "metrics": answers_json(&self.polls.metrics),
            "polling_s": round3(poll_secs),
            "polls_late": self.polls_late,
            "sessions_listed": {"min": listed_min, "max": listed_max, "counted": self.polls.listed.len()},
            "errors": self.held.errors,
        });
        let mut table = format!(
            "url                   {}\nheld sessions         {} ok, {} failed (set up in {:.2} s), {} still open at the end\nadmissions            {} per phase, {} at a time, after {} warm-up; pollers {} on {}\n",
            cfg.url,
            self.held.ok,
            self.held.failed,
            self.setup_wall.as_secs_f64(),
            self.held.open_at_end,
            cfg.measure,
            cfg.concurrency,
            cfg.warmup,
            cfg.pollers,
            cfg.admin,
        );
        table.push_str(&q.text("quiet"));
        table.push_str(&p.text("polled"));
        let x = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
        let _ = writeln!(
            table,
            "polled / quiet        session.created p50 {} p90 {} p99 {} max {}; 101 p50 {} p99 {}",
            x(ratio(&p.created_us, &q.created_us, 50.0)),
            x(ratio(&p.created_us, &q.created_us, 90.0)),
            x(ratio(&p.created_us, &q.created_us, 99.0)),
            x(ratio(&p.created_us, &q.created_us, 100.0)),
            x(ratio(&p.upgrade_us, &q.upgrade_us, 50.0)),
            x(ratio(&p.upgrade_us, &q.upgrade_us, 99.0)),
        );
        table.push_str(&answers_text(
            &match cfg.stats_query.as_str() {
                "" => "/stats".to_owned(),
                q => format!("/stats?{q}"),
            },
            &self.polls.stats,
            poll_secs,
        ));
        table.push_str(&answers_text("/metrics", &self.polls.metrics, poll_secs));
        let _ = writeln!(
            table,
            "sessions listed       min {} max {} (in {} counted /stats answers){}",
            listed_min.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            listed_max.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            self.polls.listed.len(),
            if self.polls_late {
                "; no /stats answer before the polled phase began"
            } else {
                ""
            }
        );
        for e in self
            .polls
            .stats
            .errors
            .iter()
            .chain(&self.polls.metrics.errors)
        {
            let _ = writeln!(table, "poll error            {e}");
        }
        if !self.held.errors.is_empty() {
            let _ = writeln!(table, "first errors          {:?}", self.held.errors);
        }
        print_report(&table, &out, as_json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ratio is polled over quiet at the same percentile, and absent without samples.
    #[test]
    fn ratio_of_percentiles() {
        let quiet: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        let polled: Vec<u32> = quiet.iter().map(|x| x * 3).collect();
        assert_eq!(ratio(&polled, &quiet, 50.0), Some(3.0));
        assert_eq!(ratio(&polled, &quiet, 99.0), Some(3.0));
        assert_eq!(ratio(&polled, &[], 99.0), None);
        assert_eq!(ratio(&[], &quiet, 99.0), None);
    }
}
