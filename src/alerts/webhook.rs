//! Delivering alerts to a store's webhook: a JSON POST signed with HMAC-SHA256 over the body,
//! retried with doubling waits.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::store::Webhook;

/// The header carrying the signature: `sha256=` and the hex HMAC-SHA256 of the body, keyed
/// with the webhook's secret.
pub const SIGNATURE_HEADER: &str = "x-mibot-signature";

/// `sha256=<hex>`: the body's HMAC-SHA256 under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A new webhook secret: `whsec_` and 244 random bits in hex, made like the store's API keys.
pub fn new_secret() -> String {
    crate::domain::ApiKey::with_prefix("whsec_").0
}

/// Checks a webhook URL a merchant gives: `http` or `https`, with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("the webhook URL {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("the webhook URL must be http or https, not {}", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("the webhook URL {url:?} has no host"));
    }
    Ok(())
}

/// How delivering went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// A 2xx answer came.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
}

/// POSTs `body` to the webhook until it answers 2xx, at most `attempts` times, waiting
/// `first_wait` before the first retry and twice as long before each later one. `event` and
/// `delivery` name the event and this delivery (the same on every retry, so the receiver can
/// drop duplicates).
pub async fn deliver(
    client: &reqwest::Client,
    webhook: &Webhook,
    event: &str,
    delivery: &str,
    body: Vec<u8>,
    attempts: u32,
    first_wait: Duration,
) -> Delivery {
    let signature = sign(&webhook.secret, &body);
    let mut wait = first_wait;
    let attempts = attempts.max(1);
    for attempt in 1..=attempts {
        let sent = client
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-mibot-event", event)
            .header("x-mibot-delivery", delivery)
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                return Delivery { delivered: true, attempts: attempt };
            }
            Ok(response) => {
                tracing::warn!(url = %webhook.url, status = %response.status(), attempt, "webhook refused an alert");
            }
            Err(error) => {
                tracing::warn!(url = %webhook.url, %error, attempt, "webhook unreachable");
            }
        }
        if attempt < attempts {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    Delivery { delivered: false, attempts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_are_long_and_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), "whsec_".len() + 64);
    }

    #[test]
    fn only_http_urls_with_a_host_are_taken() {
        assert!(check_url("https://shop.example/hooks/mibot").is_ok());
        assert!(check_url("http://127.0.0.1:9000/x").is_ok());
        assert!(check_url("ftp://shop.example/").unwrap_err().contains("http or https"));
        assert!(check_url("not a url").unwrap_err().contains("not a URL"));
    }

    /// A receiver that refuses the first `refuse` requests with 503, then takes them; returns
    /// its URL and the requests' signature headers.
    async fn receiver(refuse: usize) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use axum::http::{HeaderMap, StatusCode};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let (tx, seen) = (tx.clone(), seen.clone());
                async move {
                    let signature =
                        headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let _ = tx.send(signature);
                    if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < refuse {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, rx)
    }

    #[tokio::test]
    async fn retries_until_the_receiver_takes_it() {
        let (url, mut seen) = receiver(2).await;
        let webhook = Webhook { url, secret: "s3cret".into() };
        let body = br#"{"event":"alert"}"#.to_vec();
        let done = deliver(
            &reqwest::Client::new(),
            &webhook,
            "alert",
            "1",
            body.clone(),
            5,
            Duration::from_millis(10),
        )
        .await;
        assert_eq!(done, Delivery { delivered: true, attempts: 3 });
        for _ in 0..3 {
            assert_eq!(seen.recv().await.unwrap(), sign("s3cret", &body));
        }
        assert!(seen.try_recv().is_err());
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt() {
        let (url, mut seen) = receiver(usize::MAX).await;
        let webhook = Webhook { url, secret: "k".into() };
        let done = deliver(
            &reqwest::Client::new(),
            &webhook,
            "alert",
            "1",
            b"{}".to_vec(),
            3,
            Duration::from_millis(5),
        )
        .await;
        assert_eq!(done, Delivery { delivered: false, attempts: 3 });
        let mut count = 0;
        while seen.try_recv().is_ok() {
            count += 1;
        }
        assert_eq!(count, 3);
    }
}
