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
