//! `/debug` and its JSON API, on the admin listener.
//!
//! Access: with `debug.token` set, the token comes as `?token=` (once: the answer sets an
//! HttpOnly, SameSite=Strict cookie and redirects to the page without it), the cookie, or
//! `Authorization: Bearer <token>`; anything else gets 401. Without a token, loopback
//! clients only (others 401). With `debug.enabled: false`, 404.
//!
//! - `GET /debug`: the page (self-contained HTML; the current state is embedded, so it
//!   renders without further requests).
//! - `GET /debug/api/state[?since_version=N]`: the summary (queue, dead letters, match
//!   quality) and the requests, newest first; with `since_version`, only those changed
//!   since.
//! - `GET /debug/api/requests/{id}`: one request.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Path, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Deserialize;

use crate::ingest::{constant_time_eq, AppState};

const PAGE: &str = include_str!("page.html");
const PLACEHOLDER: &str = "/*__TAGBRIDGE_INITIAL_STATE__*/null";
/// The page's cookie (its path keeps it off the ingest paths).
const COOKIE: &str = "tagbridge_debug";

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/debug", get(page))
        .route("/debug/", get(page))
        .route("/debug/api/state", get(api_state))
        .route("/debug/api/requests/{id}", get(api_request))
        .route_layer(axum::middleware::from_fn_with_state(state, access))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn unauthorized(why: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"tagbridge debug\"")],
        Json(serde_json::json!({"error": why})),
    )
        .into_response()
}

/// Who may see the page (module docs).
async fn access(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
    request: Request,
    next: Next,
) -> Response {
    let recorder = &state.recorder;
    if !recorder.enabled() {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let token = recorder.token().expose().trim();
    if token.is_empty() {
        return if peer.ip().is_loopback() {
            next.run(request).await
        } else {
            unauthorized("the debug page answers loopback clients only (set debug.token to open it to others)")
        };
    }
    let matches = |v: &str| constant_time_eq(v.trim().as_bytes(), token.as_bytes());
    if let Some(t) = q.token.as_deref() {
        if !matches(t) {
            return unauthorized("wrong debug token");
        }
        // Trade the token in the URL for a cookie, and drop it from the address bar: back to
        // the path asked for (always under /debug: this layer guards only those routes).
        let path = request.uri().path();
        let back = HeaderValue::from_str(path)
            .ok()
            .filter(|_| path.starts_with("/debug"))
            .unwrap_or(HeaderValue::from_static("/debug"));
        let cookie =
            format!("{COOKIE}={token}; Path=/debug; HttpOnly; SameSite=Strict; Max-Age=43200");
        let mut response = StatusCode::SEE_OTHER.into_response();
        let h = response.headers_mut();
        h.insert(header::LOCATION, back);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.insert(header::SET_COOKIE, v);
        }
        return response;
    }
    if authorized(request.headers(), &matches) {
        next.run(request).await
    } else {
        unauthorized(
            "the debug page needs debug.token (?token=, the cookie, or Authorization: Bearer)",
        )
    }
}

fn authorized(headers: &HeaderMap, matches: &dyn Fn(&str) -> bool) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(matches);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.split_once('='))
        .any(|(k, v)| k.trim() == COOKIE && matches(v));
    bearer || cookie
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn page(State(state): State<Arc<AppState>>) -> Response {
    let initial = state
        .recorder
        .state(None, &state.pipeline.queue)
        .to_string();
    // Safe inside <script>: no `<` (so no `</script>`), no line separators.
    let initial = initial
        .replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let html = PAGE.replacen(PLACEHOLDER, &initial, 1);
    no_store(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            html,
        )
            .into_response(),
    )
}

#[derive(Deserialize)]
struct Since {
    since_version: Option<u64>,
}

async fn api_state(State(state): State<Arc<AppState>>, Query(q): Query<Since>) -> Response {
    no_store(Json(state.recorder.state(q.since_version, &state.pipeline.queue)).into_response())
}

async fn api_request(State(state): State<Arc<AppState>>, Path(id): Path<u64>) -> Response {
    match state.recorder.request(id) {
        Some(r) => no_store(Json(r).into_response()),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such request in the window"})),
        )
            .into_response(),
    }
}
