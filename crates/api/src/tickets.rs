//! Stream tickets: a browser's `EventSource` cannot send an `Authorization` header, and a
//! bearer token must never be in a URL (URLs end up in logs and histories). So a client
//! trades its token for a ticket (`POST /api/presence/tickets/`) and opens the stream with
//! `?ticket=`: 256 random bits, good once, for 60 seconds, for that user only.
//!
//! Tickets live in Redis, so any replica redeems what another issued; only their SHA-256
//! is stored, and `GETDEL` makes a second use fail even when two replicas race. No
//! ticket is ever logged (the access log has the path only).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use presence_model::status::Viewer;
use presence_runtime::redis_conn::LazyRedis;
use sha2::{Digest, Sha256};

use crate::errors::ApiError;

/// How long a ticket is good for.
pub const TICKET_TTL: Duration = Duration::from_secs(60);

pub struct Tickets {
    redis: Arc<LazyRedis>,
    prefix: String,
}

impl Tickets {
    pub fn new(redis: Arc<LazyRedis>, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, ticket: &str) -> String {
        let digest = Sha256::digest(ticket.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:ticket:{hex}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> Result<T, ApiError> {
        self.redis
            .run(|mut conn| async move { command.query_async::<T>(&mut conn).await })
            .await
            .map_err(|e| {
                log::warn!("tickets: {e}");
                ApiError::Unavailable {
                    reason: "tickets cannot be issued or redeemed while Redis is unreachable",
                }
            })
    }

    /// A new ticket for `viewer`.
    pub async fn issue(&self, viewer: Viewer) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(e.to_string()))?;
        let ticket = URL_SAFE_NO_PAD.encode(bytes);
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(&ticket))
            .arg(format!("{}:{}", viewer.user_id, u8::from(viewer.is_admin)))
            .arg("EX")
            .arg(TICKET_TTL.as_secs())
            .arg("NX");
        self.run::<()>(command).await?;
        Ok(ticket)
    }

    /// The viewer a ticket was issued to, consuming it; `None` if it is unknown, used or
    /// expired.
    pub async fn redeem(&self, ticket: &str) -> Result<Option<Viewer>, ApiError> {
        if ticket.is_empty() || ticket.len() > 64 {
            return Ok(None);
        }
        let mut command = redis::cmd("GETDEL");
        command.arg(self.key(ticket));
        let value: Option<String> = self.run(command).await?;
        Ok(value.as_deref().and_then(parse_viewer))
    }
}

fn parse_viewer(value: &str) -> Option<Viewer> {
    let (user_id, admin) = value.split_once(':')?;
    Some(Viewer {
        user_id: user_id.parse().ok()?,
        is_admin: admin == "1",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_round_trip_through_the_stored_value() {
        assert_eq!(
            parse_viewer("42:1"),
            Some(Viewer {
                user_id: 42,
                is_admin: true
            })
        );
        assert_eq!(
            parse_viewer("7:0"),
            Some(Viewer {
                user_id: 7,
                is_admin: false
            })
        );
        assert_eq!(parse_viewer("x:0"), None);
        assert_eq!(parse_viewer("7"), None);
    }
}
