//! Several nodes as one deployment: real servers on port 0 sharing the local PostgreSQL (a
//! schema per test) and Redis (a key prefix per test), with shoppers and agents on different
//! nodes over real WebSockets.

use std::path::Path;
use std::time::{Duration, Instant};

use mibot::config::Config;
use serde_json::{Value, json};

use crate::helpers::{AgentClient, Client, test_config};

/// A deployment's shared settings: one PostgreSQL schema and one Redis prefix.
struct Deployment {
    schema: String,
}

impl Deployment {
    fn new() -> Self {
        Self { schema: format!("mibot_cluster_{}", uuid::Uuid::new_v4().simple()) }
    }

    /// A node's configuration, with its own data directory (indexes stay on local disk).
    fn node(&self, dir: &Path, name: &str) -> Config {
        let mut config = test_config(dir);
        config.storage.url = Some(postgres_url());
        config.storage.schema = Some(self.schema.clone());
        config.cluster.redis_url = Some("redis://127.0.0.1:6379".into());
        config.cluster.prefix = Some(self.schema.clone());
        config.cluster.node_id = Some(name.into());
        // Packs must reach other nodes by notification, not by polling.
        config.content.reload_seconds = 0;
        config
    }

    async fn drop(self) {
        mibot::store::postgres::PostgresStore::drop_schema(&postgres_url(), &self.schema).await.unwrap();
    }
}

fn postgres_url() -> String {
    std::env::var("MIBOT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Two `mibot serve` nodes of a new deployment with store `shop`, its key, and agents `ann` and
/// `bob` (made as the CLI makes them, on the shared database).
async fn two_nodes(
    deployment: &Deployment,
    dirs: &[tempfile::TempDir; 2],
) -> (Process, Process, String, [String; 2]) {
    let config = deployment.node(dirs[0].path(), "a");
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let ann = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let bob = mibot::admin::add_agent(&config, "shop", "bob", &[], Some(3)).await.unwrap().0;
    let a = deployment.process(dirs[0].path(), "a").await;
    let b = deployment.process(dirs[1].path(), "b").await;
    (a, b, key, [ann, bob])
}

async fn handed_over(addr: std::net::SocketAddr) -> (Client, String) {
    let mut shopper = Client::connect(addr, "shop").await;
    let welcome = shopper.hello(None).await;
    let reply = shopper.ask("h1", "转人工").await;
    assert_eq!(reply["kind"], "handoff", "{reply}");
    (shopper, welcome["conversation_id"].as_str().unwrap().to_owned())
}

fn dirs() -> [tempfile::TempDir; 2] {
    [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_on_one_node_and_an_agent_on_another_talk_both_ways() {
    let deployment = Deployment::new();
    let dirs = dirs();
    let (a, b, _, [ann_token, _]) = two_nodes(&deployment, &dirs).await;
    let (mut ann, _) = AgentClient::login(b.addr, &ann_token, true).await;

    let (mut shopper, conversation) = handed_over(a.addr).await;
    let status = shopper.recv_status("with_agent").await;
    assert_eq!(status["agent"], "ann", "{status}");
    let assigned = ann.recv_type("assigned").await;
    assert_eq!(assigned["conversation_id"], conversation.as_str());

    shopper.message("m2", "发票怎么申请").await;
    let seen = ann.recv_type("shopper_message").await;
    assert_eq!(seen["text"], "发票怎么申请", "{seen}");
    assert_eq!(seen["suggestions"][0]["entry"], "invoice", "suggestions come from the agent's node: {seen}");

    ann.send(json!({"type": "reply", "conversation_id": conversation, "text": "您好，在订单页申请即可。"}))
        .await;
    let said = shopper.recv_type("agent_message").await;
    assert_eq!(
        (said["agent"].as_str(), said["text"].as_str()),
        (Some("ann"), Some("您好，在订单页申请即可。"))
    );

    ann.send(json!({"type": "close", "conversation_id": conversation})).await;
    shopper.recv_status("closed").await;
    a.stop().await;
    b.stop().await;
    deployment.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_agents_on_two_nodes_claiming_one_chat_exactly_one_wins() {
    let deployment = Deployment::new();
    let dirs = dirs();
    let (a, b, _, [ann_token, bob_token]) = two_nodes(&deployment, &dirs).await;
    let (mut ann, _) = AgentClient::login(a.addr, &ann_token, false).await;
    let (mut bob, _) = AgentClient::login(b.addr, &bob_token, false).await;
    let (mut shopper, conversation) = handed_over(a.addr).await;
    for agent in [&mut ann, &mut bob] {
        let queue = agent.queue_of(1).await;
        assert_eq!(queue["waiting"][0]["conversation_id"], conversation.as_str(), "{queue}");
    }

    // What the waiting shopper writes on node a shows in node b's queue.
    shopper.recv_status("waiting_for_agent").await;
    shopper.message("m2", "订单号 20261111").await;
    let mut shown = false;
    for _ in 0..20 {
        let queue = bob.recv_type("queue").await;
        if queue["waiting"][0]["last_message"] == "订单号 20261111" {
            shown = true;
            break;
        }
    }
    assert!(shown, "node b's queue never showed the shopper's latest message");

    let claim = json!({"type": "claim", "conversation_id": conversation});
    tokio::join!(ann.send(claim.clone()), bob.send(claim));
    let mut outcomes: Vec<Value> = Vec::new();
    for agent in [&mut ann, &mut bob] {
        loop {
            let frame = agent.recv().await;
            if frame["type"] == "assigned" || frame["type"] == "error" {
                outcomes.push(frame);
                break;
            }
        }
    }
    assert_eq!(outcomes.iter().filter(|f| f["type"] == "assigned").count(), 1, "{outcomes:?}");
    let loser = outcomes.iter().find(|f| f["type"] == "error").unwrap();
    assert_eq!(loser["code"], "already_taken", "{loser}");
    let status = shopper.recv_status("with_agent").await;
    let winner = if outcomes[0]["type"] == "assigned" { "ann" } else { "bob" };
    assert_eq!(status["agent"], winner, "{status}");
    a.stop().await;
    b.stop().await;
    deployment.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_uploaded_on_one_node_answers_on_the_other_without_polling() {
    let deployment = Deployment::new();
    let dirs = dirs();
    let (a, b, key, _) = two_nodes(&deployment, &dirs).await;
    let pack = r#"{"faq": [
      {"id": "gift-wrap", "question": "可以礼品包装吗？", "similar": ["能包装成礼物吗", "有礼盒包装吗"],
       "answer": "可以，下单时备注「礼品包装」即可，免费。"}
    ]}"#;
    let (status, body) = b.merchant("shop", &key).upload("?format=json", pack).await;
    assert_eq!(status, 201, "{body}");
    let uploaded = Instant::now();
    loop {
        let (_, packs) = a.merchant("shop", &key).get("/packs").await;
        let version = packs["active_version"].clone();
        if version == body["version"]["version"] {
            break;
        }
        // Node a never polls (content.reload_seconds = 0): only the notification brings it. The
        // time it takes is measured in docs/deploy.md, not asserted here.
        assert!(uploaded.elapsed() < Duration::from_secs(15), "node a still serves version {version:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut shopper = Client::connect(a.addr, "shop").await;
    shopper.hello(None).await;
    let reply = shopper.ask("q", "可以礼品包装吗").await;
    assert!(reply["text"].as_str().unwrap().contains("礼品包装"), "{reply}");
    a.stop().await;
    b.stop().await;
    deployment.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_and_an_agent_token_made_on_one_node_work_on_the_other() {
    let deployment = Deployment::new();
    let dirs = dirs();
    let (a, b, key, _) = two_nodes(&deployment, &dirs).await;
    let (status, added) =
        b.merchant("shop", &key).post_json("/agents", json!({"name": "carol", "max_chats": 2})).await;
    assert_eq!(status, 201, "{added}");
    let (_carol, welcome) = AgentClient::login(a.addr, added["token"].as_str().unwrap(), true).await;
    assert_eq!((welcome["type"].as_str(), welcome["agent"].as_str()), (Some("welcome"), Some("carol")));
    let (status, body) = a.merchant("shop", &key).get("").await;
    assert_eq!(status, 200, "{body}");
    a.stop().await;
    b.stop().await;
    deployment.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stores_rate_limit_is_one_budget_across_the_nodes() {
    let deployment = Deployment::new();
    let dirs = dirs();
    let config = deployment.node(dirs[0].path(), "a");
    mibot::admin::create_store(&config, "shop").await.unwrap();
    // Four messages for the whole store, then one every 100 s.
    let limit = [
        ("MIBOT_LIMITS__MESSAGES_PER_STORE__PER_SECOND", "0.01"),
        ("MIBOT_LIMITS__MESSAGES_PER_STORE__BURST", "4"),
    ];
    let a = deployment.process_with(dirs[0].path(), "a", &limit).await;
    let b = deployment.process_with(dirs[1].path(), "b", &limit).await;
    let mut on_a = Client::connect(a.addr, "shop").await;
    on_a.hello(None).await;
    let mut on_b = Client::connect(b.addr, "shop").await;
    on_b.hello(None).await;
    for (client, ids) in [(&mut on_a, ["a1", "a2"]), (&mut on_b, ["b1", "b2"])] {
        for id in ids {
            client.ask(id, "发票怎么申请").await;
        }
    }
    // Each node has taken only two of its own four: the fifth is refused for the store's budget.
    for (client, id) in [(&mut on_a, "a3"), (&mut on_b, "b3")] {
        client.send(json!({"type": "message", "id": id, "text": "发票怎么申请"})).await;
        let refused = client.recv().await;
        assert_eq!(refused["code"], "rate_limited", "{refused}");
        assert!(refused["message"].as_str().unwrap().contains("this store"), "{refused}");
        assert!(refused["retry_after_ms"].as_u64().unwrap() > 1000, "{refused}");
    }
    a.stop().await;
    b.stop().await;
    deployment.drop().await;
}

/// A `mibot serve` process of the deployment, on a port of its own.
struct Process {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

impl Process {
    fn merchant(&self, store: &str, key: &str) -> crate::helpers::Merchant {
        crate::helpers::Merchant {
            base: format!("http://{}/api/v1/stores/{store}", self.addr),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Stops the node as an operator would (SIGTERM), and waits for it.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill").arg(pid.to_string()).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Deployment {
    async fn process(&self, dir: &Path, name: &str) -> Process {
        self.process_with(dir, name, &[]).await
    }

    /// A node, with settings of its own given as `MIBOT_…` environment variables.
    async fn process_with(&self, dir: &Path, name: &str, settings: &[(&str, &str)]) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mibot"))
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(dir)
            .env("MIBOT_STORAGE__URL", postgres_url())
            .env("MIBOT_STORAGE__SCHEMA", &self.schema)
            .env("MIBOT_CLUSTER__REDIS_URL", "redis://127.0.0.1:6379")
            .env("MIBOT_CLUSTER__PREFIX", &self.schema)
            .env("MIBOT_CLUSTER__NODE_ID", name)
            .env("MIBOT_CONTENT__INTENTS_DIR", repo.join("intents"))
            .env("MIBOT_CONTENT__KNOWLEDGE_DIR", repo.join("tests/fixtures/knowledge"))
            .env("MIBOT_ENCODER__MODEL_DIR", crate::helpers::model_dir())
            .env("MIBOT_AGENTS__BUSINESS_HOURS", "00:00-24:00")
            .env("RUST_LOG", "warn")
            .envs(settings.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .expect("mibot serve starts");
        let started = Instant::now();
        let http = reqwest::Client::new();
        // Up, with the encoder running and every store's semantic index built, so that answers
        // do not change mid-test.
        loop {
            let ready = match http.get(format!("http://{addr}/readyz")).send().await {
                Ok(response) => response.json::<Value>().await.is_ok_and(|r| r["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "node {name} was not ready in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Process { child, addr }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_is_killed_its_shoppers_resume_elsewhere_and_its_agents_chats_are_queued_again() {
    let deployment = Deployment::new();
    let dirs = dirs();
    let config = deployment.node(dirs[1].path(), "b");
    mibot::admin::create_store(&config, "shop").await.unwrap();
    let ann_token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let bob_token = mibot::admin::add_agent(&config, "shop", "bob", &[], Some(3)).await.unwrap().0;
    let mut a = deployment.process(dirs[0].path(), "a").await;
    let b = deployment.process(dirs[1].path(), "b").await;

    // Ann works on node a; a shopper on node b is handed to her.
    let (mut ann, _) = AgentClient::login(a.addr, &ann_token, true).await;
    let (mut waiting, _) = handed_over(b.addr).await;
    assert_eq!(waiting.recv_status("with_agent").await["agent"], "ann");
    ann.recv_type("assigned").await;

    // Shoppers on node a send as fast as they are answered; it is killed while they do.
    let mut load = Vec::new();
    for s in 0..4 {
        let mut shopper = Client::connect(a.addr, "shop").await;
        let token = shopper.hello(None).await["resume_token"].as_str().unwrap().to_owned();
        load.push(tokio::spawn(async move {
            use futures_util::{SinkExt, StreamExt};
            let mut acked = Vec::new();
            'sending: for m in 0.. {
                let text = format!("顾客{s}的第{m}个问题：运费多少");
                let frame = json!({"type": "message", "id": format!("m{m}"), "text": text}).to_string();
                if shopper.ws.send(tokio_tungstenite::tungstenite::Message::text(frame)).await.is_err() {
                    break;
                }
                // Until its ack; anything else (queue notices, the reply) is read past.
                loop {
                    let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(frame))) =
                        shopper.ws.next().await
                    else {
                        break 'sending;
                    };
                    let frame: Value = serde_json::from_str(frame.as_str()).unwrap();
                    if frame["type"] == "ack" {
                        acked.push(text);
                        break;
                    }
                }
            }
            (token, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.child.start_kill().unwrap();
    a.child.wait().await.unwrap();
    let mut shoppers = Vec::new();
    for task in load {
        shoppers.push(task.await.unwrap());
    }
    let total: usize = shoppers.iter().map(|(_, acked)| acked.len()).sum();
    assert!(total >= 4, "the shoppers were answered before the kill: {total} acks");

    // Every shopper resumes on node b, and everything acknowledged is stored.
    let db =
        mibot::store::postgres::PostgresStore::open(&postgres_url(), Some(&deployment.schema)).await.unwrap();
    let shop = mibot::domain::StoreId::parse("shop").unwrap();
    for (token, acked) in &shoppers {
        let mut shopper = Client::connect(b.addr, "shop").await;
        let welcome = shopper.hello(Some(token)).await;
        assert_eq!(welcome["resumed"], true, "{welcome}");
        let token = mibot::domain::ResumeToken(token.clone());
        let conversation =
            mibot::store::Store::conversation_by_token(&db, &shop, &token).await.unwrap().unwrap();
        let stored = mibot::store::Store::history(&db, conversation.id, u32::MAX).await.unwrap();
        let texts: std::collections::HashSet<&str> = stored.iter().map(|m| m.text.as_str()).collect();
        for text in acked {
            assert!(texts.contains(text.as_str()), "{text} was acknowledged but is not stored");
        }
    }
    mibot::store::Store::close(&db).await;

    // Ann's node is gone: once its heartbeat lapses her chat is waiting again, and bob gets it.
    waiting.recv_status("waiting_for_agent").await;
    let (mut bob, _) = AgentClient::login(b.addr, &bob_token, true).await;
    bob.recv_type("assigned").await;
    assert_eq!(waiting.recv_status("with_agent").await["agent"], "bob");
    drop(ann);
    b.stop().await;
    deployment.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_spread_over_two_nodes_raises_one_alert_and_one_webhook_call() {
    use mibot::domain::{Clock, Millis};
    const T0: i64 = 1_800_000_000_000;
    let deployment = Deployment::new();
    let dirs = dirs();
    let configure = |dir: &Path, name: &str| {
        let mut config = deployment.node(dir, name);
        config.alerts.check_seconds = 1;
        config.alerts.window_seconds = 600;
        config.alerts.baseline_seconds = 3600;
        config.alerts.factor = 5.0;
        config.alerts.min_count = 5;
        config.alerts.webhook_private_targets = true;
        config.limits = mibot::config::LimitsConfig::off();
        config
    };
    let config = configure(dirs[0].path(), "a");
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let clock = Clock::manual(Millis(T0));
    let a = crate::helpers::spawn_with_clock(config, clock.clone()).await;
    let b = crate::helpers::spawn_with_clock(configure(dirs[1].path(), "b"), clock.clone()).await;

    // A local receiver counts the webhook calls.
    let (calls, mut called) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let calls = calls.clone();
            async move {
                let _ = calls.send(serde_json::from_slice(&body).unwrap_or_default());
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let (status, body) = a.merchant("shop", &key).put_json("/webhook", json!({"url": url})).await;
    assert_eq!(status, 200, "{body}");
    let (mut ann, _) = AgentClient::login(b.addr, &token, false).await;

    // An hour of ordinary questions first: the baseline the burst stands out from.
    let mut steady = a.connect("shop").await;
    steady.hello(None).await;
    for (i, minute) in [0, 20, 40, 60].iter().enumerate() {
        clock.set(Millis(T0 + minute * 60_000));
        steady.ask(&format!("s{i}"), "发票怎么申请").await;
    }
    // Six shoppers, half on each node, ask what the bot cannot answer, each in their own words.
    let burst = [
        "赠品为什么是分开寄的",
        "赠品是单独寄的吗",
        "赠品分开寄是什么情况",
        "赠品为啥分开寄",
        "赠品怎么分开寄了",
        "我的赠品是分开寄吗",
    ];
    for (i, text) in burst.iter().enumerate() {
        clock.set(Millis(T0 + 70 * 60_000 + i as i64 * 10_000));
        let node = if i % 2 == 0 { &a } else { &b };
        let mut asker = node.connect("shop").await;
        asker.hello(None).await;
        asker.ask("b", text).await;
    }
    let call =
        tokio::time::timeout(Duration::from_secs(15), called.recv()).await.expect("a webhook call").unwrap();
    assert_eq!(call["alert"]["count"], 6, "{call}");
    // The agent, on whichever node, is told.
    let told = ann.recv_type("alert").await;
    assert_eq!(told["alert"]["id"], call["alert"]["id"], "{told}");
    // Both nodes go on checking: still one alert, and no second call.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(called.try_recv().is_err(), "a second webhook call");
    let mut holders = 0;
    for node in [&a, &b] {
        let (_, body) = node.merchant("shop", &key).get("/alerts?since=1d").await;
        assert_eq!(body["alerts"].as_array().map(Vec::len), Some(1), "{body}");
        // Exactly one node runs the detector: the one holding the lease, as /metrics says.
        let metrics =
            reqwest::get(format!("http://{}/metrics", node.addr)).await.unwrap().text().await.unwrap();
        let held = metrics
            .lines()
            .find(|l| l.starts_with("mibot_leases_held{") && l.contains("lease=\"alerts\""))
            .unwrap_or_else(|| panic!("no alerts lease in {metrics}"));
        holders += usize::from(held.ends_with(" 1"));
    }
    assert_eq!(holders, 1, "one node holds the alerts lease");
    a.stop().await;
    b.stop().await;
    deployment.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_open_on_two_nodes_is_decided_from_its_state_as_stored() {
    let deployment = Deployment::new();
    let dirs = dirs();
    let (a, b, _, _) = two_nodes(&deployment, &dirs).await;
    // The shopper's chat is open on node a and, resumed, on node b at once (a second tab, a
    // reconnect through the load balancer).
    let mut on_a = Client::connect(a.addr, "shop").await;
    let token = on_a.hello(None).await["resume_token"].as_str().unwrap().to_owned();
    let mut on_b = Client::connect(b.addr, "shop").await;
    on_b.hello(Some(&token)).await;

    let first = on_a.ask("c1", "量子纠缠是什么原理").await;
    assert_eq!(first["kind"], "fallback", "{first}");
    // Node b decides the next message knowing node a's fallback: two in a row hand over.
    let second = on_b.ask("c2", "火星上今天天气怎么样").await;
    assert_eq!(second["kind"], "handoff", "{second}");
    a.stop().await;
    b.stop().await;
    deployment.drop().await;
}
