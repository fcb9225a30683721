//! The shopper WebSocket: one task per connection, split into a reader (this task) and a
//! writer task that owns the sink. Everything else sends to the writer through a bounded
//! channel.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::AppState;
use super::{Admitted, ConnectionLimit};
use crate::domain::StoreId;
use crate::protocol::{ClientEvent, ErrorCode, ProtocolError, ServerEvent, parse_client_event};
use crate::session::{Services, Session, SessionError};

/// The WebSocket read buffer per connection.
pub(super) const READ_BUFFER: usize = 4 * 1024;

/// Query parameters of `/ws/chat`.
#[derive(Debug, Deserialize)]
pub(super) struct ChatParams {
    store: Option<String>,
}

/// Upgrades to the chat protocol.
pub(super) async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    place: Option<Extension<Arc<Admitted>>>,
    headers: axum::http::HeaderMap,
    Query(params): Query<ChatParams>,
    ws: WebSocketUpgrade,
) -> Response {
    let client = super::limits::client_address(peer.ip(), &headers, &state.config.server.trusted_proxies);
    let server = &state.config.server;
    if place.as_ref().is_some_and(|p| p.open_now() > server.max_connections - server.kept_for_staff) {
        return full();
    }
    let max = state.config.chat.max_frame_bytes;
    let connections = state.connections.clone();
    // Chat frames are small: a 4 KiB read buffer (tungstenite's default is 128 KiB) keeps an idle
    // connection at a few KiB; larger frames, up to the limit, still arrive whole.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            // The connection keeps its place among the open ones until it closes.
            connections.track_future(async move {
                serve(socket, state, params.store, client).await;
                drop(place);
            })
        })
}

/// The refusal when shoppers' share of connections is taken: the rest is kept for staff.
fn full() -> Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({
        "error": "server_full",
        "message": "too many shoppers are connected; try again in a few seconds",
    });
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, "5")], axum::Json(body))
        .into_response()
}

/// A close frame for the writer to send last.
type Close = (u16, &'static str);

async fn serve(socket: WebSocket, state: AppState, store: Option<String>, peer: IpAddr) {
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel::<ServerEvent>(64);
    let (close, close_rx) = oneshot::channel::<Close>();
    let ping_every = Duration::from_secs(state.config.chat.ping_seconds);
    let writer = tokio::spawn(write_frames(sink, out_rx, close_rx, ping_every));

    let served =
        store.as_deref().and_then(|s| StoreId::parse(s).ok()).filter(|id| state.library.get(id).is_some());
    let Some(store_id) = served else {
        let shown = store.unwrap_or_default();
        let error =
            ProtocolError::new(ErrorCode::UnknownStore, format!("no store named {shown:?} is served here"));
        let _ = out.send(error.into()).await;
        let _ = close.send((close_code::POLICY, "unknown store"));
        drop(out);
        let _ = writer.await;
        return;
    };

    let services = Services {
        library: Arc::clone(&state.library),
        desk: Arc::clone(&state.desk),
        store: Arc::clone(&state.store),
        insights: Arc::clone(&state.insights),
        config: Arc::clone(&state.config),
        clock: state.clock.clone(),
        metrics: Arc::clone(&state.metrics),
        cluster: state.cluster.clone(),
        actions: Arc::clone(&state.actions),
    };
    let mut own_limit = state.limits.connection();
    let mut session = Session::new(store_id.clone(), services, out.clone());
    let chat = &state.config.chat;
    let hello_by = Instant::now() + Duration::from_secs(chat.hello_timeout_seconds);
    let idle = Duration::from_secs(chat.idle_timeout_seconds);
    let close_with = loop {
        let deadline =
            if session.started() { Instant::now() + idle } else { hello_by.min(Instant::now() + idle) };
        let frame = tokio::select! {
            () = state.shutdown.cancelled() => break Some((close_code::AWAY, "server shutting down")),
            () = tokio::time::sleep_until(deadline) => {
                break Some(if session.started() {
                    (close_code::POLICY, "nothing heard for too long")
                } else {
                    (close_code::POLICY, "no hello in time")
                });
            }
            frame = stream.next() => frame,
        };
        let result = match frame {
            None | Some(Ok(Message::Close(_))) => break None,
            Some(Ok(Message::Text(text))) => match limit(&state, &mut own_limit, peer, None).await {
                Err(error) => Err(error.into()),
                Ok(()) => match parse_client_event(&text) {
                    Ok(event @ ClientEvent::Message { .. }) => {
                        match limit(&state, &mut own_limit, peer, Some(&store_id)).await {
                            Ok(()) => session.handle(event).await,
                            Err(error) => Err(error.into()),
                        }
                    }
                    Ok(event) => session.handle(event).await,
                    Err(error) => Err(error.into()),
                },
            },
            Some(Ok(Message::Binary(_))) => match limit(&state, &mut own_limit, peer, None).await {
                Err(_) => {
                    Err(ProtocolError::new(ErrorCode::RateLimited, "too many frames; slow down").into())
                }
                Ok(()) => Err(ProtocolError::new(
                    ErrorCode::BinaryNotSupported,
                    "binary frames are not part of the protocol; send JSON text frames",
                )
                .into()),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            Some(Err(error)) => {
                // Oversized frames and broken framing: the stream cannot be trusted any more.
                tracing::debug!(%error, "websocket read failed");
                break Some(close_for(error));
            }
        };
        let error = match result {
            Ok(()) => continue,
            Err(SessionError::Protocol(error)) => error,
            Err(SessionError::Store(error)) => {
                tracing::error!(error = %error, "storage failed while handling a shopper frame");
                ProtocolError::new(
                    ErrorCode::Unavailable,
                    "the message could not be saved; nothing was acknowledged, please send it again",
                )
            }
            Err(SessionError::Reply(error)) => {
                tracing::error!(error = %error, "storage failed while storing a bot reply");
                ProtocolError::new(
                    ErrorCode::Unavailable,
                    "your message was received and saved, but no reply could be given right now; please ask again",
                )
            }
            Err(SessionError::Disconnected) => break None,
        };
        if out.send(error.into()).await.is_err() {
            break None;
        }
    };
    if let Some(frame) = close_with {
        let _ = close.send(frame);
    }
    // The desk holds a sender for this connection; the writer ends once every sender is gone.
    session.finish().await;
    drop((session, out));
    let _ = writer.await;
}

/// Takes one frame from the connection's and the address's limits, or, with `store`, one
/// message from the store's; the error says which limit and when to send again.
async fn limit(
    state: &AppState,
    own: &mut ConnectionLimit,
    peer: IpAddr,
    store: Option<&StoreId>,
) -> Result<(), ProtocolError> {
    let taken = match store {
        None => match own.take() {
            Ok(()) => state.limits.address(peer).await,
            Err(limited) => Err(limited),
        },
        Some(store) => state.limits.store(store).await,
    };
    taken.map_err(|limited| {
        ProtocolError::new(ErrorCode::RateLimited, limited.explain())
            .with_retry_after(limited.retry_after().as_millis().try_into().unwrap_or(u64::MAX).max(1))
    })
}

/// The close frame for a stream that broke: 1009 for a frame over the limit, 1007 for text
/// that is not UTF-8, 1002 for anything else the protocol forbids (bad opcodes, unmasked frames).
fn close_for(error: axum::Error) -> Close {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match error.into_inner().downcast::<WsError>().map(|e| *e) {
        Ok(WsError::Capacity(_)) => (close_code::SIZE, "frame too large"),
        Ok(WsError::Utf8(_)) => (close_code::INVALID, "a text frame that is not UTF-8"),
        _ => (close_code::PROTOCOL, "malformed frame"),
    }
}

/// Sends events in order, then the close frame if one is asked for. Events already queued go
/// out before the close frame. Pings go out every `ping_every`.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut events: mpsc::Receiver<ServerEvent>,
    mut close: oneshot::Receiver<Close>,
    ping_every: Duration,
) {
    // A ping every so often, which a live client answers by itself: a connection that is gone
    // without a word is noticed by the reader's idle timeout.
    let mut pings = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let close_frame = loop {
        let event = tokio::select! {
            biased;
            _ = pings.tick() => {
                if sink.send(Message::Ping(axum::body::Bytes::new())).await.is_err() {
                    return;
                }
                continue;
            }
            event = events.recv() => match event {
                Some(event) => event,
                None => break close.try_recv().ok(),
            },
            frame = &mut close => {
                while let Ok(event) = events.try_recv() {
                    if !send_event(&mut sink, &event).await {
                        return;
                    }
                }
                break frame.ok();
            }
        };
        if !send_event(&mut sink, &event).await {
            return;
        }
    };
    if let Some((code, reason)) = close_frame {
        let reason = Utf8Bytes::from_static(reason);
        let _ = sink.send(Message::Close(Some(CloseFrame { code, reason }))).await;
    }
    let _ = sink.close().await;
}

/// Sends one event; false when the connection is gone.
async fn send_event(sink: &mut SplitSink<WebSocket, Message>, event: &ServerEvent) -> bool {
    match serde_json::to_string(event) {
        Ok(json) => sink.send(Message::Text(Utf8Bytes::from(json))).await.is_ok(),
        Err(error) => {
            tracing::error!(%error, "could not encode a server event");
            true
        }
    }
}
