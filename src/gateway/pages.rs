//! The web pages mibot serves from the binary: a start page linking the others (`/`), the agent
//! console (`/console`), the embeddable
//! chat widget (`/widget.js`), a demo storefront that embeds it (`/chat-demo`) and the merchant
//! dashboard (`/dashboard`, signed in with the store's key). Plain HTML,
//! CSS and JavaScript; every text they show is set as text, never parsed as HTML.

use axum::Router;
use axum::extract::Query;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde::Deserialize;

use super::AppState;
use crate::domain::StoreId;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const CONSOLE_HTML: &str = include_str!("../../web/console.html");
const CONSOLE_JS: &str = include_str!("../../web/console.js");
const STAFF_TEXT_JS: &str = include_str!("../../web/staff-text.js");
const CONSOLE_CSS: &str = include_str!("../../web/console.css");
const WIDGET_JS: &str = include_str!("../../web/widget.js");
const CHAT_DEMO_HTML: &str = include_str!("../../web/chat-demo.html");
const DASHBOARD_HTML: &str = include_str!("../../web/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../web/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../web/dashboard.css");

/// The page routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page(STAFF_PAGE, INDEX_HTML.to_owned()) }))
        .route("/console", get(|| async { page(STAFF_PAGE, CONSOLE_HTML.to_owned()) }))
        .route("/console.js", get(|| async { script(CONSOLE_JS) }))
        .route("/staff-text.js", get(|| async { script(STAFF_TEXT_JS) }))
        .route("/console.css", get(|| async { stylesheet(CONSOLE_CSS) }))
        .route("/widget.js", get(|| async { script(WIDGET_JS) }))
        .route("/chat-demo", get(chat_demo))
        .route("/dashboard", get(|| async { page(STAFF_PAGE, DASHBOARD_HTML.to_owned()) }))
        .route("/dashboard.js", get(|| async { script(DASHBOARD_JS) }))
        .route("/dashboard.css", get(|| async { stylesheet(DASHBOARD_CSS) }))
}

/// The console's and the dashboard's policy: their own scripts, styles and WebSocket only,
/// never inside another site's frame.
const STAFF_PAGE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The demo storefront's: the same, but the widget adds its stylesheet as a `<style>`, as it
/// must on a storefront.
const DEMO_PAGE: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// An HTML page with its content security policy, not to be framed or sniffed.
fn page(policy: &'static str, html: String) -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
}

fn script(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

fn stylesheet(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], body)
}

#[derive(Debug, Deserialize)]
struct DemoParams {
    store: Option<String>,
}

/// The demo storefront, for the demo store or `?store=NAME` (a valid store name, so it is safe
/// in the page).
async fn chat_demo(Query(params): Query<DemoParams>) -> impl IntoResponse {
    let store = params.store.and_then(|s| StoreId::parse(&s).ok());
    let html = match store {
        Some(store) => {
            CHAT_DEMO_HTML.replace("data-store=\"demo\"", &format!("data-store=\"{}\"", store.as_str()))
        }
        None => CHAT_DEMO_HTML.to_owned(),
    };
    page(DEMO_PAGE, html)
}
