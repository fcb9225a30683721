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
}

impl Server {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Starts `mibot serve` with a fresh data directory; chats go to `store`.
    pub async fn mibot(store: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let data_dir = std::env::temp_dir().join(format!("mibot-bench-{}-{port}", std::process::id()));
        let child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting mibot serve")?;
        let url = format!("ws://127.0.0.1:{port}/ws/chat?store={store}");
        let server = Self { child, url, data_dir: Some(data_dir) };
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
        let server = Self { child, url: format!("ws://127.0.0.1:{port}/ws/chat?store=echo"), data_dir: None };
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
