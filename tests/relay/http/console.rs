//! `/console`: the page and its files with their headers, `/console/config`, the switch
//! (`CONSOLE`, `NODE_ENV`), never on the admin listener, and every script parsed by Node.

use awc::http::Method;
use fake_upstream::Script;

use super::{request, Response};
use crate::common::{tools, *};

/// The files of `console/` (besides the page), by name.
fn console_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo("console"))
        .expect("console/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "index.html")
        .collect();
    names.sort();
    names
}

async fn get(url: &str) -> Response {
    request(Method::GET, url, &[]).await
}

fn assert_not_found(res: &Response, what: &str) {
    assert_eq!(res.status, 404, "{what}: {}", res.body);
    assert_eq!(res.json()["error"]["code"], "not_found", "{what}");
}

/// GET /console is the page from console/index.html, uncached, with a CSP that allows only the
/// relay's own files and WebSockets to the relay's own host.
#[actix_web::test]
async fn console_serves_the_page_with_its_headers() {
    let h = start(Script::echo(), &[]).await;
    let res = get(&format!("{}/console", h.http())).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body, read_repo("console/index.html"));
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    let csp = res.header("content-security-policy").expect("a CSP");
    let host = h.relay.local_addr();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        &format!("connect-src 'self' ws://{host} wss://{host}"),
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    h.stop().await;
}

/// Every file in console/ is served at /console/<name> as it is on disk, scripts as JavaScript
/// and the style sheet as CSS; the page names only files that are served; other names are 404.
#[actix_web::test]
async fn console_files_are_served_with_their_content_types() {
    let h = start(Script::echo(), &[]).await;
    let page = read_repo("console/index.html");
    let files = console_files();
    assert!(files.iter().any(|f| f == "app.mjs"), "{files:?}");
    for name in &files {
        let res = get(&format!("{}/console/{name}", h.http())).await;
        assert_eq!(res.status, 200, "{name}: {}", res.body);
        assert_eq!(res.body, read_repo(&format!("console/{name}")), "{name}");
        let expected = match name.rsplit('.').next() {
            Some("mjs" | "js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            other => panic!("console/{name}: no content type expected for {other:?}"),
        };
        assert_eq!(res.header("content-type"), Some(expected), "{name}");
        assert_eq!(res.header("cache-control"), Some("no-store"), "{name}");
        assert!(res.header("content-security-policy").is_some(), "{name}");
    }
    for linked in page.split("\"/console/").skip(1) {
        let name = linked.split('"').next().unwrap_or_default();
        assert!(files.iter().any(|f| f == name), "the page links {name}");
    }
    for missing in [
        "/console/nope.js",
        "/console/index.html",
        "/console/..%2FCargo.toml",
    ] {
        assert_not_found(&get(&format!("{}{missing}", h.http())).await, missing);
    }
    h.stop().await;
}

/// /console/config lists ALLOWED_MODELS (DEFAULT_MODEL first, intents and transcription models
/// left out), the transcription model to ask for, that client tokens are on, the prices and the
/// version; without ALLOWED_MODELS or tokens: DEFAULT_MODEL alone, tokens off.
#[actix_web::test]
async fn console_config_names_the_models_and_the_token_flag() {
    let h = start(
        Script::echo(),
        &[
            (
                "ALLOWED_MODELS",
                "gpt-realtime,intent:transcription,gpt-4o-transcribe,gpt-realtime-mini",
            ),
            ("DEFAULT_MODEL", "gpt-realtime-mini"),
            ("RELAY_TOKENS", "alice:console-test-token"),
        ],
    )
    .await;
    let res = get(&format!("{}/console/config", h.http())).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(!res.body.contains("console-test-token"), "{}", res.body);
    let v = res.json();
    assert_eq!(
        v["models"],
        serde_json::json!(["gpt-realtime-mini", "gpt-realtime"])
    );
    assert_eq!(v["tokens"], true, "{v}");
    assert_eq!(v["transcription_model"], "gpt-4o-transcribe", "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert!(
        v["prices"]["gpt-realtime"]["output_audio"].is_number(),
        "{v}"
    );
    h.stop().await;

    let h = start(Script::echo(), &[("DEFAULT_MODEL", "my-model")]).await;
    let v = get(&format!("{}/console/config", h.http())).await.json();
    assert_eq!(v["models"], serde_json::json!(["my-model"]), "{v}");
    assert_eq!(v["tokens"], false, "{v}");
    assert_eq!(v["transcription_model"], "gpt-4o-mini-transcribe", "{v}");
    h.stop().await;
}

/// CONSOLE=false, and NODE_ENV=production without CONSOLE, make /console and its config the
/// JSON 404; CONSOLE=true turns it back on in production.
#[actix_web::test]
async fn console_is_off_when_configured_or_in_production() {
    for vars in [
        &[("CONSOLE", "false")][..],
        &[("NODE_ENV", "production")][..],
    ] {
        let h = start(Script::echo(), vars).await;
        for path in ["/console", "/console/config", "/console/app.mjs"] {
            let res = get(&format!("{}{path}", h.http())).await;
            assert_not_found(&res, &format!("{vars:?} {path}"));
        }
        h.stop().await;
    }
    let h = start(
        Script::echo(),
        &[("NODE_ENV", "production"), ("CONSOLE", "true")],
    )
    .await;
    assert_eq!(get(&format!("{}/console", h.http())).await.status, 200);
    h.stop().await;
}

/// The admin listener (ADMIN_PORT) does not serve the console; the public one does.
#[actix_web::test]
async fn console_is_not_on_the_admin_listener() {
    let h = start(Script::echo(), &[("ADMIN_PORT", "0")]).await;
    let admin = h.relay.admin_addr().expect("an admin listener");
    for path in ["/console", "/console/config", "/console/app.mjs"] {
        assert_not_found(&get(&format!("http://{admin}{path}")).await, path);
        let public = get(&format!("{}{path}", h.http())).await;
        assert_eq!(public.status, 200, "public {path}: {}", public.body);
    }
    h.stop().await;
}

/// Every script in console/ parses (`node --check`); skipped with a line on stderr without node.
#[test]
fn console_scripts_parse() {
    let Some(node) = tools::tool("node") else {
        return;
    };
    let scripts: Vec<String> = console_files()
        .into_iter()
        .filter(|n| n.ends_with(".mjs") || n.ends_with(".js"))
        .collect();
    assert!(scripts.len() >= 2, "{scripts:?}");
    for name in scripts {
        let out = tools::output(
            std::process::Command::new(&node)
                .arg("--check")
                .arg(repo(&format!("console/{name}"))),
        );
        assert!(
            out.status.success(),
            "node --check console/{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
