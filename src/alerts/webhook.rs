//! Delivering alerts to a store's webhook: a JSON POST signed with HMAC-SHA256 over the body,
//! retried with doubling waits.

use std::net::IpAddr;
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

/// Checks a webhook URL a merchant gives: `http` or `https`, with a host; unless `private` is
/// allowed, not an address on this machine or a private network (the host's names are checked
/// again, after DNS, on every delivery: [`client`]).
pub fn check_url(url: &str, private: bool) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("the webhook URL {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("the webhook URL must be http or https, not {}", parsed.scheme()));
    }
    let host = match parsed.host_str() {
        None | Some("") => return Err(format!("the webhook URL {url:?} has no host")),
        Some(host) => host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase(),
    };
    let literal = if host == "localhost" || host.ends_with(".localhost") {
        Some(IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse::<IpAddr>().ok()
    };
    match literal {
        Some(address) if !private && !is_public(address) => Err(format!(
            "the webhook URL points at {address}, an address on this machine or a private network; \
             webhooks go to public addresses only"
        )),
        _ => Ok(()),
    }
}

/// Whether `address` is on the public internet: not loopback, private, link-local, shared
/// (100.64/10), documentation, multicast, unspecified or broadcast.
pub fn is_public(address: IpAddr) -> bool {
    match address.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// Resolves webhook hosts, refusing any name that leads to a non-public address.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
                return Err(
                    format!("{host} resolves to {}, which is not a public address", private.ip()).into()
                );
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client webhooks are delivered with: redirects are not followed (the body and its
/// signature would be sent on to wherever they point) and, unless `private` is allowed,
/// names are resolved to public addresses only.
pub fn client(timeout: Duration, private: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("mibot/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if private { builder.build() } else { builder.dns_resolver(std::sync::Arc::new(PublicOnly)).build() }
}

/// How to deliver: at most `attempts` times, waiting `first_wait` before the first retry and
/// twice as long before each later one; to private addresses only if `private_targets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Tries before giving up.
    pub attempts: u32,
    /// The wait before the first retry.
    pub first_wait: Duration,
    /// Whether this machine and private networks may be delivered to.
    pub private_targets: bool,
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
    plan: Plan,
) -> Delivery {
    let Plan { attempts, first_wait, private_targets: private } = plan;
    let signature = sign(&webhook.secret, &body);
    if let Err(why) = check_url(&webhook.url, private) {
        tracing::warn!(url = %webhook.url, why, "webhook not delivered");
        return Delivery { delivered: false, attempts: 0 };
    }
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
        assert!(check_url("https://shop.example/hooks/mibot", false).is_ok());
        assert!(check_url("http://127.0.0.1:9000/x", true).is_ok(), "private targets when allowed");
        assert!(check_url("ftp://shop.example/", false).unwrap_err().contains("http or https"));
        assert!(check_url("not a url", false).unwrap_err().contains("not a URL"));
    }

    #[test]
    fn this_machine_and_private_networks_are_refused() {
        for url in [
            "http://127.0.0.1:9000/x",
            "http://localhost/x",
            "http://api.localhost/x",
            "http://10.1.2.3/",
            "http://172.16.0.9/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let refused = check_url(url, false).unwrap_err();
            assert!(refused.contains("private network"), "{url}: {refused}");
        }
        assert!(check_url("http://93.184.215.14/hook", false).is_ok());
        assert!(check_url("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", false).is_ok());
    }

    #[tokio::test]
    async fn names_that_lead_to_this_machine_are_refused_after_resolving() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = PublicOnly.resolve(name).await.err().expect("localhost is refused");
        assert!(refused.to_string().contains("not a public address"), "{refused}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (target, mut reached) = receiver(0).await;
        let redirect = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let target = target.clone();
                async move {
                    (axum::http::StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, target)])
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, redirect).await });
        let client = client(Duration::from_secs(5), true).unwrap();
        let webhook = Webhook { url, secret: "k".into() };
        let plan = Plan { attempts: 1, first_wait: Duration::from_millis(5), private_targets: true };
        let done = deliver(&client, &webhook, "alert", "1", b"{}".to_vec(), plan).await;
        assert!(!done.delivered, "a redirect is not a delivery");
        assert!(reached.try_recv().is_err(), "the body and its signature went on to the redirect's target");
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
            Plan { attempts: 5, first_wait: Duration::from_millis(10), private_targets: true },
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
            Plan { attempts: 3, first_wait: Duration::from_millis(5), private_targets: true },
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
