//! End-to-end tests: the real server on port 0, real SQLite, real WebSockets.

mod bad_input;
mod chat;
mod helpers;
mod restart;
