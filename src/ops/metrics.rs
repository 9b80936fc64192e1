//! Every metric the relay exports, named once. The registry is not global, so two relays can run
//! in one test process. Hot-path counters are resolved to label-free handles up front: relaying a
//! frame costs two relaxed atomic adds.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::close::CloseReason;

/// Direction of a relayed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToUpstream,
    UpstreamToClient,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::ClientToUpstream => "client_to_upstream",
            Direction::UpstreamToClient => "upstream_to_client",
        }
    }
}

/// Counters for one direction, cheap to clone into a pump.
#[derive(Clone)]
pub struct Flow {
    pub messages: IntCounter,
    pub bytes: IntCounter,
}

impl Flow {
    #[inline]
    pub fn record(&self, bytes: usize) {
        self.messages.inc();
        self.bytes.inc_by(bytes as u64);
    }
}

pub struct Metrics {
    registry: Registry,
    pub sessions_active: IntGauge,
    pub sessions_max: IntGauge,
    pub sessions_opened: IntCounter,
    pub sessions_closed: IntCounterVec,
    pub sessions_rejected: IntCounterVec,
    pub upstream_connect_seconds: Histogram,
    pub upstream_connect_failures: IntCounterVec,
    pub client_to_upstream: Flow,
    pub upstream_to_client: Flow,
    pub upstream_pool_warm: IntGaugeVec,
    pub upstream_pool_hits: IntCounterVec,
    pub upstream_pool_misses: IntCounterVec,
    pub upstream_pool_expired: IntCounterVec,
    pub upstream_pool_age_seconds: Histogram,
    pub session_duration_seconds: Histogram,
    pub first_upstream_event_seconds: Histogram,
    pub tokens: IntCounterVec,
    /// The closed set of `model` label values; anything else is counted as `other`.
    known_models: Vec<String>,
}

/// Realtime models named in token metrics even when not configured.
pub const BUILTIN_MODELS: [&str; 5] = [
    "gpt-realtime",
    "gpt-realtime-mini",
    "gpt-realtime-2",
    "gpt-4o-realtime-preview",
    "gpt-4o-mini-realtime-preview",
];

/// Reasons a session is refused at admission.
pub const REJECT_LABELS: [&str; 9] = [
    "capacity_exceeded",
    "invalid_request",
    "origin_not_allowed",
    "server_shutting_down",
    "unauthorized",
    "too_many_connections",
    "rate_limited",
    "model_not_allowed",
    "budget_exceeded",
];
/// Reasons an upstream dial fails.
pub const CONNECT_FAILURE_LABELS: [&str; 5] = [
    "upstream_unavailable",
    "upstream_timeout",
    "upstream_auth_failed",
    "upstream_rate_limited",
    "upstream_rejected",
];

impl Metrics {
    /// `pool_models` label the pool metrics; `models` (configured ones: default, pooled, allowed)
    /// join `BUILTIN_MODELS` as the closed set of the token metric's `model` label.
    pub fn new(pool_models: &[String], models: &[String]) -> Metrics {
        let mut known_models: Vec<String> = BUILTIN_MODELS.iter().map(|m| m.to_string()).collect();
        for m in models.iter().chain(pool_models) {
            if !known_models.contains(m) {
                known_models.push(m.clone());
            }
        }
        let tokens = IntCounterVec::new(
            Opts::new(
                "relay_tokens_total",
                "Tokens the upstream reported used (response.done, transcription), by model and kind.",
            ),
            &["model", "kind"],
        )
        .expect("valid metric");
        let registry = Registry::new();
        let sessions_active = IntGauge::new(
            "relay_sessions_active",
            "Client sessions currently admitted.",
        )
        .expect("valid metric");
        let sessions_max = IntGauge::new(
            "relay_sessions_max",
            "MAX_CONNECTIONS: the most sessions this relay admits at once.",
        )
        .expect("valid metric");
        let sessions_opened = IntCounter::new(
            "relay_sessions_opened_total",
            "Client sessions admitted since start.",
        )
        .expect("valid metric");
        let sessions_closed = IntCounterVec::new(
            Opts::new(
                "relay_sessions_closed_total",
                "Admitted sessions that ended, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let sessions_rejected = IntCounterVec::new(
            Opts::new(
                "relay_sessions_rejected_total",
                "Client connections refused before any upstream dial, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let upstream_connect_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "relay_upstream_connect_seconds",
                "Time to dial, TLS-handshake and upgrade the upstream WebSocket.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let upstream_connect_failures = IntCounterVec::new(
            Opts::new(
                "relay_upstream_connect_failures_total",
                "Upstream dials that failed, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let messages = IntCounterVec::new(
            Opts::new(
                "relay_messages_total",
                "WebSocket data messages relayed, by direction.",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "relay_bytes_total",
                "Payload bytes of relayed data messages, by direction.",
            ),
            &["direction"],
        )
        .expect("valid metric");

        let upstream_pool_warm = IntGaugeVec::new(
            Opts::new(
                "relay_upstream_pool_warm",
                "Warm upstream sockets waiting in the pool, by model.",
            ),
            &["model"],
        )
        .expect("valid metric");
        let pool_counter = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["model"]).expect("valid metric")
        };
        let upstream_pool_hits = pool_counter(
            "relay_upstream_pool_hits_total",
            "Sessions that got a warm upstream socket from the pool.",
        );
        let upstream_pool_misses = pool_counter(
            "relay_upstream_pool_misses_total",
            "Sessions for a pooled model that found the pool empty and dialed.",
        );
        let upstream_pool_expired = pool_counter(
            "relay_upstream_pool_expired_total",
            "Warm sockets closed unused (past UPSTREAM_POOL_MAX_IDLE, or closed by the upstream).",
        );
        let upstream_pool_age_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "relay_upstream_pool_age_seconds",
                "Age of warm sockets when a session took them.",
            )
            .buckets(vec![0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
        )
        .expect("valid metric");
        for model in known_models.iter().map(String::as_str).chain(["other"]) {
            for kind in crate::protection::usage::Usage::default()
                .by_kind()
                .map(|(k, _)| k)
            {
                tokens.with_label_values(&[model, kind]);
            }
        }
        for model in pool_models {
            upstream_pool_warm.with_label_values(&[model]);
            upstream_pool_hits.with_label_values(&[model]);
            upstream_pool_misses.with_label_values(&[model]);
            upstream_pool_expired.with_label_values(&[model]);
        }

        let session_duration_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "relay_session_duration_seconds",
                "Length of admitted sessions, from admission to release.",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
            ]),
        )
        .expect("valid metric");
        let first_upstream_event_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "relay_first_upstream_event_seconds",
                "Time from admission to the first upstream event reaching the client.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");

        for label in CloseReason::LABELS {
            if !CloseReason::REFUSAL_ONLY_LABELS.contains(&label) {
                sessions_closed.with_label_values(&[label]);
            }
        }
        for label in REJECT_LABELS {
            sessions_rejected.with_label_values(&[label]);
        }
        for label in CONNECT_FAILURE_LABELS {
            upstream_connect_failures.with_label_values(&[label]);
        }
        // Resident memory, open fds, CPU seconds and friends, read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        let flow = |d: Direction| Flow {
            messages: messages.with_label_values(&[d.label()]),
            bytes: bytes.with_label_values(&[d.label()]),
        };
        let client_to_upstream = flow(Direction::ClientToUpstream);
        let upstream_to_client = flow(Direction::UpstreamToClient);

        for c in [
            Box::new(sessions_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sessions_max.clone()),
            Box::new(sessions_opened.clone()),
            Box::new(sessions_closed.clone()),
            Box::new(sessions_rejected.clone()),
            Box::new(upstream_connect_seconds.clone()),
            Box::new(upstream_connect_failures.clone()),
            Box::new(messages),
            Box::new(bytes),
            Box::new(upstream_pool_warm.clone()),
            Box::new(upstream_pool_hits.clone()),
            Box::new(upstream_pool_misses.clone()),
            Box::new(upstream_pool_expired.clone()),
            Box::new(upstream_pool_age_seconds.clone()),
            Box::new(session_duration_seconds.clone()),
            Box::new(first_upstream_event_seconds.clone()),
            Box::new(tokens.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }

        Metrics {
            registry,
            sessions_active,
            sessions_max,
            sessions_opened,
            sessions_closed,
            sessions_rejected,
            upstream_connect_seconds,
            upstream_connect_failures,
            client_to_upstream,
            upstream_to_client,
            upstream_pool_warm,
            upstream_pool_hits,
            upstream_pool_misses,
            upstream_pool_expired,
            upstream_pool_age_seconds,
            session_duration_seconds,
            first_upstream_event_seconds,
            tokens,
            known_models,
        }
    }

    /// The token metric's `model` label for `model`: itself if known, else `other`.
    pub fn model_label<'a>(&'a self, model: &str) -> &'a str {
        self.known_models
            .iter()
            .find(|m| *m == model)
            .map_or("other", String::as_str)
    }

    pub fn flow(&self, d: Direction) -> &Flow {
        match d {
            Direction::ClientToUpstream => &self.client_to_upstream,
            Direction::UpstreamToClient => &self.upstream_to_client,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            log::warn!("metrics encoding failed: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// `(label, count)` for every label of a counter vector, in label order.
    pub fn by_label(vec: &IntCounterVec, labels: &[&'static str]) -> Vec<(&'static str, u64)> {
        labels
            .iter()
            .map(|l| (*l, vec.with_label_values(&[l]).get()))
            .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&[], &[])
    }
}
