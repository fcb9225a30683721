//! The shopper's chat path over a real WebSocket.

use serde_json::json;

use mibot::domain::Clock;
use mibot::encoder::{Availability, EncoderSlot};

use crate::helpers::{spawn_app, spawn_with_encoder, test_config};

#[tokio::test]
async fn greeting_gets_an_intent_answer() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    assert_eq!(welcome["resumed"], false);
    assert_eq!(welcome["status"], "bot");
    assert!(welcome["conversation_id"].as_str().is_some_and(|s| !s.is_empty()));

    let reply = shopper.ask("c1", "你好").await;
    assert_eq!(reply["kind"], "answer");
    assert_eq!(reply["source"], "intent");
    assert_eq!(reply["trace"]["matched"], "intent:greeting");
    assert_eq!(reply["trace"]["signal"], "rule");
    app.stop().await;
}

#[tokio::test]
async fn faq_is_answered_in_chinese_and_in_english_with_a_trace() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;

    let zh = shopper.ask("c1", "退货运费谁出？").await;
    assert_eq!(zh["kind"], "answer", "{zh}");
    assert_eq!(zh["source"], "faq");
    assert!(zh["text"].as_str().unwrap().contains("退货运费由本店承担"), "{zh}");
    assert_eq!(zh["trace"]["matched"], "return-shipping");
    assert!(zh["trace"]["score"].as_f64().unwrap() > 0.9, "{zh}");
    assert!(zh["trace"]["margin"].as_f64().is_some(), "{zh}");

    let en = shopper.ask("c2", "who pays the return shipping?").await;
    assert_eq!(en["kind"], "answer", "{en}");
    assert!(en["text"].as_str().unwrap().starts_with("We pay return shipping"), "{en}");
    app.stop().await;
}

#[tokio::test]
async fn product_questions_are_answered_from_attributes() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;

    let price = shopper.ask("c1", "X1 多少钱").await;
    assert_eq!(price["source"], "product", "{price}");
    assert!(price["text"].as_str().unwrap().contains("¥2999"), "{price}");
    assert_eq!(price["suggestions"], json!(["X1 Case"]), "related products are offered");

    // "this phone" now means the X1.
    let memory = shopper.ask("c2", "这款手机内存多大").await;
    assert_eq!(memory["source"], "product", "{memory}");
    assert!(memory["text"].as_str().unwrap().contains("8GB / 12GB"), "{memory}");
    // The same question again, its vector now cached, is decided the same way.
    let encoder = crate::helpers::shared_encoder().get().expect("the test model runs");
    encoder.query("这款手机内存多大").await;
    assert!(encoder.cached_query("这款手机内存多大").is_some());
    let mut again = app.connect("shop").await;
    again.hello(None).await;
    again.ask("d1", "X1 多少钱").await;
    let memory = again.ask("d2", "这款手机内存多大").await;
    assert_eq!(memory["source"], "product", "{memory}");

    let colours = shopper.ask("c3", "what colours does the X1 come in?").await;
    assert!(colours["text"].as_str().unwrap().contains("obsidian black, glacier white"), "{colours}");
    assert_eq!(colours["trace"]["matched"], "product:NV-X1");
    app.stop().await;
}

#[tokio::test]
async fn a_product_page_gives_the_chat_its_context() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    shopper.send(json!({"type": "hello", "product": "NV-X1"})).await;
    assert_eq!(shopper.recv().await["type"], "welcome");
    let reply = shopper.ask("c1", "这款有什么颜色").await;
    assert!(reply["text"].as_str().unwrap().contains("曜石黑"), "{reply}");
    app.stop().await;
}

#[tokio::test]
async fn an_ambiguous_question_gets_suggestions() {
    // On lexical signals, which are the same on every machine: with the encoder, how sure the
    // bot is of a question this close to two entries depends on the CPU's int8 kernels.
    let dir = tempfile::tempdir().unwrap();
    let lexical =
        EncoderSlot::fixed(Availability::Unavailable("this test decides on lexical signals".into()));
    let app = spawn_with_encoder(test_config(dir.path()), Clock::system(), lexical).await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    // How to get an invoice, or the one for a company?
    let reply = shopper.ask("c1", "发票怎么开 公司").await;
    assert_eq!(reply["kind"], "clarify", "{reply}");
    let mut suggestions: Vec<&str> =
        reply["suggestions"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    // Both, in either order: which of the two ranks first is not the point.
    suggestions[..2].sort_unstable();
    assert_eq!(suggestions[..2], ["发票可以开公司抬头吗？", "怎么开发票？"], "{reply}");
    assert!(suggestions.len() <= 3);
    // Both are likely: the runner-up is too close to answer either outright.
    let margin = mibot::config::TriageConfig::default().lexical.min_margin;
    assert!(reply["trace"]["margin"].as_f64().unwrap() < f64::from(margin), "{reply}");

    // Picking the suggestion answers it.
    let picked = shopper.ask("c2", "发票可以开公司抬头吗？").await;
    assert_eq!(picked["kind"], "answer", "{picked}");
    assert_eq!(picked["trace"]["matched"], "invoice-company");
    app.stop().await;
}

#[tokio::test]
async fn two_fallbacks_hand_over_and_the_bot_falls_silent() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;

    let first = shopper.ask("c1", "量子纠缠是什么原理").await;
    assert_eq!(first["kind"], "fallback", "{first}");
    let second = shopper.ask("c2", "火星上今天天气怎么样").await;
    assert_eq!(second["kind"], "handoff", "{second}");
    let status = shopper.recv().await;
    assert_eq!(
        status,
        json!({"type": "status", "status": "waiting_for_agent", "reason": "repeated_fallback"})
    );

    // Still stored and acknowledged, but the bot says nothing: the next frame is the next ack.
    shopper.message("c3", "你好").await;
    let ack = shopper.message("c4", "退货运费谁出").await;
    assert_eq!(ack["duplicate"], false);
    app.stop().await;
}

#[tokio::test]
async fn asking_for_a_person_hands_over_at_once() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    let reply = shopper.ask("c1", "转人工").await;
    assert_eq!(reply["kind"], "handoff", "{reply}");
    assert_eq!(reply["trace"]["matched"], "intent:ask_for_human");
    let status = shopper.recv().await;
    assert_eq!(status["status"], "waiting_for_agent");
    assert_eq!(status["reason"], "asked_for_human");

    let complaint_app = spawn_app().await;
    let mut angry = complaint_app.connect("shop").await;
    angry.hello(None).await;
    let reply = angry.ask("c1", "I want to file a complaint about your service").await;
    assert_eq!(reply["kind"], "handoff", "{reply}");
    assert_eq!(angry.recv().await["reason"], "complaint");
    app.stop().await;
    complaint_app.stop().await;
}

#[tokio::test]
async fn resuming_continues_the_conversation_with_its_history() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    shopper.ask("c1", "保修多久").await;
    drop(shopper);

    let mut again = app.connect("shop").await;
    let resumed = again.hello(Some(&token)).await;
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["conversation_id"], welcome["conversation_id"]);
    let history = resumed["history"].as_array().unwrap();
    let roles: Vec<&str> = history.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["shopper", "bot"]);
    assert_eq!(history[0]["text"], "保修多久");
    assert!(history[1]["text"].as_str().unwrap().contains("一年"));

    // The same token means nothing to another store.
    let mut elsewhere = app.connect("other").await;
    elsewhere.send(json!({"type": "hello", "resume_token": token})).await;
    let error = elsewhere.recv().await;
    assert_eq!(error["code"], "unknown_resume_token", "{error}");
    app.stop().await;
}

#[tokio::test]
async fn a_resent_message_is_neither_stored_nor_answered_twice() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    let first = shopper.ask("c1", "保修多久").await;
    assert_eq!(first["kind"], "answer");
    let again = shopper.message("c1", "保修多久").await;
    assert_eq!(again["duplicate"], true);
    // No second reply: the next frame answers the next message.
    let next = shopper.ask("c2", "谢谢").await;
    assert_eq!(next["trace"]["matched"], "intent:thanks");
    drop(shopper);

    let mut check = app.connect("shop").await;
    let resumed = check.hello(welcome["resume_token"].as_str()).await;
    assert_eq!(resumed["history"].as_array().unwrap().len(), 4, "{resumed}");
    app.stop().await;
}

#[tokio::test]
async fn stores_are_isolated() {
    let app = spawn_app().await;
    let mut a = app.connect("shop").await;
    let mut b = app.connect("other").await;
    a.hello(None).await;
    b.hello(None).await;
    let from_a = a.ask("c1", "退货运费谁出").await;
    let from_b = b.ask("c1", "退货运费谁出").await;
    assert!(from_a["text"].as_str().unwrap().contains("本店承担"), "{from_a}");
    assert_eq!(from_b["text"], "本店所有退货均包邮。", "{from_b}");
    // The other store has no products.
    let product = b.ask("c2", "X1 多少钱").await;
    assert_ne!(product["source"], "product", "{product}");
    app.stop().await;
}

#[tokio::test]
async fn a_paraphrase_not_in_the_pack_is_answered_and_an_unrelated_question_is_not() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    let paraphrase = shopper.ask("c1", "退货的邮费要我自己付吗").await;
    assert_eq!(paraphrase["kind"], "answer", "{paraphrase}");
    assert_eq!(paraphrase["trace"]["matched"], "return-shipping");
    let english = shopper.ask("c3", "who covers the postage on returns").await;
    assert_eq!(english["kind"], "answer", "{english}");
    assert_eq!(english["trace"]["matched"], "return-shipping");
    let contributions = &paraphrase["trace"]["contributions"];
    assert!(contributions["classifier"].as_f64().unwrap() > 0.0, "{paraphrase}");
    assert!(contributions["retrieval"].as_f64().is_some(), "{paraphrase}");

    let unrelated = shopper.ask("c2", "明天北京会下雨吗").await;
    assert_ne!(unrelated["kind"], "answer", "{unrelated}");
    app.stop().await;
}

#[tokio::test]
async fn many_shoppers_writing_at_once_are_all_stored_and_answered() {
    let app = spawn_app().await;
    let mut shoppers = Vec::new();
    for n in 0..16 {
        let mut shopper = app.connect("shop").await;
        shopper.hello(None).await;
        shoppers.push(tokio::spawn(async move {
            for turn in 0..6 {
                let reply = shopper.ask(&format!("s{n}-{turn}"), "保修多久").await;
                assert_eq!(reply["kind"], "answer", "{reply}");
            }
        }));
    }
    for shopper in shoppers {
        shopper.await.expect("every message acknowledged and answered, none refused as locked");
    }
    app.stop().await;
}
