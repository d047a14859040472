//! The message-delivery journal on SQLite, on the store thread (statements in `onehop`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use sqlx::SqliteConnection;

use super::{SqliteStore, ms, onehop};
use crate::store::{DeliveryStore, Result, SendRecord, SentChannel};

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn send_record(&self, key: &str, channel: &str) -> Result<Option<SendRecord>> {
        let (key, channel) = (key.to_owned(), channel.to_owned());
        self.reader
            .read(move |conn| onehop::send_record(conn, &key, &channel))
            .await
    }

    async fn begin_send(
        &self,
        key: &str,
        channel: &str,
        body_digest: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.begin_sends(key, &[(channel, body_digest)], now).await
    }

    async fn begin_sends(
        &self,
        key: &str,
        channels: &[(&str, Option<&str>)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let key = key.to_owned();
        let channels: Vec<(String, Option<String>)> = channels
            .iter()
            .map(|&(channel, digest)| (channel.to_owned(), digest.map(str::to_owned)))
            .collect();
        self.thread
            .write(move |conn| onehop::begin_sends(conn, &key, &channels, ms(now)))
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(())
    }

    async fn finish_send(
        &self,
        key: &str,
        channel: &str,
        sent: bool,
        provider_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (key, channel) = (key.to_owned(), channel.to_owned());
        let provider_id = provider_id.map(str::to_owned);
        self.thread
            .write(move |conn| {
                onehop::finish_send(conn, &key, &channel, sent, provider_id.as_deref(), ms(now))
            })
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(())
    }
}

/// Journals a channel that went out as `sent`, inside the caller's transaction (a workflow step's
/// commit, an intake link send's outcome): the messenger leaves it `attempting` for its caller.
pub(super) async fn record_sent(
    conn: &mut SqliteConnection,
    sent: &SentChannel,
    now_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_sends (message_key, channel, state, provider_id, attempt_at, finished_at)
         VALUES (?, ?, 'sent', ?, ?, ?)
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
