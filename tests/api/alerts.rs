//! Spike alerts end to end: shoppers' questions over WebSockets, the detector against the
//! server's clock, a signed webhook to a local receiver, agents told at once, and a notice from
//! the store to the shoppers who asked.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use mibot::domain::{Clock, Millis};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{AgentClient, Client, Merchant, TestApp, spawn_with_clock, test_config};

const MINUTE: i64 = 60_000;
const T0: i64 = 1_800_000_000_000;

/// A local webhook receiver: every POST's headers and body.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hooks/mibot",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/mibot", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn shopper(app: &TestApp) -> Client {
    let mut client = app.connect("shop").await;
    client.hello(None).await;
    client
}

/// Polls the store's alerts until `done` holds, for at most ten seconds.
async fn alerts_until(shop: &Merchant, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..100 {
        let (status, body) = shop.get("/alerts?since=1d").await;
        assert_eq!(status, 200, "{body}");
        last = body["alerts"].as_array().unwrap().clone();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the alerts never got there: {last:?}");
}

#[tokio::test]
async fn a_burst_raises_one_alert_and_one_signed_webhook_call_and_a_steady_rate_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.alerts.check_seconds = 1;
    config.alerts.window_seconds = 600;
    config.alerts.baseline_seconds = 3600;
    config.alerts.factor = 5.0;
    config.alerts.min_count = 5;
    // Seventy minutes of questions go by in a moment here, on one connection.
    config.limits = mibot::config::LimitsConfig::off();
    // The test's webhook receiver listens on this machine.
    config.alerts.webhook_private_targets = true;
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let other_key = mibot::admin::create_store(&config, "other").await.unwrap().0;
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let clock = Clock::manual(Millis(T0));
    let app = spawn_with_clock(config, clock.clone()).await;
    let shop = app.merchant("shop", &key);

    let (url, mut calls) = receiver().await;
    let (status, hook) = shop.put_json("/webhook", json!({"url": url})).await;
    assert_eq!(status, 200, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{hook}");
    let (status, body) = shop.put_json("/webhook", json!({"url": "ftp://example.com/"})).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_url")), "{body}");

    // A steady rate: one invoice question a minute for 70 minutes, while the detector runs.
    let mut steady = shopper(&app).await;
    for minute in 0..70 {
        clock.set(Millis(T0 + minute * MINUTE));
        let reply = steady.ask(&format!("s{minute}"), "发票怎么申请").await;
        assert_eq!(reply["trace"]["matched"], "invoice", "{reply}");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, body) = shop.get("/alerts?since=1d").await;
    assert_eq!(body["alerts"], json!([]), "a steady rate raised an alert: {body}");

    // An agent is online when the burst comes.
    let (mut ann, _) = AgentClient::login(app.addr, &token, false).await;

    // A burst: six shoppers ask the bot something it cannot answer, in other words each time.
    let burst = [
        "赠品为什么是分开寄的",
        "赠品是单独寄的吗",
        "赠品分开寄是什么情况",
        "赠品为啥分开寄",
        "赠品怎么分开寄了",
        "我的赠品是分开寄吗",
    ];
    let mut askers = Vec::new();
    for (i, text) in burst.iter().enumerate() {
        clock.set(Millis(T0 + 70 * MINUTE + i as i64 * 10_000));
        let mut asker = app.connect("shop").await;
        let token = asker.hello(None).await["resume_token"].as_str().unwrap().to_owned();
        let reply = asker.ask("b", text).await;
        assert_ne!(reply["kind"], "answer", "{reply}");
        askers.push((asker, token));
    }
    let alerts = alerts_until(&shop, |a| !a.is_empty()).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["topic"], "questions", "{alert}");
    assert_eq!(alert["count"], 6, "{alert}");
    assert!(alert["label"].as_str().unwrap().contains("赠品"), "{alert}");
    assert_eq!(alert["open"], true);

    // The agent online is told at once.
    let told = ann.recv_type("alert").await;
    assert_eq!(told["alert"]["id"], alert["id"], "{told}");

    // One webhook call, signed with HMAC-SHA256 over the body.
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), calls.recv()).await.unwrap().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(headers["x-mibot-signature"].to_str().unwrap(), format!("sha256={expected}"));
    assert_eq!(headers["x-mibot-event"].to_str().unwrap(), "alert.raised");
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["store"], "shop");
    assert_eq!(payload["alert"]["id"], alert["id"]);
    assert_eq!(payload["alert"]["count"], 6);
    let alert_id = alert["id"].as_str().unwrap().to_owned();
    assert!(alert_id.parse::<i64>().is_err(), "the alert id is opaque: {alert_id}");
    alerts_until(&shop, |a| a[0]["webhook"] == "delivered").await;

    // The burst goes on a while: the same episode, no second alert and no second call.
    for (i, text) in ["赠品是分开寄的吗", "赠品单独发是怎么回事"].iter().enumerate() {
        clock.set(Millis(T0 + 71 * MINUTE + i as i64 * 10_000));
        let mut asker = shopper(&app).await;
        asker.ask("b", text).await;
    }
    let alerts = alerts_until(&shop, |a| a[0]["questions"] == 8).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["count"], 8);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(calls.try_recv().is_err(), "a second webhook call for the same episode");
    let (_, body) = shop.get("/alerts?since=1d").await;
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1, "{body}");

    // An agent who signs in later sees the open alert too.
    let (mut late, _) = AgentClient::login(app.addr, &token, false).await;
    assert_eq!(late.recv_type("alert").await["alert"]["id"], alert_id);

    // The merchant tells the shoppers who asked, and whose chats are open.
    let (status, sent) = shop
        .post_json(&format!("/alerts/{alert_id}/message"), json!({"text": "赠品由仓库单独寄出，三天内到。"}))
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["conversations"], 8, "{sent}");
    assert_eq!(sent["delivered_now"], 6, "{sent}");
    for (asker, _) in &mut askers {
        let notice = asker.recv_type("store_message").await;
        assert_eq!(notice["text"], "赠品由仓库单独寄出，三天内到。");
    }
    // The notice is part of the conversation: it comes back with the history.
    let mut back = app.connect("shop").await;
    let welcome = back.hello(Some(&askers[0].1)).await;
    let last = welcome["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["role"].as_str(), last["text"].as_str()),
        (Some("store"), Some("赠品由仓库单独寄出，三天内到。"))
    );
    let (status, body) = shop.post_json(&format!("/alerts/{alert_id}/message"), json!({"text": " "})).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("invalid_text")), "{body}");
    let (status, _) = shop.post_json("/alerts/999/message", json!({"text": "hi"})).await;
    assert_eq!(status, 404);

    // Another store's key sees none of it.
    let other = app.merchant("shop", &other_key);
    let (status, _) = other.get("/alerts").await;
    assert_eq!(status, 404);
    let (status, body) = app.merchant("other", &other_key).get("/alerts?since=1d").await;
    assert_eq!((status, body["alerts"].clone()), (200, json!([])), "{body}");

    // Once the topic has been quiet for a whole window, the episode ends.
    clock.set(Millis(T0 + 90 * MINUTE));
    alerts_until(&shop, |a| a[0]["open"] == false).await;
    drop(askers);
    app.stop().await;
}
