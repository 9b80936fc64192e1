//! Budgets in dollars (issue 12, part 1): usage priced by a price table when it is counted,
//! in `/stats` (`cost_usd`, `cost_nano_usd`) and `relay_cost_usd_total{model}` (`pricing`);
//! transcription billed by duration priced per minute and unknown models left unpriced
//! (`pricing`); `DAILY_USD_BUDGET`, `CLIENT_DAILY_USD_BUDGET` and a client's own budget from a
//! TOML or JSON tokens file or a JWT `budget_usd` claim, refusing and cutting like the token
//! budgets (`budgets`).

mod budgets;
mod pricing;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use serde_json::Value;

use crate::common::*;

/// The demo upstream's usage split (10 text + 2 audio in, 5 text + 15 audio out) at these rates
/// costs 10×1 + 2×10 + 5×2 + 15×20 = 340 dollars per 1M, so $0.00034 per response.
const PRICES: &str = r#"
as_of = "2026-01-01"
source = "tests"
[models.gpt-realtime-mini]
input_text = 1.0
cached_input_text = 0.5
input_audio = 10.0
cached_input_audio = 0.5
output_text = 2.0
output_audio = 20.0
[models.whisper-1]
per_minute = 0.006
[models.gpt-4o-mini-transcribe]
input_audio = 3.0
output_text = 5.0
per_minute = 0.003
[transcription]
model = "gpt-4o-mini-transcribe"
"#;

/// What one demo response costs at [`PRICES`], in billionths of a dollar.
const RESPONSE_NANO: u64 = 340_000;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Writes `text` to a fresh file named `name` in the temporary directory.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "relay-cost-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("scratch file");
    path
}

/// Opens a session at `path` with `Authorization: Bearer <token>` (if any) and reads its
/// `session.created`.
async fn session(h: &Harness, path: &str, token: Option<&str>) -> Ws {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| ("Authorization", b))
        .into_iter()
        .collect();
    let (_, mut ws) = connect_with(&format!("{}{path}", h.base), &[], &headers)
        .await
        .expect("upgrade");
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "session.created", "{first}");
    ws
}

/// Sends `response.create` and reads up to its `response.done`.
async fn respond(ws: &mut Ws) {
    send_text(ws, r#"{"type":"response.create"}"#).await;
    for _ in 0..100 {
        let event = next_json(ws).await;
        assert_ne!(event["type"], "error", "{event}");
        if event["type"] == "response.done" {
            return;
        }
    }
    panic!("no response.done");
}

/// `usage.by_identity` entry of `identity` in /stats.
fn identity<'a>(stats: &'a Value, identity: &str) -> &'a Value {
    stats["usage"]["by_identity"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["identity"] == identity))
        .unwrap_or_else(|| panic!("{identity} not in {stats}"))
}
