//! Accepting connections, within bounds: at most `server.max_connections` open at once and
//! `server.max_connections_per_address` from one address, each connection's headers within
//! `server.header_timeout_seconds`. A connection over a bound gets `503` and is closed at once,
//! so that no client can take every file descriptor, and `/healthz` keeps answering.
//!
//! A WebSocket keeps its place until it closes: the place travels with the request
//! ([`Admitted`]) into the upgrade.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::limits::address_key;
use crate::config::ServerConfig;

/// How long a refusal may take to go out.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// What every refused connection is sent.
fn refusal() -> String {
    let body =
        r#"{"error":"server_full","message":"too many connections are open; try again in a few seconds"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Connections open now, in total and by address.
#[derive(Debug, Default)]
pub struct Open {
    by_address: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Open {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.by_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connections open now.
    pub fn total(&self) -> usize {
        self.lock().0
    }

    /// A place for a connection from `peer`, if both bounds allow it.
    fn admit(self: &Arc<Self>, peer: IpAddr, config: &ServerConfig) -> Option<Arc<Admitted>> {
        let key = address_key(peer);
        // A trusted proxy carries many clients: only the total bounds it.
        let proxy = config.trusted_proxies.iter().any(|p| p.to_canonical() == peer.to_canonical());
        let mut guard = self.lock();
        let (total, by_address) = &mut *guard;
        let mine = by_address.get(&key).copied().unwrap_or(0);
        if *total >= config.max_connections || (!proxy && mine >= config.max_connections_per_address) {
            return None;
        }
        *total += 1;
        by_address.insert(key, mine + 1);
        Some(Arc::new(Admitted { open: Arc::clone(self), key }))
    }
}

/// A connection's place among the open ones; given back when the last holder drops it.
#[derive(Debug)]
pub struct Admitted {
    open: Arc<Open>,
    key: IpAddr,
}

impl Admitted {
    /// Connections open now, this one included.
    pub fn open_now(&self) -> usize {
        self.open.total()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut guard = self.open.lock();
        let (total, by_address) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(count) = by_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&self.key);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets open requests finish
/// (upgraded WebSockets are closed by their own tasks).
pub async fn serve(listener: TcpListener, router: Router, config: ServerConfig, shutdown: CancellationToken) {
    let open = Arc::new(Open::default());
    let config = Arc::new(config);
    let requests = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to close.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = open.admit(peer.ip(), &config) else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        requests.spawn(connection(
            stream,
            peer,
            admitted,
            router.clone(),
            Arc::clone(&config),
            shutdown.clone(),
        ));
    }
    requests.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), requests.wait()).await;
}

/// Serves one connection's requests (and hands an upgrade over with its place).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Arc<Admitted>,
    router: Router,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(Arc::clone(&admitted));
        let mut router = router.clone();
        async move {
            Ok::<_, Infallible>(
                tower_service::Service::call(&mut router, request).await.unwrap_or_else(|e| match e {}),
            )
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_timeout_seconds))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::trace!(%error, "a connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Tells a connection over a bound that the server is full, and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        stream.write_all(refusal().as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_in_total_and_by_address_and_given_back() {
        let config =
            ServerConfig { max_connections: 3, max_connections_per_address: 2, ..ServerConfig::default() };
        let open = Arc::new(Open::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = open.admit(a, &config).unwrap();
        let _second = open.admit(a, &config).unwrap();
        assert!(open.admit(a, &config).is_none(), "two from one address");
        let _third = open.admit(b, &config).unwrap();
        assert!(open.admit(b, &config).is_none(), "three in all");
        drop(first);
        assert_eq!(open.total(), 2);
        assert!(open.admit(b, &config).is_some(), "a place given back is taken again");
        let refusal = refusal();
        let (head, body) = refusal.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())), "{refusal}");
    }
}
