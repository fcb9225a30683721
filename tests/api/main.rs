//! End-to-end tests: the real server on port 0, real SQLite, real WebSockets.

mod abuse;
mod actions;
mod agents;
mod alerts;
mod bad_input;
mod bench;
mod browser;
mod chat;
mod cli;
mod cluster;
mod encoder;
mod eval_command;
mod helpers;
mod insight;
mod merchants;
mod restart;
mod understanding;
