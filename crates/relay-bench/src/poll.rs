//! The `/stats` pollers of `admission`: P loops on a thread of their own (an actix `System` and
//! one keep-alive `awc::Client`), each fetching `/stats?sessions=true` and then `/metrics`, again
//! and again, with no pause, until told to stop. Started and stopped by `admission.rs`; they count
//! answers, time them, and say once when the first `/stats` answer has arrived.

use std::{
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use tokio::sync::watch;

use crate::{args::Failure, stats::micros};

/// Bound on one request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest body read (`/stats?sessions=true` at 10,000 sessions is a few MB).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How often the sessions listed in a `/stats` answer are counted (a scan of the whole body): the
/// first answer of each poller, then one in this many.
const COUNT_EVERY: u64 = 8;

/// What one endpoint answered.
#[derive(Default)]
pub(crate) struct Answers {
    /// 200s with their whole body read.
    pub(crate) ok: u64,
    /// Anything else: another status, a transport error, a timeout.
    pub(crate) failed: u64,
    /// Time of each 200, request sent to body read.
    pub(crate) us: Vec<u32>,
    pub(crate) bytes: u64,
    pub(crate) errors: Vec<String>,
}

impl Answers {
    fn record(&mut self, answer: Result<(Duration, usize), String>) {
        match answer {
            Ok((took, bytes)) => {
                self.ok += 1;
                self.us.push(micros(took));
                self.bytes += bytes as u64;
            }
            Err(why) => {
                self.failed += 1;
                if self.errors.len() < 3 {
                    self.errors.push(why);
                }
            }
        }
    }

    fn merge(&mut self, other: Answers) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.us.extend(other.us);
        self.bytes += other.bytes;
        for e in other.errors {
            if self.errors.len() < 3 {
                self.errors.push(e);
            }
        }
    }
}

/// What the pollers measured, from their start to their stop.
#[derive(Default)]
pub(crate) struct PollReport {
    pub(crate) stats: Answers,
    pub(crate) metrics: Answers,
    /// Sessions listed in the `/stats` answers that were counted.
    pub(crate) listed: Vec<u64>,
    pub(crate) elapsed: Duration,
}

/// Running pollers; `stop` ends them and returns what they measured.
pub(crate) struct Pollers {
    stop: watch::Sender<bool>,
    handle: JoinHandle<PollReport>,
    /// Receives one `()` when the first `/stats` answer (of any status) has arrived.
    pub(crate) first: mpsc::Receiver<()>,
}

impl Pollers {
    /// Starts `count` pollers fetching `urls.0` (`/stats`) and `urls.1` (`/metrics`), each pair
    /// every `interval` (zero: back to back).
    pub(crate) fn start(
        urls: (String, String),
        count: usize,
        interval: Duration,
    ) -> Result<Pollers, Failure> {
        let (stop, stopped) = watch::channel(false);
        let (first_tx, first) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("bench-pollers".into())
            .spawn(move || {
                actix_web::rt::System::new()
                    .block_on(poll_all(urls, count, interval, stopped, first_tx))
            })
            .map_err(|e| Failure::Run(format!("cannot start the poller thread: {e}")))?;
        Ok(Pollers {
            stop,
            handle,
            first,
        })
    }

    /// Stops the pollers (a request in flight is abandoned) and joins their thread.
    pub(crate) fn stop(self) -> Result<PollReport, Failure> {
        let _ = self.stop.send(true);
        self.handle
            .join()
            .map_err(|_| Failure::Run("the poller thread panicked".into()))
    }
}

async fn poll_all(
    (stats_url, metrics_url): (String, String),
    count: usize,
    interval: Duration,
    stop: watch::Receiver<bool>,
    first: mpsc::SyncSender<()>,
) -> PollReport {
    let connector = awc::Connector::new()
        .limit(count.max(1) * 2)
        .timeout(REQUEST_TIMEOUT);
    let client = awc::Client::builder()
        .connector(connector)
        .max_http_version(awc::http::Version::HTTP_11)
        .timeout(REQUEST_TIMEOUT)
        .finish();
    let started = Instant::now();
    let loops = (0..count).map(|_| {
        poll_loop(
            &client,
            &stats_url,
            &metrics_url,
            interval,
            stop.clone(),
            first.clone(),
        )
    });
    let mut report = PollReport::default();
    for one in join_all(loops).await {
        report.stats.merge(one.stats);
        report.metrics.merge(one.metrics);
        report.listed.extend(one.listed);
    }
    report.elapsed = started.elapsed();
    report
}

/// `/stats` (`?sessions=true` by default), then `/metrics`, until `stop` turns true (or its sender is gone).
async fn poll_loop(
    client: &awc::Client,
    stats_url: &str,
    metrics_url: &str,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    first: mpsc::SyncSender<()>,
) -> PollReport {
    let mut report = PollReport::default();
    let mut answers = 0u64;
    let mut next = tokio::time::Instant::now();
    loop {
        if !interval.is_zero() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            next += interval;
        }
        let stats = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            got = fetch(client, stats_url) => got,
        };
        let _ = first.try_send(());
        if let Ok((_, ref body)) = stats {
            if answers.is_multiple_of(COUNT_EVERY) {
                report.listed.push(sessions_listed(body));
            }
            answers += 1;
        }
        report
            .stats
            .record(stats.map(|(took, body)| (took, body.len())));
        let metrics = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            got = fetch(client, metrics_url) => got,
        };
        report
            .metrics
            .record(metrics.map(|(took, body)| (took, body.len())));
    }
    report
}

/// One GET: its time (request sent to body read) and body, or why it failed.
async fn fetch(client: &awc::Client, url: &str) -> Result<(Duration, Vec<u8>), String> {
    let t0 = Instant::now();
    let exchange = async {
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let body = response
            .body()
            .limit(MAX_BODY)
            .await
            .map_err(|e| format!("GET {url}: body: {e}"))?;
        if response.status() != awc::http::StatusCode::OK {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        Ok(body.to_vec())
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(body)) => Ok((t0.elapsed(), body)),
        Ok(Err(why)) => Err(why),
        Err(_) => Err(format!("GET {url}: no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// How many sessions a `/stats?sessions=true` answer lists: each one has exactly one
/// `"age_seconds"` field, and nothing else in `/stats` has one.
fn sessions_listed(body: &[u8]) -> u64 {
    const KEY: &[u8] = b"\"age_seconds\":";
    body.windows(KEY.len()).filter(|w| *w == KEY).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each listed session is counted once, whatever else the answer holds.
    #[test]
    fn counts_listed_sessions() {
        let body = br#"{"active_sessions":2,"sessions":[{"id":1,"age_seconds":3,"idle_seconds":3},{"id":2,"age_seconds":0,"idle_seconds":0}],"uptime_seconds":9}"#;
        assert_eq!(sessions_listed(body), 2);
        assert_eq!(sessions_listed(br#"{"sessions":[]}"#), 0);
    }
}
