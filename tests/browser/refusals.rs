//! Refusals as the page shows them: in plain words, not a bare close code.

use fake_upstream::Script;

use crate::{common, Browser};

/// With `MAX_CONNECTIONS=1` and a session already open, connecting from the page shows that the
/// relay is full (`capacity_exceeded`).
#[actix_web::test]
async fn a_full_relay_is_explained_in_words() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(
        Script::demo(),
        &[("CONSOLE", "true"), ("MAX_CONNECTIONS", "1")],
    )
    .await;
    let mut first = common::connect(&h, "/realtime?model=gpt-realtime-mini").await;
    let r = browser
        .run("refused", &format!("{}/console", h.http()), None)
        .await;
    common::close(&mut first).await;
    h.stop().await;

    assert_eq!(r["stats"]["state"], "disconnected", "{r:#}");
    assert_eq!(
        r["stats"]["lastError"]["code"], "capacity_exceeded",
        "{r:#}"
    );
    let explain = r["explain"].as_str().unwrap_or_default();
    assert!(explain.starts_with("the relay is full"), "{r:#}");
}

/// With client tokens on, a wrong token entered in the page is explained as a missing or wrong
/// token (`unauthorized`).
#[actix_web::test]
async fn a_wrong_token_is_explained_in_words() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(
        Script::demo(),
        &[("CONSOLE", "true"), ("RELAY_TOKENS", "alice:tok-alice-123")],
    )
    .await;
    let r = browser
        .run(
            "refused",
            &format!("{}/console", h.http()),
            Some("tok-wrong-999"),
        )
        .await;
    h.stop().await;

    assert_eq!(r["stats"]["state"], "disconnected", "{r:#}");
    assert_eq!(r["stats"]["config"]["tokens"], true, "{r:#}");
    assert_eq!(r["tokenFieldVisible"], true, "{r:#}");
    assert_eq!(r["stats"]["lastError"]["code"], "unauthorized", "{r:#}");
    let explain = r["explain"].as_str().unwrap_or_default();
    assert!(explain.starts_with("token missing or wrong"), "{r:#}");
}
