//! The chat widget and the agent console, end to end in headless Chromium (driven by
//! `tests/browser/e2e.mjs` with Playwright). `.ci/run` installs Chromium and Playwright.

use std::path::PathBuf;
use std::time::Duration;

use mibot::domain::{Clock, Millis};

use crate::helpers::{spawn_with, spawn_with_clock, test_config};

/// Runs a Playwright script from `tests/browser` with `args` and returns the JSON report it
/// prints last; fails clearly when Chromium or Playwright is missing.
async fn run_script(script: &str, args: &[String]) -> serde_json::Value {
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        scripts.join("node_modules/playwright-core").exists() && std::path::Path::new(&chromium).exists(),
        "browser tests need Chromium ({chromium}) and Playwright: `apt-get install chromium` and \
         `npm ci --prefix tests/browser` (bash .ci/run does both)"
    );
    let run = tokio::process::Command::new("node")
        .arg(scripts.join(script))
        .args(args)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", screenshots())
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(180), run).await.expect("the browser run ends").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from {script}\nstdout: {stdout}\nstderr: {stderr}"));
    assert_eq!(report["ok"], true, "{report}\nstderr: {stderr}");
    report
}

/// Where the browser tests save their screenshots, to be looked at after a run.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The screenshot `name` the last run saved: a real picture, far bigger than a blank page.
fn assert_screenshot(name: &str) {
    let png = std::fs::read(screenshots().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    assert!(png.len() > 10_000, "{name} is {} bytes: blank?", png.len());
}

#[tokio::test]
async fn a_shopper_in_the_widget_reaches_an_agent_in_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // Out of hours: the shopper is told to leave a message, until the agent takes the chat.
    let local_hour =
        (Millis::now().0 / 60_000 + i64::from(config.agents.utc_offset_minutes)).rem_euclid(1440) / 60;
    let opens = (local_hour + 2) % 24;
    config.agents.business_hours = format!("{opens:02}:00-{:02}:00", opens + 1);
    // The store's order system is on this machine.
    config.actions.private_targets = true;
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let token = mibot::admin::add_agent(&config, "shop", "lily", &[], Some(3)).await.unwrap().0;
    let app = spawn_with(config).await;
    let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(crate::actions::ANSWER));
    let (url, _calls) = crate::actions::order_system(mode).await;
    let (status, body) =
        app.merchant("shop", &key).put_json("/actions/order_status", serde_json::json!({"url": url})).await;
    assert_eq!(status, 200, "{body}");

    let report = run_script("e2e.mjs", &[format!("http://{}", app.addr), token]).await;
    assert_eq!(report["steps"].as_array().unwrap().len(), 10, "{report}");
    for shot in
        ["console.png", "console-zh.png", "widget.png", "widget-phone-closed.png", "widget-phone-open.png"]
    {
        assert_screenshot(shot);
    }
    // The shopper's vote and the agent's flag reached the merchant's review list.
    let (_, reviews) = app.merchant("shop", &key).get("/reviews?since=1h").await;
    let sources: Vec<&str> =
        reviews["reviews"].as_array().unwrap().iter().filter_map(|r| r["source"].as_str()).collect();
    assert!(sources.contains(&"shopper") && sources.contains(&"agent"), "{reviews}");
    app.stop().await;
}

#[tokio::test]
async fn the_dashboard_shows_the_measures_and_accepts_a_draft() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // A spike of two questions in a minute, against five quiet minutes before.
    config.alerts.check_seconds = 1;
    config.alerts.window_seconds = 60;
    config.alerts.baseline_seconds = 600;
    config.alerts.min_count = 2;
    let key = mibot::admin::create_store(&config, "shop").await.unwrap().0;
    let token = mibot::admin::add_agent(&config, "shop", "ann", &[], Some(3)).await.unwrap().0;
    let now = Millis::now();
    let clock = Clock::manual(Millis(now.0 - 5 * 60_000));
    let app = spawn_with_clock(config, clock.clone()).await;
    app.ask_once("shop", "发票怎么申请").await;
    clock.set(now);
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    shopper.ask("a", "你们支持花呗分期吗").await;
    shopper.ask("b", "能用花呗分期买吗").await;
    // Ranges end before "now": the clock moves on a second.
    clock.set(Millis(now.0 + 1000));
    let merchant = app.merchant("shop", &key);
    for _ in 0..100 {
        if merchant.get("/alerts").await.1["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let shot = screenshots().join("dashboard.png");
    let args =
        [format!("http://{}", app.addr), "shop".into(), key, "2".into(), shot.display().to_string(), token];
    run_script("dashboard.mjs", &args).await;
    // The message sent from the alert's row reached the shopper who asked.
    let notice = shopper.recv_type("store_message").await;
    assert_eq!(notice["text"], "花呗分期的问题我们正在处理，稍后回复您。", "{notice}");
    // The screenshot is a real picture: a PNG, and far bigger than a blank page compresses to.
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 20_000, "the screenshot is {} bytes: blank?", png.len());
    // The accepted draft is now an answer.
    let reply = app.ask_once("shop", "花呗可以分期吗").await;
    assert!(reply["text"].as_str().unwrap_or_default().contains("最多12期"), "{reply}");
    app.stop().await;
}
