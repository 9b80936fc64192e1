//! The relay's metrics: `Metrics`, the handles every part of the relay counts into, and `Flow`,
//! the counters of one direction of traffic. Every metric is named once, as a `Def` constant in
//! `catalog` (name, help, labels, buckets); `def` holds the only way to turn a `Def` into a
//! metric, which also registers it, so a metric cannot be defined and silently go unexported (an
//! unused `Def` is a compiler warning). The registry is not global, so two relays can run in one
//! test process. `start` builds one `Metrics` for the relay; the HTTP face renders it, the
//! registry, sessions and upstreams count into it. Hot-path counters are resolved to label-free
//! handles up front: relaying a frame costs two relaxed atomic adds.

mod catalog;
mod def;

use prometheus::{
    CounterVec, Encoder, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

use self::{catalog::*, def::Registrar};
use crate::{close::SessionEnd, protection::usage::Usage};

pub(crate) use self::catalog::{CONNECT_FAILURE_LABELS, REJECT_LABELS};

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
