//! The registry's admission, release, model and budget logic, without an actix `System`.

use super::*;
use crate::session::msg::Tick;

/// A session that is never started: admission logic does not send to it.
struct Idle;

impl Actor for Idle {
    type Context = Context<Self>;
}

impl Handler<Tick> for Idle {
    type Result = ();
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {}
}

impl Handler<End> for Idle {
    type Result = ();
    fn handle(&mut self, _: End, _: &mut Context<Self>) {}
}

impl Handler<BudgetSpent> for Idle {
    type Result = ();
    fn handle(&mut self, _: BudgetSpent, _: &mut Context<Self>) {}
}

fn entry(identity: &str, model: &str) -> Entry {
    let (tx, _rx) = actix::dev::channel::channel(1);
    let addr: Addr<Idle> = Addr::new(tx);
    Entry {
        handle: SessionHandle {
            tick: addr.clone().recipient(),
            end: addr.clone().recipient(),
            budget_spent: addr.recipient(),
        },
        model: model.into(),
        identity: identity.into(),
        credential_models: None,
        usd_budget: None,
        opened_at: Instant::now(),
        client: None,
        traffic: Default::default(),
        transport: crate::admission::msg::Transport::WebSocket,
        call_id: None,
    }
}

#[test]
fn per_client_limit_and_release() {
    let mut r = Registry::new(10, Arc::new(Metrics::default())).with_limits(Limits {
        per_client: 1,
        ..Limits::default()
    });
    let id = r.admit(entry("token:a", "m")).expect("first");
    assert_eq!(
        r.admit(entry("token:a", "m")),
        Err(Rejected::TooManyConnections { max: 1 })
    );
    assert!(r.admit(entry("token:b", "m")).is_ok());
    r.release(
        id,
        &SessionEnd::ClientClosed {
            code: 1000,
            reason: String::new(),
        },
    );
    assert_eq!(r.live_sessions_of("token:a"), 0);
    assert!(r.admit(entry("token:a", "m")).is_ok());
    assert_eq!(r.live_sessions_of("token:a"), 1);
    assert_eq!(r.live_sessions_of("token:b"), 1);
    assert_eq!(r.stats().usage.by_identity.len(), 0);
}

#[test]
fn models_are_checked_against_both_lists() {
    let mut r = Registry::new(10, Arc::new(Metrics::default())).with_limits(Limits {
        allowed_models: vec!["gpt-realtime".into(), "gpt-realtime-mini".into()],
        ..Limits::default()
    });
    assert!(matches!(
        r.admit(entry("ip:1", "gpt-4o-realtime-preview")),
        Err(Rejected::ModelNotAllowed { .. })
    ));
    let mut e = entry("jwt:u", "gpt-realtime");
    e.credential_models = Some(vec!["gpt-realtime-mini".into()]);
    assert!(matches!(r.admit(e), Err(Rejected::ModelNotAllowed { .. })));
    assert!(r.admit(entry("ip:1", "gpt-realtime")).is_ok());
}

#[test]
fn spent_budget_refuses_new_sessions() {
    let mut r = Registry::new(10, Arc::new(Metrics::default())).with_limits(Limits {
        client_budget: Some(100),
        ..Limits::default()
    });
    let used = Usage {
        total_tokens: 100,
        ..Usage::default()
    };
    assert_eq!(r.record_usage("token:a", "m", &used), Some(Budget::Client));
    assert_eq!(
        r.admit(entry("token:a", "m")),
        Err(Rejected::BudgetExceeded {
            budget: Budget::Client
        })
    );
    assert!(r.admit(entry("token:b", "m")).is_ok());
}
