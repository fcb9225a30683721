//! Rate limits: token buckets per connection, per client address and per store, so that no
//! client can have the server store and answer messages as fast as it can send them.
//!
//! A bucket holds up to `burst` tokens and refills at `per_second`; each message takes one.
//! Buckets keyed by address or store live in a map that never holds more than
//! [`MAX_TRACKED`] keys: full buckets (clients quiet long enough to have their whole burst
//! back) are dropped first, and if that is not enough, new keys share one overflow bucket.
//!
//! With other nodes (`cluster.redis_url`), the address's, the store's and the API's budgets are
//! also shared: after this node's own bucket, a token is taken from the same budget in Redis
//! (`cluster::limits`), so that a client spread over the nodes gets what one node would give it.
//! When Redis cannot be reached, each node's own buckets still hold. Buckets run on the
//! server's [`Clock`], which tests set by hand.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::config::{LimitsConfig, Rate};
use crate::domain::{Clock, Millis, StoreId};

/// How long a frame waits for Redis to take a token from a shared budget.
const SHARED_WAIT: Duration = Duration::from_millis(250);

/// How long the shared budgets are skipped after Redis failed to answer.
const SHARED_PAUSE: Duration = Duration::from_secs(5);

/// Most addresses (or stores) tracked at once.
pub(super) const MAX_TRACKED: usize = 100_000;

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    at: Millis,
}

impl Bucket {
    /// A full bucket for `rate`.
    pub(super) fn full(rate: Rate, now: Millis) -> Self {
        Self { tokens: rate.burst as f64, at: now }
    }

    fn refill(&mut self, rate: Rate, now: Millis) {
        let elapsed = (now.0 - self.at.0).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst as f64);
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    pub(super) fn take(&mut self, rate: Rate, now: Millis) -> Result<(), Duration> {
        if rate.is_off() {
            return Ok(());
        }
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate.per_second))
        }
    }

    fn is_full(&self, rate: Rate, now: Millis) -> bool {
        let mut copy = *self;
        copy.refill(rate, now);
        copy.tokens >= rate.burst as f64
    }
}

/// Buckets by key, bounded in number.
#[derive(Debug)]
pub(super) struct Keyed<K> {
    rate: Rate,
    inner: Mutex<Tracked<K>>,
}

#[derive(Debug)]
struct Tracked<K> {
    buckets: HashMap<K, Bucket>,
    /// Shared by new keys while the map is full of busy ones.
    overflow: Bucket,
    /// When full buckets were last dropped: at most once a second, however many keys arrive.
    swept: Millis,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    /// Buckets that each allow `rate`.
    pub(super) fn new(rate: Rate, now: Millis) -> Self {
        let tracked = Tracked { buckets: HashMap::new(), overflow: Bucket::full(rate, now), swept: now };
        Self { rate, inner: Mutex::new(tracked) }
    }

    /// Takes a token from `key`'s bucket.
    pub(super) fn take(&self, key: &K, now: Millis) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let rate = self.rate;
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tracked = &mut *guard;
        if let Some(bucket) = tracked.buckets.get_mut(key) {
            return bucket.take(rate, now);
        }
        if tracked.buckets.len() >= MAX_TRACKED && now.0 - tracked.swept.0 >= 1000 {
            tracked.buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            tracked.swept = now;
        }
        if tracked.buckets.len() >= MAX_TRACKED {
            return tracked.overflow.take(rate, now);
        }
        tracked.buckets.entry(key.clone()).or_insert_with(|| Bucket::full(rate, now)).take(rate, now)
    }

    /// How many keys are tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).buckets.len()
    }
}

/// The key an address is limited by: itself for IPv4, its /64 network for IPv6 (one host
/// commonly holds a whole /64).
pub(super) fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// The client a request comes from: `peer` itself, or, when `peer` is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not one (a client can put anything at the header's
/// start; only what trusted proxies appended is believed).
pub(super) fn client_address(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |a: &IpAddr| trusted.iter().any(|t| t.to_canonical() == a.to_canonical());
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    let hops: Vec<IpAddr> =
        forwarded.flat_map(|v| v.split(',')).filter_map(|hop| hop.trim().parse::<IpAddr>().ok()).collect();
    hops.into_iter().rev().find(|hop| !is_trusted(hop)).unwrap_or(peer)
}

/// Which limit a message ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// This connection's.
    Connection(Duration),
    /// The client address's, shared by all its connections.
    Address(Duration),
    /// The store's, shared by all its shoppers.
    Store(Duration),
}

impl Limited {
    /// How long until the message would be taken.
    pub fn retry_after(self) -> Duration {
        match self {
            Self::Connection(d) | Self::Address(d) | Self::Store(d) => d,
        }
    }

    /// The sentence shoppers' and merchants' clients show.
    pub fn explain(self) -> String {
        let whose = match self {
            Self::Connection(_) => "this connection",
            Self::Address(_) => "your network address",
            Self::Store(_) => "this store",
        };
        let ms = self.retry_after().as_millis().max(1);
        format!("too many messages from {whose}; nothing was stored, send it again in {ms} ms")
    }
}

/// The deployment's shared limits (per address and per store).
#[derive(Debug)]
pub struct Limits {
    config: LimitsConfig,
    clock: Clock,
    addresses: Keyed<IpAddr>,
    stores: Keyed<StoreId>,
    requests: Keyed<IpAddr>,
    /// The other nodes, whose budgets are shared through Redis.
    cluster: Option<Arc<Cluster>>,
    /// When a failure to reach the shared budgets was last logged (ms): once a minute at most.
    warned: AtomicI64,
    /// Until when (ms) the shared budgets are skipped, after Redis failed to answer.
    paused_until: AtomicI64,
}

impl Limits {
    /// The limits `config` sets, on `clock`, shared with the other nodes of `cluster`.
    pub fn new(config: &LimitsConfig, clock: Clock, cluster: Option<Arc<Cluster>>) -> Self {
        let now = clock.now();
        Self {
            config: config.clone(),
            addresses: Keyed::new(config.messages_per_address, now),
            stores: Keyed::new(config.messages_per_store, now),
            requests: Keyed::new(config.requests_per_address, now),
            clock,
            cluster,
            warned: AtomicI64::new(i64::MIN),
            paused_until: AtomicI64::new(0),
        }
    }

    /// A new connection's own bucket.
    pub fn connection(&self) -> ConnectionLimit {
        let rate = self.config.messages_per_connection;
        ConnectionLimit { rate, bucket: Bucket::full(rate, self.clock.now()), clock: self.clock.clone() }
    }

    /// Takes one frame from `address`'s bucket: every frame counts, so that floods of bad
    /// frames are limited too.
    pub async fn address(&self, address: IpAddr) -> Result<(), Limited> {
        let key = address_key(address);
        self.addresses.take(&key, self.clock.now()).map_err(Limited::Address)?;
        self.shared("address", &key, self.config.messages_per_address).await.map_err(Limited::Address)
    }

    /// Takes one message from `store`'s bucket.
    pub async fn store(&self, store: &StoreId) -> Result<(), Limited> {
        self.stores.take(store, self.clock.now()).map_err(Limited::Store)?;
        self.shared("store", store, self.config.messages_per_store).await.map_err(Limited::Store)
    }

    /// Takes one HTTP request of the merchant and agent APIs from `address`.
    pub async fn request(&self, address: IpAddr) -> Result<(), Duration> {
        let key = address_key(address);
        self.requests.take(&key, self.clock.now())?;
        self.shared("api", &key, self.config.requests_per_address).await
    }

    /// Takes one token from the budget all nodes share, when there are other nodes. A budget
    /// Redis does not answer within [`SHARED_WAIT`] is skipped, and so are all of them for
    /// [`SHARED_PAUSE`] after that: no frame waits on a Redis that is down.
    /// The budget's name (`address:203.0.113.7`) is made only then: a single node's frames
    /// pay nothing for it.
    async fn shared(
        &self,
        kind: &str,
        key: &(dyn std::fmt::Display + Sync),
        rate: Rate,
    ) -> Result<(), Duration> {
        let Some(cluster) = &self.cluster else { return Ok(()) };
        let now = Millis::now().0;
        if rate.is_off() || now < self.paused_until.load(Ordering::Relaxed) {
            return Ok(());
        }
        let name = format!("{kind}:{key}");
        let error = match tokio::time::timeout(SHARED_WAIT, cluster.take_shared(&name, rate)).await {
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(wait))) => return Err(wait),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer in {} ms", SHARED_WAIT.as_millis()),
        };
        self.paused_until.store(now + SHARED_PAUSE.as_millis() as i64, Ordering::Relaxed);
        let last = self.warned.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60_000
            && self.warned.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(%error, "the rate limits shared with the other nodes cannot be reached: each node keeps its own");
        }
        Ok(())
    }
}

/// One connection's bucket, owned by its task.
#[derive(Debug)]
pub struct ConnectionLimit {
    rate: Rate,
    bucket: Bucket,
    clock: Clock,
}

impl ConnectionLimit {
    /// Takes one frame.
    pub fn take(&mut self) -> Result<(), Limited> {
        self.bucket.take(self.rate, self.clock.now()).map_err(Limited::Connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate { per_second: 10.0, burst: 3 };
        let start = Millis(1_000_000);
        let mut bucket = Bucket::full(rate, start);
        for _ in 0..3 {
            assert!(bucket.take(rate, start).is_ok());
        }
        let wait = bucket.take(rate, start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(bucket.take(rate, Millis(start.0 + 100)).is_ok(), "one token back after 100 ms");
        assert!(bucket.take(rate, Millis(start.0 + 100)).is_err());
        assert!(bucket.take(Rate::OFF, start).is_ok(), "an off limit never refuses");
    }

    #[test]
    fn keyed_buckets_are_apart_and_bounded() {
        let now = Millis(1_000_000);
        let keyed = Keyed::new(Rate { per_second: 1.0, burst: 1 }, now);
        assert!(keyed.take(&1u32, now).is_ok());
        assert!(keyed.take(&1u32, now).is_err(), "key 1 spent its burst");
        assert!(keyed.take(&2u32, now).is_ok(), "key 2 has its own");
        for key in 3..(MAX_TRACKED as u32 + 10) {
            let _ = keyed.take(&key, now);
        }
        assert!(keyed.tracked() <= MAX_TRACKED, "{}", keyed.tracked());
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_nobody_else_does() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.3".parse().unwrap());
        let trusted = ["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()];
        assert_eq!(client_address(proxy, &headers, &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(stranger, &headers, &trusted), stranger, "only proxies are believed");
        assert_eq!(client_address(proxy, &axum::http::HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn an_ipv6_network_is_one_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.7".parse::<IpAddr>().unwrap());
    }
}
