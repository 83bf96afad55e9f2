//! Ingest: HTTP requests → [`EventData`] → the pipeline, and the answer to the caller.
//!
//! Each endpoint module (`data`, `ga4` with its parsers `gtag_parse` and `mp_parse`) only
//! turns its request format into event data; [`AppState::run`] hands it to the
//! [`Pipeline`](crate::pipeline::Pipeline) the same way for all of them, and
//! [`AppState::reject`] is the one way a request is refused (an [`IngestError`], counted,
//! logged, shown on the debug page).
//!
//! Answer policy: an event that is queued, or skipped on purpose (trigger, consent, dry
//! run), is a success for the caller. 4xx is only for malformed or oversized input (and 403
//! for a foreign origin, 429 past the rate limit). 503 (with `Retry-After`) only when the
//! queue cannot take events or the gateway drains.

mod body;
mod client_ip;
pub mod cors;
mod data;
pub mod error;
mod ga4;
pub mod gtag_parse;
pub mod limit;
pub mod mp_parse;
pub mod privacy;

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use axum::{
    http::{header, HeaderMap, HeaderValue},
    routing::get,
    Router,
};

pub use client_ip::ClientIpResolver;
pub use error::IngestError;

use crate::{
    config::Config,
    debug::{Incoming, Recorder},
    event::{new_trace_id, EventData, RequestContext},
    health::Health,
    pipeline::{Outcome, Pipeline},
    support::Secret,
    tags::SetCookie,
    web::host_of,
};

/// Everything the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    pub client_ip: ClientIpResolver,
    pub health: Arc<Health>,
    pub redactor: privacy::Redactor,
    pub rate_limit: Option<Arc<limit::RateLimit>>,
    pub recorder: Arc<Recorder>,
}

/// Which ingest endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Data,
    Gtag,
    Mp,
}

/// What every handler reads from the request besides its body, borrowed from its headers.
pub struct RequestInfo<'h> {
    pub method: &'static str,
    pub endpoint: Endpoint,
    /// The resolved client address (after trusted proxies).
    pub client_ip: String,
    pub user_agent: Option<&'h str>,
    /// The caller presented the ingest key (`X-Tagbridge-Key` or MP `api_secret`).
    pub authenticated: bool,
    /// Bytes of the request: URL, headers and (once read) body. What the request may put
    /// into the queue is bounded by it.
    pub request_bytes: usize,
    pub ctx: RequestContext<'h>,
}

impl<'h> RequestInfo<'h> {
    pub fn new(
        state: &AppState,
        (method, endpoint): (&'static str, Endpoint),
        peer: SocketAddr,
        headers: &'h HeaderMap,
        query: &str,
    ) -> Self {
        let server = &state.config.server;
        let authenticated = authenticated(&server.ingest_key, headers, query, endpoint);
        let header_bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        RequestInfo {
            method,
            endpoint,
            client_ip: state.client_ip.resolve(peer.ip(), headers).to_string(),
            user_agent: headers.get(header::USER_AGENT).and_then(header_text),
            authenticated,
            request_bytes: query.len() + header_bytes + 64,
            ctx: request_context(headers, &state.config.debug.token),
        }
    }
}

impl AppState {
    /// Hands the events to the pipeline (after privacy redaction).
    ///
    /// # Errors
    /// When the queue refuses them or the request would expand past its budget.
    pub async fn run(
        &self,
        info: &RequestInfo<'_>,
        events: &[EventData<'_>],
    ) -> Result<Outcome, IngestError> {
        let redacted: Vec<EventData<'_>>;
        let events = if self.redactor.needed_any(events) {
            redacted = events.iter().map(|e| self.redactor.apply(e)).collect();
            &redacted
        } else {
            events
        };
        let result = self
            .pipeline
            .run(
                events,
                &info.ctx,
                info.request_bytes,
                info.endpoint == Endpoint::Data,
            )
            .await;
        if self.recorder.enabled() {
            if let Ok(outcome) = &result {
                let status = match info.endpoint {
                    Endpoint::Data => 200,
                    Endpoint::Gtag | Endpoint::Mp => 204,
                };
                let traced = events
                    .iter()
                    .zip(&outcome.traces)
                    .map(|(e, traces)| {
                        (
                            e.event_name().to_owned(),
                            e.text("event_id")
                                .or_else(|| e.text("transaction_id"))
                                .map(|t| t.into_owned()),
                            e.to_json(),
                            traces.clone(),
                        )
                    })
                    .collect();
                self.record(info, status, None, traced);
            }
        }
        result
    }

    /// [`reject`](Self::reject) for the layers in front of the handlers (rate limit, CORS).
    pub(crate) fn reject_before_handler(
        &self,
        request: &axum::extract::Request,
        peer: SocketAddr,
        error: IngestError,
    ) -> axum::response::Response {
        let paths = &self.config.server.paths;
        let path = request.uri().path();
        let endpoint = if path == paths.data {
            Endpoint::Data
        } else if path == paths.gtag {
            Endpoint::Gtag
        } else {
            Endpoint::Mp
        };
        let method = match *request.method() {
            axum::http::Method::GET => "GET",
            axum::http::Method::POST => "POST",
            axum::http::Method::HEAD => "HEAD",
            axum::http::Method::OPTIONS => "OPTIONS",
            _ => "OTHER",
        };
        let query = request.uri().query().unwrap_or_default();
        let info = RequestInfo::new(self, (method, endpoint), peer, request.headers(), query);
        self.reject(&info, error)
    }

    /// The one way a request is refused: counted and logged by the error itself, and shown
    /// on the debug page.
    pub fn reject(&self, info: &RequestInfo<'_>, error: IngestError) -> axum::response::Response {
        if self.recorder.enabled() {
            self.record(
                info,
                error.status().as_u16(),
                Some(error.to_string()),
                Vec::new(),
            );
        }
        axum::response::IntoResponse::into_response(error)
    }

    fn record(
        &self,
        info: &RequestInfo<'_>,
        status: u16,
        error: Option<String>,
        events: Vec<(
            String,
            Option<String>,
            serde_json::Value,
            Vec<crate::pipeline::TagTrace>,
        )>,
    ) {
        let paths = &self.config.server.paths;
        let path = match info.endpoint {
            Endpoint::Data => &paths.data,
            Endpoint::Gtag => &paths.gtag,
            Endpoint::Mp => &paths.mp,
        };
        self.recorder.record(Incoming {
            method: info.method,
            path,
            client_ip: &info.client_ip,
            status,
            trace_id: &info.ctx.trace_id,
            error,
            events,
        });
    }
}

/// Whether the caller presented the configured ingest key (`X-Tagbridge-Key` header, or
/// on `/mp/collect` the Measurement Protocol's `api_secret` query parameter).
fn authenticated(key: &Secret, headers: &HeaderMap, query: &str, endpoint: Endpoint) -> bool {
    let key = key.expose();
    if key.trim().is_empty() {
        return false;
    }
    let from_header = headers
        .get("x-tagbridge-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), key.as_bytes()));
    from_header
        || (matches!(endpoint, Endpoint::Mp)
            && form_urlencoded::parse(query.as_bytes())
                .any(|(k, v)| k == "api_secret" && constant_time_eq(v.as_bytes(), key.as_bytes())))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request context tags read: cookies, host, referer, the trace id, and whether the
/// request is debug traffic (a debug header or cookie carrying `debug.token`).
pub(crate) fn request_context<'h>(
    headers: &'h HeaderMap,
    debug_token: &Secret,
) -> RequestContext<'h> {
    let cookies = request_cookies(headers);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(host_of);
    let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
    let (debug, debug_allowed) = debug_switches(headers, &cookies, debug_token);
    let trace_id = trace_id(headers).unwrap_or_else(new_trace_id);
    RequestContext {
        received_at: SystemTime::now(),
        cookies,
        host,
        referer,
        debug,
        debug_allowed,
        trace_id,
    }
}

/// Most cookies of any name a request context keeps; past them only the cookies the gateway
/// reads ([`ga4::is_common_cookie`], [`DEBUG_COOKIE`]) are kept, up to as many again. Sites
/// with many marketing cookies send well over 64, and the browser puts a recent `_epik`
/// near the end; the caps keep a hostile header's cost (32 bytes per kept cookie) small.
const MAX_COOKIES: usize = 64;

/// The request's cookies, in header order. A header is split on `;` as bytes, so a cookie
/// whose value is not ASCII (browsers send UTF-8 as it was set) neither hides the others
/// nor is lost; a pair that is not valid UTF-8 is skipped.
fn request_cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    let mut cookies = Vec::new();
    let mut extra = 0;
    let pairs = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| std::str::from_utf8(pair).ok())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        });
    for (k, v) in pairs {
        if cookies.len() < MAX_COOKIES {
            cookies.push((k, v));
        } else if extra < MAX_COOKIES && (ga4::is_common_cookie(k) || k == DEBUG_COOKIE) {
            cookies.push((k, v));
            extra += 1;
        } else if extra == MAX_COOKIES {
            break;
        }
    }
    cookies
}

/// A header's value as text: any valid UTF-8 (`HeaderValue::to_str` takes visible ASCII
/// only, and a browser's User-Agent or cookie may carry more).
fn header_text(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

/// Name of the cookie that can carry the debug token on ingest requests: set it in the
/// browser for the tracking domain (`document.cookie = "tagbridge_debug=<token>; path=/"`)
/// to let that browser's `debug_mode`/`_dbg` events switch on `log: debug` output. (The
/// debug page's own session cookie lives on the admin listener and never reaches ingest.)
pub const DEBUG_COOKIE: &str = "tagbridge_debug";

/// Client-side debug switches count only when they carry `debug.token`: nobody else can
/// switch on request logging. Returns (debug traffic, debug allowed): a header
/// (`X-Tagbridge-Debug: <token>`, `X-Gtm-Server-Preview: <token>`) makes the whole request
/// debug traffic; the debug cookie with the token lets events that flag themselves
/// (`debug_mode`, GA4's `_dbg`) count. Without a token configured, nothing is debug traffic.
fn debug_switches(headers: &HeaderMap, cookies: &[(&str, &str)], token: &Secret) -> (bool, bool) {
    let token = token.expose().trim();
    if token.is_empty() {
        return (false, false);
    }
    let carries = |v: &str| constant_time_eq(v.trim().as_bytes(), token.as_bytes());
    let header = ["x-tagbridge-debug", "x-gtm-server-preview"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .any(carries);
    let cookie = cookies
        .iter()
        .any(|(k, v)| *k == DEBUG_COOKIE && carries(v));
    (header, header || cookie)
}

/// The trace id of a W3C `traceparent` or Google's `X-Cloud-Trace-Context`, if valid.
fn trace_id(headers: &HeaderMap) -> Option<String> {
    let valid = |t: &str| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        if let Some(id) = tp.split('-').nth(1).filter(|t| valid(t)) {
            return Some(id.to_ascii_lowercase());
        }
    }
    headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .filter(|t| valid(t))
        .map(str::to_ascii_lowercase)
}

/// serde_json's message without the input (it names line and column only).
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected value",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Adds `Set-Cookie` headers to a response.
pub(crate) fn with_cookies(
    mut response: axum::response::Response,
    cookies: &[SetCookie],
) -> axum::response::Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c.header_value()) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The ingest routes: the rate limit first, then CORS, then the handlers.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let paths = state.config.server.paths.clone();
    let router = Router::new()
        // HEAD (a link checker, a monitor) answers like GET but ingests nothing.
        .route(
            &paths.data,
            get(data::get)
                .head(|| async { axum::http::StatusCode::OK })
                .post(data::post),
        )
        .route(
            &paths.gtag,
            get(ga4::gtag_get)
                .head(|| async { axum::http::StatusCode::NO_CONTENT })
                .post(ga4::gtag_post),
        )
        .route(&paths.mp, axum::routing::post(ga4::mp_post))
        // A wrong method gets a JSON error (axum's own 405 has an empty body). Set before
        // the CORS layer, so that it wraps this answer too: a preflight is an `OPTIONS`,
        // which no route has, and the layer answers it.
        .method_not_allowed_fallback(|| async { IngestError::MethodNotAllowed })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::layer,
        ));
    // Without `server.rate_limit` the layer is not there at all (a middleware layer costs
    // a boxed future and a service clone per request).
    if state.rate_limit.is_some() {
        router.route_layer(axum::middleware::from_fn_with_state(state, rate_limit))
    } else {
        router
    }
}

/// `server.rate_limit`: 429 with `Retry-After` past a client's budget (cheaply, before
/// the body is read).
async fn rate_limit(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(rl) = &state.rate_limit {
        let ip = state.client_ip.resolve(peer.ip(), request.headers());
        if let Err(wait) = rl.check(ip) {
            let error = IngestError::RateLimited {
                retry_after_s: wait.as_secs_f64().ceil() as u64,
            };
            return state.reject_before_handler(&request, peer, error);
        }
    }
    next.run(request).await
}
