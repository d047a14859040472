//! Procedures, and their `DateTStamp` / `serverDateTime` sync.

use chrono::NaiveDateTime;

use crate::client::Client;
use crate::cursor::SyncStamp;
use crate::error::{Operation, Result};
use crate::ids::{AptNum, ClinicNum, PatNum};
use crate::types::{ProcStatus, ProcedureLog};
use crate::wire::{self, param, path, resource};

/// Filters for [`Client::list_procedure_logs`]. All optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcedureLogQuery {
    /// One patient's procedures.
    pub pat_num: Option<PatNum>,
    /// One appointment's procedures.
    pub apt_num: Option<AptNum>,
    /// One status (Open Dental 25.2.21 and later).
    pub status: Option<ProcStatus>,
    /// One clinic's procedures.
    pub clinic_num: Option<ClinicNum>,
    /// Procedures changed on or after this server time.
    pub changed_since: Option<NaiveDateTime>,
}

impl ProcedureLogQuery {
    /// No filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this patient's procedures.
    pub fn pat_num(mut self, pat_num: PatNum) -> Self {
        self.pat_num = Some(pat_num);
        self
    }

    /// Only this appointment's procedures.
    pub fn apt_num(mut self, apt_num: AptNum) -> Self {
        self.apt_num = Some(apt_num);
        self
    }

    /// Only procedures with this status.
    pub fn status(mut self, status: ProcStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only this clinic's procedures.
    pub fn clinic_num(mut self, clinic_num: ClinicNum) -> Self {
        self.clinic_num = Some(clinic_num);
        self
    }

    /// Only procedures changed on or after this server time.
    pub fn changed_since(mut self, server_time: NaiveDateTime) -> Self {
        self.changed_since = Some(server_time);
        self
    }

    fn to_params(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(p) = self.pat_num {
            q.push((param::PAT_NUM, p.to_string()));
        }
        if let Some(a) = self.apt_num {
            q.push((param::APT_NUM, a.to_string()));
        }
        if let Some(s) = &self.status {
            q.push((param::PROC_STATUS, s.as_str().to_owned()));
        }
        if let Some(c) = self.clinic_num {
            q.push((param::CLINIC_NUM, c.to_string()));
        }
        if let Some(t) = self.changed_since {
            q.push((param::DATE_T_STAMP, wire::format_date_time(t)));
        }
        q
    }
}

/// One sync step: the procedures changed since the stamp, and the stamp to send next time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcedureLogSync {
    /// Changed procedures. Rows stamped exactly at the previous stamp can come again: dedupe on
    /// (`ProcNum`, `DateTStamp`).
    pub logs: Vec<ProcedureLog>,
    /// The next stamp, to store once the logs are recorded. `None` only when nothing was ever
    /// returned.
    pub next: Option<SyncStamp>,
}

impl Client {
    /// `GET /procedurelogs`, every page.
    ///
    /// # Errors
    /// [`Error`](crate::Error) with kind Transient (connect, timeout, 429, 5xx, after the
    /// client's own retries) or Permanent (400/401/403/404, decode, paging overrun).
    pub async fn list_procedure_logs(
        &self,
        query: &ProcedureLogQuery,
    ) -> Result<Vec<ProcedureLog>> {
        Ok(self.procedure_logs(query).await?.items)
    }

    /// Open Dental's documented sync: `GET /procedurelogs?DateTStamp={since}` over every page;
    /// the next stamp is the `serverDateTime` the listing returned (the earliest, that of the first
    /// page, so that nothing changed while paging is skipped). A listing without `serverDateTime`
    /// falls back to the latest `DateTStamp` among its rows; an empty one keeps `since`.
    ///
    /// # Errors
    /// As [`Client::list_procedure_logs`]. On error, store nothing and retry with the same stamp.
    pub async fn sync_procedure_logs(&self, since: Option<SyncStamp>) -> Result<ProcedureLogSync> {
        let mut query = ProcedureLogQuery::new();
        query.changed_since = since.map(SyncStamp::server_time);
        let listing = self.procedure_logs(&query).await?;
        let next = listing
            .server_date_time
            .or_else(|| listing.items.iter().filter_map(|l| l.date_t_stamp).max())
            .map(SyncStamp::new)
            .or(since);
        Ok(ProcedureLogSync {
            logs: listing.items,
            next,
        })
    }

    async fn procedure_logs(
        &self,
        query: &ProcedureLogQuery,
    ) -> Result<crate::client::Listing<ProcedureLog>> {
        self.list_all(
            Operation::ListProcedureLogs,
            path::PROCEDURELOGS,
            &query.to_params(),
            resource::PROCEDURELOG,
            wire::read_procedure_log,
        )
        .await
    }
}
