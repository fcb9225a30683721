//! What a client must not be able to do to the server: make it buffer without bound, flood it,
//! or hold its connections. Each test is the attack, run small.

use std::time::{Duration, Instant};

use mibot::domain::{Clock, Millis};
use serde_json::{Value, json};

use crate::helpers::{AgentClient, spawn_with, spawn_with_clock, test_config};

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
async fn rate_limits_refill_on_the_servers_clock() {
    use mibot::config::Rate;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.messages_per_connection = Rate { per_second: 1.0, burst: 3 };
    let clock = Clock::manual(Millis::now());
    let app = spawn_with_clock(config, clock.clone()).await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await; // the hello is a frame too: two messages are left
    shopper.ask("m1", "发票怎么申请").await;
    shopper.ask("m2", "发票怎么申请").await;
    shopper.send(serde_json::json!({"type": "message", "id": "m3", "text": "发票怎么申请"})).await;
    let refused = shopper.recv().await;
    assert_eq!(
        (refused["code"].as_str(), refused["retry_after_ms"].as_u64()),
        (Some("rate_limited"), Some(1000)),
        "{refused}"
    );
    // Time stands still: still refused, and for as long.
    shopper.send(serde_json::json!({"type": "message", "id": "m3", "text": "发票怎么申请"})).await;
    assert_eq!(shopper.recv().await["retry_after_ms"], 1000);
    // A second later, one token is back, and only one.
    clock.set(Millis(clock.now().0 + 1000));
    shopper.ask("m3", "发票怎么申请").await;
    shopper.send(serde_json::json!({"type": "message", "id": "m4", "text": "发票怎么申请"})).await;
    assert_eq!(shopper.recv().await["code"], "rate_limited");
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

#[tokio::test]
async fn connections_without_a_hello_or_any_sign_of_life_are_closed() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.chat.hello_timeout_seconds = 1;
    config.chat.ping_seconds = 1;
    config.chat.idle_timeout_seconds = 2;
    let app = spawn_with(config).await;

    let started = Instant::now();
    let mut silent = app.connect("shop").await;
    match silent.next_message().await {
        Message::Close(Some(close)) => {
            assert_eq!(close.code, CloseCode::Policy);
            assert!(close.reason.contains("hello"), "{close:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A live client answers the pings (tungstenite does while it reads) and stays.
    let mut live = app.connect("shop").await;
    live.hello(None).await;
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, live.ws.next()).await {
        assert!(!matches!(frame, Ok(Message::Close(_))), "a live connection was closed: {frame:?}");
    }
    assert_eq!(live.ask("l1", "保修多久").await["kind"], "answer");

    // One that stops reading answers no ping, and is closed.
    let mut gone = app.connect("shop").await;
    gone.hello(None).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Its pings, then the close frame; answering a ping by then may find the socket shut.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), gone.ws.next()).await.expect("the server acts") {
            Some(Ok(Message::Close(close))) => {
                assert_eq!(close.map(|c| c.code), Some(CloseCode::Policy));
                break;
            }
            Some(Ok(_)) => continue,
            // The server has shut the socket.
            None | Some(Err(_)) => break,
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn connection_floods_are_refused_with_503_and_room_is_kept_for_staff() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.header_timeout_seconds = 1;
    config.server.max_connections = 8;
    config.server.kept_for_staff = 3;
    config.server.max_connections_per_address = 7;
    let app = spawn_with(config).await;

    // Slow headers: one line at a time, never finished. The server hangs up.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: mibot\r\n").await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(6) {
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {} // a 408, then the end
            Err(_) => {}
        }
    }
    assert!(closed, "a request whose headers never end is cut off");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());

    // Five shoppers take their share (8 places, 3 kept for staff); the sixth is refused.
    let mut shoppers = Vec::new();
    for _ in 0..5 {
        let mut shopper = app.connect("shop").await;
        shopper.hello(None).await;
        shoppers.push(shopper);
    }
    let url = format!("ws://{}/ws/chat?store=shop", app.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a sixth shopper was let in: {:?}", other.map(|_| ())),
    }
    // Staff still get in.
    let health = reqwest::get(format!("http://{}/healthz", app.addr)).await.unwrap();
    assert_eq!(health.status(), 200);

    // Past the address's bound, every new connection is told so and closed.
    let mut refused = None;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut raw = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let _ = raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: mibot\r\n\r\n").await;
        let mut answer = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut answer))
            .await
            .ok()
            .and_then(Result::ok);
        answer.truncate(n.unwrap_or(0));
        if answer.starts_with(b"HTTP/1.1 503") {
            let _ = tokio::time::timeout(Duration::from_secs(2), raw.read_to_end(&mut answer)).await;
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        if answer.starts_with("HTTP/1.1 503") {
            refused = Some(answer);
            break;
        }
        held.push(raw);
    }
    let refused = refused.expect("a connection over the bound is refused");
    assert!(refused.contains("server_full"), "{refused}");

    // Places are given back when connections close.
    drop((held, shoppers));
    let mut back = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tokio_tungstenite::connect_async(&url).await.is_ok() {
            back = true;
            break;
        }
    }
    assert!(back, "a shopper gets in once the others have gone");
    app.stop().await;
}

#[tokio::test]
async fn the_write_ahead_log_stays_bounded_under_sustained_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits = mibot::config::LimitsConfig::off();
    config.storage.max_wal_mb = 1;
    let app = spawn_with(config).await;
    let wal = dir.path().join("mibot.db-wal");

    let url = format!("ws://{}/ws/chat?store=shop", app.addr);
    let load = mibot::bench::Load {
        url,
        connections: 16,
        duration: Duration::from_secs(6),
        rate: None,
        handoff_every: 0,
        messages: None,
    };
    let driving = tokio::spawn(async move { mibot::bench::drive(&load).await });
    let mut largest = 0;
    while !driving.is_finished() {
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let measured = driving.await.unwrap().expect("the load runs");
    assert_eq!(measured.errors, 0, "{measured:?}");
    // What six seconds of these writes come to in the log unbounded: every message and reply.
    let written = std::fs::metadata(dir.path().join("mibot.db")).map_or(0, |m| m.len());
    eprintln!("{} messages; log at most {largest} bytes; database {written} bytes", measured.sent);
    assert!(measured.sent > 1000, "enough writes to matter: {measured:?}");
    assert!(largest < 6 * 1024 * 1024, "the log reached {largest} bytes");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(after <= 1024 * 1024, "the log is cut back once writes stop: {after} bytes");
    app.stop().await;
}

#[tokio::test]
async fn the_operators_endpoints_need_the_operator_token_once_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.operator_token = Some("op_0123456789abcdef".into());
    let app = spawn_with(config).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/readyz"] {
        let url = format!("http://{}{path}", app.addr);
        let refused = client.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "not_an_operator", "{body}");
        let wrong = client.get(&url).bearer_auth("op_0123456789abcdeF").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let allowed = client.get(&url).bearer_auth("op_0123456789abcdef").send().await.unwrap();
        assert_eq!(allowed.status(), 200, "{path}");
    }
    // Shoppers' and merchants' routes are not affected.
    assert_eq!(reqwest::get(format!("http://{}/healthz", app.addr)).await.unwrap().status(), 200);
    app.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn resume_tokens_are_kept_as_digests_in_an_owner_only_database() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let app = spawn_with(test_config(&data)).await;
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    shopper.ask("t1", "保修多久").await;
    drop(shopper);

    let mut back = app.connect("shop").await;
    let resumed = back.hello(Some(&token)).await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    assert_eq!(resumed["resume_token"], token.as_str(), "the shopper keeps their token");

    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("mibot.db")), 0o600);
    let mut stored = std::fs::read(data.join("mibot.db")).unwrap();
    stored.extend(std::fs::read(data.join("mibot.db-wal")).unwrap_or_default());
    assert!(!stored.windows(token.len()).any(|w| w == token.as_bytes()), "the token itself is stored");
    let digest = mibot::domain::ResumeToken(token.clone()).digest();
    assert!(stored.windows(digest.len()).any(|w| w == digest.as_bytes()), "its digest is");
    app.stop().await;
}

#[tokio::test]
async fn a_rotated_or_revoked_agent_token_signs_the_console_out_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let app = spawn_with(config.clone()).await;
    let shop = app.merchant("shop", &key);

    // The merchant adds an agent through the API.
    let (status, added) = shop.post_json("/agents", serde_json::json!({"name": "ann", "max_chats": 2})).await;
    assert_eq!(status, 201, "{added}");
    let first = added["token"].as_str().unwrap().to_owned();
    let (status, again) = shop.post_json("/agents", serde_json::json!({"name": "ann"})).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("agent_exists")), "{again}");
    let (mut ann, welcome) = AgentClient::login(app.addr, &first, true).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    // Rotation: the console is signed out at once, the old token is dead, the new one works.
    let started = Instant::now();
    let (status, rotated) = shop.post_json("/agents/ann/rotate", serde_json::json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["token"].as_str().unwrap().to_owned();
    let signed_out = ann.recv_type("error").await;
    assert_eq!(signed_out["code"], "signed_out", "{signed_out}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let (_, refused) = AgentClient::login(app.addr, &first, true).await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    let (mut ann, welcome) = AgentClient::login(app.addr, &second, true).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    // Revoked from the command line (another process): signed out within seconds.
    mibot::admin::revoke_agent(&config, "shop", "ann").await.unwrap();
    let signed_out = ann.recv_type("error").await;
    assert_eq!(signed_out["code"], "signed_out", "{signed_out}");
    let me = reqwest::Client::new()
        .get(format!("http://{}/api/v1/agent/me", app.addr))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let (status, missing) = shop.post_json("/agents/bob/revoke", serde_json::json!({})).await;
    assert_eq!((status, missing["error"].as_str()), (404, Some("unknown_agent")), "{missing}");
    let token = mibot::admin::rotate_agent(&config, "shop", "ann").await.unwrap();
    let (_, welcome) = AgentClient::login(app.addr, &token.0, true).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    app.stop().await;
}

#[tokio::test]
async fn the_pages_carry_a_content_security_policy_and_refuse_framing() {
    let app = crate::helpers::spawn_app().await;
    for path in ["/console", "/dashboard", "/chat-demo"] {
        let response = reqwest::get(format!("http://{}{path}", app.addr)).await.unwrap();
        let headers = response.headers();
        let policy = headers.get("content-security-policy").expect(path).to_str().unwrap();
        assert!(
            policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'"),
            "{policy}"
        );
        assert_eq!(headers.get("x-frame-options").unwrap(), "DENY", "{path}");
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff", "{path}");
    }
    for path in ["/console.js", "/widget.js", "/dashboard.css"] {
        let response = reqwest::get(format!("http://{}{path}", app.addr)).await.unwrap();
        assert_eq!(response.headers().get("x-content-type-options").unwrap(), "nosniff", "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn webhooks_to_this_machine_or_private_networks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let app = spawn_with(config).await;
    let shop = app.merchant("shop", &key);
    for url in
        ["http://127.0.0.1:9/x", "http://localhost:8080/metrics", "http://169.254.169.254/", "http://[::1]/"]
    {
        let (status, body) = shop.put_json("/webhook", serde_json::json!({"url": url})).await;
        assert_eq!((status, body["error"].as_str()), (422, Some("invalid_url")), "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains("private network"), "{body}");
    }
    let (status, body) =
        shop.put_json("/webhook", serde_json::json!({"url": "https://hooks.shop.example/mibot"})).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_pack_over_the_entry_cap_is_refused_and_a_large_junk_pack_builds_in_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.content.max_entries = 4000;
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let app = spawn_with(config).await;
    let shop = app.merchant("shop", &key);
    let junk = |n: usize| {
        let mut csv = String::from("question,answer\n");
        for i in 0..n {
            csv.push_str(&format!(
                "q{i:05}x{:08x}zz,a{i}y{:012x}\n",
                i * 2_654_435_761 % 4_294_967_291,
                i * 40_503
            ));
        }
        csv
    };
    let (status, body) = shop.upload("?format=csv", junk(4001)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["problems"][0].as_str().unwrap().contains("4001 FAQ entries and products; at most 4000"),
        "{body}"
    );
    assert_eq!(app.ask_once("shop", "保修多久").await["kind"], "answer", "the previous pack serves");

    // Under the cap, thousands of junk entries build (without the classifier's square cost;
    // `docs/performance.md` has the times) and serve.
    let (status, body) = shop.upload("?format=csv", junk(3990)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"]["version"], 2, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_pack_over_the_build_budget_is_refused_and_cannot_take_down_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut small = test_config(dir.path());
    small.content.max_build_mb = 10;
    let key = mibot::admin::create_store(&small, "shop").await.unwrap().0;
    // 3,500 entries of four questions each (more than the classifier is trained on, so that
    // the build is quick even unoptimised): their texts, terms and index are over 10 MB.
    let mut pack = String::from("question,similar,answer\n");
    for i in 0..3500 {
        pack.push_str(&format!(
            "第{i}款外套怎么洗,第{i}款外套能机洗吗|how do I wash coat {i}|can coat {i} go in the washer,\
             第{i}款外套请手洗，水温不超过30度，不可漂白，平铺晾干，不要暴晒，熨烫时用低温并垫布。\n"
        ));
    }
    let app = spawn_with(small.clone()).await;
    let shop = app.merchant("shop", &key);
    let (status, body) = shop.upload("?format=csv", pack.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "pack_too_large", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("content.max_build_mb") && message.contains("previous version"), "{message}");
    assert_eq!(app.ask_once("shop", "保修多久").await["kind"], "answer", "the previous pack serves");
    app.stop().await;

    // Under the default budget it builds and goes live.
    let app = spawn_with(test_config(dir.path())).await;
    let (status, body) = app.merchant("shop", &key).upload("?format=csv", pack).await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;

    // Restarted under the small budget, the active pack no longer builds: the server still
    // starts, the other store answers, and this one chats on its intents and hands over.
    let app = spawn_with(small).await;
    assert_eq!(app.ask_once("other", "退货运费谁出").await["kind"], "answer");
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    assert_eq!(shopper.ask("h1", "转人工").await["kind"], "handoff");
    app.stop().await;
}

#[tokio::test]
async fn one_stores_large_pack_does_not_hold_up_another_stores_upload() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let big_key = mibot::admin::create_store(&config, "big").await.unwrap().0;
    let small_key = mibot::admin::create_store(&config, "small").await.unwrap().0;
    let app = spawn_with(config).await;
    let (big, small) = (app.merchant("big", &big_key), app.merchant("small", &small_key));
    let mut pack = String::from("question,answer\n");
    for i in 0..900 {
        pack.push_str(&format!("第{i}号商品多久发货,第{i}号商品下单后48小时内发货\nhow do I wash item {i},item {i} is hand wash only\n"));
    }
    let uploading = tokio::spawn(async move {
        let (status, body) = big.upload("?format=csv", pack).await;
        (status, body, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = small.upload("?format=csv", "question,answer\n退货运费谁出,我们出\n").await;
    let small_done = Instant::now();
    assert_eq!(status, 201, "{body}");
    let (status, body, big_done) = uploading.await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert!(small_done < big_done, "the small store's upload waited for the big store's build");
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limits() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    config.limits.messages_per_address = mibot::config::Rate { per_second: 0.5, burst: 3 };
    let app = spawn_with(config).await;
    let hello_from = |client: &'static str| {
        let addr = app.addr;
        async move {
            let mut request = format!("ws://{addr}/ws/chat?store=shop").into_client_request().unwrap();
            request.headers_mut().insert("x-forwarded-for", client.parse().unwrap());
            let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            let mut shopper = crate::helpers::Client { ws };
            shopper.send(serde_json::json!({"type": "hello"})).await;
            shopper.recv().await
        }
    };
    let mut first = Vec::new();
    for _ in 0..5 {
        first.push(hello_from("203.0.113.1").await["type"].as_str().unwrap().to_owned());
    }
    assert!(first.iter().any(|t| t == "error"), "the first client ran out: {first:?}");
    assert_eq!(hello_from("203.0.113.2").await["type"], "welcome", "another client behind the proxy is not");

    // A request the proxy forwards from elsewhere is not this machine's.
    let metrics = reqwest::Client::new()
        .get(format!("http://{}/metrics", app.addr))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn a_console_that_has_gone_silent_is_signed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.chat.ping_seconds = 1;
    config.chat.idle_timeout_seconds = 2;
    mibot::admin::create_store(&config, "shop").await.unwrap();
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let app = spawn_with(config).await;
    let online = || async {
        let metrics =
            reqwest::get(format!("http://{}/metrics", app.addr)).await.unwrap().text().await.unwrap();
        metrics.contains(r#"mibot_agents_online{store="shop"} 1"#)
    };
    // A console that reads answers the pings and stays signed in.
    let (mut reading, welcome) = AgentClient::login(app.addr, &token, true).await;
    assert_eq!(welcome["type"], "welcome");
    let frames = reading.frames_for(Duration::from_millis(3500)).await;
    assert!(frames.iter().all(|f| f.get("close").is_none()), "{frames:?}");
    assert!(online().await, "a console that answers pings stays");
    // One that stops reading answers nothing, and is signed out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!online().await, "a silent console is signed out");
    app.stop().await;
}

#[tokio::test]
async fn ids_on_the_wire_are_opaque_and_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let app = spawn_with(config.clone()).await;
    let mut shopper = app.connect("shop").await;
    let token = shopper.hello(None).await["resume_token"].as_str().unwrap().to_owned();
    let first = shopper.ask("a", "发票怎么申请").await;
    let second = shopper.ask("b", "退货运费谁出").await;
    let (a, b) = (first["message_id"].as_str().unwrap(), second["message_id"].as_str().unwrap());
    // Two replies in a row: no number, no order, nothing in common to count the platform by.
    for id in [a, b] {
        assert_eq!(id.len(), 22, "{id}");
        assert!(!id.chars().all(|c| c.is_ascii_digit()), "{id}");
    }
    assert_ne!(a, b);
    assert!(a.bytes().zip(b.bytes()).filter(|(x, y)| x == y).count() < 8, "{a} {b}");
    // A made-up id, or a row number, is not a reply to vote on.
    shopper.send(json!({"type": "feedback", "message_id": "AAAAAAAAAAAAAAAAAAAAAA", "helpful": true})).await;
    assert_eq!(shopper.recv_type("error").await["code"], "invalid_feedback");
    shopper.send(json!({"type": "feedback", "message_id": 2, "helpful": true})).await;
    assert_eq!(shopper.recv_type("error").await["code"], "invalid_frame");
    app.stop().await;

    // The key the ids are made under is kept: after a restart the same ids still mean the same.
    let app = spawn_with(config).await;
    let mut back = app.connect("shop").await;
    back.hello(Some(&token)).await;
    back.send(json!({"type": "feedback", "message_id": first["message_id"], "helpful": true})).await;
    assert_eq!(back.recv_type("feedback_noted").await["message_id"], first["message_id"]);
    app.stop().await;
}
