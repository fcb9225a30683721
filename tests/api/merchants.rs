//! Merchants: keys, pack uploads in every format, versions, hot swap, rollback, validity
//! windows, over real HTTP and WebSockets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mibot::config::Config;
use mibot::domain::{Clock, Millis};
use mibot::knowledge::pack::parse_instant;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_with, spawn_with_clock, test_config};

const SHOP_RETURNS: &str = "商品质量问题的退货运费由本店承担";
const OTHER_RETURNS: &str = "本店所有退货均包邮";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh data directory with stores `shop` and `other`, and their keys.
async fn stores(dir: &Path) -> (Config, String, String) {
    let config = test_config(dir);
    let shop = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let other = mibot::admin::create_store(&config, "other").await.unwrap().0;
    (config, shop, other)
}

fn text(reply: &Value) -> &str {
    reply["text"].as_str().unwrap_or_default()
}

const NEW_RETURNS_PACK: &str = r#"{"faq": [
  {"id": "return-shipping", "question": "退货运费谁承担？", "similar": ["退货运费谁出", "退货要自己付邮费吗"],
   "answer": "即日起所有退货由本店承担运费。"},
  {"id": "invoice", "question": "怎么开发票？", "similar": ["可以开发票吗", "发票怎么申请"],
   "answer": "在「我的订单」中申请发票。"}
]}"#;

#[tokio::test]
async fn a_key_opens_only_its_own_store() {
    let dir = tempfile::tempdir().unwrap();
    let (config, shop_key, other_key) = stores(dir.path()).await;
    let app = spawn_with(config.clone()).await;

    let (status, body) = app.merchant("shop", &shop_key).get("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["store"], "shop");
    assert_eq!(body["active_version"], 1, "the directory pack is version 1: {body}");

    let (status, body) = app.merchant("shop", "").get("").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("missing_key")), "{body}");
    let (status, body) = app.merchant("shop", "mk_not-a-key").get("/packs").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_key")), "{body}");

    // Another store's path and a store that does not exist look the same.
    let (status, theirs) = app.merchant("other", &shop_key).get("").await;
    assert_eq!(status, 404, "{theirs}");
    let (status, missing) = app.merchant("nowhere", &shop_key).get("").await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(theirs["error"], missing["error"]);
    let (status, _) = app.merchant("other", &shop_key).upload("?format=json", NEW_RETURNS_PACK).await;
    assert_eq!(status, 404);
    assert!(text(&app.ask_once("other", "退货运费谁出").await).contains(OTHER_RETURNS));

    // Rotation replaces the key; revocation ends every key.
    let rotated = mibot::admin::rotate_key(&config, "shop").await.unwrap().0;
    assert_eq!(app.merchant("shop", &shop_key).get("").await.0, 401);
    assert_eq!(app.merchant("shop", &rotated).get("").await.0, 200);
    assert_eq!(mibot::admin::revoke_keys(&config, "other").await.unwrap(), 1);
    assert_eq!(app.merchant("other", &other_key).get("").await.0, 401);
    app.stop().await;
}

#[tokio::test]
async fn uploads_swap_answers_live_bad_uploads_change_nothing_and_rollback_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (config, shop_key, _) = stores(dir.path()).await;
    let app = spawn_with(config.clone()).await;
    let shop = app.merchant("shop", &shop_key);

    // A conversation open across the swap gets the new answer on its next message.
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    assert!(text(&shopper.ask("a1", "退货运费谁出").await).contains(SHOP_RETURNS));

    let (status, body) = shop.upload("?format=json", NEW_RETURNS_PACK).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"]["version"], 2);
    assert!(text(&shopper.ask("a2", "退货运费谁出").await).contains("即日起所有退货"));
    // The other store is untouched.
    assert!(text(&app.ask_once("other", "退货运费谁出").await).contains(OTHER_RETURNS));

    // A pack with problems: every one listed by row and column, nothing changed.
    let broken = "question,answer,colour\n怎么退货,,red\n";
    let (status, body) = shop.upload("?format=csv", broken).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["problems"][0].as_str().unwrap().contains("unknown column \"colour\""), "{body}");
    let broken = "id,question,answer\nr,退货运费谁出,\nr,怎么开发票,可以\n";
    let (status, body) = shop.upload("", broken).await;
    assert_eq!(status, 422, "{body}");
    let problems = body["problems"].to_string();
    assert!(problems.contains(r#"row 2, id \"r\": column 'answer' is empty"#), "{body}");
    assert!(problems.contains(r#"row 3, id \"r\": duplicate id"#), "{body}");
    let (status, body) = shop.upload("?format=json", r#"{"faq": [{"id": "x", "question": "q"#).await;
    assert_eq!(status, 422);
    assert!(body["problems"][0].as_str().unwrap().starts_with("JSON, line 1"), "{body}");
    // Texts over the configured sizes are named, with their length and the setting.
    let oversized = json!({"faq": [
        {"id": "essay", "question": "退货政策全文", "answer": "退".repeat(5001)},
        {"id": "rambling", "question": "问".repeat(501), "answer": "好的"},
    ]});
    let (status, body) = shop.upload("?format=json", oversized.to_string()).await;
    assert_eq!(status, 422, "{body}");
    let problems: Vec<&str> = body["problems"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(
        problems[0],
        r#"faq #1 ("essay"): 'answer' has 5001 characters; at most 5000 are accepted (content.max_answer_chars)"#,
        "{body}"
    );
    assert!(problems[1].contains("'question' has 501 characters; at most 500"), "{body}");
    assert!(text(&shopper.ask("a3", "退货运费谁出").await).contains("即日起所有退货"));

    let (_, versions) = shop.get("/packs").await;
    assert_eq!(versions["active_version"], 2, "{versions}");
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2, "{versions}");
    let (status, one) = shop.get("/packs/2").await;
    assert_eq!(status, 200);
    assert_eq!(one["format"], "json");
    assert_eq!(one["pack"]["faq"][0]["id"], "return-shipping");
    assert_eq!(shop.get("/packs/9").await.0, 404);

    // Rollback is one call, and it is what a restart restores.
    let (status, body) = shop.post_json("/packs/1/activate", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(text(&shopper.ask("a4", "退货运费谁出").await).contains(SHOP_RETURNS));
    drop(shopper);
    app.stop().await;

    let app = spawn_with(config).await;
    let (_, versions) = app.merchant("shop", &shop_key).get("/packs").await;
    assert_eq!(versions["active_version"], 1, "{versions}");
    assert!(text(&app.ask_once("shop", "退货运费谁出").await).contains(SHOP_RETURNS));
    app.stop().await;
}

#[tokio::test]
async fn an_answer_disappears_when_its_window_ends_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (config, shop_key, _) = stores(dir.path()).await;
    let at = |s: &str| parse_instant(s).unwrap();
    let clock = Clock::manual(at("2026-11-10T12:00:00+08:00"));
    let app = spawn_with_clock(config, clock.clone()).await;
    let pack = json!({"faq": [
        {"id": "double-11", "question": "双11有什么优惠？", "similar": ["双十一活动是什么", "双11满减"],
         "answer": "双11当天全场满300减50。",
         "starts": "2026-11-11T00:00:00+08:00", "ends": "2026-11-12T00:00:00+08:00"},
        {"id": "invoice", "question": "怎么开发票？", "similar": ["可以开发票吗"], "answer": "在订单页申请发票。"}
    ]});
    let (status, body) = app.merchant("shop", &shop_key).upload("?format=json", pack.to_string()).await;
    assert_eq!(status, 201, "{body}");

    let asked = |app: &TestApp| {
        let app_addr = app.addr;
        async move {
            let mut shopper = crate::helpers::Client::connect(app_addr, "shop").await;
            shopper.hello(None).await;
            text(&shopper.ask("q", "双11有什么优惠").await).to_owned()
        }
    };
    assert!(!asked(&app).await.contains("满300减50"), "not before it starts");
    clock.set(at("2026-11-11T00:00:00+08:00"));
    assert!(asked(&app).await.contains("满300减50"));
    clock.set(Millis(at("2026-11-12T00:00:00+08:00").0 - 1));
    assert!(asked(&app).await.contains("满300减50"));
    clock.set(at("2026-11-12T00:00:00+08:00"));
    assert!(!asked(&app).await.contains("满300减50"), "gone at midnight");
    app.stop().await;
}

#[tokio::test]
async fn every_format_round_trips_and_the_examples_load() {
    let dir = tempfile::tempdir().unwrap();
    let (config, shop_key, _) = stores(dir.path()).await;
    let app = spawn_with(config).await;
    let shop = app.merchant("shop", &shop_key);

    let examples = repo().join("knowledge/examples");
    for (file, format) in [
        ("pack.json", "json"),
        ("pack.yaml", "yaml"),
        ("faq.csv", "csv"),
        ("qna.tsv", "qna-tsv"),
        ("dialogflow.csv", "dialogflow-csv"),
    ] {
        let bytes = std::fs::read(examples.join(file)).unwrap();
        let (status, body) = shop.upload(&format!("?filename={file}"), bytes).await;
        assert_eq!(status, 201, "{file}: {body}");
        assert_eq!(body["format"], format, "{file} is told by its content and name: {body}");
    }
    // The Dialogflow example (the last one loaded) has readable ids, its zh and en rows paired:
    // the English question is answered in English from the same entry as the Chinese one.
    let pack: Value = serde_json::from_str(&shop.export("json").await).unwrap();
    let ids: Vec<&str> = pack["faq"].as_array().unwrap().iter().filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(ids.len(), 6, "{pack}");
    assert!(ids.contains(&"how-soon-will-my-order-ship") && ids.contains(&"茶叶怎么保存"), "{ids:?}");
    let zh = app.ask_once("shop", "公司报销需要发票").await;
    let en = app.ask_once("shop", "do you issue invoices").await;
    assert_eq!(zh["trace"]["matched"], "can-i-get-an-invoice", "{zh}");
    assert_eq!(en["trace"]["matched"], "can-i-get-an-invoice", "{en}");
    assert!(zh["text"].as_str().unwrap().starts_with("可以。下单时"), "{zh}");
    assert!(en["text"].as_str().unwrap().starts_with("Yes. Enter the invoice title"), "{en}");

    // Exported, uploaded and exported again: the same file, in every format.
    let (status, body) =
        shop.upload("?filename=pack.json", std::fs::read(examples.join("pack.json")).unwrap()).await;
    assert_eq!(status, 201, "{body}");
    for format in ["json", "yaml", "toml", "csv", "qna-tsv", "dialogflow-csv"] {
        let first = shop.export(format).await;
        let (status, body) = shop.upload(&format!("?format={format}"), first.clone()).await;
        assert_eq!(status, 201, "{format}: {body}\n{first}");
        assert_eq!(shop.export(format).await, first, "{format}");
    }
    app.stop().await;
}

#[tokio::test]
async fn limits_encodings_and_formats_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, shop_key, _) = stores(dir.path()).await;
    config.merchant.max_pack_bytes = 4096;
    let app = spawn_with(config).await;
    let shop = app.merchant("shop", &shop_key);

    let (status, body) = shop.upload("?format=csv", vec![b'a'; 5000]).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("pack_too_large")), "{body}");
    let (status, body) = shop.upload("?format=xlsx", "x").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unknown_format")), "{body}");
    let (status, body) = shop.upload("", "").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("empty_pack")), "{body}");

    // A spreadsheet saved by Excel on Chinese Windows is GBK: converted, and the merchant told.
    let (gbk, _, _) =
        encoding_rs::GBK.encode("问题,相似问题,答案\n怎么开发票,发票怎么申请,在订单页申请发票。\n");
    let (status, body) = shop.upload("", gbk.into_owned()).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["notes"][0].as_str().unwrap().contains("GBK"), "{body}");
    assert!(text(&app.ask_once("shop", "发票怎么申请").await).contains("在订单页申请发票"));
    let (status, _) = shop.upload("?format=csv", b"question,answer\n\xff\xfe\x00,x\n".to_vec()).await;
    assert_eq!(status, 422);
    app.stop().await;
}

#[tokio::test]
async fn query_deletes_and_notify_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (config, shop_key, _) = stores(dir.path()).await;
    let app = spawn_with(config).await;
    let shop = app.merchant("shop", &shop_key);

    let (status, body) = shop.post_json("/query", json!({"text": "发票怎么申请"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"]["kind"], "answer", "{body}");
    assert_eq!(body["trace"]["matched"], "invoice", "{body}");
    assert_eq!(body["hits"][0]["entry"], "invoice", "{body}");

    let (status, body) =
        app.merchant("shop", &shop_key).send(shop.http.delete(format!("{}/faq/invoice", shop.base))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"]["version"], 2);
    let (_, body) = shop.post_json("/query", json!({"text": "发票怎么申请"})).await;
    assert_ne!(body["trace"]["matched"], "invoice", "{body}");
    let (status, _) = shop.send(shop.http.delete(format!("{}/faq/invoice", shop.base))).await;
    assert_eq!(status, 404);

    let pack = json!({"faq": [{"id": "big-order", "question": "我想批量采购", "similar": ["大量购买有优惠吗", "企业采购"],
        "answers": ["批量采购请留下联系方式，专人稍后联系您。", "企业采购有专属优惠，客服稍后联系您。"], "notify": true}]});
    let (status, body) = shop.upload("?format=json", pack.to_string()).await;
    assert_eq!(status, 201, "{body}");
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    let reply = shopper.ask("b1", "企业采购").await;
    assert_eq!(reply["kind"], "answer", "{reply}");
    assert!(text(&reply).contains("联系"), "{reply}");
    let status = shopper.recv().await;
    assert_eq!(
        (status["status"].as_str(), status["reason"].as_str()),
        (Some("waiting_for_agent"), Some("notify_flag")),
        "{status}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cli_import_reaches_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _, _) = stores(dir.path()).await;
    config.content.reload_seconds = 1;
    let app = spawn_with(config.clone()).await;
    let file = dir.path().join("returns.json");
    std::fs::write(&file, NEW_RETURNS_PACK).unwrap();
    let (version, imported) = mibot::admin::import_pack(&config, "shop", &file, None, true).await.unwrap();
    assert_eq!(version.version, 2);
    assert_eq!(imported.format.name(), "json");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if text(&app.ask_once("shop", "退货运费谁出").await).contains("即日起所有退货") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the running server never picked up version 2");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let exported =
        mibot::admin::export_pack(&config, "shop", mibot::knowledge::formats::Format::Csv).await.unwrap();
    assert!(exported.starts_with("id,question"), "{exported}");
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = crate::helpers::spawn_app().await;
    let response = reqwest::get(format!("http://{}/api/v1/openapi.json", app.addr)).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for (path, method) in [
        ("/api/v1/stores/{store}", "get"),
        ("/api/v1/stores/{store}/packs", "get"),
        ("/api/v1/stores/{store}/packs", "post"),
        ("/api/v1/stores/{store}/packs/{version}", "get"),
        ("/api/v1/stores/{store}/packs/{version}/activate", "post"),
        ("/api/v1/stores/{store}/pack", "get"),
        ("/api/v1/stores/{store}/query", "post"),
        ("/api/v1/stores/{store}/faq/{id}", "delete"),
        ("/api/v1/stores/{store}/products/{sku}", "delete"),
        ("/api/v1/stores/{store}/conversations.csv", "get"),
        ("/api/v1/stores/{store}/actions", "get"),
        ("/api/v1/stores/{store}/actions/{name}", "put"),
        ("/api/v1/stores/{store}/actions/{name}", "delete"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not in the OpenAPI document");
        assert!(operation["responses"]["401"].is_object(), "{method} {path} documents 401");
    }
    // The start page links the pages and the API document.
    let start = reqwest::get(format!("http://{}/", app.addr)).await.unwrap();
    assert_eq!(start.status().as_u16(), 200);
    let html = start.text().await.unwrap();
    for link in ["/chat-demo?store=demo", "/console", "/dashboard", "/api/v1/openapi.json"] {
        assert!(html.contains(&format!("href=\"{link}\"")), "the start page links {link}: {html}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_store_can_override_an_intent_and_have_its_own_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    let intents = dir.path().join("intents");
    std::fs::create_dir_all(intents.join("stores/other")).unwrap();
    for entry in std::fs::read_dir(repo().join("intents")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, intents.join(path.file_name().unwrap())).unwrap();
    }
    let greeting = std::fs::read_to_string(repo().join("intents/greeting.toml")).unwrap();
    let greeting =
        greeting.replace("您好！我是星河优选的智能客服，有什么可以帮您？", "欢迎光临小店，请问想了解什么？");
    std::fs::write(intents.join("stores/other/greeting.toml"), greeting).unwrap();
    config.content.intents_dir = intents;
    // `other` answers only when it is certain and nothing else comes near: never, here.
    let mut strict = config.triage.clone();
    strict.answer_threshold = 1.0;
    strict.clarify_threshold = 0.99;
    strict.min_margin = 1.0;
    strict.lexical.answer_threshold = 1.0;
    strict.lexical.settle_threshold = 1.0;
    strict.lexical.min_margin = 1.0;
    config
        .stores
        .insert("other".into(), mibot::config::StoreSettings { triage: Some(strict), ..Default::default() });
    let app = spawn_with(config).await;

    assert!(text(&app.ask_once("other", "你好").await).contains("欢迎光临小店"));
    assert!(text(&app.ask_once("shop", "你好").await).contains("星河优选"));
    // With the default thresholds `other` answers this (see a_key_opens_only_its_own_store).
    let other = app.ask_once("other", "退货运费谁出").await;
    assert_ne!(other["kind"], "answer", "the strict store asks back instead: {other}");
    app.stop().await;
}
