//! The agent WebSocket (`/ws/agent`): sign in with a `login` frame, then take, answer,
//! transfer and close chats ([`crate::escalation::wire`]); and the agents' HTTP endpoints
//! (`/api/v1/agent/…`, with the token as `Authorization: Bearer`). An agent only ever sees their
//! own store's chats.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::domain::{ChatStatus, ConversationId};
use crate::escalation::{AgentCommand, AgentEvent, AgentLink, DeskError};
use crate::store::AgentAccount;

/// How long a new connection may take to sign in.
const LOGIN_WAIT: Duration = Duration::from_secs(30);

/// How often a signed-in agent's token is checked again.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// What an agent whose token was revoked or replaced is told before the connection closes.
fn signed_out() -> AgentEvent {
    error("signed_out", "your sign-in token was revoked or replaced; sign in again with a current one")
}

/// How long a close frame may take to go out to a connection that stopped reading.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The agents' HTTP routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agent/me", get(me))
        .route("/api/v1/agent/queue", get(queue))
        .route("/api/v1/agent/conversations/{id}", get(conversation))
}

/// The signed-in agent, from a bearer token.
async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<AgentAccount, (StatusCode, Json<Value>)> {
    let refuse = |code: &str, message: &str| {
        (StatusCode::UNAUTHORIZED, Json(json!({"error": code, "message": message})))
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let Some(token) = token else {
        return Err(refuse("missing_token", "send the agent token as 'Authorization: Bearer <token>'"));
    };
    match state.desk.authenticate(&token).await {
        Ok(Some(agent)) => Ok(agent),
        Ok(None) => Err(refuse("invalid_token", "that agent token is not valid")),
        Err(e) => {
            tracing::error!(error = %e, "agent sign-in failed");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "unavailable", "message": "storage failed; try again"})),
            ))
        }
    }
}

type HttpResult = Result<Json<Value>, (StatusCode, Json<Value>)>;

async fn me(State(state): State<AppState>, headers: HeaderMap) -> HttpResult {
    let agent = bearer(&state, &headers).await?;
    Ok(Json(
        json!({"agent": agent.name, "store": agent.store.as_str(), "groups": agent.groups, "max_chats": agent.max_chats}),
    ))
}

async fn queue(State(state): State<AppState>, headers: HeaderMap) -> HttpResult {
    let agent = bearer(&state, &headers).await?;
    Ok(Json(json!({"waiting": state.desk.queue(&agent.store).await})))
}

async fn conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> HttpResult {
    let agent = bearer(&state, &headers).await?;
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": "no conversation with that id in your store"})),
        )
    };
    let id = uuid::Uuid::parse_str(&id).map(ConversationId).map_err(|_| not_found())?;
    match state.desk.chat(&agent.store, id).await {
        Ok(Some((summary, transcript))) => {
            Ok(Json(json!({"conversation_id": id, "summary": summary, "transcript": transcript})))
        }
        Ok(None) => Err(not_found()),
        Err(e) => {
            tracing::error!(error = %e, "reading a conversation failed");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "unavailable", "message": "storage failed; try again"})),
            ))
        }
    }
}

/// Upgrades to the agent protocol.
pub(super) async fn upgrade(
    State(state): State<AppState>,
    place: Option<axum::Extension<std::sync::Arc<super::Admitted>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let connections = state.connections.clone();
    ws.max_message_size(state.config.chat.max_frame_bytes)
        .read_buffer_size(super::chat::READ_BUFFER)
        .write_buffer_size(super::chat::READ_BUFFER)
        .on_upgrade(move |socket| {
            connections.track_future(async move {
                serve(socket, state).await;
                drop(place);
            })
        })
}

fn error(code: &str, message: impl Into<String>) -> AgentEvent {
    AgentEvent::Error { code: code.to_owned(), message: message.into() }
}

async fn serve(socket: WebSocket, state: AppState) {
    let (sink, mut stream) = socket.split();
    let (link, outbox) = AgentLink::new();
    let ping_every = Duration::from_secs(state.config.chat.ping_seconds);
    let writer = tokio::spawn(write_events(sink, outbox, link.signal(), ping_every));

    let Some((account, auto_assign, token)) = login(&state, &mut stream, &link).await else {
        drop(link);
        let _ = writer.await;
        return;
    };
    let conn = match state.desk.login(&account, auto_assign, link.clone(), state.clock.now()).await {
        Ok(conn) => conn,
        Err(e) => {
            link.send(error("unavailable", format!("signing in failed: {e}")));
            drop(link);
            let _ = writer.await;
            return;
        }
    };
    tracing::info!(store = %account.store, agent = account.name, "agent online");
    match state.insights.open_alerts(&account.store).await {
        Ok(open) => {
            for alert in &open {
                link.send(AgentEvent::Alert { alert: alert.into() });
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading open alerts failed"),
    }
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    // A console that is gone without a word (no frame, not even a pong) is signed out.
    let idle = Duration::from_secs(state.config.chat.idle_timeout_seconds);
    let mut heard = tokio::time::Instant::now();
    loop {
        let frame = tokio::select! {
            () = state.shutdown.cancelled() => break,
            () = tokio::time::sleep_until(heard + idle) => break,
            () = link.fell_behind() => break,
            () = link.ended() => {
                link.send(signed_out());
                break;
            }
            _ = recheck.tick() => {
                // A token revoked or rotated from the command line, in another process.
                match state.desk.authenticate(&token).await {
                    Ok(Some(now)) if now.store == account.store && now.name == account.name => continue,
                    Ok(_) => {
                        link.send(signed_out());
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "re-checking an agent's token failed");
                        continue;
                    }
                }
            }
            frame = stream.next() => frame,
        };
        heard = tokio::time::Instant::now();
        match frame {
            None | Some(Ok(Message::Close(_))) | Some(Err(_)) => break,
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<AgentCommand>(&text) {
                Ok(command) => {
                    if let Some(event) = handle(&state, &account, command).await {
                        link.send(event);
                    }
                }
                Err(e) => link.send(error("invalid_frame", format!("not an agent command: {e}"))),
            },
            Some(Ok(_)) => {}
        }
    }
    state.desk.logout(&account.store, &account.name, conn, state.clock.now()).await;
    tracing::info!(store = %account.store, agent = account.name, "agent offline");
    drop(link);
    let _ = writer.await;
}

/// Sends the agent's events in order until every sender is gone. A connection that falls
/// [`crate::escalation::AGENT_OUTBOX`] events behind is closed (1008) instead of buffered: the
/// console signs in again and gets the queue and its chats afresh.
async fn write_events(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbox: mpsc::Receiver<AgentEvent>,
    behind: CancellationToken,
    ping_every: Duration,
) {
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        let event = tokio::select! {
            biased;
            () = behind.cancelled() => break,
            _ = pings.tick() => {
                if sink.send(Message::Ping(axum::body::Bytes::new())).await.is_err() {
                    return;
                }
                continue;
            }
            event = outbox.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        let Ok(json) = serde_json::to_string(&event) else { continue };
        let sent = tokio::select! {
            biased;
            () = behind.cancelled() => break,
            sent = sink.send(Message::Text(Utf8Bytes::from(json))) => sent,
        };
        if sent.is_err() {
            return;
        }
    }
    if behind.is_cancelled() {
        let reason = Utf8Bytes::from_static("too far behind: sign in again");
        let close = Message::Close(Some(CloseFrame { code: close_code::POLICY, reason }));
        let _ = tokio::time::timeout(CLOSE_WAIT, sink.send(close)).await;
        return;
    }
    let _ = sink.close().await;
}

/// Waits for a valid `login` frame; tells the client why not otherwise.
async fn login(
    state: &AppState,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    events: &AgentLink,
) -> Option<(AgentAccount, bool, String)> {
    let frame = tokio::time::timeout(LOGIN_WAIT, stream.next()).await.ok()??.ok()?;
    let Message::Text(text) = frame else {
        events.send(error("login_required", "send a login frame first"));
        return None;
    };
    let Ok(AgentCommand::Login { token, auto_assign }) = serde_json::from_str::<AgentCommand>(&text) else {
        events.send(error("login_required", "the first frame must be {\"type\": \"login\", \"token\": …}"));
        return None;
    };
    match state.desk.authenticate(&token).await {
        Ok(Some(account)) => Some((account, auto_assign, token)),
        Ok(None) => {
            events.send(error("unauthorized", "that agent token is not valid"));
            None
        }
        Err(e) => {
            events.send(error("unavailable", format!("signing in failed: {e}")));
            None
        }
    }
}

async fn handle(state: &AppState, agent: &AgentAccount, command: AgentCommand) -> Option<AgentEvent> {
    let now = state.clock.now();
    let desk = &state.desk;
    let result: Result<Option<AgentEvent>, DeskError> = match command {
        AgentCommand::Login { .. } => {
            return Some(error("already_signed_in", "this connection is signed in"));
        }
        AgentCommand::Presence { online } => {
            desk.set_away(agent, !online, now).await;
            Ok(None)
        }
        AgentCommand::Claim { conversation_id } => {
            desk.claim(agent, conversation_id, now).await.map(|()| None)
        }
        AgentCommand::Reply { conversation_id, text } => {
            let text = text.trim();
            if text.is_empty() {
                return Some(error("empty_message", "the reply is empty"));
            }
            desk.reply(agent, conversation_id, text, now)
                .await
                .map(|message_id| Some(AgentEvent::Sent { conversation_id, message_id }))
        }
        AgentCommand::Transfer { conversation_id, to_agent, to_group } => {
            if to_agent.is_none() && to_group.is_none() {
                return Some(error("invalid_frame", "a transfer needs to_agent or to_group"));
            }
            desk.transfer(agent, conversation_id, to_agent.as_deref(), to_group.as_deref(), now)
                .await
                .map(|()| None)
        }
        AgentCommand::Flag { conversation_id, message_id, note } => {
            return Some(flag(state, agent, conversation_id, &message_id, note.as_deref()).await);
        }
        AgentCommand::Close { conversation_id } => {
            desk.release(agent, conversation_id, ChatStatus::Closed, now).await.map(|()| None)
        }
        AgentCommand::HandBack { conversation_id } => {
            desk.release(agent, conversation_id, ChatStatus::Bot, now).await.map(|()| None)
        }
    };
    match result {
        Ok(event) => event,
        Err(e) => Some(error(e.code(), e.to_string())),
    }
}

/// Flags a bot answer of a chat in the agent's store.
async fn flag(
    state: &AppState,
    agent: &AgentAccount,
    conversation: ConversationId,
    message: &str,
    note: Option<&str>,
) -> AgentEvent {
    let not_found = || error("not_found", "no bot reply with that id in a chat of your store");
    let Some(message) = crate::ids::decode(crate::ids::Kind::Message, message).map(crate::domain::MessageId)
    else {
        return not_found();
    };
    match state.desk.chat(&agent.store, conversation).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(e) => return error("unavailable", format!("storage failed: {e}")),
    }
    let flag = crate::store::NewFeedback {
        conversation,
        message,
        source: "agent",
        helpful: Some(false),
        note: note.map(str::trim).filter(|n| !n.is_empty()),
        author: Some(&agent.name),
        at: state.clock.now(),
    };
    match state.insights.add_feedback(flag).await {
        Ok(true) => AgentEvent::Flagged { message_id: message },
        Ok(false) => not_found(),
        Err(e) => error("unavailable", format!("storage failed: {e}")),
    }
}
