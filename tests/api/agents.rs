//! Human agents and the queue, over real WebSockets: assignment by load and capacity, claims,
//! timeouts, transfers, hand-back, restarts, isolation, queue positions, ratings.

use std::path::Path;

use mibot::config::Config;
use mibot::domain::{Clock, Millis};
use serde_json::{Value, json};

use crate::helpers::{AgentClient, Client, TestApp, spawn_with, spawn_with_clock, test_config};

/// A fresh data directory with store `shop` and agents `(name, max_chats, groups)`; returns
/// the config and each agent's token.
async fn desk(dir: &Path, agents: &[(&str, u32, &[&str])]) -> (Config, Vec<String>) {
    let config = test_config(dir);
    mibot::admin::create_store(&config, "shop").await.unwrap();
    mibot::admin::create_store(&config, "other").await.unwrap();
    let mut tokens = Vec::new();
    for (name, max, groups) in agents {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        tokens.push(mibot::admin::add_agent(&config, "shop", name, &groups, Some(*max)).await.unwrap().0);
    }
    (config, tokens)
}

/// A shopper who has asked for a person; returns the client and the conversation id.
async fn handed_over(app: &TestApp) -> (Client, String) {
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    let reply = shopper.ask("h1", "转人工").await;
    assert_eq!(reply["kind"], "handoff", "{reply}");
    shopper.recv_status("waiting_for_agent").await;
    (shopper, welcome["conversation_id"].as_str().unwrap().to_owned())
}

async fn assigned_to(shopper: &mut Client) -> String {
    let status = shopper.recv_status("with_agent").await;
    status["agent"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn chats_go_to_the_least_loaded_agent_with_room_and_the_rest_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 1, &[]), ("bob", 2, &[])]).await;
    let app = spawn_with(config).await;
    let (mut ann, welcome) = AgentClient::login(app.addr, &tokens[0], true).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let (_bob, _) = AgentClient::login(app.addr, &tokens[1], true).await; // online, so load decides

    let (mut s1, c1) = handed_over(&app).await;
    assert_eq!(assigned_to(&mut s1).await, "ann", "equal load: by name");
    let assigned = ann.recv_type("assigned").await;
    assert_eq!(assigned["conversation_id"], c1.as_str());
    assert_eq!(assigned["reason"], "asked_for_human");
    let transcript = assigned["transcript"].as_array().unwrap();
    assert_eq!(transcript[0]["text"], "转人工", "{assigned}");
    assert_eq!(transcript[1]["role"], "bot");
    assert!(transcript[1]["trace"].is_object(), "the bot's trace is in the transcript: {assigned}");

    let (mut s2, _) = handed_over(&app).await;
    assert_eq!(assigned_to(&mut s2).await, "bob", "ann is at capacity");
    let (mut s3, _) = handed_over(&app).await;
    assert_eq!(assigned_to(&mut s3).await, "bob");
    let (mut s4, c4) = handed_over(&app).await;
    let queued = s4.recv_type("queue").await;
    assert_eq!(queued["position"], 1, "{queued}");
    assert_eq!(queued["agents_online"], 2, "{queued}");
    assert!(queued["estimated_wait_seconds"].as_u64().unwrap() > 0, "{queued}");

    // The shopper writes; the agent sees it with suggested answers from the knowledge base.
    s1.message("m2", "发票怎么申请").await;
    let seen = ann.recv_type("shopper_message").await;
    assert_eq!(seen["text"], "发票怎么申请");
    assert_eq!(seen["suggestions"][0]["entry"], "invoice", "{seen}");

    // Ann answers, then closes: the shopper is asked to rate, and ann's freed seat takes s4.
    ann.send(json!({"type": "reply", "conversation_id": c1, "text": "您好，在订单页申请即可。"})).await;
    assert_eq!(ann.recv_type("sent").await["conversation_id"], c1.as_str());
    let said = s1.recv_type("agent_message").await;
    assert_eq!(
        (said["agent"].as_str(), said["text"].as_str()),
        (Some("ann"), Some("您好，在订单页申请即可。"))
    );
    ann.send(json!({"type": "close", "conversation_id": c1})).await;
    assert_eq!(ann.recv_type("released").await["status"], "closed");
    s1.recv_status("closed").await;
    s1.recv_type("rate_request").await;
    s1.send(json!({"type": "rate", "score": 5, "comment": "很快"})).await;
    let rated = s1.recv().await;
    assert_eq!(rated["score"], 5, "{rated}");
    s1.send(json!({"type": "rate", "score": 1})).await;
    assert_eq!(s1.recv_type("error").await["code"], "invalid_rating");
    s1.send(json!({"type": "rate", "score": 9})).await;
    assert_eq!(s1.recv_type("error").await["code"], "invalid_rating");

    assert_eq!(assigned_to(&mut s4).await, "ann");
    assert_eq!(ann.recv_type("assigned").await["conversation_id"], c4.as_str());
    app.stop().await;
}

#[tokio::test]
async fn two_agents_claiming_the_same_chat_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[]), ("bob", 3, &[])]).await;
    let app = spawn_with(config).await;
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], false).await;
    let (mut bob, _) = AgentClient::login(app.addr, &tokens[1], false).await;
    let (mut shopper, conversation) = handed_over(&app).await;
    let queue = ann.queue_of(1).await;
    assert_eq!(queue["waiting"][0]["conversation_id"], conversation.as_str());
    assert_eq!(queue["waiting"][0]["last_message"], "转人工");
    bob.queue_of(1).await;

    let claim = json!({"type": "claim", "conversation_id": conversation});
    tokio::join!(ann.send(claim.clone()), bob.send(claim));
    let first = |frame: &Value| frame["type"] == "assigned" || frame["type"] == "error";
    let mut outcomes = Vec::new();
    for agent in [&mut ann, &mut bob] {
        loop {
            let frame = agent.recv().await;
            if first(&frame) {
                outcomes.push(frame);
                break;
            }
        }
    }
    let winners = outcomes.iter().filter(|f| f["type"] == "assigned").count();
    assert_eq!(winners, 1, "{outcomes:?}");
    let loser = outcomes.iter().find(|f| f["type"] == "error").unwrap();
    assert_eq!(loser["code"], "already_taken", "{loser}");
    assigned_to(&mut shopper).await;
    app.stop().await;
}

#[tokio::test]
async fn an_unanswered_chat_goes_to_someone_else_when_its_time_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[]), ("bob", 3, &[])]).await;
    let clock = Clock::manual(Millis(1_800_000_000_000));
    let app = spawn_with_clock(config.clone(), clock.clone()).await;
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], true).await;
    let (mut shopper, conversation) = handed_over(&app).await;
    assert_eq!(assigned_to(&mut shopper).await, "ann");
    ann.recv_type("assigned").await;
    let (mut bob, _) = AgentClient::login(app.addr, &tokens[1], true).await;

    // The clock moves to a second before the timeout, then to the timeout itself: only then
    // does ann lose the chat, to bob.
    let timeout = i64::try_from(config.agents.answer_timeout_seconds * 1000).unwrap();
    clock.set(Millis(clock.now().0 + timeout - 1000));
    bob.queue_of(0).await;
    clock.set(Millis(clock.now().0 + 1000));
    let lost = ann.recv_type("unassigned").await;
    assert_eq!(lost["conversation_id"], conversation.as_str());
    assert_eq!(lost["why"], "not answered in time");
    assert_eq!(bob.recv_type("assigned").await["conversation_id"], conversation.as_str());
    shopper.recv_status("waiting_for_agent").await;
    assert_eq!(assigned_to(&mut shopper).await, "bob");

    // An agent who answers keeps the chat however long it takes.
    bob.send(json!({"type": "reply", "conversation_id": conversation, "text": "在的"})).await;
    bob.recv_type("sent").await;
    clock.set(Millis(clock.now().0 + 10 * timeout));
    bob.send(json!({"type": "reply", "conversation_id": conversation, "text": "还需要什么帮助吗"})).await;
    assert_eq!(bob.recv_type("sent").await["conversation_id"], conversation.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_disconnected_agents_chats_go_back_to_the_queue_and_on_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[]), ("bob", 3, &[])]).await;
    let app = spawn_with(config).await;
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], true).await;
    let (mut shopper, conversation) = handed_over(&app).await;
    assert_eq!(assigned_to(&mut shopper).await, "ann");
    ann.recv_type("assigned").await;
    let (mut bob, _) = AgentClient::login(app.addr, &tokens[1], false).await;
    ann.disconnect().await;
    // Bob takes chats by hand: the chat waits at the front of the queue for him.
    let queue = bob.queue_of(1).await;
    assert_eq!(queue["waiting"][0]["conversation_id"], conversation.as_str());
    assert!(queue["waiting"][0]["priority"].as_i64().unwrap() >= 1000, "{queue}");
    shopper.recv_status("waiting_for_agent").await;
    bob.send(json!({"type": "claim", "conversation_id": conversation})).await;
    bob.recv_type("assigned").await;
    assert_eq!(assigned_to(&mut shopper).await, "bob");
    app.stop().await;
}

#[tokio::test]
async fn transfers_to_an_agent_or_a_group_and_hand_back_to_the_bot() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) =
        desk(dir.path(), &[("ann", 3, &[]), ("bob", 3, &["pre-sales"]), ("cat", 3, &["after-sales"])]).await;
    let app = spawn_with(config).await;
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], true).await;
    let (mut shopper, conversation) = handed_over(&app).await;
    assert_eq!(assigned_to(&mut shopper).await, "ann");
    let (mut bob, _) = AgentClient::login(app.addr, &tokens[1], false).await;
    let (mut cat, _) = AgentClient::login(app.addr, &tokens[2], true).await;

    ann.send(json!({"type": "transfer", "conversation_id": conversation, "to_agent": "bob"})).await;
    assert_eq!(ann.recv_type("unassigned").await["why"], "transferred");
    let assigned = bob.recv_type("assigned").await;
    assert_eq!(assigned["reason"], "agent_transfer");
    assert_eq!(assigned_to(&mut shopper).await, "bob");

    bob.send(json!({"type": "transfer", "conversation_id": conversation, "to_group": "after-sales"})).await;
    bob.recv_type("unassigned").await;
    assert_eq!(cat.recv_type("assigned").await["conversation_id"], conversation.as_str());
    assert_eq!(assigned_to(&mut shopper).await, "cat");

    // Only the owner may act on a chat.
    ann.send(json!({"type": "close", "conversation_id": conversation})).await;
    assert_eq!(ann.recv_type("error").await["code"], "not_yours");
    ann.send(json!({"type": "transfer", "conversation_id": conversation, "to_agent": "nobody"})).await;
    assert_eq!(ann.recv_type("error").await["code"], "not_yours");

    cat.send(json!({"type": "hand_back", "conversation_id": conversation})).await;
    assert_eq!(cat.recv_type("released").await["status"], "bot");
    shopper.recv_status("bot").await;
    let reply = shopper.ask("after", "发票怎么申请").await;
    assert_eq!(reply["kind"], "answer", "the bot speaks again: {reply}");
    app.stop().await;
}

#[tokio::test]
async fn the_queue_and_its_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[])]).await;
    let app = spawn_with(config.clone()).await;
    let (mut shopper, conversation) = handed_over(&app).await;
    let queued = shopper.recv_type("queue").await;
    assert_eq!(queued["agents_online"], 0);
    assert!(queued["estimated_wait_seconds"].is_null(), "{queued}");
    assert!(queued["text"].as_str().unwrap().contains("leave a message"), "{queued}");
    shopper.message("left", "我的订单少发了一件，麻烦看一下").await;
    drop(shopper);
    app.stop().await;

    let app = spawn_with(config).await;
    // The queue still previews what the shopper wrote last: it is read from the store.
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], false).await;
    let queue = ann.queue_of(1).await;
    assert_eq!(queue["waiting"][0]["last_message"], "我的订单少发了一件，麻烦看一下", "{queue}");
    ann.send(json!({"type": "claim", "conversation_id": conversation})).await;
    let assigned = ann.recv_type("assigned").await;
    assert_eq!(assigned["conversation_id"], conversation.as_str());
    let texts: Vec<&str> =
        assigned["transcript"].as_array().unwrap().iter().filter_map(|m| m["text"].as_str()).collect();
    assert!(texts.contains(&"我的订单少发了一件，麻烦看一下"), "{texts:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_agent_sees_the_product_in_view_and_suggestions_for_the_question_not_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[])]).await;
    let app = spawn_with(config).await;
    let mut shopper = app.connect("shop").await;
    shopper.send(json!({"type": "hello", "product": "NV-X1"})).await;
    assert_eq!(shopper.recv_type("welcome").await["type"], "welcome");
    shopper.ask("q1", "发票怎么申请").await;
    let reply = shopper.ask("q2", "帮我转人工客服").await;
    assert_eq!(reply["kind"], "handoff", "{reply}");
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], true).await;
    let assigned = ann.recv_type("assigned").await;
    // Suggestions answer what the shopper asked, not their request for a person.
    assert_eq!(assigned["suggestions"][0]["entry"], "invoice", "{assigned}");
    let product = &assigned["product"];
    assert_eq!(
        (product["sku"].as_str(), product["name"]["zh"].as_str(), product["price"].as_f64()),
        (Some("NV-X1"), Some("星河 X1 手机"), Some(2999.0)),
        "{assigned}"
    );
    assert_eq!(product["stock"], "in_stock", "{assigned}");
    app.stop().await;
}

#[tokio::test]
async fn agents_see_and_reach_only_their_own_store() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[])]).await;
    let other = mibot::admin::add_agent(&config, "other", "olga", &[], Some(3)).await.unwrap().0;
    let app = spawn_with(config).await;
    let (mut olga, welcome) = AgentClient::login(app.addr, &other, false).await;
    assert_eq!(welcome["store"], "other");
    let (mut shopper, conversation) = handed_over(&app).await;
    // Queued: the shopper is told their place.
    shopper.recv_type("queue").await;
    olga.send(json!({"type": "claim", "conversation_id": conversation})).await;
    let refused = olga.recv_type("error").await;
    assert_eq!(refused["code"], "not_found", "{refused}");
    olga.send(json!({"type": "reply", "conversation_id": conversation, "text": "hi"})).await;
    assert_eq!(olga.recv_type("error").await["code"], "not_found");

    // The agents' HTTP endpoints are scoped the same way.
    let http = reqwest::Client::new();
    let get =
        |path: String, token: &str| http.get(format!("http://{}{path}", app.addr)).bearer_auth(token).send();
    let theirs = get(format!("/api/v1/agent/conversations/{conversation}"), &other).await.unwrap();
    assert_eq!(theirs.status().as_u16(), 404);
    let ours = get(format!("/api/v1/agent/conversations/{conversation}"), &tokens[0]).await.unwrap();
    assert_eq!(ours.status().as_u16(), 200);
    let ours: Value = ours.json().await.unwrap();
    assert_eq!(ours["summary"]["status"], "waiting_for_agent", "{ours}");
    assert_eq!(ours["transcript"][0]["text"], "转人工", "{ours}");
    let queue: Value = get("/api/v1/agent/queue".into(), &tokens[0]).await.unwrap().json().await.unwrap();
    assert_eq!(queue["waiting"].as_array().unwrap().len(), 1, "{queue}");
    let queue: Value = get("/api/v1/agent/queue".into(), &other).await.unwrap().json().await.unwrap();
    assert_eq!(queue["waiting"].as_array().unwrap().len(), 0, "{queue}");
    let anonymous = http.get(format!("http://{}/api/v1/agent/queue", app.addr)).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    let (stranger, refused) = AgentClient::login(app.addr, "at_not-a-token", true).await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    stranger.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn waiting_shoppers_see_their_place_move_up() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[])]).await;
    let app = spawn_with(config).await;
    let mut shoppers = Vec::new();
    for n in 1..=3 {
        let (mut shopper, conversation) = handed_over(&app).await;
        let place = shopper.recv_type("queue").await;
        assert_eq!(place["position"], n, "{place}");
        shoppers.push((shopper, conversation));
    }
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], false).await;
    for (shopper, _) in &mut shoppers {
        loop {
            let place = shopper.recv_type("queue").await;
            if place["agents_online"] == 1 {
                assert!(place["estimated_wait_seconds"].as_u64().is_some(), "{place}");
                break;
            }
        }
    }
    ann.send(json!({"type": "claim", "conversation_id": shoppers[0].1})).await;
    ann.recv_type("assigned").await;
    for (n, (shopper, _)) in shoppers.iter_mut().enumerate().skip(1) {
        let place = shopper.recv_type("queue").await;
        assert_eq!(place["position"], n, "{place}");
    }
    app.stop().await;
}

#[tokio::test]
async fn reception_modes_send_shoppers_to_people_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, tokens) = desk(dir.path(), &[("ann", 3, &[])]).await;
    let settings = |reception| mibot::config::StoreSettings { reception, ..Default::default() };
    config.stores.insert("shop".into(), settings(mibot::config::Reception::HumanFirst));
    let app = spawn_with(config.clone()).await;

    // Human first, nobody online: the bot answers.
    let reply = app.ask_once("shop", "发票怎么申请").await;
    assert_eq!(reply["kind"], "answer", "{reply}");
    // Someone online: the question goes to them, and the bot says nothing.
    let (mut ann, welcome) = AgentClient::login(app.addr, &tokens[0], true).await;
    assert!(!welcome["canned_replies"].as_array().unwrap().is_empty(), "{welcome}");
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    shopper.message("q1", "发票怎么申请").await;
    let status = shopper.recv().await;
    assert_eq!(
        (status["status"].as_str(), status["reason"].as_str()),
        (Some("waiting_for_agent"), Some("reception")),
        "{status}"
    );
    assert_eq!(assigned_to(&mut shopper).await, "ann");
    let assigned = ann.recv_type("assigned").await;
    assert_eq!(assigned["suggestions"][0]["entry"], "invoice", "the bot suggests instead: {assigned}");
    app.stop().await;

    // Assist only: people answer even when nobody is online (the shopper leaves a message).
    config.stores.insert("shop".into(), settings(mibot::config::Reception::AssistOnly));
    let app = spawn_with(config).await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    shopper.message("q1", "发票怎么申请").await;
    assert_eq!(shopper.recv().await["status"], "waiting_for_agent");
    assert_eq!(shopper.recv_type("queue").await["agents_online"], 0);
    app.stop().await;
}

#[tokio::test]
async fn an_agent_who_goes_offline_gets_no_new_chats_until_back() {
    let dir = tempfile::tempdir().unwrap();
    let (config, tokens) = desk(dir.path(), &[("ann", 3, &[])]).await;
    let app = spawn_with(config).await;
    let (mut ann, _) = AgentClient::login(app.addr, &tokens[0], true).await;
    ann.send(json!({"type": "presence", "online": false})).await;
    assert_eq!(ann.recv_type("presence").await["online"], false);
    let (mut shopper, conversation) = handed_over(&app).await;
    let place = shopper.recv_type("queue").await;
    assert_eq!(place["agents_online"], 0, "an agent set offline does not count: {place}");
    ann.queue_of(1).await;
    ann.send(json!({"type": "presence", "online": true})).await;
    assert_eq!(ann.recv_type("assigned").await["conversation_id"], conversation.as_str());
    assert_eq!(assigned_to(&mut shopper).await, "ann");
    app.stop().await;
}

#[tokio::test]
async fn a_vip_marked_by_the_merchant_is_served_first() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = desk(dir.path(), &[]).await;
    let key = mibot::admin::rotate_key(&config, "shop").await.unwrap().0;
    let app = spawn_with(config).await;
    let merchant = app.merchant("shop", &key);
    let (status, identity) = merchant.post_json("/identity/rotate", json!({})).await;
    assert_eq!(status, 200, "{identity}");
    let secret = identity["secret"].as_str().unwrap().to_owned();
    let (status, body) = merchant.send(merchant.http.put(format!("{}/vips/member-9", merchant.base))).await;
    assert_eq!(status, 200, "{body}");

    let (mut first, _) = handed_over(&app).await;
    assert_eq!(first.recv_type("queue").await["position"], 1);
    // Someone who only types the VIP's member id is no VIP.
    let mut pretender = app.connect("shop").await;
    pretender.send(json!({"type": "hello", "shopper": "member-9"})).await;
    assert_eq!(pretender.recv_type("welcome").await["identified"], false);
    pretender.ask("h1", "转人工").await;
    assert_eq!(pretender.recv_type("queue").await["position"], 2, "an unsigned id waits its turn");
    let mut forger = app.connect("shop").await;
    forger.send(json!({"type": "hello", "shopper": "member-9", "shopper_signature": "00".repeat(32)})).await;
    assert_eq!(forger.recv().await["code"], "invalid_shopper_signature");

    let mut vip = app.connect("shop").await;
    let signature = mibot::domain::shopper_signature(&secret, "member-9");
    vip.send(json!({"type": "hello", "shopper": "member-9", "shopper_signature": signature})).await;
    assert_eq!(vip.recv_type("welcome").await["identified"], true);
    vip.ask("h1", "转人工").await;
    let place = vip.recv_type("queue").await;
    assert_eq!(place["position"], 1, "the signed VIP goes ahead: {place}");
    // The first shopper is told of each change; the VIP puts them second.
    while first.recv_type("queue").await["position"] != 2 {}
    drop(pretender);
    app.stop().await;
}
