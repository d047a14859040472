//! What each stand-in received, kept for tests (and, for Stripe, appended as JSON Lines in the
//! format `shared/stripe/conformance.py` reads).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::fault::System;

/// One request a stand-in received.
#[derive(Clone, Serialize)]
pub struct RecordedRequest {
    /// Order of arrival within the sandbox (all systems share one counter).
    pub seq: u64,
    /// The system that received it.
    pub system: System,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers with lower-cased names. Repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The raw body (lossy UTF-8).
    pub body: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The faults applied to it (`latency`, `status_429`, `response_lost_reset`, ...).
    pub faults: Vec<String>,
    /// The status the handler or the fault answered with; `None` when no response was sent.
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

impl fmt::Debug for RecordedRequest {
    // Bodies and headers can carry PHI and credentials: only the request line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("seq", &self.seq)
            .field("system", &self.system)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("faults", &self.faults)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct RecorderState {
    next_seq: u64,
    entries: VecDeque<RecordedRequest>,
    max: usize,
}

/// The request log of every system, plus the optional Stripe JSON Lines file.
#[derive(Clone)]
pub(crate) struct Recorder {
    state: Arc<Mutex<RecorderState>>,
    stripe_jsonl: Option<Arc<Mutex<std::fs::File>>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

/// The conformance script's line: method, path, headers (no credentials), and the raw form body
/// (POST) or query (GET).
#[derive(Serialize)]
struct ConformanceLine<'a> {
    method: &'a str,
    path: &'a str,
    headers: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
}

impl Recorder {
    pub(crate) fn new(stripe_jsonl: Option<&Path>, max: usize) -> std::io::Result<Self> {
        let file = match stripe_jsonl {
            Some(path) => Some(Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ))),
            None => None,
        };
        Ok(Self {
            state: Arc::new(Mutex::new(RecorderState {
                max: max.max(1),
                ..RecorderState::default()
            })),
            stripe_jsonl: file,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `req` (its `seq` is assigned here) and returns the sequence number.
    pub(crate) fn record(&self, mut req: RecordedRequest) -> u64 {
        let mut st = self.lock();
        st.next_seq += 1;
        req.seq = st.next_seq;
        let seq = req.seq;
        // Appended under the lock, so the file's order is the arrival order.
        if req.system == System::Stripe && req.path.starts_with("/v1/") {
            self.append_conformance(&req);
        }
        st.entries.push_back(req);
        // Long runs (the benchmark) keep only the latest requests in memory.
        while st.entries.len() > st.max {
            st.entries.pop_front();
        }
        seq
    }

    fn append_conformance(&self, req: &RecordedRequest) {
        let Some(file) = &self.stripe_jsonl else {
            return;
        };
        let headers = req
            .headers
            .iter()
            // The API key stays out of the file.
            .filter(|(k, _)| k.as_str() != "authorization")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let is_get = req.method.eq_ignore_ascii_case("GET");
        let line = ConformanceLine {
            method: &req.method,
            path: &req.path,
            headers,
            body: (!is_get).then_some(req.body.as_str()),
            query: if is_get { req.query.as_deref() } else { None },
        };
        if let Ok(mut text) = serde_json::to_string(&line) {
            text.push('\n');
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = f.write_all(text.as_bytes());
            let _ = f.flush();
        }
    }

    pub(crate) fn set_status(&self, seq: u64, status: u16) {
        let mut st = self.lock();
        if let Some(e) = st.entries.iter_mut().rev().find(|e| e.seq == seq) {
            e.status = Some(status);
        }
    }

    pub(crate) fn requests(&self, system: Option<System>) -> Vec<RecordedRequest> {
        self.lock()
            .entries
            .iter()
            .filter(|e| system.is_none_or(|s| e.system == s))
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().entries.clear();
    }
}
