//! The browser console: `GET /console` (a single page), its scripts and style under
//! `/console/<file>`, and `GET /console/config` (the models the page may offer, whether client
//! tokens are on, the prices it shows cost at, the relay's version). The files live in the
//! repository's `console/` folder and are compiled into the binary; nothing is read from disk.
//! Built once by `relay::start` when `CONSOLE` is on (otherwise no route exists and these paths
//! are the JSON 404); never served on the admin listener.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::{
    config::Config,
    http::{not_found, AppState},
    protection::{
        pricing::{Pricing, Source},
        usage::Usage,
    },
};

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../console/index.html"),
};

/// Everything `/console/<name>` serves; any other name is the JSON 404.
const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../console/console.css"),
    },
    Asset {
        name: "app.mjs",
        content_type: JS,
        body: include_str!("../../console/app.mjs"),
    },
    Asset {
        name: "call.mjs",
        content_type: JS,
        body: include_str!("../../console/call.mjs"),
    },
    Asset {
        name: "audio.mjs",
        content_type: JS,
        body: include_str!("../../console/audio.mjs"),
    },
    Asset {
        name: "worklet.mjs",
        content_type: JS,
        body: include_str!("../../console/worklet.mjs"),
    },
    Asset {
        name: "events.mjs",
        content_type: JS,
        body: include_str!("../../console/events.mjs"),
    },
    Asset {
        name: "panels.mjs",
        content_type: JS,
        body: include_str!("../../console/panels.mjs"),
    },
];

/// What `/console/config` answers, computed once at start.
pub(crate) struct Console {
    config: Value,
}

/// The token kinds the page prices, as the price table names them.
const KINDS: [&str; 6] = [
    "input_text",
    "cached_input_text",
    "input_audio",
    "cached_input_audio",
    "output_text",
    "output_audio",
];

impl Console {
    /// The console when `CONSOLE` is on, else `None`.
    pub(crate) fn new(config: &Config, pricing: &Pricing) -> Option<Console> {
        if !config.console {
            return None;
        }
        let p = &config.protection;
        let models = offered_models(&config.default_model, &p.allowed_models);
        let prices: serde_json::Map<String, Value> = models
            .iter()
            .map(|m| (m.clone(), prices(pricing, m)))
            .collect();
        log::info!(
            "console: open /console in a browser to talk through the relay (CONSOLE=false turns \
             it off)"
        );
        Some(Console {
            config: json!({
                "models": models,
                "default_model": config.default_model,
                "tokens": p.tokens.is_some() || p.tokens_file.is_some() || p.jwt_secret.is_some(),
                "transcription_model": transcription_model(&p.allowed_models),
                "prices": prices,
                "version": env!("CARGO_PKG_VERSION"),
            }),
        })
    }
}

/// The models the page offers for `?model=`: `ALLOWED_MODELS` without the intents and the
/// transcription models listed there for `session.update`, `DEFAULT_MODEL` first when it is
/// among them; just `DEFAULT_MODEL` when the list is empty (any model is allowed).
fn offered_models(default: &str, allowed: &[String]) -> Vec<String> {
    let mut models: Vec<String> = allowed
        .iter()
        .filter(|m| !m.starts_with("intent:") && !is_transcription(m))
        .cloned()
        .collect();
    if let Some(at) = models.iter().position(|m| m == default) {
        let first = models.remove(at);
        models.insert(0, first);
    }
    if models.is_empty() {
        models.push(default.to_string());
    }
    models
}

fn is_transcription(model: &str) -> bool {
    model.contains("transcribe") || model == "whisper-1"
}

/// The model the page asks to transcribe the user's speech with: the first transcription model
/// `ALLOWED_MODELS` lists, `gpt-4o-mini-transcribe` when any model is allowed, else none (the
/// relay would refuse the `session.update` that names one).
fn transcription_model(allowed: &[String]) -> Option<&str> {
    if allowed.is_empty() {
        return Some("gpt-4o-mini-transcribe");
    }
    allowed
        .iter()
        .map(String::as_str)
        .find(|m| is_transcription(m))
}

/// `model`'s rates in USD per 1M tokens, by kind (`null` for a kind the table does not price),
/// read through the same `Pricing::price` the relay charges with, one kind at a time.
fn prices(pricing: &Pricing, model: &str) -> Value {
    const MILLION: u64 = 1_000_000;
    let mut rates = serde_json::Map::new();
    for kind in KINDS {
        let mut u = Usage::default();
        match kind {
            "input_text" => u.input_text = MILLION,
            "cached_input_text" => (u.input_text, u.input_cached_text) = (MILLION, MILLION),
            "input_audio" => u.input_audio = MILLION,
            "cached_input_audio" => (u.input_audio, u.input_cached_audio) = (MILLION, MILLION),
            "output_text" => u.output_text = MILLION,
            _ => u.output_audio = MILLION,
        }
        pricing.price(model, Source::Response, &mut u);
        let rate = (u.unpriced == 0).then(|| u.cost_nano_usd as f64 / 1e9);
        rates.insert(kind.to_string(), json!(rate));
    }
    Value::Object(rates)
}

/// The console's routes, when it is on.
pub(crate) fn routes(cfg: &mut web::ServiceConfig, console: Option<web::Data<Console>>) {
    let Some(console) = console else {
        return;
    };
    cfg.app_data(console)
        .route("/console", web::get().to(page))
        .route("/console/config", web::get().to(config))
        .route("/console/{file}", web::get().to(asset));
}

/// `GET /console`: the page.
async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(&req, &state, &PAGE)
}

/// `GET /console/<file>`: one of the page's scripts or its style.
async fn asset(
    req: HttpRequest,
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == file.as_str()) {
        Some(a) => serve(&req, &state, a),
        None => not_found(),
    }
}

/// `GET /console/config`: what the page offers and shows.
async fn config(
    req: HttpRequest,
    state: web::Data<AppState>,
    console: web::Data<Console>,
) -> HttpResponse {
    if state.on_admin_listener(&req) {
        return not_found();
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .json(&console.config)
}

fn serve(req: &HttpRequest, state: &AppState, asset: &Asset) -> HttpResponse {
    if state.on_admin_listener(req) {
        return not_found();
    }
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, policy(req)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header(("Permissions-Policy", "microphone=(self)"))
        .body(asset.body)
}

/// Only the relay's own files, and WebSockets to the relay itself. `'self'` covers `ws:` and
/// `wss:` to the same host in CSP 3, but not in every browser: the host is named too when the
/// `Host` header is a plain host name or address (anything else could inject a directive).
fn policy(req: &HttpRequest) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        });
    let connect = match host {
        Some(h) => format!("'self' ws://{h} wss://{h}"),
        None => "'self'".to_string(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    /// The page offers realtime models, the default first, and transcribes with an allowed one.
    #[test]
    fn offered_models_and_the_transcription_model() {
        let list: Vec<String> = [
            "gpt-realtime",
            "intent:transcription",
            "gpt-4o-transcribe",
            "gpt-realtime-mini",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            offered_models("gpt-realtime-mini", &list),
            ["gpt-realtime-mini", "gpt-realtime"]
        );
        assert_eq!(offered_models("m", &[]), ["m"]);
        assert_eq!(offered_models("m", &["intent:transcription".into()]), ["m"]);
        assert_eq!(transcription_model(&list), Some("gpt-4o-transcribe"));
        assert_eq!(transcription_model(&[]), Some("gpt-4o-mini-transcribe"));
        assert_eq!(transcription_model(&["m".into()]), None);
    }

    /// The CSP names the request's host for WebSockets, unless the Host could inject a directive.
    #[test]
    fn the_policy_names_the_host_only_when_it_is_a_plain_host() {
        let req = TestRequest::default()
            .insert_header((header::HOST, "relay.example:8080"))
            .to_http_request();
        let p = policy(&req);
        assert!(
            p.contains("connect-src 'self' ws://relay.example:8080 wss://relay.example:8080;"),
            "{p}"
        );
        let req = TestRequest::default()
            .insert_header((header::HOST, "x; script-src *"))
            .to_http_request();
        let p = policy(&req);
        assert!(
            p.contains("connect-src 'self';") && !p.contains("script-src *"),
            "{p}"
        );
    }

    /// Prices are the price table's rates per kind, null where it has none.
    #[test]
    fn prices_come_from_the_price_table_per_kind() {
        let pricing = Pricing::parse(
            "[models.m]\ninput_text = 4.0\ninput_audio = 32.0\noutput_text = 16.0\n\
             output_audio = 64.0\ncached_input_text = 0.4\n",
        )
        .expect("a valid table");
        let p = prices(&pricing, "m");
        assert_eq!(p["input_text"], 4.0, "{p}");
        assert_eq!(p["cached_input_text"], 0.4, "{p}");
        assert_eq!(p["output_audio"], 64.0, "{p}");
        assert!(p["cached_input_audio"].is_null(), "{p}");
        assert!(prices(&pricing, "unknown")["input_text"].is_null());
    }
}
