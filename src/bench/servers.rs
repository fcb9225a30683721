//! Servers the bench starts itself: `mibot serve` with the demo store, and the echo ceiling,
//! each as a child process on a free loopback port, so their memory and CPU are theirs alone.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// A server child process, killed when dropped.
pub struct Server {
    child: Child,
    /// Its chat URL.
    pub url: String,
    data_dir: Option<PathBuf>,
    port: u16,
}

impl Server {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Starts `mibot serve` with a fresh data directory (and the model in `model_dir`); chats
    /// go to `store`.
    pub async fn mibot(store: &str, model_dir: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let data_dir = std::env::temp_dir().join(format!("mibot-bench-{}-{port}", std::process::id()));
        let mut command = Command::new(std::env::current_exe()?);
        if let Some(dir) = model_dir {
            command.env("MIBOT_ENCODER__MODEL_DIR", dir);
        }
        // bench measures how fast the server answers, from one address: no rate limits.
        for limit in ["MESSAGES_PER_CONNECTION", "MESSAGES_PER_ADDRESS", "MESSAGES_PER_STORE"] {
            command.env(format!("MIBOT_LIMITS__{limit}__PER_SECOND"), "0.0");
        }
        // Every connection comes from this machine; the process's descriptors are the bound.
        command
            .env("MIBOT_SERVER__MAX_CONNECTIONS", "1000000")
            .env("MIBOT_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "1000000");
        let child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting mibot serve")?;
        let url = format!("ws://127.0.0.1:{port}/ws/chat?store={store}");
        let server = Self { child, url, data_dir: Some(data_dir), port };
        server.ready(port).await?;
        Ok(server)
    }

    /// Starts the echo server.
    pub async fn echo() -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .args(["echo-server", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the echo server")?;
        let server =
            Self { child, url: format!("ws://127.0.0.1:{port}/ws/chat?store=echo"), data_dir: None, port };
        server.ready(port).await?;
        Ok(server)
    }

    async fn ready(&self, port: u16) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the server on port {port} did not start within a minute")
    }

    /// Waits (up to two minutes) until the server's `/readyz` says ready: the encoder running
    /// and every store's semantic index built, or the encoder known to be unavailable. Returns
    /// the last readiness report.
    pub async fn readiness(&self) -> serde_json::Value {
        let started = Instant::now();
        let mut last = serde_json::Value::Null;
        while started.elapsed() < Duration::from_secs(120) {
            if let Some(report) = get_json(self.port, "/readyz").await {
                if report["ready"] == true {
                    return report;
                }
                last = report;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        last
    }

    /// Stops the server and removes its data.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    // Bound and released at once; another process could take it in between, which on a test
    // machine's loopback is rare enough to retry by hand.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET path` on the loopback port, as JSON (a plain HTTP/1.0 exchange: the bench has no HTTP
/// client of its own).
async fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&response);
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}
