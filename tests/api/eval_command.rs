//! `mibot eval` run as a real process on a small fixture with known results.

use std::process::Command;

fn eval(extra: &[&str]) -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(env!("CARGO_BIN_EXE_mibot"))
        .current_dir(root)
        .env("MIBOT_ENCODER__MODEL_DIR", crate::helpers::model_dir())
        .args([
            "eval",
            "--train",
            "tests/fixtures/eval/train.jsonl",
            "--test",
            "tests/fixtures/eval/test.jsonl",
        ])
        .args(extra)
        .output()
        .expect("mibot runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last = stdout.lines().last().expect("some output");
    serde_json::from_str(last).expect("the last line is one JSON object")
}

#[test]
fn eval_reports_exact_counts_on_a_fixture() {
    let report = eval(&[]);
    assert_eq!(report["n_test"], 6);
    assert_eq!(report["top1_accuracy"], 100.0);
    assert_eq!(report["inscope_accuracy"], 100.0);
    assert_eq!(report["oos_recall"], 100.0);
    assert_eq!(report["clarify_rate"], 0.0);
    assert_eq!(report["macro_f1"], 100.0);
    for key in ["train_seconds", "p50_us", "p99_us"] {
        assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
    }
}

#[test]
fn eval_calibrates_on_val_and_rejects_bad_files() {
    let report = eval(&["--val", "tests/fixtures/eval/test.jsonl"]);
    assert_eq!(report["n_test"], 6);
    assert!(report["fusion"]["classifier_weight"].as_f64().is_some());

    let output = Command::new(env!("CARGO_BIN_EXE_mibot"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MIBOT_ENCODER__MODEL_DIR", crate::helpers::model_dir())
        .args(["eval", "--train", "Cargo.toml", "--test", "tests/fixtures/eval/test.jsonl"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Cargo.toml line 1"), "{stderr}");
}
