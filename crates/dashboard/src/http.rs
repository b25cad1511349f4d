//! The HTTP side (axum on cohort's runtime): the page and its assets (embedded in
//! the binary), `GET /api/status`, `GET /api/events` (server-sent events, one
//! `status` event per update) and `GET /metrics`. With a token, every request must
//! carry it (`?token=…`, or `Authorization: Bearer …`); the page passes on the one in
//! its own URL.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::Stream;

use crate::collect::Collector;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) collector: Arc<Collector>,
    pub(crate) token: Option<Arc<str>>,
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token_of(req: &Request) -> Option<String> {
    if let Some(q) = req.uri().query() {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("token=") {
                return Some(v.to_string());
            }
        }
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    auth.strip_prefix("Bearer ").map(str::to_string)
}

/// Refuses a request without the token (when there is one), and marks every answer
/// as not to be cached or framed by other sites.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(t) = &st.token {
        let ok = token_of(&req).is_some_and(|given| same(given.as_bytes(), t.as_bytes()));
        if !ok {
            return (
                StatusCode::FORBIDDEN,
                "a token is needed: use the URL the dashboard printed\n",
            )
                .into_response();
        }
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn typed(body: &'static str, mime: &'static str) -> Response {
    ([(header::CONTENT_TYPE, mime)], body).into_response()
}

/// The page; with a token, its asset URLs carry it too (the request that got here
/// carried it already).
async fn index(State(st): State<AppState>) -> Response {
    match &st.token {
        None => typed(INDEX_HTML, "text/html; charset=utf-8"),
        Some(t) => {
            let page = INDEX_HTML
                .replace("\"style.css\"", &format!("\"style.css?token={t}\""))
                .replace("\"app.js\"", &format!("\"app.js?token={t}\""));
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
        }
    }
}

async fn app_js() -> Response {
    typed(APP_JS, "text/javascript; charset=utf-8")
}

async fn style_css() -> Response {
    typed(STYLE_CSS, "text/css; charset=utf-8")
}

async fn status(State(st): State<AppState>) -> Response {
    let snap = st.collector.latest();
    (
        [(header::CONTENT_TYPE, "application/json")],
        snap.json.clone(),
    )
        .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    let snap = st.collector.latest();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&snap.status),
    )
        .into_response()
}

/// One `status` event per update. The stream reads the watch channel only when the
/// connection has taken the previous event, so a slow page gets the newest update
/// and skips the ones in between.
async fn events(State(st): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = st.collector.subscribe();
    rx.mark_changed();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let json = rx.borrow_and_update().json.clone();
        Some((Ok(Event::default().event("status").data(json)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
}
