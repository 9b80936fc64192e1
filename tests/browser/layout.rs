//! The console at a phone's width and with the keyboard alone.

use fake_upstream::Script;

use crate::{common, Browser};

/// At 375x740 the connected page does not scroll sideways, the talk button and the message box
/// are visible, and a typed message is answered.
#[actix_web::test]
async fn the_page_fits_and_works_at_a_phone_width() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[("CONSOLE", "true")]).await;
    let r = browser
        .run("phone", &format!("{}/console", h.http()), None)
        .await;
    h.stop().await;

    let layout = &r["layout"];
    assert_eq!(layout["innerWidth"], 375, "{r:#}");
    assert!(
        layout["scrollWidth"].as_u64() <= layout["innerWidth"].as_u64(),
        "horizontal overflow: {r:#}"
    );
    assert_eq!(r["pttVisible"], true, "{r:#}");
    assert_eq!(r["textVisible"], true, "{r:#}");
    assert_eq!(r["sendVisible"], true, "{r:#}");
    assert_eq!(r["stats"]["state"], "connected", "{r:#}");
    assert!(r["stats"]["lastError"].is_null(), "{r:#}");
}

/// With Tab and Enter alone the page connects and a typed message is answered, and every
/// control that took the focus on the way showed a visible outline.
#[actix_web::test]
async fn the_keyboard_alone_connects_and_talks() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let h = common::start(Script::demo(), &[("CONSOLE", "true")]).await;
    let r = browser
        .run("keyboard", &format!("{}/console", h.http()), None)
        .await;
    h.stop().await;

    assert_eq!(r["stats"]["state"], "connected", "{r:#}");
    let focused = r["focused"].as_array().expect("focused controls");
    let ids: Vec<&str> = focused.iter().filter_map(|f| f["id"].as_str()).collect();
    assert!(ids.contains(&"connect-btn"), "{r:#}");
    assert_eq!(ids.last(), Some(&"text"), "{r:#}");
    for f in focused {
        assert_eq!(f["focusVisible"], true, "{f} in {r:#}");
        assert_ne!(f["outlineStyle"], "none", "no outline on {f} in {r:#}");
        assert_ne!(f["outlineWidth"], "0px", "no outline on {f} in {r:#}");
    }
    let lines = r["transcript"].as_array().expect("transcript");
    assert!(
        lines.iter().any(|l| l["className"]
            .as_str()
            .is_some_and(|c| c.split(' ').any(|c| c == "assistant"))
            && l["text"]
                .as_str()
                .is_some_and(|t| t.contains("hello from the keyboard"))),
        "{r:#}"
    );
}
