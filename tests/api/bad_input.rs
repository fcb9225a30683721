//! Bad input gets a clear error frame, and loses nothing already acknowledged.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn malformed_frames_get_error_codes_and_the_connection_stays_usable() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;

    shopper.send(json!({"type": "message", "id": "c0", "text": "hi"})).await;
    assert_eq!(shopper.recv().await["code"], "hello_required");
    let welcome = shopper.hello(None).await;
    shopper.ask("c1", "保修多久").await;

    let cases = [
        (Message::text("this is not json"), "invalid_json"),
        (Message::text(r#"{"type":"dance"}"#), "unknown_type"),
        (Message::text(r#"{"text":"no type"}"#), "unknown_type"),
        (Message::text(r#"{"type":"message","id":"c2"}"#), "invalid_frame"),
        (Message::text(r#"{"type":"message","id":"c2","text":"x","extra":1}"#), "invalid_frame"),
        (Message::text(r#"{"type":"message","id":"c2","text":"   "}"#), "empty_message"),
        (
            Message::text(json!({"type":"message","id":"c2","text":"长".repeat(201)}).to_string()),
            "message_too_long",
        ),
        (Message::text(r#"{"type":"message","id":"","text":"x"}"#), "invalid_id"),
        (Message::text(r#"{"type":"message","id":"  ","text":"x"}"#), "invalid_id"),
        (Message::text(json!({"type":"message","id":"i".repeat(129),"text":"x"}).to_string()), "invalid_id"),
        (Message::binary(vec![1u8, 2, 3]), "binary_not_supported"),
        (Message::text(r#"{"type":"hello"}"#), "already_started"),
    ];
    for (frame, code) in cases {
        shopper.send_raw(frame).await;
        let error = shopper.recv().await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| m.len() > 10), "{error}");
    }

    // Still usable, and nothing was lost.
    let reply = shopper.ask("c2", "谢谢").await;
    assert_eq!(reply["kind"], "answer");
    drop(shopper);
    let mut check = app.connect("shop").await;
    let resumed = check.hello(welcome["resume_token"].as_str()).await;
    let texts: Vec<&str> =
        resumed["history"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[0], "保修多久");
    assert_eq!(texts[2], "谢谢");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_store_is_refused_with_an_error_then_closed() {
    let app = spawn_app().await;
    for store in ["nope", "Not%20Valid", ""] {
        let mut shopper = app.connect(store).await;
        let error = shopper.recv().await;
        assert_eq!(error["code"], "unknown_store", "{error}");
        match shopper.next_message().await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Policy),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection_without_losing_earlier_messages() {
    let app = spawn_app().await;
    let mut shopper = app.connect("shop").await;
    let welcome = shopper.hello(None).await;
    shopper.ask("c1", "保修多久").await;
    let huge = json!({"type": "message", "id": "c2", "text": "x".repeat(10_000)}).to_string();
    shopper.send_raw(Message::text(huge)).await;
    match shopper.next_message().await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a close frame, got {other:?}"),
    }

    let mut again = app.connect("shop").await;
    let resumed = again.hello(welcome["resume_token"].as_str()).await;
    assert_eq!(resumed["history"][0]["text"], "保修多久");
    assert_eq!(resumed["history"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn broken_framing_closes_with_the_code_that_names_it() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let app = spawn_app().await;
    let cases = [
        (Frame::message(vec![0xffu8, 0xfe, 0x41], OpCode::Data(Data::Text), true), CloseCode::Invalid),
        (Frame::message(vec![1u8, 2], OpCode::Data(Data::Reserved(3)), true), CloseCode::Protocol),
    ];
    for (frame, code) in cases {
        let mut shopper = app.connect("shop").await;
        let welcome = shopper.hello(None).await;
        shopper.ask("c1", "保修多久").await;
        shopper.send_raw(Message::Frame(frame)).await;
        match shopper.next_message().await {
            Message::Close(Some(close)) => assert_eq!(close.code, code, "{close:?}"),
            other => panic!("expected a close frame, got {other:?}"),
        }
        let mut again = app.connect("shop").await;
        let resumed = again.hello(welcome["resume_token"].as_str()).await;
        assert_eq!(resumed["history"].as_array().unwrap().len(), 2, "the answered message was kept");
    }
    app.stop().await;
}
