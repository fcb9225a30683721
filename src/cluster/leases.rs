//! Leases and presence in Redis: a job lease lets exactly one node run a periodic job; a
//! conversation lease lets one node at a time decide a conversation's messages; presence says
//! which node each agent is signed in on, for as long as that node's heartbeat lasts.

use std::collections::HashSet;
use std::time::Duration;

use super::Cluster;
use crate::domain::{ConversationId, StoreId};

/// Takes the lease `KEYS[1]` for `ARGV[1]`, or extends it if it holds it already, for `ARGV[2]`
/// milliseconds. 1 if held.
const HOLD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Deletes `KEYS[1]` if `ARGV[1]` holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Removes the hash field `ARGV[1]` of `KEYS[1]` if its value is `ARGV[2]`.
const FORGET: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0";

/// How long a conversation lease lasts if its node dies holding it.
const CONVERSATION_TTL_MS: u64 = 10_000;

/// How long a node waits for another to finish deciding a conversation before going ahead.
const CONVERSATION_WAIT: Duration = Duration::from_secs(5);

/// A held conversation lease; give it back with [`Cluster::end_conversation`].
#[derive(Debug)]
pub struct ConversationLease {
    key: String,
    token: String,
}

impl Cluster {
    /// Holds (takes or extends) the job lease `name` for `ttl`: true while this node is the
    /// one to run the job. A failure to reach Redis is no lease.
    pub async fn hold(&self, name: &str, ttl: Duration) -> bool {
        let key = self.key(&format!("lease:{name}"));
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(HOLD)
            .arg(1)
            .arg(&key)
            .arg(&self.node)
            .arg(ms)
            .query_async(&mut self.conn.clone())
            .await;
        let held = match held {
            Ok(held) => held == 1,
            Err(error) => {
                tracing::warn!(%error, lease = name, "taking a lease failed");
                false
            }
        };
        let mut names = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if held {
            names.insert(name.to_owned());
        } else {
            names.remove(name);
        }
        held
    }

    /// Waits (up to a few seconds) until no other node is deciding this conversation, and
    /// takes its lease. `None` when Redis cannot be reached or the wait ran out: the database's
    /// row lock still orders the writes.
    pub async fn begin_conversation(&self, conversation: ConversationId) -> Option<ConversationLease> {
        let key = self.key(&format!("conversation:{conversation}"));
        let token = format!("{}:{}", self.node, uuid::Uuid::new_v4().simple());
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(CONVERSATION_TTL_MS)
                .query_async(&mut self.conn.clone())
                .await;
            match taken {
                Ok(Some(_)) => return Some(ConversationLease { key, token }),
                Ok(None) if started.elapsed() < CONVERSATION_WAIT => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Ok(None) => {
                    tracing::warn!(%conversation, "another node held the conversation too long; going ahead");
                    return None;
                }
                Err(error) => {
                    tracing::warn!(%error, %conversation, "taking a conversation lease failed");
                    return None;
                }
            }
        }
    }

    /// Gives a conversation lease back.
    pub async fn end_conversation(&self, lease: ConversationLease) {
        let released: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&lease.key)
            .arg(&lease.token)
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "giving a conversation lease back failed (it expires by itself)");
        }
    }

    fn presence_key(&self) -> String {
        self.key("agents")
    }

    /// The store's agent is signed in on this node.
    pub async fn agent_here(&self, store: &StoreId, agent: &str) {
        let done: redis::RedisResult<i64> = redis::cmd("HSET")
            .arg(self.presence_key())
            .arg(format!("{store}/{agent}"))
            .arg(&self.node)
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(error) = done {
            tracing::warn!(%error, "recording an agent's presence failed");
        }
    }

    /// The store's agent signed out of this node (a sign-in on another node since is kept).
    pub async fn agent_gone(&self, store: &StoreId, agent: &str) {
        let done: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(FORGET)
            .arg(1)
            .arg(self.presence_key())
            .arg(format!("{store}/{agent}"))
            .arg(&self.node)
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(error) = done {
            tracing::warn!(%error, "recording an agent's sign-out failed");
        }
    }

    /// The agents (`store/name`) signed in on other nodes that are alive. `None` when Redis
    /// cannot be reached: then nobody is taken for gone.
    pub async fn agents_elsewhere(&self) -> Option<HashSet<String>> {
        let mut conn = self.conn.clone();
        let presence: Vec<(String, String)> =
            match redis::cmd("HGETALL").arg(self.presence_key()).query_async(&mut conn).await {
                Ok(presence) => presence,
                Err(error) => {
                    tracing::warn!(%error, "reading agents' presence failed");
                    return None;
                }
            };
        let nodes: HashSet<&str> =
            presence.iter().map(|(_, node)| node.as_str()).filter(|n| *n != self.node).collect();
        let mut alive = HashSet::new();
        for node in nodes {
            let beat: redis::RedisResult<Option<i64>> =
                redis::cmd("GET").arg(self.key(&format!("node:{node}"))).query_async(&mut conn).await;
            match beat {
                Ok(Some(_)) => {
                    alive.insert(node);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
        }
        Some(
            presence
                .iter()
                .filter(|(_, node)| alive.contains(node.as_str()))
                .map(|(who, _)| who.clone())
                .collect(),
        )
    }
}
