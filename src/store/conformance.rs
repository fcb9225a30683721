//! One suite of storage behaviour, run against both backends: SQLite in a temporary directory,
//! and PostgreSQL (`MIBOT_TEST_POSTGRES`, by default the local server's `test` database) in a
//! schema of its own per test, dropped when the test passes.

use std::sync::Arc;

use super::{AgentAccount, AlertRow, BotTurn, Database, NewFeedback, NewPackVersion, Webhook};
use crate::domain::{ChatStatus, ClientMessageId, ConversationId, HandoffReason, MessageId, Millis, StoreId};

/// The PostgreSQL server the tests use.
pub(crate) fn postgres_url() -> String {
    std::env::var("MIBOT_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database for one test, and what to remove after it.
struct Fixture {
    db: Arc<dyn Database>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = super::sqlite::SqliteStore::open(dir.path()).await.unwrap();
        Self { db: Arc::new(db), _dir: Some(dir), schema: None }
    }

    async fn postgres() -> Self {
        let schema = format!("mibot_test_{}", uuid::Uuid::new_v4().simple());
        let db = super::postgres::PostgresStore::open(&postgres_url(), Some(&schema))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} (start it as .ci/run does): {e}", postgres_url()));
        Self { db: Arc::new(db), _dir: None, schema: Some(schema) }
    }

    async fn done(self) {
        self.db.close().await;
        if let Some(schema) = &self.schema {
            super::postgres::PostgresStore::drop_schema(&postgres_url(), schema).await.unwrap();
        }
    }
}

/// Each behaviour as a test per backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::Fixture::sqlite().await;
                    super::$name(fixture.db.as_ref()).await;
                    fixture.done().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = super::Fixture::postgres().await;
                    super::$name(fixture.db.as_ref()).await;
                    fixture.done().await;
                }
            )*
        }
    };
}

both_backends!(
    resends_are_stored_once,
    a_reply_is_stored_with_its_message_only_while_the_bot_has_the_chat,
    exactly_one_claim_wins,
    the_queue_and_a_chat_with_people,
    pack_versions_number_activate_and_keep_their_content,
    keys_rotate_and_revoke,
    agents_tokens_and_vips,
    insights_figures_from_a_seeded_history,
    alerts_and_webhooks,
    embeddings_by_digest,
    task_state_and_endpoints,
);

fn demo() -> StoreId {
    StoreId::parse("demo").unwrap()
}

fn cid(s: &str) -> ClientMessageId {
    ClientMessageId(s.into())
}

fn turn(
    conversation: ConversationId,
    text: &str,
    kind: &'static str,
    status: ChatStatus,
    at: i64,
) -> BotTurn {
    BotTurn {
        conversation,
        in_reply_to: MessageId(0),
        text: text.into(),
        trace: serde_json::json!({ "reply": text }),
        status,
        changes_state: status != ChatStatus::Bot,
        handoff_reason: (status == ChatStatus::WaitingForAgent).then_some(HandoffReason::AskedForHuman),
        consecutive_fallbacks: 0,
        product: None,
        task: Default::default(),
        kind,
        entry: (kind == "answer").then(|| "shipping-fee".to_owned()),
        at: Millis(at),
    }
}

async fn resends_are_stored_once(db: &dyn Database) {
    db.create_store(&demo(), Millis(1)).await.unwrap();
    let c = db.create_conversation(&demo(), Some("NV-X1"), Some("u1"), Millis(1)).await.unwrap();
    let first = db.append_shopper_message(c.id, &cid("m1"), "包邮吗", Millis(2)).await.unwrap();
    let again = db.append_shopper_message(c.id, &cid("m1"), "包邮吗", Millis(3)).await.unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!((first.id, first.status), (again.id, ChatStatus::Bot));
    let history = db.history(c.id, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    let found = db.conversation_by_token(&demo(), &c.resume_token).await.unwrap().unwrap();
    assert_eq!(
        (found.id, found.product.as_deref(), found.shopper.as_deref()),
        (c.id, Some("NV-X1"), Some("u1"))
    );
    let other = StoreId::parse("other").unwrap();
    assert!(db.conversation_by_token(&other, &c.resume_token).await.unwrap().is_none());
    let missing = db.append_shopper_message(ConversationId::new(), &cid("m1"), "x", Millis(4)).await;
    assert!(matches!(missing, Err(super::StoreError::NoConversation(_))), "{missing:?}");
    db.set_product(c.id, Some("NV-PAD")).await.unwrap();
    let found = db.conversation_by_token(&demo(), &c.resume_token).await.unwrap().unwrap();
    assert_eq!(found.product.as_deref(), Some("NV-PAD"));
}

async fn a_reply_is_stored_with_its_message_only_while_the_bot_has_the_chat(db: &dyn Database) {
    let c = db.create_conversation(&demo(), None, None, Millis(1)).await.unwrap();
    let reply = turn(c.id, "满99包邮", "answer", ChatStatus::Bot, 2);
    let (appended, replied) =
        db.append_shopper_message_with_reply(&cid("m1"), "包邮吗", Millis(2), &reply).await.unwrap();
    assert!(replied.is_some() && !appended.duplicate);
    // A resend stores nothing and answers nothing again.
    let (again, replied) =
        db.append_shopper_message_with_reply(&cid("m1"), "包邮吗", Millis(3), &reply).await.unwrap();
    assert!(again.duplicate && replied.is_none());
    // A handoff changes the conversation; afterwards the bot's replies are not stored.
    let handoff = turn(c.id, "正在为您转接人工", "handoff", ChatStatus::WaitingForAgent, 4);
    let (_, replied) =
        db.append_shopper_message_with_reply(&cid("m2"), "转人工", Millis(4), &handoff).await.unwrap();
    assert!(replied.is_some());
    let (later, replied) =
        db.append_shopper_message_with_reply(&cid("m3"), "在吗", Millis(5), &reply).await.unwrap();
    assert_eq!((later.status, replied), (ChatStatus::WaitingForAgent, None));
    let history = db.history(c.id, 10).await.unwrap();
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["包邮吗", "满99包邮", "转人工", "正在为您转接人工", "在吗"]);
    assert_eq!(db.history(c.id, 2).await.unwrap().len(), 2);
    let summary = db.chat_summary(c.id).await.unwrap().unwrap();
    assert_eq!(
        (summary.status, summary.handoff_reason),
        (ChatStatus::WaitingForAgent, Some(HandoffReason::AskedForHuman))
    );
    let transcript = db.transcript(c.id).await.unwrap();
    assert_eq!(transcript[1].trace, Some(serde_json::json!({ "reply": "满99包邮" })));
    // Each bot reply says what it was, from the stored kind.
    let kinds: Vec<Option<&str>> = transcript.iter().map(|m| m.kind.as_deref()).collect();
    assert_eq!(kinds, [None, Some("answer"), None, Some("handoff"), None]);
}

async fn exactly_one_claim_wins(db: &dyn Database) {
    let c = db.create_conversation(&demo(), None, None, Millis(1)).await.unwrap();
    db.enqueue(c.id, HandoffReason::AskedForHuman, 20, None, Millis(2)).await.unwrap();
    let claims = (0..8).map(|i| {
        let name = format!("agent{i}");
        async move { db.assign(c.id, &name, Millis(3)).await.unwrap() }
    });
    let won = futures_util::future::join_all(claims).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = format!("agent{}", won.iter().position(|w| *w).unwrap());
    assert_eq!(db.chat_summary(c.id).await.unwrap().unwrap().agent, Some(winner));
}

async fn the_queue_and_a_chat_with_people(db: &dyn Database) {
    let low = db.create_conversation(&demo(), None, None, Millis(1)).await.unwrap();
    let high = db.create_conversation(&demo(), Some("NV-X1"), None, Millis(1)).await.unwrap();
    db.append_shopper_message(high.id, &cid("h1"), "屏幕裂了", Millis(2)).await.unwrap();
    db.append_shopper_message(high.id, &cid("h2"), "我要投诉", Millis(3)).await.unwrap();
    db.enqueue(low.id, HandoffReason::NotifyFlag, 10, Some("after-sales"), Millis(2)).await.unwrap();
    db.enqueue(high.id, HandoffReason::Complaint, 40, None, Millis(3)).await.unwrap();
    let open = db.open_chats().await.unwrap();
    assert_eq!(open.iter().map(|o| o.conversation).collect::<Vec<_>>(), [high.id, low.id]);
    assert_eq!((open[1].group.as_deref(), open[1].queued_at), (Some("after-sales"), Millis(2)));
    // What the queue previews after a restart: the shopper's latest message, and the product.
    assert_eq!((open[0].last_text.as_deref(), open[0].product.as_deref()), (Some("我要投诉"), Some("NV-X1")));
    assert_eq!((open[1].last_text.as_deref(), open[1].product.as_deref()), (None, None));
    assert!(db.assign(high.id, "li", Millis(4)).await.unwrap());
    db.append_agent_message(high.id, "li", "您好，我是小李", Millis(5)).await.unwrap();
    db.append_notice(high.id, "客服已接入", Millis(5)).await.unwrap();
    let open = db.open_chats().await.unwrap();
    assert_eq!((open[0].agent.as_deref(), open[0].assigned_at), (Some("li"), Some(Millis(4))));
    assert_eq!(db.open_chat(high.id).await.unwrap().as_ref(), Some(&open[0]));
    assert!(!db.rate(high.id, 5, None).await.unwrap(), "an open chat is not rated");
    db.release(high.id, ChatStatus::Closed, Millis(6)).await.unwrap();
    assert!(db.rate(high.id, 5, Some("很快")).await.unwrap());
    assert!(!db.rate(high.id, 1, None).await.unwrap(), "a chat is rated once");
    db.release(low.id, ChatStatus::Bot, Millis(6)).await.unwrap();
    assert!(db.open_chats().await.unwrap().is_empty());
    assert_eq!(db.open_chat(high.id).await.unwrap(), None, "a closed chat is not open");
    let summary = db.chat_summary(high.id).await.unwrap().unwrap();
    assert_eq!((summary.rating, summary.rating_comment.as_deref()), (Some(5), Some("很快")));
    let transcript = db.transcript(high.id).await.unwrap();
    assert_eq!(transcript[2].author.as_deref(), Some("li"));
    assert_eq!(transcript.len(), 4);
}

async fn pack_versions_number_activate_and_keep_their_content(db: &dyn Database) {
    assert!(db.create_store(&demo(), Millis(1)).await.unwrap());
    assert!(!db.create_store(&demo(), Millis(1)).await.unwrap());
    let pack = |fingerprint| NewPackVersion {
        format: "json",
        source: "http",
        fingerprint,
        faq: 3,
        products: 1,
        content: r#"{"faq":[]}"#,
    };
    let publishes = (0..4).map(|i| {
        let fingerprint = format!("f{i}");
        async move {
            let new = NewPackVersion { fingerprint: &fingerprint, ..pack("") };
            db.add_pack_version(&demo(), new, false, Millis(2)).await.unwrap().version
        }
    });
    let mut numbers = futures_util::future::join_all(publishes).await;
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2, 3, 4], "versions published at once are numbered apart");
    let v5 = db.add_pack_version(&demo(), pack("f5"), true, Millis(3)).await.unwrap();
    assert_eq!((v5.version, v5.faq), (5, 3));
    assert_eq!(db.active_versions().await.unwrap(), [(demo(), 5)]);
    assert!(db.activate(&demo(), 2, Millis(4)).await.unwrap());
    assert!(!db.activate(&demo(), 9, Millis(4)).await.unwrap());
    assert_eq!(db.active_versions().await.unwrap(), [(demo(), 2)]);
    let (version, content) = db.pack_version(&demo(), 5).await.unwrap().unwrap();
    assert_eq!((version, content.as_str()), (v5, r#"{"faq":[]}"#));
    assert_eq!(db.pack_versions(&demo()).await.unwrap().len(), 5);
    assert!(db.pack_version(&demo(), 6).await.unwrap().is_none());
    assert_eq!(db.stores().await.unwrap(), [demo()]);
    db.set_identity_secret(&demo(), "s3cret").await.unwrap();
    assert_eq!(db.identity_secret(&demo()).await.unwrap().as_deref(), Some("s3cret"));
}

async fn keys_rotate_and_revoke(db: &dyn Database) {
    db.create_store(&demo(), Millis(1)).await.unwrap();
    db.add_key(&demo(), "k1", false, Millis(1)).await.unwrap();
    db.add_key(&demo(), "k2", false, Millis(1)).await.unwrap();
    assert_eq!(db.store_for_key("k1").await.unwrap(), Some(demo()));
    db.add_key(&demo(), "k3", true, Millis(2)).await.unwrap();
    assert_eq!(db.store_for_key("k1").await.unwrap(), None, "rotating revokes the others");
    assert_eq!(db.store_for_key("k3").await.unwrap(), Some(demo()));
    assert_eq!(db.revoke_keys(&demo(), Millis(3)).await.unwrap(), 1);
    assert_eq!(db.store_for_key("k3").await.unwrap(), None);
    assert_eq!(db.store_for_key("nope").await.unwrap(), None);
}

async fn agents_tokens_and_vips(db: &dyn Database) {
    db.create_store(&demo(), Millis(1)).await.unwrap();
    let li =
        AgentAccount { store: demo(), name: "li".into(), groups: vec!["pre-sales".into()], max_chats: 3 };
    assert!(db.add_agent(&li, "t1", Millis(1)).await.unwrap());
    assert!(!db.add_agent(&li, "t9", Millis(1)).await.unwrap(), "a name is taken once per store");
    assert_eq!(db.agent_by_token("t1").await.unwrap(), Some(li.clone()));
    assert!(db.set_agent_token(&demo(), "li", "t2").await.unwrap());
    assert!(!db.set_agent_token(&demo(), "wang", "t3").await.unwrap());
    assert_eq!(db.agent_by_token("t1").await.unwrap(), None);
    assert_eq!(db.agent_by_token("t2").await.unwrap(), Some(li));
    let c = db.create_conversation(&demo(), None, Some("vip-7"), Millis(1)).await.unwrap();
    assert!(!db.is_vip(c.id).await.unwrap());
    db.set_vip(&demo(), "vip-7", true, Millis(2)).await.unwrap();
    db.set_vip(&demo(), "vip-7", true, Millis(2)).await.unwrap();
    assert!(db.is_vip(c.id).await.unwrap());
    db.set_vip(&demo(), "vip-7", false, Millis(3)).await.unwrap();
    assert!(!db.is_vip(c.id).await.unwrap());
}

async fn insights_figures_from_a_seeded_history(db: &dyn Database) {
    let hour = 3_600_000;
    // One session answered and voted helpful; one handed to a person, who closed it.
    let answered = db.create_conversation(&demo(), None, Some("u1"), Millis(hour)).await.unwrap();
    let reply = turn(answered.id, "满99包邮", "answer", ChatStatus::Bot, hour + 1);
    let (_, bot) =
        db.append_shopper_message_with_reply(&cid("a1"), "包邮吗", Millis(hour + 1), &reply).await.unwrap();
    let bot = bot.unwrap();
    let vote = |helpful| NewFeedback {
        conversation: answered.id,
        message: bot,
        source: "shopper",
        helpful: Some(helpful),
        note: None,
        author: None,
        at: Millis(hour + 2),
    };
    assert!(db.add_feedback(vote(false)).await.unwrap());
    assert!(db.add_feedback(vote(true)).await.unwrap(), "a second vote replaces the first");
    let not_bot = NewFeedback { message: MessageId(bot.0 - 1), ..vote(true) };
    assert!(!db.add_feedback(not_bot).await.unwrap(), "only bot replies take votes");

    let escalated = db.create_conversation(&demo(), None, Some("u2"), Millis(2 * hour)).await.unwrap();
    let handoff =
        turn(escalated.id, "正在为您转接人工", "handoff", ChatStatus::WaitingForAgent, 2 * hour + 1);
    let (question, _) = db
        .append_shopper_message_with_reply(&cid("b1"), "转人工", Millis(2 * hour + 1), &handoff)
        .await
        .unwrap();
    db.enqueue(escalated.id, HandoffReason::AskedForHuman, 20, None, Millis(2 * hour + 1)).await.unwrap();
    assert!(db.assign(escalated.id, "li", Millis(2 * hour + 60_000)).await.unwrap());
    db.append_agent_message(escalated.id, "li", "您好", Millis(2 * hour + 90_000)).await.unwrap();
    db.release(escalated.id, ChatStatus::Closed, Millis(2 * hour + 120_000)).await.unwrap();
    db.rate(escalated.id, 4, None).await.unwrap();
    db.dismiss(&demo(), &[question.id, MessageId(999_999)], Millis(3 * hour)).await.unwrap();

    let history = db.records(&demo(), Millis(0), Millis(4 * hour)).await.unwrap();
    assert_eq!(history.conversations.len(), 2);
    assert_eq!(history.messages.len(), 5);
    assert_eq!(history.dismissed, [question.id]);
    assert_eq!(history.feedback.len(), 1);
    assert_eq!(history.feedback[0].helpful, Some(true));
    let closed = &history.conversations[1];
    assert_eq!((closed.rating, closed.closed_at), (Some(4), Some(Millis(2 * hour + 120_000))));
    let report =
        crate::insight::report(&history, Millis(0), Millis(4 * hour), crate::insight::Bucket::Hour, 0);
    assert_eq!((report.sessions, report.messages, report.resolved), (2, 2, 1));
    assert_eq!(report.escalations.get(&HandoffReason::AskedForHuman), Some(&1));
    assert_eq!((report.bot_feedback.helpful, report.bot_feedback.not_helpful), (1, 0));
    assert_eq!(report.top_entries[0].entry, "shipping-fee");
    assert!(
        db.records(&StoreId::parse("other").unwrap(), Millis(0), Millis(4 * hour))
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    let open = db.open_conversations_of(&demo(), &[question.id, bot]).await.unwrap();
    assert_eq!(open, [answered.id], "the closed conversation is left out");
}

async fn alerts_and_webhooks(db: &dyn Database) {
    let alert = AlertRow {
        id: 0,
        store: "demo".into(),
        topic: "entry:shipping-fee".into(),
        label: "运费".into(),
        samples: vec!["运费多少".into()],
        messages: vec![MessageId(1), MessageId(2)],
        count: 12,
        expected: 1.5,
        started_at: Millis(10),
        last_seen_at: Millis(10),
        ended_at: None,
        webhook: None,
        webhook_attempts: 0,
    };
    let id = db.raise_alert(&alert).await.unwrap();
    db.touch_alert(id, 9, &[MessageId(3)], Millis(20)).await.unwrap();
    let touched = db.alert(&demo(), id).await.unwrap().unwrap();
    assert_eq!(
        (touched.count, touched.last_seen_at, touched.messages.clone()),
        (12, Millis(20), vec![MessageId(3)])
    );
    db.touch_alert(id, 30, &[MessageId(3)], Millis(30)).await.unwrap();
    assert_eq!(db.alert(&demo(), id).await.unwrap().unwrap().count, 30, "the highest count is kept");
    assert_eq!(db.open_alerts(&demo()).await.unwrap().len(), 1);
    db.webhook_result(id, "delivered", 2).await.unwrap();
    db.end_alert(id, Millis(40)).await.unwrap();
    db.end_alert(id, Millis(50)).await.unwrap();
    assert!(db.open_alerts(&demo()).await.unwrap().is_empty());
    let ended = db.alert(&demo(), id).await.unwrap().unwrap();
    assert_eq!(
        (ended.ended_at, ended.webhook.as_deref(), ended.webhook_attempts),
        (Some(Millis(40)), Some("delivered"), 2)
    );
    assert_eq!(ended.samples, ["运费多少"]);
    assert_eq!(db.alerts(&demo(), Millis(0)).await.unwrap().len(), 1);
    assert!(db.alerts(&demo(), Millis(11)).await.unwrap().is_empty());
    assert!(db.alert(&StoreId::parse("other").unwrap(), id).await.unwrap().is_none());

    assert!(db.webhook(&demo()).await.unwrap().is_none());
    let hook = Webhook { url: "https://ops.example.com/hook".into(), secret: "whsec".into() };
    db.set_webhook(&demo(), &hook, Millis(1)).await.unwrap();
    let moved = Webhook { url: "https://ops.example.com/v2".into(), ..hook };
    db.set_webhook(&demo(), &moved, Millis(2)).await.unwrap();
    assert_eq!(db.webhook(&demo()).await.unwrap(), Some(moved));
    assert!(db.delete_webhook(&demo()).await.unwrap());
    assert!(!db.delete_webhook(&demo()).await.unwrap());
}

async fn embeddings_by_digest(db: &dyn Database) {
    let items: Vec<([u8; 32], Vec<f32>)> =
        (0..3u8).map(|i| ([i; 32], vec![f32::from(i), 0.5, -1.25])).collect();
    db.save_embeddings("e5-small", &items, Millis(1)).await.unwrap();
    // A digest stored already keeps its vector.
    db.save_embeddings("e5-small", &[([0; 32], vec![9.0, 9.0, 9.0])], Millis(2)).await.unwrap();
    let found = db.embeddings("e5-small", &[[2; 32], [7; 32], [0; 32]]).await.unwrap();
    assert_eq!(found, [Some(vec![2.0, 0.5, -1.25]), None, Some(vec![0.0, 0.5, -1.25])]);
    assert_eq!(db.embeddings("other-model", &[[0; 32]]).await.unwrap(), [None]);
}

async fn task_state_and_endpoints(db: &dyn Database) {
    use crate::domain::{PendingTask, TaskState};
    let c = db.create_conversation(&demo(), None, None, Millis(1)).await.unwrap();
    assert!(c.task.is_empty());
    let pending = PendingTask { intent: "order_status".into(), slots: Default::default(), asked: 1 };
    let task = TaskState { pending: Some(pending), failures: 1 };
    let ask = BotTurn {
        task: task.clone(),
        changes_state: true,
        ..turn(c.id, "请提供订单号", "answer", ChatStatus::Bot, 2)
    };
    db.append_shopper_message_with_reply(&cid("m1"), "我的快递到哪了", Millis(2), &ask).await.unwrap();
    let stored = db.conversation_by_token(&demo(), &c.resume_token).await.unwrap().unwrap();
    assert_eq!(stored.task, task);
    // An agent handing the chat back starts it afresh.
    db.release(c.id, ChatStatus::Bot, Millis(3)).await.unwrap();
    let stored = db.conversation_by_token(&demo(), &c.resume_token).await.unwrap().unwrap();
    assert!(stored.task.is_empty(), "{:?}", stored.task);

    let endpoint = super::ActionEndpoint {
        name: "order_status".into(),
        url: "https://shop.example/orders".into(),
        timeout_ms: 3000,
        secret: "whsec_x".into(),
    };
    assert_eq!(db.action(&demo(), "order_status").await.unwrap(), None);
    db.set_action(&demo(), &endpoint, Millis(4)).await.unwrap();
    let moved = super::ActionEndpoint { url: "https://shop.example/v2/orders".into(), ..endpoint.clone() };
    db.set_action(&demo(), &moved, Millis(5)).await.unwrap();
    let other = StoreId::parse("other").unwrap();
    assert_eq!(db.action(&other, "order_status").await.unwrap(), None);
    assert_eq!(db.actions(&demo()).await.unwrap(), std::slice::from_ref(&moved));
    assert_eq!(db.action(&demo(), "order_status").await.unwrap(), Some(moved));
    assert!(db.delete_action(&demo(), "order_status").await.unwrap());
    assert!(!db.delete_action(&demo(), "order_status").await.unwrap());
    assert!(db.actions(&demo()).await.unwrap().is_empty());
}
