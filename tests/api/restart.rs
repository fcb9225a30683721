//! A restart keeps conversations, their state and their history.

use crate::helpers::{spawn_with, test_config};

#[tokio::test]
async fn a_restart_keeps_the_conversation_and_its_handoff() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path())).await;
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    let token = welcome["resume_token"].as_str().unwrap().to_owned();
    shopper.ask("c1", "X1 多少钱").await;
    shopper.ask("c2", "转人工").await;
    assert_eq!(shopper.recv().await["status"], "waiting_for_agent");
    app.stop().await;

    let app = spawn_with(test_config(dir.path())).await;
    let mut shopper = app.connect("shop").await;
    let resumed = shopper.hello(Some(&token)).await;
    assert_eq!(resumed["conversation_id"], welcome["conversation_id"]);
    assert_eq!(resumed["status"], "waiting_for_agent");
    assert_eq!(resumed["history"].as_array().unwrap().len(), 4, "{resumed}");
    // Still with the humans: acknowledged, stored, not answered by the bot.
    shopper.message("c3", "有人吗").await;
    shopper.message("c4", "还在吗").await;
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections_with_going_away() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with(test_config(dir.path())).await;
    let mut shopper = app.connect("shop").await;
    shopper.hello(None).await;
    let stopping = tokio::spawn(app.stop());
    match shopper.next_message().await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(shopper);
    stopping.await.unwrap();
}
