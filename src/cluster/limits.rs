//! Rate limits shared by every node: a client address's or a store's messages count against one
//! budget wherever they land. Each budget is a GCRA bucket in Redis (the time its next token
//! is due), kept and taken in one script on Redis's own clock, so that nodes whose clocks
//! differ still agree.

use std::time::Duration;

use super::Cluster;
use crate::config::Rate;

/// Takes one token from the bucket `KEYS[1]`, whose tokens come every `ARGV[1]` ms up to a
/// burst of `ARGV[2]`. Returns 0 when taken, or how many ms until a token is due.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat + interval - burst * interval - now
if wait > 0 then return math.ceil(wait) end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return 0
";

impl Cluster {
    /// Takes one token from the budget `name` (`address:203.0.113.7`, `store:demo`) that every
    /// node shares. `Ok(None)` when taken, `Ok(Some(wait))` when none is due for `wait`; an
    /// error when Redis cannot be reached (the caller then relies on its own node's buckets).
    pub async fn take_shared(&self, name: &str, rate: Rate) -> redis::RedisResult<Option<Duration>> {
        if rate.is_off() {
            return Ok(None);
        }
        let wait: u64 = redis::cmd("EVAL")
            .arg(TAKE)
            .arg(1)
            .arg(self.key(&format!("limit:{name}")))
            .arg(1000.0 / rate.per_second)
            .arg(rate.burst.max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }
}
