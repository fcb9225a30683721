//! Insight: votes and flags on answers, and the measures computed from real conversations.

use serde_json::{Value, json};

use crate::helpers::{AgentClient, Client, TestApp, spawn_with, test_config};

/// A shopper of `shop`; with `id`, signed in as that member (signed with `secret`, as the
/// storefront's server does).
async fn shopper(app: &TestApp, id: Option<(&str, &str)>) -> Client {
    let mut client = app.connect("shop").await;
    let mut hello = json!({"type": "hello"});
    if let Some((id, secret)) = id {
        hello["shopper"] = json!(id);
        hello["shopper_signature"] = json!(mibot::domain::shopper_signature(secret, id));
    }
    client.send(hello).await;
    let welcome = client.recv().await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["identified"], id.is_some(), "{welcome}");
    client
}

async fn vote(client: &mut Client, reply: &Value, helpful: bool) {
    client.send(json!({"type": "feedback", "message_id": reply["message_id"], "helpful": helpful})).await;
    let noted = client.recv_type("feedback_noted").await;
    assert_eq!(noted["message_id"], reply["message_id"]);
}

#[tokio::test]
async fn votes_flags_and_chats_become_exact_measures_for_their_store_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let shop_key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let other_key = mibot::admin::create_store(&config, "other").await.unwrap().0;
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let secret = mibot::admin::rotate_identity(&config, "shop").await.unwrap();
    let app = spawn_with(config.clone()).await;

    // 1: answered and liked, but the same shopper comes back with the same question (4).
    let mut s1 = shopper(&app, Some(("member-1", &secret))).await;
    let r1 = s1.ask("a", "发票怎么申请").await;
    assert_eq!(r1["kind"], "answer", "{r1}");
    vote(&mut s1, &r1, true).await;
    // 2: answered, voted down, and flagged by an agent.
    let mut s2 = shopper(&app, None).await;
    let r2 = s2.ask("a", "退货运费谁出").await;
    vote(&mut s2, &r2, false).await;
    s2.send(json!({"type": "feedback", "message_id": "AAAAAAAAAAAAAAAAAAAAAA", "helpful": true})).await;
    assert_eq!(s2.recv_type("error").await["code"], "invalid_feedback");
    // Another conversation's reply is not this shopper's to vote on.
    s2.send(json!({"type": "feedback", "message_id": r1["message_id"], "helpful": false})).await;
    assert_eq!(s2.recv_type("error").await["code"], "invalid_feedback");
    // 3: handed to ann, answered, closed and rated 4.
    let (mut ann, _) = AgentClient::login(app.addr, &token, true).await;
    let mut s3 = shopper(&app, None).await;
    s3.ask("a", "转人工").await;
    let assigned = ann.recv_type("assigned").await;
    let c3 = assigned["conversation_id"].clone();
    ann.send(json!({"type": "reply", "conversation_id": c3, "text": "您好"})).await;
    ann.recv_type("sent").await;
    let c2 = {
        let welcome_id = r2["message_id"].clone();
        // The flag names the reply by its id; the conversation is looked up by the agent's client.
        let queue: Value = reqwest::Client::new()
            .get(format!("http://{}/api/v1/stores/shop/reviews?since=1h", app.addr))
            .bearer_auth(&shop_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(queue["reviews"][0]["message_id"], welcome_id, "{queue}");
        queue["reviews"][0]["conversation_id"].clone()
    };
    ann.send(json!({"type": "flag", "conversation_id": c2, "message_id": r2["message_id"], "note": "运费规则已改"})).await;
    assert_eq!(ann.recv_type("flagged").await["message_id"], r2["message_id"]);
    ann.send(json!({"type": "close", "conversation_id": c3})).await;
    s3.recv_type("rate_request").await;
    s3.send(json!({"type": "rate", "score": 4})).await;
    s3.recv_type("rated").await;
    // 4: member-1 again, same question in other words: resolved itself, un-resolves 1.
    let mut s4 = shopper(&app, Some(("member-1", &secret))).await;
    let r4 = s4.ask("a", "可以开发票吗").await;
    assert_eq!(r4["trace"]["matched"], "invoice", "{r4}");

    let shop = app.merchant("shop", &shop_key);
    let (status, body) = shop.get("/insights?since=1h&bucket=hour").await;
    assert_eq!(status, 200, "{body}");
    let r = &body["report"];
    assert_eq!(r["sessions"], 4, "{r}");
    assert_eq!(r["resolved"], 1, "{r}");
    assert_eq!(r["unresolved"], json!({"handed_over": 1, "disliked": 1, "asked_again": 1}), "{r}");
    assert_eq!(r["escalations"], json!({"asked_for_human": 1}), "{r}");
    assert_eq!(r["human"]["chats"], 1);
    assert_eq!(r["human"]["csat"], 4.0);
    assert_eq!(r["bot_feedback"], json!({"helpful": 1, "not_helpful": 1, "helpful_rate": 0.5, "flagged": 1}));
    // Entries are shown by the question they answer.
    assert_eq!(
        r["top_entries"][0],
        json!({"entry": "invoice", "question": "怎么开发票？", "count": 2}),
        "{r}"
    );

    let (_, body) = shop.get("/reviews?since=1h").await;
    let reviews = body["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 2, "a down vote and a flag: {body}");
    let flag = reviews.iter().find(|r| r["source"] == "agent").unwrap();
    assert_eq!(
        (flag["question"].as_str(), flag["note"].as_str()),
        (Some("退货运费谁出"), Some("运费规则已改"))
    );
    assert_eq!(shop.get("/insights?since=soon").await.0, 400);

    let (_, theirs) = app.merchant("other", &other_key).get("/insights?since=1h").await;
    assert_eq!(theirs["report"]["sessions"], 0, "{theirs}");
    let cli = mibot::admin::report(&config, "shop", "1h", mibot::insight::Bucket::Day).await.unwrap();
    assert_eq!((cli.sessions, cli.resolved), (4, 1));
    app.stop().await;
}

#[tokio::test]
async fn operators_get_prometheus_metrics() {
    let app = crate::helpers::spawn_app().await;
    app.ask_once("shop", "发票怎么申请").await;
    let mut s = app.connect("shop").await;
    s.hello(None).await;
    s.ask("h", "转人工").await;
    s.recv_type("queue").await;
    let text = reqwest::get(format!("http://{}/metrics", app.addr)).await.unwrap().text().await.unwrap();
    for line in [
        "mibot_shopper_messages_total{store=\"shop\"} 2",
        "mibot_bot_replies_total{store=\"shop\",kind=\"answer\"} 1",
        "mibot_bot_replies_total{store=\"shop\",kind=\"handoff\"} 1",
        "mibot_decision_seconds_count 2",
        "mibot_queue_waiting{store=\"shop\"} 1",
        "mibot_agents_online{store=\"shop\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn unanswered_paraphrases_become_one_draft_that_answers_them_once_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let app = spawn_with(config).await;
    let (mut ann, _) = AgentClient::login(app.addr, &token, true).await;

    // Two misses in a row hand the first shopper to ann, who answers.
    let mut s1 = shopper(&app, None).await;
    let first = s1.ask("a", "你们支持花呗分期吗").await;
    assert_ne!(first["kind"], "answer", "{first}");
    s1.ask("b", "能用花呗分期买吗").await;
    let assigned = ann.recv_type("assigned").await;
    let agent_answer = "支持花呗分期，最多12期免息。";
    ann.send(json!({"type": "reply", "conversation_id": assigned["conversation_id"], "text": agent_answer}))
        .await;
    ann.recv_type("sent").await;
    let mut s2 = shopper(&app, None).await;
    assert_ne!(s2.ask("a", "花呗能分期吗").await["kind"], "answer");
    let mut s3 = shopper(&app, None).await;
    assert_ne!(s3.ask("a", "你们的实体店在哪个城市").await["kind"], "answer");

    let shop = app.merchant("shop", &key);
    let (status, body) = shop.get("/clusters?since=1h").await;
    assert_eq!(status, 200, "{body}");
    let clusters = body["clusters"].as_array().unwrap();
    let top = &clusters[0];
    assert_eq!(top["size"], 3, "{body}");
    assert!(
        top["samples"].as_array().unwrap().iter().all(|s| s.as_str().unwrap().contains("花呗")),
        "{body}"
    );
    assert_eq!(top["draft"]["answer"], agent_answer, "{body}");
    let store_cluster = clusters
        .iter()
        .find(|c| c["samples"][0] == "你们的实体店在哪个城市")
        .expect("the unrelated question stands alone");
    assert_eq!(store_cluster["size"], 1, "{body}");

    let top_id = top["id"].as_str().unwrap();
    let (status, accepted) = shop.post_json(&format!("/clusters/{top_id}/accept?since=1h"), json!({})).await;
    assert_eq!(status, 201, "{accepted}");
    assert_eq!(accepted["version"]["version"], 2);
    let reply = app.ask_once("shop", "花呗可以分期吗").await;
    assert!(reply["text"].as_str().unwrap().contains("最多12期"), "the accepted draft answers: {reply}");

    let other_id = store_cluster["id"].as_str().unwrap();
    let (status, _) = shop.post_json(&format!("/clusters/{other_id}/dismiss?since=1h"), json!({})).await;
    assert_eq!(status, 200);
    let (_, body) = shop.get("/clusters?since=1h").await;
    let left: Vec<&Value> = body["clusters"].as_array().unwrap().iter().collect();
    assert!(left.iter().all(|c| c["id"] != top_id && c["id"] != other_id), "{body}");
    app.stop().await;
}

/// A draft no agent answered proposes the nearest entry's answer, marked as a proposal: it is
/// never accepted on its own, only when the merchant sends an answer. The range's conversations
/// come out as CSV, one row each with its resolution and reason.
#[tokio::test]
async fn drafts_propose_the_nearest_answer_and_conversations_export_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let other = mibot::admin::create_store(&config, "other").await.unwrap().0;
    let app = spawn_with(config).await;
    let mut s1 = shopper(&app, None).await;
    let asked = s1.ask("a", "发票").await;
    assert_eq!(asked["kind"], "clarify", "{asked}");
    assert_eq!(s1.ask("b", "zxqv blorf").await["kind"], "fallback");
    let mut s2 = shopper(&app, None).await;
    assert_eq!(s2.ask("a", "退货运费谁出").await["kind"], "answer");

    let shop = app.merchant("shop", &key);
    let (_, body) = shop.get("/clusters?since=1h").await;
    let draft = &body["clusters"][0]["draft"];
    assert_eq!(draft["question"], "发票", "{body}");
    assert_eq!(draft["answer"], Value::Null, "{body}");
    let proposal = &draft["proposal"];
    assert!(proposal["entry"].as_str().unwrap().starts_with("invoice"), "{body}");
    assert!(proposal["answer"].as_str().is_some_and(|a| !a.is_empty()), "{body}");
    assert!(proposal["score"].as_f64().is_some(), "{body}");

    let id = body["clusters"][0]["id"].as_str().unwrap();
    let (status, refused) = shop.post_json(&format!("/clusters/{id}/accept?since=1h"), json!({})).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"], "answer_required", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("proposed answer"), "{refused}");
    let edited = format!("{} 电子发票会发到您的邮箱。", proposal["answer"].as_str().unwrap());
    let (status, accepted) =
        shop.post_json(&format!("/clusters/{id}/accept?since=1h"), json!({"answer": edited})).await;
    assert_eq!(status, 201, "{accepted}");

    let response = reqwest::Client::new()
        .get(format!("http://{}/api/v1/stores/shop/conversations.csv?since=1h", app.addr))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("shop-conversations.csv"));
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let columns: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let at = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{text}");
    let by_question = |q: &str| rows.iter().find(|r| &r[at("first question")] == q).unwrap();
    assert_eq!(&by_question("发票")[at("resolution")], "unresolved", "{text}");
    assert_eq!(&by_question("发票")[at("reason")], "fallback", "{text}");
    assert_eq!(&by_question("发票")[at("shopper messages")], "2", "{text}");
    assert_eq!(&by_question("退货运费谁出")[at("resolution")], "resolved", "{text}");
    // Another store's key opens none of it.
    let status = reqwest::Client::new()
        .get(format!("http://{}/api/v1/stores/shop/conversations.csv", app.addr))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    app.stop().await;
}
