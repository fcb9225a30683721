//! The load generator, on a short bounded run against the real server: it must count what it
//! sent and what came back exactly. No timing assertions.

use std::time::Duration;

use mibot::bench::{Load, drive};

use crate::helpers::{TestApp, spawn_app, spawn_with, test_config};

/// A server without rate limits: bench drives it flat out from one address, as `mibot bench`
/// does its own server.
async fn unlimited() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits = mibot::config::LimitsConfig::off();
    let mut app = spawn_with(config).await;
    app._dir = Some(dir);
    app
}

fn load(
    app: &TestApp,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    handoff_every: usize,
) -> Load {
    let url = format!("ws://{}/ws/chat?store=shop", app.addr);
    Load { url, connections, duration, rate, handoff_every, messages: None }
}

#[tokio::test]
async fn bench_counts_replies_and_handoffs_exactly() {
    let app = unlimited().await;
    let load = load(&app, 3, Duration::from_millis(1500), None, 1);
    let measured = drive(&load).await.expect("the run completes");
    assert_eq!(measured.errors, 0, "{measured:?}");
    assert!(measured.sent > 0, "{measured:?}");
    assert_eq!(measured.replies, measured.sent, "every message is answered: {measured:?}");
    assert!(
        measured.handoffs >= 1,
        "each conversation asks for a person on its fourth message: {measured:?}"
    );
    assert_eq!(measured.connections_held, 3, "{measured:?}");
    assert!(measured.p50_us > 0 && measured.p50_us <= measured.p99_us && measured.p99_us <= measured.max_us);
    app.stop().await;
}

#[tokio::test]
async fn bench_paces_a_set_rate_and_refuses_other_hosts() {
    let app = spawn_app().await;
    let load = load(&app, 2, Duration::from_secs(1), Some(10.0), 0);
    let measured = drive(&load).await.expect("the run completes");
    // Pacing bounds the count (each connection sends one message per 0.2 s, the first at once).
    assert!(measured.sent <= 2 * 6, "{measured:?}");
    assert_eq!(measured.replies, measured.sent);

    let elsewhere = Load { url: "ws://192.0.2.1:80/ws/chat?store=shop".into(), ..load };
    let error = drive(&elsewhere).await.unwrap_err().to_string();
    assert!(error.contains("loopback"), "{error}");
    app.stop().await;
}

#[tokio::test]
async fn bench_holds_idle_connections_each_with_a_conversation() {
    let app = unlimited().await;
    let url = format!("ws://{}/ws/chat?store=shop", app.addr);
    let mut idle = mibot::bench::open_idle(&url, 300).await.expect("loopback");
    assert_eq!((idle.held(), idle.failed), (300, 0));
    assert_eq!(idle.still_open().await, 300);
    // The server still answers while holding them.
    let reply = app.ask_once("shop", "发票怎么申请").await;
    assert_eq!(reply["kind"], "answer", "{reply}");
    assert!(mibot::bench::open_idle("ws://example.com/ws/chat?store=shop", 1).await.is_err());
    drop(idle);
    app.stop().await;
}
