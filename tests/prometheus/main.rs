//! The shipped monitoring files against the real Prometheus tools: `promtool` checks
//! `config/prometheus.yml` and `config/alerts.yml` and unit-tests every alert, `amtool` checks
//! `config/alertmanager.yml` (`configs`); a real `prometheus` running `config/prometheus.yml`
//! (test values substituted on its `# test:` lines) scrapes a live relay's admin port with its
//! admin token (`scrape`); and a real Alertmanager running `config/alertmanager.yml` receives
//! that Prometheus's alerts (`alerting`). `server` lays out and runs them. (That the alerts and
//! the Grafana dashboard name only exported metrics needs no outside program: the `relay` target
//! checks it.)
//!
//! Needs `promtool` and `prometheus` (Debian's prometheus package) and `amtool` and
//! `prometheus-alertmanager` (Debian's prometheus-alertmanager): without them each test that runs
//! one says it is skipped, unless `RELAY_TESTS_REQUIRE` lists it; `bash tests/run.sh` installs
//! them.

#[path = "../common/mod.rs"]
mod common;

mod alerting;
mod configs;
mod scrape;
mod server;
