//! The message-delivery journal: each channel of each message recorded before it is sent, so a
//! send whose outcome is unknown is reconciled (a text) or not repeated (an email) instead of
//! going out twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Result;

/// What the journal holds for one channel of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendRecord {
    /// An attempt began at `at` and its outcome is unknown (a crash, a timeout after the request
    /// left). `body_digest` identifies the text that may have gone out.
    Attempting {
        /// When the attempt began.
        at: DateTime<Utc>,
        /// The digest of what was sent (texts), for the lookup.
        body_digest: Option<String>,
    },
    /// It went out (or, for an email whose outcome stayed unknown, is taken as gone out).
    Sent {
        /// The provider's id (`SM…`, the email's `Message-ID`), when known.
        provider_id: Option<String>,
    },
}

/// The journal of message sends, by message key and channel.
#[async_trait]
pub trait DeliveryStore: Send + Sync + std::fmt::Debug + 'static {
    /// The record for `key` on `channel`, if any.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn send_record(&self, key: &str, channel: &str) -> Result<Option<SendRecord>>;

    /// Records, durably and before the send, that an attempt begins.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn begin_send(
        &self,
        key: &str,
        channel: &str,
        body_digest: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// [`begin_send`](Self::begin_send) for several channels of one message in one
    /// transaction: `(channel, body digest)` each.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn begin_sends(
        &self,
        key: &str,
        channels: &[(&str, Option<&str>)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for &(channel, digest) in channels {
            self.begin_send(key, channel, digest, now).await?;
        }
        Ok(())
    }

    /// Records that it went out (`Some(provider id)` or `None` when taken as sent), or, with
    /// `sent == false`, that it certainly did not (the record is removed, so a retry sends).
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn finish_send(
        &self,
        key: &str,
        channel: &str,
        sent: bool,
        provider_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()>;
}
