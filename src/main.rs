//! The `mibot` command: parses the command line, loads config, starts logging, runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mibot::config::Config;
use mibot::domain::{Millis, StoreId};

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
        Command::Ask { store, question } => {
            let store = StoreId::parse(&store)?;
            let content = config.content.clone();
            let index_root = config.storage.data_dir.join("index");
            let stores = tokio::task::spawn_blocking(move || {
                mibot::app::load_knowledge(&content.intents_dir, &content.knowledge_dir, &index_root)
            })
            .await??;
            let kb = stores.get(&store).with_context(|| format!("no store named {store:?}"))?;
            let ctx = mibot::triage::ChatContext::default();
            let triaged = mibot::triage::triage(&question, kb, &ctx, &config.triage, Millis::now());
            println!("{:#?}\n{}", triaged.decision, serde_json::to_string_pretty(&triaged.trace)?);
            Ok(())
        }
    }
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
