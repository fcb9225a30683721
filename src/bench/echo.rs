//! The reference ceiling: a minimal chat server on the same tokio and axum stack, speaking the
//! same protocol with frames of the same size, but with no pipeline (no storage, no triage).
//! What it sustains is the most mibot could on this machine.

use std::future::Future;

use axum::Router;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A reply as long as a typical FAQ answer with its trace.
const REPLY_TEXT: &str =
    "商品质量问题的退货运费由本店承担；七天无理由退货的运费由您承担，订单含运费险的可按规则获得理赔。";

/// Serves the echo chat on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route("/ws/chat", get(upgrade)).route("/healthz", get(|| async { "ok" }));
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    let mut message_id = 0u64;
    while let Some(Ok(frame)) = socket.recv().await {
        let Message::Text(text) = frame else { continue };
        let Ok(event) = serde_json::from_str::<Value>(&text) else { continue };
        let replies = match event["type"].as_str() {
            Some("hello") => vec![json!({
                "type": "welcome", "conversation_id": "00000000-0000-0000-0000-000000000000",
                "resume_token": "0", "resumed": false, "status": "bot", "history": []
            })],
            Some("message") => {
                message_id += 1;
                let id = event["id"].clone();
                vec![
                    json!({"type": "ack", "id": id, "message_id": message_id, "duplicate": false}),
                    json!({
                        "type": "reply", "in_reply_to": id, "kind": "answer", "source": "faq", "text": REPLY_TEXT,
                        "trace": {"signal": "retrieval", "matched": "return-shipping-fee", "score": 0.93, "margin": 0.41,
                                  "contributions": {"classifier": 5.1, "retrieval": 1.6, "bias": -3.5}}
                    }),
                ]
            }
            _ => Vec::new(),
        };
        for reply in replies {
            if socket.send(Message::Text(Utf8Bytes::from(reply.to_string()))).await.is_err() {
                return;
            }
        }
    }
}
