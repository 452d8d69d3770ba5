//! Stream tickets: a browser's `EventSource` cannot send an `Authorization` header, and a
//! bearer token must never be in a URL (URLs end up in logs and histories). So a client
//! trades its token for a ticket (`POST /api/presence/tickets/`) and opens the stream with
//! `?ticket=`: 256 random bits, good once, for 60 seconds, for that user only.
//!
//! Tickets live in Redis, so any replica redeems what another issued; only their SHA-256
//! is stored, and redeeming replaces the value by a mark of use in one script, so a
//! second use fails even when two replicas race, and says so (`ticket_used`, not
//! `ticket_expired`) until the ticket would have expired. No ticket is ever logged (the
//! access log has the path only).
//!
//! A ticket stands for the *session* that asked for it (its token's hash), not for the
//! user: redeeming it checks that session as a request's token is checked, so a ticket
//! minted before a logout opens nothing after it. A user holds at most
//! `TICKETS_PER_USER` live tickets: minting one more invalidates their oldest.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use presence_runtime::redis_conn::LazyRedis;
use sha2::{Digest, Sha256};

use crate::errors::ApiError;
use presence_model::ids::UserId;

/// How long a ticket is good for.
pub const TICKET_TTL: Duration = Duration::from_secs(60);

/// Mints a ticket and keeps the user's live tickets at most `ARGV[3]`, in one step.
/// KEYS[1]: the new ticket's key; KEYS[2]: the list of the user's ticket keys, oldest
/// first (a used or expired one stays listed until it is pushed out: harmless). The keys
/// it invalidates are read from KEYS[2] (one Redis, no cluster).
const ISSUE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('RPUSH', KEYS[2], KEYS[1])
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[3]) do
  redis.call('DEL', redis.call('LPOP', KEYS[2]))
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// Redeems a ticket: its value, marked used for the rest of its life; `used` if it was;
/// nil if it is unknown or expired.
const REDEEM: &str = r"
local value = redis.call('GET', KEYS[1])
if not value or value == 'used' then return value end
redis.call('SET', KEYS[1], 'used', 'KEEPTTL')
return value
";

/// What a redeemed ticket stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    pub user_id: UserId,
    /// The hash of the token of the session that minted it.
    pub token_hash: Vec<u8>,
}

pub struct Tickets {
    redis: LazyRedis,
    prefix: String,
    per_user: u32,
    issue: redis::Script,
    redeem: redis::Script,
}

/// Why a ticket opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// Redeemed before.
    Used,
    /// Expired, invalidated by newer ones, or never issued.
    Expired,
}

impl From<Spent> for ApiError {
    fn from(spent: Spent) -> Self {
        match spent {
            Spent::Used => Self::TicketUsed,
            Spent::Expired => Self::TicketExpired,
        }
    }
}

impl Tickets {
    pub fn new(redis: &LazyRedis, prefix: &str, per_user: u32) -> Self {
        Self {
            redis: redis.clone(),
            prefix: prefix.to_owned(),
            per_user,
            issue: redis::Script::new(ISSUE),
            redeem: redis::Script::new(REDEEM),
        }
    }

    fn key(&self, ticket: &str) -> String {
        format!(
            "{}:ticket:{}",
            self.prefix,
            hex(&Sha256::digest(ticket.as_bytes()))
        )
    }

    fn user_key(&self, user_id: UserId) -> String {
        format!("{}:tickets-of:{user_id}", self.prefix)
    }

    /// A new ticket for the session of `user_id` whose token hashes to `token_hash`.
    pub async fn issue(&self, user_id: UserId, token_hash: &[u8]) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(e.to_string()))?;
        let ticket = URL_SAFE_NO_PAD.encode(bytes);
        let mut invocation = self.issue.prepare_invoke();
        invocation
            .key(self.key(&ticket))
            .key(self.user_key(user_id))
            .arg(format!("{user_id}:{}", hex(token_hash)))
            .arg(TICKET_TTL.as_millis() as u64)
            .arg(self.per_user);
        self.redis
            .run(|mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async::<i64>(&mut conn).await }
            })
            .await
            .map_err(unavailable)?;
        Ok(ticket)
    }

    /// What a ticket stands for, consuming it.
    pub async fn redeem(&self, ticket: &str) -> Result<Result<Redeemed, Spent>, ApiError> {
        if ticket.is_empty() || ticket.len() > 64 {
            return Ok(Err(Spent::Expired));
        }
        let mut invocation = self.redeem.prepare_invoke();
        invocation.key(self.key(ticket));
        let value: Option<String> = self
            .redis
            .run(|mut conn| {
                let invocation = &invocation;
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await
            .map_err(unavailable)?;
        Ok(match value.as_deref() {
            None => Err(Spent::Expired),
            Some("used") => Err(Spent::Used),
            Some(value) => parse_redeemed(value).ok_or(Spent::Expired),
        })
    }
}

fn unavailable(error: String) -> ApiError {
    log::warn!("tickets: {error}");
    ApiError::Unavailable {
        reason: "tickets cannot be issued or redeemed while Redis is unreachable",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_redeemed(value: &str) -> Option<Redeemed> {
    let (user_id, token_hash) = value.split_once(':')?;
    let token_hash = (0..token_hash.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token_hash.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Redeemed {
        user_id: user_id.parse().ok()?,
        token_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_through_the_stored_value() {
        let token_hash = vec![0x00, 0xab, 0xff, 0x10];
        assert_eq!(
            parse_redeemed(&format!("42:{}", hex(&token_hash))),
            Some(Redeemed {
                user_id: UserId(42),
                token_hash
            })
        );
        assert_eq!(parse_redeemed("x:00"), None);
        assert_eq!(parse_redeemed("7:0g"), None);
        assert_eq!(parse_redeemed("7:abc"), None);
        assert_eq!(parse_redeemed("7"), None);
    }
}
