//! How a metric definition becomes a metric. `Def<M>` is what Prometheus shows about one metric
//! of type `M`, with one constructor per type; `Registrar::add` is the only place a `Def` becomes
//! a metric, and it registers it in the same step, so a metric cannot be defined and silently go
//! unexported. Only `Metrics::new` and the `catalog` of definitions use this module.

use std::marker::PhantomData;

use prometheus::{
    core::Collector, CounterVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// What Prometheus shows about one metric. `M` is the metric's type: each constructor below
/// makes the definition of one type, with the fields that type needs.
pub(super) struct Def<M> {
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
    pub(super) const fn gauge(name: &'static str, help: &'static str) -> Self {
        Def::new(name, help, &[], &[])
    }
}

impl Def<IntCounter> {
    pub(super) const fn counter(name: &'static str, help: &'static str) -> Self {
        Def::new(name, help, &[], &[])
    }
}

impl Def<IntGaugeVec> {
    pub(super) const fn gauges(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<IntCounterVec> {
    pub(super) const fn counters(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<CounterVec> {
    /// A counter of a quantity with a fraction (seconds), with labels.
    pub(super) const fn seconds(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<CounterVec> {
    /// A counter of money (US dollars, with a fraction), with labels.
    pub(super) const fn dollars(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Def::new(name, help, labels, &[])
    }
}

impl Def<Histogram> {
    pub(super) const fn histogram(
        name: &'static str,
        help: &'static str,
        buckets: &'static [f64],
    ) -> Self {
        Def::new(name, help, &[], buckets)
    }
}

/// A metric type that a `Def` of it can make.
pub(super) trait Make: Collector + Clone + Sized + 'static {
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
pub(super) struct Registrar(pub(super) Registry);

impl Registrar {
    /// The metric `def` defines, registered.
    pub(super) fn add<M: Make>(&self, def: &Def<M>) -> M {
        // The definitions are constants: a bad one fails every start and every test.
        let metric = M::make(def).expect("metric definitions are valid constants");
        self.register(metric.clone());
        metric
    }

    pub(super) fn register(&self, collector: impl Collector + 'static) {
        self.0
            .register(Box::new(collector))
            .expect("metric names are unique constants");
    }
}
