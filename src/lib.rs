//! mibot: a customer-service assistant for online stores.
//!
//! A shopper's message travels, one module each:
//!
//! [`gateway`] (WebSocket, parsing into [`protocol`] and [`domain`] types) →
//! [`session`] (conversation state, acknowledgement, storage) →
//! [`triage`] (the pure decision, using [`intents`] and [`knowledge`], and the message's
//! embedding from the [`encoder`]) →
//! [`escalation`] to a person (the queue, and the agents who take chats from it),
//! with [`store`] underneath. [`text`] is the shared analysis of Chinese and English;
//! [`app`] builds everything from [`config`] and runs it; [`eval`] measures understanding on
//! labelled data through the same triage, and [`bench`] measures throughput and latency under load.
//! Beside the path, [`insight`] measures how the bot does and [`alerts`] watches for spikes.

pub mod actions;
pub mod admin;
pub mod alerts;
pub mod app;
pub mod bench;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod encoder;
pub mod escalation;
pub mod eval;
pub mod gateway;
pub mod ids;
pub mod insight;
pub mod intents;
pub mod knowledge;
pub mod library;
pub mod metrics;
pub mod protocol;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod triage;
