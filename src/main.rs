//! The `mibot` command: parses the command line, loads config, starts logging, runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use mibot::config::{Config, ContentConfig};
use mibot::domain::{Millis, StoreId};
use mibot::intents::IntentSet;
use mibot::knowledge::KnowledgeBase;
use mibot::text::Analyzer;

#[derive(Parser)]
#[command(name = "mibot", version, about = "A customer-service assistant for online stores")]
struct Cli {
    /// A TOML config file (see config/default.toml); MIBOT_* variables override it.
    #[arg(long, global = true, env = "MIBOT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve shoppers (by default the demo store on 127.0.0.1:8080, data in ./data).
    Serve {
        /// Address to listen on, e.g. 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Directory for the database and indexes.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Measure understanding on labelled JSON lines ({"text", "intent"}; intent "oos" = no
    /// match). The last line of output is a JSON object with the figures.
    Eval {
        /// Training examples: each intent becomes a knowledge entry.
        #[arg(long, conflicts_with = "store", required_unless_present = "store")]
        train: Option<PathBuf>,
        /// Evaluate a served store's own packs instead; labels are FAQ ids, `intent:NAME`,
        /// `product:SKU` or `oos`.
        #[arg(long)]
        store: Option<String>,
        /// Test queries.
        #[arg(long)]
        test: PathBuf,
        /// Validation queries, to fit the confidence and thresholds on (never the test set).
        #[arg(long)]
        val: Option<PathBuf>,
    },
    /// Drive shopper load against a server on this machine and report throughput and latency.
    Bench {
        /// A running server's chat URL (loopback only). Without it, bench starts
        /// `mibot serve` with the demo store itself.
        #[arg(long)]
        url: Option<String>,
        /// Concurrent shopper connections.
        #[arg(long, default_value_t = 20)]
        connections: usize,
        /// How long to send for, in seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Messages per second to offer in total; flat out when not given.
        #[arg(long)]
        rate: Option<f64>,
        /// Every N-th conversation asks for a person (0: none).
        #[arg(long, default_value_t = 10)]
        handoff_every: usize,
        /// Also measure the echo ceiling with the same load and print mibot / echo.
        #[arg(long)]
        echo: bool,
    },
    /// The bench's reference ceiling: the chat protocol with no pipeline behind it.
    #[command(hide = true)]
    EchoServer {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Show what the bot would answer to a question, with the decision's trace.
    Ask {
        /// The store to ask.
        #[arg(long, default_value = "demo")]
        store: String,
        /// The shopper's question.
        question: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mibot::telemetry::init();
    let mut config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { listen, data_dir } => {
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            if let Some(dir) = data_dir {
                config.storage.data_dir = dir;
            }
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("binding {}", config.server.listen))?;
            let state = mibot::app::build_state(config).await?;
            mibot::app::run(listener, state, shutdown_signal()).await
        }
        Command::Eval { train, store, test, val } => {
            let triage = config.triage.clone();
            let content = config.content.clone();
            let report = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let test = mibot::eval::read_examples(&test)?;
                let val = val.as_deref().map(mibot::eval::read_examples).transpose()?;
                match (train, store) {
                    (Some(train), _) => {
                        mibot::eval::run(&mibot::eval::read_examples(&train)?, &test, val.as_deref(), &triage)
                    }
                    (None, Some(store)) => {
                        let started = std::time::Instant::now();
                        let kb = load_store(&content, &store)?;
                        let seconds = started.elapsed().as_secs_f64();
                        Ok(mibot::eval::evaluate(&kb, seconds, &test, val.as_deref(), &triage))
                    }
                    (None, None) => anyhow::bail!("give --train or --store"),
                }
            })
            .await??;
            println!(
                "in-scope accuracy {:.2}% (top-1 {:.2}%), oos recall {:.2}%, clarify {:.2}%, macro-F1 {:.2}",
                report.inscope_accuracy,
                report.top1_accuracy,
                report.oos_recall,
                report.clarify_rate,
                report.macro_f1
            );
            println!(
                "built in {:.2} s; decision p50 {:.1} µs, p99 {:.1} µs; answer threshold {}, margin {}",
                report.train_seconds,
                report.p50_us,
                report.p99_us,
                report.answer_threshold,
                report.min_margin
            );
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Bench { url, connections, seconds, rate, handoff_every, echo } => {
            let duration = std::time::Duration::from_secs_f64(seconds.max(0.1));
            let load = |url: String| mibot::bench::Load { url, connections, duration, rate, handoff_every };
            let report = match url {
                Some(url) => {
                    let measured = mibot::bench::drive(&load(url)).await?;
                    serde_json::json!({ "mibot": measured })
                }
                None => {
                    let server = mibot::bench::servers::Server::mibot("demo").await?;
                    let before = mibot::bench::process_usage(server.pid());
                    let started = std::time::Instant::now();
                    let measured = mibot::bench::drive(&load(server.url.clone())).await?;
                    let wall = started.elapsed().as_secs_f64();
                    let after = mibot::bench::process_usage(server.pid());
                    server.stop().await;
                    let cpu = before.zip(after).map(|(b, a)| 100.0 * (a.cpu_seconds - b.cpu_seconds) / wall);
                    let mut report = serde_json::json!({
                        "mibot": measured,
                        "server_rss_kib": after.map(|a| a.rss_kib),
                        "server_cpu_percent": cpu,
                    });
                    if echo {
                        let echo_server = mibot::bench::servers::Server::echo().await?;
                        let ceiling = mibot::bench::drive(&load(echo_server.url.clone())).await?;
                        echo_server.stop().await;
                        report["ratio"] = serde_json::json!(
                            measured.messages_per_second / ceiling.messages_per_second.max(1e-9)
                        );
                        report["echo"] = serde_json::to_value(ceiling)?;
                    }
                    report
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::EchoServer { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            mibot::bench::echo::run(listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::Ask { store, question } => {
            let content = config.content.clone();
            let kb = tokio::task::spawn_blocking(move || load_store(&content, &store)).await??;
            let ctx = mibot::triage::ChatContext::default();
            let triaged = mibot::triage::triage(&question, &kb, &ctx, &config.triage, Millis::now());
            println!("{:#?}\n{}", triaged.decision, serde_json::to_string_pretty(&triaged.trace)?);
            Ok(())
        }
    }
}

/// Builds one store's knowledge in memory, as `serve` builds it.
fn load_store(content: &ContentConfig, store: &str) -> anyhow::Result<KnowledgeBase> {
    let store = StoreId::parse(store)?;
    let intents = Arc::new(IntentSet::load_dir(&content.intents_dir)?);
    let kb = KnowledgeBase::load(store, &content.knowledge_dir, intents, &Analyzer::new(), None)?;
    Ok(kb)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
