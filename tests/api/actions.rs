//! Tasks end to end: a shopper's order question over the WebSocket, the slot asked for and
//! filled, the store's endpoint (a local HTTP receiver) called with a signed request, its answer
//! in the reply, failures answered gracefully and, twice, handed to a person who sees the call
//! in the transcript; and the demo store's own order book.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{AgentClient, spawn_with, test_config};

pub(crate) const ANSWER: u8 = 0;
const FAIL: u8 = 1;
const SLOW: u8 = 2;

/// The store's order system: answers a shipped order, a 500, or nothing for two seconds, as
/// `mode` says; every request's headers and body go to the channel.
pub(crate) async fn order_system(
    mode: Arc<AtomicU8>,
) -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/orders/lookup",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (tx, mode) = (tx.clone(), Arc::clone(&mode));
            async move {
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let _ = tx.send((headers, body));
                match mode.load(Ordering::SeqCst) {
                    FAIL => (StatusCode::INTERNAL_SERVER_ERROR, "database down".to_owned()),
                    SLOW => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        (StatusCode::OK, "{}".to_owned())
                    }
                    _ => {
                        let order = request["slots"]["order"].clone();
                        let answer = json!({
                            "order": order, "found": true, "status": "shipped", "carrier": "极兔速递",
                            "tracking": "JT5550001112223", "last_event": "快件已到达 杭州转运中心",
                            "last_event_at": "12-03 09:12", "eta": "12月5日",
                        });
                        (StatusCode::OK, answer.to_string())
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/orders/lookup", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[tokio::test]
async fn an_order_question_asks_for_the_number_calls_the_store_and_hands_over_after_two_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // The test's order system listens on this machine.
    config.actions.private_targets = true;
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let app = spawn_with(config).await;
    let shop = app.merchant("shop", &key);

    // Without an endpoint, the order intent says where to look, with the number.
    let reply = app.ask_once("shop", "订单 2026112312345678 到哪了").await;
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("2026112312345678") && text.contains("我的订单"), "{reply}");
    assert!(reply["trace"].get("task").is_none(), "{reply}");

    // The merchant sets the endpoint; bad ones are refused with what is wrong.
    let mode = Arc::new(AtomicU8::new(ANSWER));
    let (url, mut calls) = order_system(Arc::clone(&mode)).await;
    let (status, body) = shop.put_json("/actions/order_status", json!({"url": "ftp://x.example/"})).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_url")), "{body}");
    let (status, body) =
        shop.put_json("/actions/order_status", json!({"url": url, "timeout_ms": 60_000})).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_timeout")), "{body}");
    let (status, body) = shop.put_json("/actions/Order-Status", json!({"url": url})).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_action")), "{body}");
    let (status, endpoint) =
        shop.put_json("/actions/order_status", json!({"url": url, "timeout_ms": 500})).await;
    assert_eq!(status, 200, "{endpoint}");
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    let (status, listed) = shop.get("/actions").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["actions"][0]["url"], url.as_str(), "{listed}");
    let tasks = listed["tasks"].as_array().unwrap();
    for task in ["order_status", "urge_shipping", "change_address", "cancel_order"] {
        assert!(tasks.contains(&json!(task)), "{listed}");
    }

    // Asked without a number, the bot asks for it; the next message fills it.
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    let asked = shopper.ask("m1", "我的快递到哪了").await;
    assert!(asked["text"].as_str().unwrap().contains("订单号"), "{asked}");
    assert!(calls.try_recv().is_err(), "no call before the number is known");
    let answered = shopper.ask("m2", "好的 是这个 2026112312345678").await;
    let text = answered["text"].as_str().unwrap();
    assert!(
        text.contains("极兔速递") && text.contains("JT5550001112223") && text.contains("12月5日"),
        "{answered}"
    );
    assert_eq!(answered["kind"], "answer", "{answered}");
    let (headers, body) = calls.recv().await.unwrap();
    assert_eq!(headers["x-mibot-signature"].to_str().unwrap(), signature(&secret, &body));
    assert_eq!(headers["x-mibot-task"], "order_status");
    let request: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(request["task"], "order_status");
    assert_eq!(request["store"], "shop");
    assert_eq!(request["slots"], json!({"order": "2026112312345678"}));
    assert_eq!(request["conversation_id"], welcome["conversation_id"]);
    assert_eq!(request["lang"], "zh");
    let call = &answered["trace"]["task"];
    assert_eq!(
        (call["status"].as_u64(), call["response"]["carrier"].as_str()),
        (Some(200), Some("极兔速递")),
        "{call}"
    );

    // A 500 gets a graceful reply, counted as a failed task; the shopper is still with the bot.
    mode.store(FAIL, Ordering::SeqCst);
    let failed = shopper.ask("m3", "订单 2026112312345678 到哪了").await;
    assert_eq!(failed["kind"], "fallback", "{failed}");
    assert!(failed["text"].as_str().unwrap().contains("暂时没查到"), "{failed}");
    assert_eq!(failed["trace"]["task"]["status"], 500, "{failed}");
    assert!(failed["trace"]["task"]["error"].as_str().unwrap().contains("500"), "{failed}");
    calls.recv().await.unwrap();

    // A second failure, a timeout, hands the chat to a person, who sees both calls.
    mode.store(SLOW, Ordering::SeqCst);
    let handed = shopper.ask("m4", "where is my order 2026112312345678").await;
    assert_eq!(handed["kind"], "handoff", "{handed}");
    let call = &handed["trace"]["task"];
    assert!(call["error"].as_str().unwrap().contains("no answer within 500 ms"), "{call}");
    assert!(call.get("status").is_none(), "{call}");
    let status = shopper.recv_status("waiting_for_agent").await;
    assert_eq!(status["reason"], "action_failed", "{status}");
    let (mut ann, _) = AgentClient::login(app.addr, &token, true).await;
    let assigned = ann.recv_type("assigned").await;
    assert_eq!(assigned["reason"], "action_failed", "{assigned}");
    let calls_seen: Vec<&Value> =
        assigned["transcript"].as_array().unwrap().iter().filter_map(|m| m["trace"].get("task")).collect();
    assert_eq!(calls_seen.len(), 3, "{assigned}");
    assert_eq!(calls_seen[0]["request"]["slots"]["order"], "2026112312345678");

    // The merchant sees the failed task among the reasons.
    let (status, insights) = shop.get("/insights?since=1h").await;
    assert_eq!(status, 200, "{insights}");
    assert_eq!(insights["report"]["escalations"]["action_failed"], 1, "{insights}");

    // Removing the endpoint brings back the plain reply.
    assert_eq!(shop.send(shop.http.delete(format!("{}/actions/order_status", shop.base))).await.0, 204);
    assert_eq!(shop.get("/actions/order_status").await.0, 404);
    app.stop().await;
}

#[tokio::test]
async fn one_failed_lookup_is_counted_and_the_chat_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.actions.private_targets = true;
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let app = spawn_with(config).await;
    let shop = app.merchant("shop", &key);
    let (url, _calls) = order_system(Arc::new(AtomicU8::new(FAIL))).await;
    assert_eq!(shop.put_json("/actions/order_status", json!({"url": url})).await.0, 200);
    let reply = app.ask_once("shop", "订单 2026112312345678 到哪了").await;
    assert_eq!(reply["kind"], "fallback", "{reply}");
    let (_, insights) = shop.get("/insights?since=1h").await;
    assert_eq!(insights["report"]["unresolved"], json!({"action_failed": 1}), "{insights}");
    app.stop().await;
}

#[tokio::test]
async fn the_demo_store_looks_up_its_own_orders() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.content.knowledge_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("knowledge");
    let app = spawn_with(config).await;
    // The README's example.
    let reply = app.ask_once("demo", "我的快递到哪了 订单号 2026112312345678").await;
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("顺丰速运") && text.contains("SF1402236678120"), "{reply}");
    assert_eq!(reply["trace"]["task"]["endpoint"], "demo", "{reply}");
    let reply = app.ask_once("demo", "where is my order 2026112298765432").await;
    assert!(reply["text"].as_str().unwrap().contains("being prepared"), "{reply}");
    let reply = app.ask_once("demo", "我要取消订单 2026112298765432").await;
    assert!(reply["text"].as_str().unwrap().contains("¥399.00"), "{reply}");
    let reply = app.ask_once("demo", "订单 1999999999 到哪了").await;
    assert!(reply["text"].as_str().unwrap().contains("没有查到"), "{reply}");
    app.stop().await;
}
