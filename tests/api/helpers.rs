//! `spawn_app()` and a small WebSocket client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mibot::config::{Config, EncoderConfig};
use mibot::domain::Clock;
use mibot::encoder::{Availability, Encoder, EncoderSlot};
use mibot::library::Library;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for a frame before failing.
const FRAME_WAIT: Duration = Duration::from_secs(15);

/// A running server.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) library: Arc<Library>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the tests' model is installed, once for every test and run: `target/mibot-model`.
pub(crate) fn model_dir() -> PathBuf {
    std::env::var_os("MIBOT_TEST_MODEL_DIR").map_or_else(|| repo().join("target/mibot-model"), PathBuf::from)
}

/// The encoder settings of the tests' shared encoder: a budget long enough that a test's message
/// is never shed on a busy machine (the shedding test makes its own encoder).
pub(crate) fn test_encoder_config() -> EncoderConfig {
    EncoderConfig { model_dir: Some(model_dir()), budget_ms: 20_000, threads: 2, ..EncoderConfig::default() }
}

/// One encoder for every server a test binary starts: loading the model once, not per test.
pub(crate) fn shared_encoder() -> EncoderSlot {
    static ENCODER: OnceLock<EncoderSlot> = OnceLock::new();
    ENCODER
        .get_or_init(|| {
            let config = test_encoder_config();
            let encoder = Encoder::start(&config, &model_dir()).unwrap_or_else(|e| {
                panic!("the test model in {} installs and loads: {e}", model_dir().display())
            });
            EncoderSlot::fixed(Availability::Ready(encoder))
        })
        .clone()
}

/// The test configuration: fixture stores, the repo's intents, data in `data_dir`.
pub(crate) fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.data_dir = data_dir.to_path_buf();
    config.content.intents_dir = repo().join("intents");
    config.content.knowledge_dir = repo().join("tests/fixtures/knowledge");
    config.chat.max_message_chars = 200;
    config.chat.max_frame_bytes = 4096;
    config.encoder = test_encoder_config();
    // Agents are at work whenever the tests run.
    config.agents.business_hours = "00:00-24:00".into();
    config
}

/// Starts a server with a fresh data directory.
pub(crate) async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_with(test_config(dir.path())).await;
    app._dir = Some(dir);
    app
}

/// Starts a server with `config`, on port 0.
pub(crate) async fn spawn_with(config: Config) -> TestApp {
    spawn_with_clock(config, Clock::system()).await
}

/// Starts a server whose "now" is `clock`.
pub(crate) async fn spawn_with_clock(config: Config, clock: Clock) -> TestApp {
    spawn_with_encoder(config, clock, shared_encoder()).await
}

/// Starts a server with its own encoder slot, and waits until every store it serves has its
/// semantic index (when the encoder runs), so that answers do not change mid-test.
pub(crate) async fn spawn_with_encoder(config: Config, clock: Clock, encoder: EncoderSlot) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = mibot::app::build_state_with(config, encoder).await.expect("app builds").with_clock(clock);
    let library = Arc::clone(&state.library);
    wait_for_semantic(&library).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(mibot::app::run(listener, state, async move {
        let _ = stopped.await;
    }));
    TestApp { addr, library, stop: Some(stop), handle: Some(handle), _dir: None }
}

/// Waits (up to five minutes: the demo store's catalogue is large for a debug build on a busy
/// machine) until every served store's knowledge has its semantic index, when the library's
/// encoder runs.
pub(crate) async fn wait_for_semantic(library: &Library) {
    if library.encoder().get().is_none() {
        return;
    }
    let started = std::time::Instant::now();
    loop {
        let stores = library.stores();
        if stores.iter().all(|s| library.semantic_ready(s) == Some(true)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the stores' semantic indexes were not ready in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    /// Opens a shopper connection to `store`.
    pub(crate) async fn connect(&self, store: &str) -> Client {
        Client::connect(self.addr, store).await
    }

    /// The merchant API of `store`, with `key`.
    pub(crate) fn merchant(&self, store: &str, key: &str) -> Merchant {
        Merchant {
            base: format!("http://{}/api/v1/stores/{store}", self.addr),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Asks one question in a new conversation and returns the reply.
    pub(crate) async fn ask_once(&self, store: &str, text: &str) -> Value {
        let mut shopper = self.connect(store).await;
        shopper.hello(None).await;
        shopper.ask("q", text).await
    }

    /// Shuts the server down gracefully and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().expect("server shuts down cleanly");
        }
    }
}

/// A shopper's WebSocket client.
pub(crate) struct Client {
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Opens a shopper connection to `store` on the server at `addr`.
    pub(crate) async fn connect(addr: SocketAddr, store: &str) -> Client {
        let url = format!("ws://{addr}/ws/chat?store={store}");
        let (ws, _) = connect_async(url).await.expect("websocket connects");
        Client { ws }
    }

    pub(crate) async fn send(&mut self, value: Value) {
        self.ws.send(Message::text(value.to_string())).await.unwrap();
    }

    pub(crate) async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// Closes the connection.
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The next frame, which must be a JSON text frame.
    pub(crate) async fn recv(&mut self) -> Value {
        match self.next_message().await {
            Message::Text(text) => serde_json::from_str(&text).expect("server frames are JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame of any kind.
    pub(crate) async fn next_message(&mut self) -> Message {
        loop {
            let next =
                tokio::time::timeout(FRAME_WAIT, self.ws.next()).await.expect("a frame arrives in time");
            match next.expect("the connection is open").expect("the frame is readable") {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    }

    /// Says hello (optionally resuming) and returns the `welcome`.
    pub(crate) async fn hello(&mut self, resume_token: Option<&str>) -> Value {
        let mut hello = json!({"type": "hello"});
        if let Some(token) = resume_token {
            hello["resume_token"] = json!(token);
        }
        self.send(hello).await;
        let welcome = self.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        welcome
    }

    /// Sends a message and returns its `ack`.
    pub(crate) async fn message(&mut self, id: &str, text: &str) -> Value {
        self.send(json!({"type": "message", "id": id, "text": text})).await;
        // Queue updates are notices that may arrive at any time while a chat waits for a person.
        let mut ack = self.recv().await;
        while ack["type"] == "queue" {
            ack = self.recv().await;
        }
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["id"], id, "{ack}");
        ack
    }

    /// Sends a message and returns the bot's `reply` (after checking the ack).
    pub(crate) async fn ask(&mut self, id: &str, text: &str) -> Value {
        let ack = self.message(id, text).await;
        assert_eq!(ack["duplicate"], false, "{ack}");
        let reply = self.recv().await;
        assert_eq!(reply["type"], "reply", "{reply}");
        assert_eq!(reply["in_reply_to"], id, "{reply}");
        reply
    }
}

/// A merchant's HTTP client for one store.
pub(crate) struct Merchant {
    pub(crate) base: String,
    pub(crate) key: String,
    pub(crate) http: reqwest::Client,
}

impl Merchant {
    /// Sends `request` with the key and returns the status and the JSON body (or the text as a
    /// JSON string).
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(&self.key).send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub(crate) async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub(crate) async fn put_json(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body)).await
    }

    /// Uploads a pack file; `query` is e.g. `?format=csv`.
    pub(crate) async fn upload(&self, query: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
        self.send(self.http.post(format!("{}/packs{query}", self.base)).body(body.into())).await
    }

    /// The active pack, exported in `format`, as text.
    pub(crate) async fn export(&self, format: &str) -> String {
        let response = self
            .http
            .get(format!("{}/pack?format={format}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.unwrap()
    }
}

impl Client {
    /// The next frame of type `kind`, skipping others (queue updates, statuses…).
    pub(crate) async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next `status` frame whose status is `status`.
    pub(crate) async fn recv_status(&mut self, status: &str) -> Value {
        loop {
            let frame = self.recv_type("status").await;
            if frame["status"] == status {
                return frame;
            }
        }
    }
}

/// An agent's WebSocket client.
pub(crate) struct AgentClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl AgentClient {
    /// Connects and signs in; returns the client and the `welcome`.
    pub(crate) async fn login(addr: SocketAddr, token: &str, auto_assign: bool) -> (AgentClient, Value) {
        let (ws, _) = connect_async(format!("ws://{addr}/ws/agent")).await.expect("websocket connects");
        let mut agent = AgentClient { ws };
        agent.send(json!({"type": "login", "token": token, "auto_assign": auto_assign})).await;
        let welcome = agent.recv().await;
        (agent, welcome)
    }

    pub(crate) async fn send(&mut self, value: Value) {
        self.ws.send(Message::text(value.to_string())).await.unwrap();
    }

    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            let next =
                tokio::time::timeout(FRAME_WAIT, self.ws.next()).await.expect("a frame arrives in time");
            match next.expect("the connection is open").expect("the frame is readable") {
                Message::Text(text) => return serde_json::from_str(&text).expect("agent frames are JSON"),
                Message::Close(_) => panic!("the agent connection closed"),
                _ => continue,
            }
        }
    }

    /// The next frame of type `kind`, skipping queue snapshots and others.
    pub(crate) async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next queue snapshot with `n` waiting chats.
    pub(crate) async fn queue_of(&mut self, n: usize) -> Value {
        loop {
            let frame = self.recv_type("queue").await;
            if frame["waiting"].as_array().map(Vec::len) == Some(n) {
                return frame;
            }
        }
    }

    /// Every frame that arrives within `wait` (JSON frames, and `{"close": CODE}` for a close).
    pub(crate) async fn frames_for(&mut self, wait: Duration) -> Vec<Value> {
        let until = tokio::time::Instant::now() + wait;
        let mut frames = Vec::new();
        while let Ok(Some(next)) = tokio::time::timeout_at(until, self.ws.next()).await {
            match next {
                Ok(Message::Text(text)) => {
                    frames.push(serde_json::from_str(&text).expect("agent frames are JSON"))
                }
                Ok(Message::Close(frame)) => {
                    frames.push(json!({"close": frame.map(|f| u16::from(f.code))}));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        frames
    }

    /// Closes the connection.
    pub(crate) async fn disconnect(mut self) {
        let _ = self.ws.close(None).await;
    }
}
