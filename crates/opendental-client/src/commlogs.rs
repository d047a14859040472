//! Commlogs: where Chairside writes its ledger note, exactly once per marker.

use crate::client::Client;
use crate::error::{Error, Operation, Result};
use crate::ids::PatNum;
use crate::types::{Commlog, NewCommlog, WriteOutcome};
use crate::wire::{self, param, path, resource};

impl Client {
    /// `GET /commlogs?PatNum=`, every page.
    ///
    /// # Errors
    /// [`Error`](crate::Error) with kind Transient (connect, timeout, 429, 5xx, after the
    /// client's own retries) or Permanent (400/401/403/404, decode, paging overrun).
    pub async fn list_commlogs(&self, pat_num: PatNum) -> Result<Vec<Commlog>> {
        let listing = self
            .list_all(
                Operation::ListCommlogs,
                path::COMMLOGS,
                &[(param::PAT_NUM, pat_num.to_string())],
                resource::COMMLOG,
                wire::read_commlog,
            )
            .await?;
        Ok(listing.items)
    }

    /// The patient's first commlog whose note contains `marker` (our workflow marker), if any.
    ///
    /// # Errors
    /// As [`Client::list_commlogs`]; [`Error::InvalidRequest`] (Permanent) for an empty marker.
    pub async fn find_commlog_by_marker(
        &self,
        pat_num: PatNum,
        marker: &str,
    ) -> Result<Option<Commlog>> {
        if marker.trim().is_empty() {
            return Err(Error::InvalidRequest {
                op: Operation::ListCommlogs,
                reason: "the marker must not be empty",
            });
        }
        let logs = self.list_commlogs(pat_num).await?;
        Ok(logs.into_iter().find(|c| c.note.contains(marker)))
    }

    /// `POST /commlogs`. Returns the created row, or `None` from Open Dental versions that answer
    /// 201 without one. Never retried after the request may have arrived: prefer
    /// [`Client::write_commlog_once`].
    ///
    /// # Errors
    /// Transient for a connect error or 429 (nothing was written; retried by the client first);
    /// **Indeterminate** for a timeout, a dropped connection or any 5xx (the office may have the
    /// row: look for the marker before writing again); Permanent for 400/401/403/404 and decode
    /// errors.
    pub async fn create_commlog(&self, commlog: &NewCommlog) -> Result<Option<Commlog>> {
        if commlog.note.trim().is_empty() {
            return Err(Error::InvalidRequest {
                op: Operation::CreateCommlog,
                reason: "the note must not be empty",
            });
        }
        self.create(
            Operation::CreateCommlog,
            path::COMMLOGS,
            &wire::commlog_body(commlog),
            resource::COMMLOG,
            wire::read_commlog,
        )
        .await
    }

    /// Check-then-act: writes the note unless one of the patient's commlogs already contains
    /// `marker`. Safe to call again after an Indeterminate failure: the lookup finds the note if
    /// the earlier call wrote it.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] (Permanent) when `marker` is empty or not in the note; otherwise
    /// as [`Client::find_commlog_by_marker`] and [`Client::create_commlog`].
    pub async fn write_commlog_once(
        &self,
        commlog: &NewCommlog,
        marker: &str,
    ) -> Result<WriteOutcome<Commlog>> {
        if marker.trim().is_empty() || !commlog.note.contains(marker) {
            return Err(Error::InvalidRequest {
                op: Operation::CreateCommlog,
                reason: "the note must contain the non-empty marker",
            });
        }
        if let Some(existing) = self.find_commlog_by_marker(commlog.pat_num, marker).await? {
            return Ok(WriteOutcome::AlreadyWritten(existing));
        }
        self.create_commlog(commlog)
            .await
            .map(WriteOutcome::Created)
    }
}
