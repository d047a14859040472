//! The message-delivery journal on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::{PostgresStore, from_ms, ms};
use crate::store::{DeliveryStore, Result, SendRecord, SentChannel};

#[async_trait]
impl DeliveryStore for PostgresStore {
    async fn send_record(&self, key: &str, channel: &str) -> Result<Option<SendRecord>> {
        let row = sqlx::query(
            "SELECT state, body_digest, provider_id, attempt_at FROM message_sends
             WHERE message_key = $1 AND channel = $2",
        )
        .bind(key)
        .bind(channel)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let state: String = r.try_get("state")?;
            Ok(if state == "sent" {
                SendRecord::Sent {
                    provider_id: r.try_get("provider_id")?,
                }
            } else {
                SendRecord::Attempting {
                    at: from_ms(r.try_get("attempt_at")?),
                    body_digest: r.try_get("body_digest")?,
                }
            })
        })
        .transpose()
    }

    async fn begin_send(
        &self,
        key: &str,
        channel: &str,
        body_digest: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        begin_one(&mut tx, key, channel, body_digest, ms(now)).await?;
        self.finish(tx).await
    }

    async fn begin_sends(
        &self,
        key: &str,
        channels: &[(&str, Option<&str>)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        for &(channel, body_digest) in channels {
            begin_one(&mut tx, key, channel, body_digest, ms(now)).await?;
        }
        self.finish(tx).await
    }

    async fn finish_send(
        &self,
        key: &str,
        channel: &str,
        sent: bool,
        provider_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if sent {
            sqlx::query(
                "INSERT INTO message_sends (message_key, channel, state, provider_id, attempt_at, finished_at)
                 VALUES ($1, $2, 'sent', $3, $4, $5)
                 ON CONFLICT (message_key, channel) DO UPDATE SET state = 'sent',
                     provider_id = excluded.provider_id, finished_at = excluded.finished_at",
            )
            .bind(key)
            .bind(channel)
            .bind(provider_id)
            .bind(ms(now))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "DELETE FROM message_sends WHERE message_key = $1 AND channel = $2 AND state <> 'sent'",
            )
            .bind(key)
            .bind(channel)
            .execute(&mut *tx)
            .await?;
        }
        self.finish(tx).await
    }
}

/// One channel of message `key` `attempting`, unless it already went out, inside the caller's
/// transaction (`begin_sends`, or a step's commit that journals the message's intent).
pub(super) async fn begin_one(
    conn: &mut PgConnection,
    key: &str,
    channel: &str,
    body_digest: Option<&str>,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_sends (message_key, channel, state, body_digest, attempt_at)
         VALUES ($1, $2, 'attempting', $3, $4)
         ON CONFLICT (message_key, channel) DO UPDATE SET state = 'attempting',
             body_digest = excluded.body_digest, attempt_at = excluded.attempt_at,
             provider_id = NULL, finished_at = NULL
         WHERE message_sends.state <> 'sent'",
    )
    .bind(key)
    .bind(channel)
    .bind(body_digest)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Journals a channel that went out as `sent`, inside the caller's transaction (a workflow step's
/// commit, an intake link send's outcome): the messenger leaves it `attempting` for its caller.
pub(super) async fn record_sent(
    conn: &mut PgConnection,
    sent: &SentChannel,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_sends (message_key, channel, state, provider_id, attempt_at, finished_at)
         VALUES ($1, $2, 'sent', $3, $4, $5)
         ON CONFLICT (message_key, channel) DO UPDATE SET state = 'sent',
             provider_id = excluded.provider_id, finished_at = excluded.finished_at",
    )
    .bind(&sent.key)
    .bind(sent.channel)
    .bind(&sent.provider_id)
    .bind(now_ms)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}
