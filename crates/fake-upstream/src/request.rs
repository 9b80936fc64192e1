//! What the fake reads from a request, the same way for upgrades and calls: the handshake it
//! records, query parameters, and the bearer key. Pure functions over an `HttpRequest`, called by
//! `server.rs` and `calls/`.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::web;
use actix_web::HttpRequest;

use crate::recorder::Handshake;

/// The model named in `session.created` when the request named none.
pub(crate) const DEFAULT_MODEL: &str = "gpt-realtime-mini";

/// The request as the recorder keeps it.
pub(crate) fn handshake_of(req: &HttpRequest) -> Handshake {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
    let headers = req
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let protocols_offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    Handshake {
        path_and_query,
        headers,
        protocols_offered,
    }
}

/// The first value of `name` in the request's query, if any.
pub(crate) fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get(name).cloned())
}

/// The `Authorization` header when it holds `Bearer <key>` with a key, as sent.
pub(crate) fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty()).then(|| value.to_owned())
}
