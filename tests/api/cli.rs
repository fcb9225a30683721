//! The `mibot` command as a person and a program use it: readable text by default, one JSON
//! object with `--json`, and a user's mistake printed as a message, never as a backtrace.

use std::process::{Command, Output};

fn mibot(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mibot"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MIBOT_ENCODER__MODEL_DIR", crate::helpers::model_dir())
        .env("MIBOT_STORAGE__DATA_DIR", data_dir)
        .env("RUST_BACKTRACE", "1")
        .args(args)
        .output()
        .expect("mibot runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn ask_prints_sentences_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let text = stdout(&mibot(dir.path(), &["ask", "--store", "demo", "X1运存多大"]));
    assert!(text.starts_with("mibot answers from the product catalogue:\n"), "{text}");
    assert!(text.contains("运行内存"), "{text}");
    assert!(!text.contains("Answer {") && !text.contains("source: Product"), "{text}");

    let json = stdout(&mibot(dir.path(), &["ask", "--store", "demo", "--json", "转人工"]));
    let value: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(value["decision"], "escalate", "{value}");
    assert_eq!(value["reason"], "asked_for_human", "{value}");
    assert_eq!(value["trace"]["signal"], "rule", "{value}");
}

#[test]
fn fit_questions_are_answered_from_the_catalogue_in_the_language_asked() {
    let dir = tempfile::tempdir().unwrap();
    for (question, sku, expected) in [
        ("羽绒服偏大吗 平时穿L", "NV-DJ01", "建议选大一码"),
        ("do the running shoes run small", "NV-RUN1", "true to size"),
    ] {
        let json = stdout(&mibot(dir.path(), &["ask", "--store", "demo", "--json", question]));
        let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(value["decision"], "answer", "{question}: {value}");
        assert_eq!(value["source"], "product", "{question}: {value}");
        assert_eq!(value["product"], sku, "{question}: {value}");
        let text = value["text"].as_str().unwrap();
        assert!(text.contains(expected), "{question}: {text}");
    }
}

#[test]
fn report_prints_sentences_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    stdout(&mibot(dir.path(), &["store", "create", "tea"]));
    let text = stdout(&mibot(dir.path(), &["report", "--store", "tea"]));
    assert!(text.starts_with("tea: 0 conversations, 0 shopper messages\n"), "{text}");
    assert!(text.contains("resolved by the bot: –"), "{text}");
    let json = stdout(&mibot(dir.path(), &["report", "--store", "tea", "--json"]));
    let value: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(value["sessions"], 0, "{value}");
}

#[test]
fn a_bad_pack_is_a_message_not_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("faq.csv");
    std::fs::write(
        &pack,
        "id,question,answer\r\nship,多久发货,\"当天发货\r\n次日送达\"\r\nreturns,能退吗,\r\n",
    )
    .unwrap();
    let output = mibot(dir.path(), &["pack", "validate", pack.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("row 3, id \"returns\": column 'answer' is empty"), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}
