//! Every metric the relay exports, named once: each is a `Def` constant below (name, help,
//! labels, buckets), and the only way to turn a `Def` into a metric also registers it, so a
//! metric cannot be defined and silently go unexported (an unused `Def` is a compiler warning).
//! The registry is not global, so two relays can run in one test process. `start` builds one
//! `Metrics` for the relay; the HTTP face renders it, the registry, sessions and upstreams count
//! into it. Hot-path counters are resolved to label-free handles up front: relaying a frame costs
//! two relaxed atomic adds.

use std::marker::PhantomData;

use prometheus::{
    core::Collector, CounterVec, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::{close::SessionEnd, protection::usage::Usage};

/// Reasons a session is refused at admission.
pub(crate) const REJECT_LABELS: [&str; 10] = [
    "capacity_exceeded",
    "invalid_request",
    "origin_not_allowed",
    "server_shutting_down",
    "unauthorized",
    "too_many_connections",
    "rate_limited",
    "model_not_allowed",
    "budget_exceeded",
    "service_unavailable",
];
/// What became of a request for a client secret, for `relay_client_secrets_total{outcome}`.
pub(crate) const CLIENT_SECRET_OUTCOMES: [&str; 9] = [
    "minted",
    "invalid_request",
    "policy_violation",
    "unauthorized",
    "origin_not_allowed",
    "model_not_allowed",
    "rate_limited",
    "server_shutting_down",
    "service_unavailable",
];
/// Redis operations, for `relay_redis_errors_total{op}`.
pub(crate) const REDIS_OPS: [&str; 7] = [
    "admit", "release", "refresh", "usage", "totals", "stats", "ping",
];
/// Reasons an upstream dial fails.
pub(crate) const CONNECT_FAILURE_LABELS: [&str; 5] = [
    "upstream_unavailable",
    "upstream_timeout",
    "upstream_auth_failed",
    "upstream_rate_limited",
    "upstream_rejected",
];
/// Realtime models named in token metrics even when not configured.
const BUILTIN_MODELS: [&str; 5] = [
    "gpt-realtime",
    "gpt-realtime-mini",
    "gpt-realtime-2",
    "gpt-4o-realtime-preview",
    "gpt-4o-mini-realtime-preview",
];

const SESSIONS_ACTIVE: Def<IntGauge> = Def::gauge(
    "relay_sessions_active",
    "Client sessions currently admitted.",
);
const SESSIONS_BY_TRANSPORT: Def<IntGaugeVec> = Def::gauges(
    "relay_sessions_active_by_transport",
    "Client sessions currently admitted, by transport: websocket, or webrtc (a call whose media \
     goes between the browser and the upstream, metered through the relay's sideband).",
    &["transport"],
);
const SESSIONS_MAX: Def<IntGauge> = Def::gauge(
    "relay_sessions_max",
    "MAX_CONNECTIONS: the most sessions this relay admits at once.",
);
const SESSIONS_OPENED: Def<IntCounter> = Def::counter(
    "relay_sessions_opened_total",
    "Client sessions admitted since start.",
);
const SESSIONS_CLOSED: Def<IntCounterVec> = Def::counters(
    "relay_sessions_closed_total",
    "Admitted sessions that ended, by reason.",
    &["reason"],
);
const SESSIONS_REJECTED: Def<IntCounterVec> = Def::counters(
    "relay_sessions_rejected_total",
    "Client connections refused before any upstream dial, by reason.",
    &["reason"],
);
const UPSTREAM_CONNECT_SECONDS: Def<Histogram> = Def::histogram(
    "relay_upstream_connect_seconds",
    "Time to dial, TLS-handshake and upgrade the upstream WebSocket.",
    &[
        0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
    ],
);
const UPSTREAM_CONNECT_FAILURES: Def<IntCounterVec> = Def::counters(
    "relay_upstream_connect_failures_total",
    "Upstream dials that failed, by reason.",
    &["reason"],
);
const MESSAGES: Def<IntCounterVec> = Def::counters(
    "relay_messages_total",
    "WebSocket data messages relayed, by direction.",
    &["direction"],
);
const BYTES: Def<IntCounterVec> = Def::counters(
    "relay_bytes_total",
    "Payload bytes of relayed data messages, by direction.",
    &["direction"],
);
const UPSTREAM_POOL_WARM: Def<IntGaugeVec> = Def::gauges(
    "relay_upstream_pool_warm",
    "Warm upstream sockets waiting in the pool, by model.",
    &["model"],
);
const UPSTREAM_POOL_HITS: Def<IntCounterVec> = Def::counters(
    "relay_upstream_pool_hits_total",
    "Sessions that got a warm upstream socket from the pool.",
    &["model"],
);
const UPSTREAM_POOL_MISSES: Def<IntCounterVec> = Def::counters(
    "relay_upstream_pool_misses_total",
    "Sessions for a pooled model that found the pool empty and dialed.",
    &["model"],
);
const UPSTREAM_POOL_EXPIRED: Def<IntCounterVec> = Def::counters(
    "relay_upstream_pool_expired_total",
    "Warm sockets closed unused (past UPSTREAM_POOL_MAX_IDLE, or closed by the upstream).",
    &["model"],
);
const UPSTREAM_POOL_AGE_SECONDS: Def<Histogram> = Def::histogram(
    "relay_upstream_pool_age_seconds",
    "Age of warm sockets when a session took them.",
    &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
);
const SESSION_DURATION_SECONDS: Def<Histogram> = Def::histogram(
    "relay_session_duration_seconds",
    "Length of admitted sessions, from admission to release.",
    &[
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
    ],
);
const FIRST_UPSTREAM_EVENT_SECONDS: Def<Histogram> = Def::histogram(
    "relay_first_upstream_event_seconds",
    "Time from admission to the first upstream event reaching the client.",
    &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
    ],
);
const TOKENS: Def<IntCounterVec> = Def::counters(
    "relay_tokens_total",
    "Tokens the upstream reported used (response.done, transcription), by model and kind.",
    &["model", "kind"],
);
const AUDIO_SECONDS: Def<CounterVec> = Def::seconds(
    "relay_audio_seconds_total",
    "Seconds of input audio the upstream reported transcribing and billing by duration \
     (transcription usage of type duration), by model.",
    &["model"],
);
const COST_USD: Def<CounterVec> = Def::dollars(
    "relay_cost_usd_total",
    "What the usage the upstream reported cost, in US dollars, priced by the price table \
     (PRICING_FILE or the built-in one) when it was counted, by model.",
    &["model"],
);
const UNPRICED_USAGE: Def<IntCounterVec> = Def::counters(
    "relay_unpriced_usage_total",
    "Usage reports the price table could not price in full (a model with no entry and no \
     default entry, or a kind of count its entry has no rate for), by model.",
    &["model"],
);
const UNACCOUNTED_RESPONSES: Def<IntCounter> = Def::counter(
    "relay_unaccounted_responses_total",
    "Responses that ended without usage the relay could count: a response.done without a usage \
     block or with counts no event can carry, still in flight when the relay closed the \
     upstream after its usage grace, or cut off by the upstream ending the session.",
);

const REDIS_UP: Def<IntGauge> = Def::gauge(
    "relay_redis_up",
    "1 when the last Redis command answered in time, 0 when it did not (always 0 without REDIS_URL).",
);
const REDIS_ERRORS: Def<IntCounterVec> = Def::counters(
    "relay_redis_errors_total",
    "Redis commands that failed or timed out, by operation.",
    &["op"],
);
const ADMISSION_SECONDS: Def<Histogram> = Def::histogram(
    "relay_admission_seconds",
    "Time the registry took to admit or refuse a session (with REDIS_URL, one Redis round trip).",
    &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ],
);
const POLICY_ACTIONS: Def<IntCounterVec> = Def::counters(
    "relay_policy_actions_total",
    "Session policy decisions (SESSION_POLICY_FILE), by policy, action (pinned, stripped, \
     rejected, closed, lowered, hidden, not_allowed) and field (one the policy names, or type, \
     json, session, max_output_tokens).",
    &["policy", "action", "field"],
);
const CLIENT_SECRETS: Def<IntCounterVec> = Def::counters(
    "relay_client_secrets_total",
    "Requests for a relay client secret (POST /v1/realtime/client_secrets), by outcome: minted, \
     or the code it was refused with.",
    &["outcome"],
);

/// Counters for one direction, cheap to clone into a pump.
#[derive(Clone)]
pub struct Flow {
    pub(crate) messages: IntCounter,
    pub(crate) bytes: IntCounter,
}

impl Flow {
    /// The `direction` series of the messages and bytes counters.
    fn resolve(messages: &IntCounterVec, bytes: &IntCounterVec, direction: &str) -> Flow {
        Flow {
            messages: messages.with_label_values(&[direction]),
            bytes: bytes.with_label_values(&[direction]),
        }
    }

    #[inline]
    pub(crate) fn record(&self, bytes: usize) {
        self.messages.inc();
        self.bytes.inc_by(bytes as u64);
    }
}

/// The relay's metrics, built once by `start` and shared (`Arc`) by every worker and actor.
pub struct Metrics {
    registry: Registry,
    pub(crate) sessions_active: IntGauge,
    pub(crate) sessions_by_transport: IntGaugeVec,
    pub(crate) sessions_max: IntGauge,
    pub(crate) sessions_opened: IntCounter,
    pub(crate) sessions_closed: IntCounterVec,
    pub(crate) sessions_rejected: IntCounterVec,
    pub(crate) upstream_connect_seconds: Histogram,
    pub(crate) upstream_connect_failures: IntCounterVec,
    pub(crate) client_to_upstream: Flow,
    pub(crate) upstream_to_client: Flow,
    pub(crate) upstream_pool_warm: IntGaugeVec,
    pub(crate) upstream_pool_hits: IntCounterVec,
    pub(crate) upstream_pool_misses: IntCounterVec,
    pub(crate) upstream_pool_expired: IntCounterVec,
    pub(crate) upstream_pool_age_seconds: Histogram,
    pub(crate) session_duration_seconds: Histogram,
    pub(crate) first_upstream_event_seconds: Histogram,
    pub(crate) tokens: IntCounterVec,
    pub(crate) audio_seconds: CounterVec,
    pub(crate) cost_usd: CounterVec,
    pub(crate) unpriced_usage: IntCounterVec,
    pub(crate) unaccounted_responses: IntCounter,
    pub(crate) redis_up: IntGauge,
    pub(crate) redis_errors: IntCounterVec,
    pub(crate) admission_seconds: Histogram,
    pub(crate) policy_actions: IntCounterVec,
    pub(crate) client_secrets: IntCounterVec,
    /// The closed set of `model` label values; anything else is counted as `other`.
    known_models: Vec<String>,
}

impl Metrics {
    /// `pool_models` label the pool metrics; `models` (configured ones: default, pooled, allowed)
    /// join `BUILTIN_MODELS` as the closed set of the token metric's `model` label.
    pub(crate) fn new(pool_models: &[String], models: &[String]) -> Metrics {
        let mut known_models: Vec<String> = BUILTIN_MODELS.iter().map(|m| m.to_string()).collect();
        for m in models.iter().chain(pool_models) {
            if !known_models.contains(m) {
                known_models.push(m.clone());
            }
        }
        let r = Registrar(Registry::new());
        // Resident memory, open fds, CPU seconds and friends, read from /proc at each scrape.
        #[cfg(target_os = "linux")]
        r.register(prometheus::process_collector::ProcessCollector::for_self());
        let messages = r.add(&MESSAGES);
        let bytes = r.add(&BYTES);
        let metrics = Metrics {
            sessions_active: r.add(&SESSIONS_ACTIVE),
            sessions_by_transport: r.add(&SESSIONS_BY_TRANSPORT),
            sessions_max: r.add(&SESSIONS_MAX),
            sessions_opened: r.add(&SESSIONS_OPENED),
            sessions_closed: r.add(&SESSIONS_CLOSED),
            sessions_rejected: r.add(&SESSIONS_REJECTED),
            upstream_connect_seconds: r.add(&UPSTREAM_CONNECT_SECONDS),
            upstream_connect_failures: r.add(&UPSTREAM_CONNECT_FAILURES),
            client_to_upstream: Flow::resolve(&messages, &bytes, "client_to_upstream"),
            upstream_to_client: Flow::resolve(&messages, &bytes, "upstream_to_client"),
            upstream_pool_warm: r.add(&UPSTREAM_POOL_WARM),
            upstream_pool_hits: r.add(&UPSTREAM_POOL_HITS),
            upstream_pool_misses: r.add(&UPSTREAM_POOL_MISSES),
            upstream_pool_expired: r.add(&UPSTREAM_POOL_EXPIRED),
            upstream_pool_age_seconds: r.add(&UPSTREAM_POOL_AGE_SECONDS),
            session_duration_seconds: r.add(&SESSION_DURATION_SECONDS),
            first_upstream_event_seconds: r.add(&FIRST_UPSTREAM_EVENT_SECONDS),
            tokens: r.add(&TOKENS),
            audio_seconds: r.add(&AUDIO_SECONDS),
            cost_usd: r.add(&COST_USD),
            unpriced_usage: r.add(&UNPRICED_USAGE),
            unaccounted_responses: r.add(&UNACCOUNTED_RESPONSES),
            redis_up: r.add(&REDIS_UP),
            redis_errors: r.add(&REDIS_ERRORS),
            admission_seconds: r.add(&ADMISSION_SECONDS),
            policy_actions: r.add(&POLICY_ACTIONS),
            client_secrets: r.add(&CLIENT_SECRETS),
            known_models,
            registry: r.0,
        };
        metrics.preset_series(pool_models);
        metrics
    }

    /// Creates every series of the closed label sets at 0, so dashboards and alerts see them
    /// before the first event.
    fn preset_series(&self, pool_models: &[String]) {
        for label in SessionEnd::LABELS {
            if !SessionEnd::REFUSAL_ONLY_LABELS.contains(&label) {
                self.sessions_closed.with_label_values(&[label]);
            }
        }
        for label in REJECT_LABELS {
            self.sessions_rejected.with_label_values(&[label]);
        }
        for transport in crate::admission::msg::Transport::ALL {
            self.sessions_by_transport
                .with_label_values(&[transport.label()]);
        }
        for label in CONNECT_FAILURE_LABELS {
            self.upstream_connect_failures.with_label_values(&[label]);
        }
        for outcome in CLIENT_SECRET_OUTCOMES {
            self.client_secrets.with_label_values(&[outcome]);
        }
        for op in REDIS_OPS {
            self.redis_errors.with_label_values(&[op]);
        }
        for model in self
            .known_models
            .iter()
            .map(String::as_str)
            .chain(["other"])
        {
            for (kind, _) in Usage::default().by_kind() {
                self.tokens.with_label_values(&[model, kind]);
            }
            self.audio_seconds.with_label_values(&[model]);
            self.cost_usd.with_label_values(&[model]);
            self.unpriced_usage.with_label_values(&[model]);
        }
        for model in pool_models {
            self.upstream_pool_warm.with_label_values(&[model]);
            for counter in [
                &self.upstream_pool_hits,
                &self.upstream_pool_misses,
                &self.upstream_pool_expired,
            ] {
                counter.with_label_values(&[model]);
            }
        }
    }

    /// The token metric's `model` label for `model`: itself if known, else `other`.
    pub(crate) fn model_label<'a>(&'a self, model: &str) -> &'a str {
        self.known_models
            .iter()
            .find(|m| *m == model)
            .map_or("other", String::as_str)
    }

    /// Counts usage the upstream reported for a session of `model`: tokens by kind
    /// (`relay_tokens_total`), audio billed by duration (`relay_audio_seconds_total`), and its
    /// cost (`relay_cost_usd_total`, `relay_unpriced_usage_total`).
    pub(crate) fn record_usage(&self, model: &str, usage: &Usage) {
        let label = self.model_label(model);
        for (kind, n) in usage.by_kind() {
            if n > 0 {
                self.tokens.with_label_values(&[label, kind]).inc_by(n);
            }
        }
        if usage.audio_millis > 0 {
            self.audio_seconds
                .with_label_values(&[label])
                .inc_by(usage.audio_seconds());
        }
        if usage.cost_nano_usd > 0 {
            self.cost_usd
                .with_label_values(&[label])
                .inc_by(usage.cost_usd());
        }
        if usage.unpriced > 0 {
            self.unpriced_usage
                .with_label_values(&[label])
                .inc_by(usage.unpriced);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            log::warn!("metrics encoding failed: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// `(label, count)` for every label of a counter vector, in label order.
    pub(crate) fn by_label(
        vec: &IntCounterVec,
        labels: &[&'static str],
    ) -> Vec<(&'static str, u64)> {
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

/// What Prometheus shows about one metric. `M` is the metric's type: each constructor below
/// makes the definition of one type, with the fields that type needs.
struct Def<M> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    metric: PhantomData<fn() -> M>,
}

impl<M> Def<M> {
    const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Def<M> {
        Def {
            name,
            help,
            labels,
            buckets,
            metric: PhantomData,
        }
    }
}

impl Def<IntGauge> {
    const fn gauge(name: &'static str, help: &'static str) -> Self {
        Def::new(name, help, &[], &[])
    }
}

impl Def<IntCounter> {
    const fn counter(name: &'static str, help: &'static str) -> Self {
        Def::new(name, help, &[], &[])
    }
}

impl Def<IntGaugeVec> {
    const fn gauges(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<IntCounterVec> {
    const fn counters(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<CounterVec> {
    /// A counter of a quantity with a fraction (seconds), with labels.
    const fn seconds(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<CounterVec> {
    /// A counter of money (US dollars, with a fraction), with labels.
    const fn dollars(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<Histogram> {
    const fn histogram(name: &'static str, help: &'static str, buckets: &'static [f64]) -> Self {
        Def::new(name, help, &[], buckets)
    }
}

/// A metric type that a `Def` of it can make.
trait Make: Collector + Clone + Sized + 'static {
    fn make(def: &Def<Self>) -> prometheus::Result<Self>;
}

impl Make for IntGauge {
    fn make(def: &Def<Self>) -> prometheus::Result<Self> {
        IntGauge::new(def.name, def.help)
    }
}

impl Make for IntCounter {
    fn make(def: &Def<Self>) -> prometheus::Result<Self> {
        IntCounter::new(def.name, def.help)
    }
}

impl Make for IntGaugeVec {
    fn make(def: &Def<Self>) -> prometheus::Result<Self> {
        IntGaugeVec::new(Opts::new(def.name, def.help), def.labels)
    }
}

impl Make for IntCounterVec {
    fn make(def: &Def<Self>) -> prometheus::Result<Self> {
        IntCounterVec::new(Opts::new(def.name, def.help), def.labels)
    }
}

impl Make for CounterVec {
    fn make(def: &Def<Self>) -> prometheus::Result<Self> {
        CounterVec::new(Opts::new(def.name, def.help), def.labels)
    }
}

impl Make for Histogram {
    fn make(def: &Def<Self>) -> prometheus::Result<Self> {
        Histogram::with_opts(HistogramOpts::new(def.name, def.help).buckets(def.buckets.to_vec()))
    }
}

/// The registry while `Metrics::new` fills it; `add` is the only place a `Def` becomes a metric.
struct Registrar(Registry);

impl Registrar {
    /// The metric `def` defines, registered.
    fn add<M: Make>(&self, def: &Def<M>) -> M {
        // The definitions are constants: a bad one fails every start and every test.
        let metric = M::make(def).expect("metric definitions are valid constants");
        self.register(metric.clone());
        metric
    }

    fn register(&self, collector: impl Collector + 'static) {
        self.0
            .register(Box::new(collector))
            .expect("metric names are unique constants");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unknown models are counted as `other`, configured and built-in ones as themselves.
    #[test]
    fn model_label_is_a_closed_set() {
        let m = Metrics::new(&[], &["my-model".into()]);
        assert_eq!(m.model_label("my-model"), "my-model");
        assert_eq!(m.model_label("gpt-realtime"), "gpt-realtime");
        assert_eq!(m.model_label("someone-elses"), "other");
    }

    /// Usage lands in the token counters by kind and, when billed by duration, in the audio
    /// seconds counter of its model; every known model's audio series exists from the start.
    #[test]
    fn record_usage_counts_tokens_and_audio_seconds() {
        let m = Metrics::new(&[], &["gpt-4o-transcribe".into()]);
        let text = m.render();
        assert!(
            text.contains(r#"relay_audio_seconds_total{model="gpt-4o-transcribe"} 0"#),
            "{text}"
        );
        m.record_usage(
            "gpt-4o-transcribe",
            &Usage {
                audio_millis: 2400,
                ..Usage::default()
            },
        );
        m.record_usage(
            "unknown-model",
            &Usage {
                audio_millis: 500,
                output_audio: 7,
                ..Usage::default()
            },
        );
        let audio = |model: &str| m.audio_seconds.with_label_values(&[model]).get();
        assert_eq!(audio("gpt-4o-transcribe"), 2.4);
        assert_eq!(audio("other"), 0.5);
        assert_eq!(
            m.tokens.with_label_values(&["other", "output_audio"]).get(),
            7
        );
    }
}
