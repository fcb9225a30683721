//! `mibot bench`: a WebSocket load generator for the shopper chat, and a reference ceiling.
//!
//! It opens N shopper connections to a server on this machine, drives a realistic mix of
//! messages (FAQ questions in Chinese and English, product questions, small talk, a share of
//! handoffs) flat out or at a set rate for a bounded time, and reports messages per second,
//! reply latency percentiles from an HDR histogram, errors and connections held. The same load
//! against [`echo`]'s minimal server (same tokio, axum and frame sizes, no pipeline) gives the
//! ceiling that mibot's figures are quoted against. It only ever targets loopback addresses.

pub mod echo;
pub mod servers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// What a shopper says, in rotation. Every tenth conversation asks for a person at some point.
const MIX: &[&str] = &[
    "你好",
    "退货运费谁出？",
    "how long does delivery take?",
    "X1 多少钱",
    "这款手机内存多大",
    "what colours does the X1 come in?",
    "可以开发票吗",
    "do you ship to Hong Kong?",
    "保修多久",
    "what payment methods do you accept?",
    "双十一有什么活动",
    "谢谢",
];

/// A load to drive.
#[derive(Debug, Clone)]
pub struct Load {
    /// `ws://127.0.0.1:PORT/ws/chat?store=STORE`, or several such URLs separated by commas (the
    /// nodes of a cluster): shopper `n` uses the `n`-th, round the list.
    pub url: String,
    /// Concurrent shopper connections.
    pub connections: usize,
    /// How long to send for.
    pub duration: Duration,
    /// Total messages per second to offer; `None` sends flat out (each connection waits for
    /// its reply before the next message).
    pub rate: Option<f64>,
    /// Every `handoff_every`-th conversation asks for a person after its first messages.
    pub handoff_every: usize,
    /// Messages to send instead of the built-in mix, cycled, each with a counter appended so
    /// that no message repeats (the encoder's cache never helps).
    pub messages: Option<Arc<Vec<String>>>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Messages sent.
    pub sent: u64,
    /// Replies received (bot replies to the messages sent).
    pub replies: u64,
    /// Messages acknowledged but deliberately unanswered (after a handoff).
    pub handoffs: u64,
    /// Error frames, failed connections and timeouts.
    pub errors: u64,
    /// Connections open at the end.
    pub connections_held: usize,
    /// Replies per second.
    pub messages_per_second: f64,
    /// Reply latency percentiles, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest reply.
    pub max_us: u64,
    /// Replies by what the sentence encoder contributed (`trace.semantic`): `encoded`,
    /// `cached`, `skipped` (settled without it), `shed`, `pending`, `unavailable`.
    pub semantic: BTreeMap<String, u64>,
    /// Shares of the replies, 0 to 1: decided with the semantic signal (encoded or cached),
    /// from the cache, and shed. Shedding must not pass for speed.
    pub semantic_share: f64,
    /// See `semantic_share`.
    pub cached_share: f64,
    /// See `semantic_share`.
    pub shed_share: f64,
}

/// A load that cannot be driven.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Only this machine may be targeted.
    #[error("bench only targets loopback addresses (127.0.0.0/8, localhost, [::1]), not {0:?}")]
    NotLoopback(String),
    /// No connection could be opened.
    #[error("could not connect to {url}: {reason}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// A `mibot bench` run: a load, against a given server or against servers bench starts itself.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A running server's chat URL; `None` starts `mibot serve` with the demo store.
    pub url: Option<String>,
    /// Concurrent shopper connections.
    pub connections: usize,
    /// How long to send for.
    pub duration: Duration,
    /// Total messages per second to offer; `None` sends flat out.
    pub rate: Option<f64>,
    /// Every N-th conversation asks for a person (0: none).
    pub handoff_every: usize,
    /// Also measure the echo ceiling and report mibot / echo (only with servers bench starts).
    pub echo: bool,
    /// Instead of sending, open `connections` idle shopper connections (each says hello), hold
    /// them for `duration`, and report the server's memory per connection.
    pub idle: bool,
    /// Messages to send instead of the built-in mix (see [`Load::messages`]).
    pub messages: Option<Arc<Vec<String>>>,
    /// The model directory the started server uses (so that it does not install its own).
    pub model_dir: Option<std::path::PathBuf>,
}

/// Idle shopper connections, each with a conversation open.
pub struct Idle {
    sockets: Vec<Socket>,
    /// Connections that could not be opened.
    pub failed: usize,
}

impl Idle {
    /// Connections open.
    pub fn held(&self) -> usize {
        self.sockets.len()
    }

    /// How many are still open: each is sent a ping and must not have been closed.
    pub async fn still_open(&mut self) -> usize {
        let mut open = 0;
        for socket in &mut self.sockets {
            if socket.send(Message::Ping(Default::default())).await.is_ok() {
                open += 1;
            }
        }
        open
    }
}

/// Opens `n` shopper connections to `url`, 256 at a time, each saying hello.
pub async fn open_idle(url: &str, n: usize) -> Result<Idle, BenchError> {
    ensure_loopback(url)?;
    let mut idle = Idle { sockets: Vec::with_capacity(n), failed: 0 };
    let mut left = n;
    while left > 0 {
        let batch = left.min(256);
        left -= batch;
        let opened = futures_util::future::join_all((0..batch).map(|_| open(url))).await;
        for socket in opened {
            match socket {
                Some(s) => idle.sockets.push(s),
                None => idle.failed += 1,
            }
        }
    }
    Ok(idle)
}

/// Holds `plan.connections` idle connections against a server bench starts, and reports the
/// server's resident memory per connection.
async fn hold_idle(plan: &Plan) -> anyhow::Result<Value> {
    if let Some(url) = &plan.url {
        let mut idle = open_idle(url, plan.connections).await?;
        tokio::time::sleep(plan.duration).await;
        return Ok(json!({"idle_connections": idle.still_open().await, "failed": idle.failed}));
    }
    let server = servers::Server::mibot("demo", plan.model_dir.as_deref()).await?;
    let before = process_usage(server.pid());
    let started = Instant::now();
    let mut idle = open_idle(&server.url, plan.connections).await?;
    let opening = started.elapsed().as_secs_f64();
    tokio::time::sleep(plan.duration).await;
    let held = idle.still_open().await;
    let after = process_usage(server.pid());
    drop(idle);
    server.stop().await;
    let per_connection =
        before.zip(after).map(|(b, a)| (a.rss_kib as f64 - b.rss_kib as f64) / held.max(1) as f64);
    Ok(json!({
        "idle_connections": held,
        "attempted": plan.connections,
        "seconds_to_open": opening,
        "server_rss_kib_before": before.map(|b| b.rss_kib),
        "server_rss_kib_after": after.map(|a| a.rss_kib),
        "server_kib_per_connection": per_connection,
    }))
}

impl Load {
    /// The URL shopper `n` connects to.
    fn url_for(&self, n: usize) -> &str {
        let count = self.url.split(',').count().max(1);
        self.url.split(',').nth(n % count).unwrap_or(&self.url)
    }
}

impl Plan {
    fn load(&self, url: String) -> Load {
        Load {
            url,
            connections: self.connections,
            duration: self.duration,
            rate: self.rate,
            handoff_every: self.handoff_every,
            messages: self.messages.clone(),
        }
    }
}

/// Carries out a plan: the figures, with the started server's RSS and CPU and, with `echo`,
/// the ceiling and the ratio.
pub async fn run(plan: &Plan) -> anyhow::Result<Value> {
    if plan.idle {
        return hold_idle(plan).await;
    }
    if let Some(url) = &plan.url {
        return Ok(json!({ "mibot": drive(&plan.load(url.clone())).await? }));
    }
    let starting = Instant::now();
    let server = servers::Server::mibot("demo", plan.model_dir.as_deref()).await?;
    let readiness = server.readiness().await;
    let seconds_to_ready = starting.elapsed().as_secs_f64();
    let before = process_usage(server.pid());
    let started = Instant::now();
    let measured = drive(&plan.load(server.url.clone())).await?;
    let wall = started.elapsed().as_secs_f64();
    let after = process_usage(server.pid());
    let encoder = server.readiness().await.get("encoder_stats").cloned();
    server.stop().await;
    let cpu = before.zip(after).map(|(b, a)| 100.0 * (a.cpu_seconds - b.cpu_seconds) / wall);
    let mut report = json!({
        "mibot": measured,
        "server_rss_kib": after.map(|a| a.rss_kib),
        "server_rss_kib_before_load": before.map(|b| b.rss_kib),
        "server_cpu_percent": cpu,
        "server_ready": readiness,
        "server_seconds_to_ready": seconds_to_ready,
        "server_encoder": encoder,
    });
    if plan.echo {
        let echo_server = servers::Server::echo().await?;
        let ceiling = drive(&plan.load(echo_server.url.clone())).await?;
        echo_server.stop().await;
        report["ratio"] = json!(measured.messages_per_second / ceiling.messages_per_second.max(1e-9));
        report["echo"] = serde_json::to_value(ceiling)?;
    }
    Ok(report)
}

/// Checks that `url` points at this machine.
pub fn ensure_loopback(url: &str) -> Result<(), BenchError> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?']).next())
        .map(|authority| match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned(),
        })
        .unwrap_or_default();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(BenchError::NotLoopback(url.to_owned())) }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    replies: u64,
    handoffs: u64,
    errors: u64,
    held: bool,
    semantic: BTreeMap<String, u64>,
}

/// Drives `load` and measures it.
pub async fn drive(load: &Load) -> Result<Measured, BenchError> {
    // One probe connection to each URL first, so a wrong URL is one clear error, not N timeouts.
    for url in load.url.split(',') {
        ensure_loopback(url)?;
        connect(url).await.map_err(|e| BenchError::Connect { url: url.to_owned(), reason: e.to_string() })?;
    }
    let started = Instant::now();
    let deadline = started + load.duration;
    let interval = load.rate.map(|r| Duration::from_secs_f64(load.connections as f64 / r.max(0.001)));
    let tasks: Vec<_> = (0..load.connections)
        .map(|n| {
            let load = load.clone();
            tokio::spawn(async move { shopper(n, &load, deadline, interval).await })
        })
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut tally = Tally::default();
    let mut held = 0;
    for task in tasks {
        let Ok((t, h)) = task.await else {
            tally.errors += 1;
            continue;
        };
        tally.sent += t.sent;
        tally.replies += t.replies;
        tally.handoffs += t.handoffs;
        tally.errors += t.errors;
        for (k, v) in t.semantic {
            *tally.semantic.entry(k).or_default() += v;
        }
        held += usize::from(t.held);
        let _ = histogram.add(&h);
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let count = |k: &str| tally.semantic.get(k).copied().unwrap_or(0) as f64;
    let share = |n: f64| n / (tally.replies.max(1) as f64);
    Ok(Measured {
        semantic_share: share(count("encoded") + count("cached")),
        cached_share: share(count("cached")),
        shed_share: share(count("shed")),
        semantic: tally.semantic.clone(),
        sent: tally.sent,
        replies: tally.replies,
        handoffs: tally.handoffs,
        errors: tally.errors,
        connections_held: held,
        messages_per_second: tally.replies as f64 / elapsed,
        p50_us: histogram.value_at_quantile(0.5),
        p90_us: histogram.value_at_quantile(0.9),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    })
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One shopper: a conversation, message after message, a new conversation after a handoff.
async fn shopper(
    n: usize,
    load: &Load,
    deadline: Instant,
    interval: Option<Duration>,
) -> (Tally, Histogram<u64>) {
    let mut tally = Tally::default();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut conversation = 0usize;
    let mut sent_total = 0usize;
    // At a set rate the shoppers' sends are spread evenly over the interval, not all at once:
    // real shoppers do not type in step, and synchronized bursts would measure the burst.
    let phase = interval.map(|i| i.mul_f64(n as f64 / load.connections.max(1) as f64)).unwrap_or_default();
    let mut next_send = Instant::now() + phase;
    // A conversation that ends (handoff, error) is replaced at once, so every shopper holds a
    // connection when the time is up unless it could not connect.
    'conversations: loop {
        let Some(mut socket) = open(load.url_for(n)).await else {
            tally.errors += 1;
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        conversation += 1;
        let asks_for_human = load.handoff_every > 0 && (n + conversation).is_multiple_of(load.handoff_every);
        for turn in 0usize.. {
            if Instant::now() >= deadline {
                tally.held = true;
                let _ = socket.close(None).await;
                break 'conversations;
            }
            if let Some(interval) = interval {
                tokio::time::sleep_until(next_send.into()).await;
                next_send += interval;
            }
            let text = match &load.messages {
                _ if asks_for_human && turn == 3 => "转人工".to_owned(),
                // Never the same text twice: shopper n's k-th message ends in its own counter.
                Some(lines) => {
                    format!("{} {}", lines[(n * 7919 + sent_total) % lines.len()], n * 1_000_000 + sent_total)
                }
                None => MIX[(n + turn) % MIX.len()].to_owned(),
            };
            sent_total += 1;
            let id = format!("b{n}-{conversation}-{turn}");
            let sent_at = Instant::now();
            let frame = json!({"type": "message", "id": id, "text": text}).to_string();
            if socket.send(Message::text(frame)).await.is_err() {
                tally.errors += 1;
                continue 'conversations;
            }
            tally.sent += 1;
            match await_reply(&mut socket, &id).await {
                Some((kind, semantic)) => {
                    if let Some(semantic) = semantic {
                        *tally.semantic.entry(semantic).or_default() += 1;
                    }
                    let micros = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = histogram.record(micros.max(1));
                    tally.replies += 1;
                    if kind == "handoff" {
                        tally.handoffs += 1;
                        let _ = socket.close(None).await;
                        continue 'conversations;
                    }
                }
                None => {
                    tally.errors += 1;
                    continue 'conversations;
                }
            }
        }
    }
    (tally, histogram)
}

async fn connect(
    url: &str,
) -> Result<
    (Socket, tokio_tungstenite::tungstenite::handshake::client::Response),
    tokio_tungstenite::tungstenite::Error,
> {
    tokio_tungstenite::connect_async_with_config(url, None, true).await
}

async fn open(url: &str) -> Option<Socket> {
    let (mut socket, _) = connect(url).await.ok()?;
    socket.send(Message::text(r#"{"type":"hello"}"#)).await.ok()?;
    let welcome = next_json(&mut socket).await?;
    (welcome["type"] == "welcome").then_some(socket)
}

/// Waits for the reply to `id`: its `kind` and its trace's `semantic`, or `None` on an error
/// frame, a close or a timeout.
async fn await_reply(socket: &mut Socket, id: &str) -> Option<(String, Option<String>)> {
    loop {
        let frame = next_json(socket).await?;
        match frame["type"].as_str() {
            Some("reply") if frame["in_reply_to"] == id => {
                let semantic = frame["trace"]["semantic"].as_str().map(str::to_owned);
                return frame["kind"].as_str().map(|k| (k.to_owned(), semantic));
            }
            Some("error") => return None,
            _ => {}
        }
    }
}

async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.ok()??.ok()?;
        match message {
            Message::Text(text) => return serde_json::from_str(&text).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Resident memory and CPU seconds of a process, from `/proc` (Linux).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcessUsage {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

/// Reads `pid`'s usage; `None` where `/proc` is not available.
pub fn process_usage(pid: u32) -> Option<ProcessUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every mainstream architecture.
    Some(ProcessUsage { rss_kib, cpu_seconds: ticks as f64 / 100.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_a_target() {
        for ok in [
            "ws://127.0.0.1:8080/ws/chat?store=demo",
            "ws://localhost:1/x",
            "ws://[::1]:9/ws",
            "ws://127.3.2.1/x",
        ] {
            assert!(ensure_loopback(ok).is_ok(), "{ok}");
        }
        for bad in ["ws://10.0.0.1:8080/ws", "ws://example.com/ws", "ws://192.168.1.2:80", "nonsense"] {
            assert!(ensure_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_of_this_process_is_readable() {
        let usage = process_usage(std::process::id()).expect("/proc is available on Linux");
        assert!(usage.rss_kib > 0);
    }
}
