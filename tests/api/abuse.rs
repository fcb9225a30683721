//! What a client must not be able to do to the server: make it buffer without bound, flood it,
//! or hold its connections. Each test is the attack, run small.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{AgentClient, spawn_with, test_config};

fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == kind).collect()
}

#[tokio::test]
async fn queue_updates_are_gathered_carry_previews_and_hellos_announce_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    mibot::admin::create_store(&config, "shop").await.unwrap();
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let app = spawn_with(config).await;
    let (mut agent, welcome) = AgentClient::login(app.addr, &token, false).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    agent.frames_for(Duration::from_millis(400)).await;

    // Twenty shoppers hand over at once, each with a long message.
    let started = Instant::now();
    let long = "我的订单一直没有发货请帮我看看怎么回事".repeat(9);
    let handoffs: Vec<_> = (0..20)
        .map(|n| {
            let (addr, text) = (app.addr, format!("转人工 {n} {long}"));
            tokio::spawn(async move {
                let mut shopper = crate::helpers::Client::connect(addr, "shop").await;
                shopper.hello(None).await;
                let reply = shopper.ask("h", &text).await;
                assert_eq!(reply["kind"], "handoff", "{reply}");
                shopper
            })
        })
        .collect();
    let mut waiting = Vec::new();
    for handoff in handoffs {
        waiting.push(handoff.await.unwrap());
    }
    let frames = agent.frames_for(Duration::from_millis(1500)).await;
    let seconds = started.elapsed().as_secs_f64();
    let queues = of_type(&frames, "queue");
    let last = queues.last().expect("the agent hears of the queue");
    let items = last["waiting"].as_array().unwrap();
    assert_eq!(items.len(), 20, "{last}");
    assert!(
        queues.len() as f64 <= seconds / 0.25 + 2.0,
        "at most one queue update per 250 ms: {} in {seconds:.2} s",
        queues.len()
    );
    for item in items {
        let preview = item["last_message"].as_str().unwrap();
        assert!(preview.chars().count() <= mibot::escalation::PREVIEW_CHARS + 1, "{preview}");
        assert!(preview.ends_with('…') && preview.starts_with("转人工"), "{preview}");
    }

    // Shoppers who only come and go change nothing in the queue: nothing is announced.
    let visitors: Vec<_> = (0..10)
        .map(|_| {
            let addr = app.addr;
            tokio::spawn(async move {
                for _ in 0..10 {
                    let mut shopper = crate::helpers::Client::connect(addr, "shop").await;
                    shopper.hello(None).await;
                    shopper.close().await;
                }
            })
        })
        .collect();
    for visitor in visitors {
        visitor.await.unwrap();
    }
    let frames = agent.frames_for(Duration::from_millis(800)).await;
    assert!(of_type(&frames, "queue").is_empty(), "100 hellos announced: {frames:?}");
    drop(waiting);
    app.stop().await;
}

#[tokio::test]
async fn a_flood_is_refused_with_rate_limited_and_nothing_over_the_limit_is_stored() {
    use mibot::config::Rate;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.messages_per_connection = Rate { per_second: 2.0, burst: 5 };
    config.limits.messages_per_address = Rate { per_second: 1.0, burst: 8 };
    config.limits.requests_per_address = Rate { per_second: 1.0, burst: 3 };
    let app = spawn_with(config).await;

    // One connection sends 40 messages as fast as it can: its burst is stored and answered,
    // the rest refused, each with when to send again.
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    for n in 0..40 {
        shopper.send(serde_json::json!({"type": "message", "id": format!("f{n}"), "text": "保修多久"})).await;
    }
    let (mut acked, mut limited) = (0, 0);
    while acked + limited < 40 {
        let frame = shopper.recv().await;
        match frame["type"].as_str() {
            Some("ack") => acked += 1,
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                assert!(frame["message"].as_str().unwrap().contains("this connection"), "{frame}");
                assert!(frame["retry_after_ms"].as_u64().unwrap() > 0, "{frame}");
                limited += 1;
            }
            _ => {}
        }
    }
    // The hello took one of the burst's five tokens.
    assert!((4..=5).contains(&acked), "{acked} acked");
    drop(shopper);
    let mut check = app.connect("shop").await;
    let resumed = check.hello(welcome["resume_token"].as_str()).await;
    let shopper_lines =
        resumed["history"].as_array().unwrap().iter().filter(|m| m["role"] == "shopper").count();
    assert_eq!(shopper_lines, acked, "exactly what was acknowledged is stored");

    // New connections from the same address share its limit.
    let mut codes = Vec::new();
    for _ in 0..12 {
        let mut another = app.connect("shop").await;
        another.send(serde_json::json!({"type": "hello"})).await;
        codes.push(another.recv().await["code"].as_str().unwrap_or("welcome").to_owned());
    }
    assert!(codes.iter().any(|c| c == "rate_limited"), "{codes:?}");

    // The API answers 429 with Retry-After.
    let url = format!("http://{}/api/v1/stores/shop", app.addr);
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..6 {
        let response = reqwest::get(&url).await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited", "{body}");
        }
    }
    assert!(statuses[..3].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    app.stop().await;
}
