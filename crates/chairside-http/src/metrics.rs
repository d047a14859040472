//! Prometheus metrics through the `metrics` facade. Labels are closed sets (provider, reason,
//! status, outcome): never an id, never PHI.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use chrono::{DateTime, Utc};

use chairside_engine::store::ReportStore;
use chairside_workflow::{Status, WorkflowId};

/// How long the workflow gauges are served from the last refresh before the store is asked again.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The most ledger notes one refresh adds to the histogram; the rest come with the next ones.
const NOTES_PER_REFRESH: u32 = 1_000;

/// Workflows by status (gauge, label `status`).
pub(crate) const WORKFLOWS: &str = "chairside_workflows";
/// Webhook deliveries refused (counter, labels `provider`, `reason`).
pub(crate) const WEBHOOK_REJECTIONS: &str = "chairside_webhook_rejections_total";
/// Webhook deliveries accepted (counter, labels `provider`, `outcome` = `recorded` | `duplicate`
/// | `held`).
pub(crate) const WEBHOOKS_RECEIVED: &str = "chairside_webhooks_received_total";
/// What is set aside because it does not decode (gauge, label `kind` = `workflow` | `delivery`).
pub(crate) const QUARANTINED: &str = "chairside_quarantined";
/// Polls of a practice system failed in a row (`practice`, `source`).
pub(crate) const DETECTION_FAILURES: &str = "chairside_detection_consecutive_failures";
/// Open detection tasks: records that could not be read or checked (`practice`, `source`).
pub(crate) const DETECTION_UNREADABLE: &str = "chairside_detection_unreadable_records";
/// Plans waiting for a retry of their details (`practice`, `source`).
pub(crate) const DETECTION_PENDING: &str = "chairside_detection_pending_plans";
/// When the last poll was recorded, seconds since the epoch (`practice`, `source`).
pub(crate) const DETECTION_LAST_GOOD: &str = "chairside_detection_last_good_poll_timestamp_seconds";
/// Workflow rows a listing skipped because they do not decode, since start (gauge).
pub(crate) const SKIPPED_UNDECODABLE: &str = "chairside_listing_skipped_undecodable";
/// Acceptance in the practice system to ledger note, in seconds (histogram).
pub(crate) const OPERATORY_TO_LEDGER: &str = "chairside_operatory_to_ledger_seconds";

/// Buckets from a quarter minute to a week: most plans settle in minutes, some wait on patients.
const O2L_BUCKETS: &[f64] = &[
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    4.0 * 3600.0,
    86_400.0,
    7.0 * 86_400.0,
];

const STATUSES: [Status; 4] = [
    Status::Active,
    Status::WaitingOnStaff,
    Status::Done,
    Status::Cancelled,
];

/// The metrics of the process and their Prometheus rendering.
///
/// Either it owns a recorder that is *not* installed globally ([`Metrics::local`]: tests, and
/// embedding next to another recorder), and the HTTP surface records into it explicitly; or it
/// installs the recorder globally ([`Metrics::install_global`]: the binary), so metrics the runner
/// and the connectors record with the `metrics` macros appear on `/metrics` as well.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    handle: PrometheusHandle,
    local: Option<PrometheusRecorder>,
    /// When the gauges were last refreshed, and how far the histogram has read.
    cache: tokio::sync::Mutex<Refresh>,
}

#[derive(Default)]
struct Refresh {
    last: Option<Instant>,
    /// The last ledger note in the histogram: `(written at, workflow)`.
    mark: Option<(DateTime<Utc>, WorkflowId)>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("global", &self.inner.local.is_none())
            .finish_non_exhaustive()
    }
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(OPERATORY_TO_LEDGER.into()), O2L_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

impl Metrics {
    /// Metrics with a recorder of their own, not installed globally.
    pub fn local() -> Self {
        let recorder = builder().build_recorder();
        Self::with(recorder.handle(), Some(recorder))
    }

    /// Installs the Prometheus recorder as the process's global recorder.
    ///
    /// # Errors
    /// [`BuildError`] when a global recorder is already installed.
    pub fn install_global() -> Result<Self, BuildError> {
        Ok(Self::with(builder().install_recorder()?, None))
    }

    fn with(handle: PrometheusHandle, local: Option<PrometheusRecorder>) -> Self {
        Self {
            inner: Arc::new(Inner {
                handle,
                local,
                cache: tokio::sync::Mutex::new(Refresh::default()),
            }),
        }
    }

    /// Runs `f` with this recorder current: the `metrics` macros inside record here.
    pub fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.inner.local {
            Some(recorder) => metrics::with_local_recorder(recorder, f),
            None => f(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    pub(crate) fn webhook_rejected(&self, provider: &'static str, reason: &'static str) {
        self.in_scope(|| {
            metrics::counter!(WEBHOOK_REJECTIONS, "provider" => provider, "reason" => reason)
                .increment(1);
        });
    }

    pub(crate) fn webhook_received(&self, provider: &'static str, fresh: bool) {
        let outcome = if fresh { "recorded" } else { "duplicate" };
        self.in_scope(|| {
            metrics::counter!(WEBHOOKS_RECEIVED, "provider" => provider, "outcome" => outcome)
                .increment(1);
        });
    }

    /// A verified delivery that did not parse, held for staff.
    pub(crate) fn webhook_held(&self, provider: &'static str) {
        self.in_scope(|| {
            metrics::counter!(WEBHOOKS_RECEIVED, "provider" => provider, "outcome" => "held")
                .increment(1);
        });
    }

    /// Sets the detection gauges, per practice and source (ids only, never patient data).
    pub(crate) fn detection(&self, health: &[chairside_engine::store::detection::DetectionHealth]) {
        self.in_scope(|| {
            for h in health {
                let labels = [
                    ("practice", h.practice_id.to_string()),
                    ("source", h.source.clone()),
                ];
                metrics::gauge!(DETECTION_FAILURES, &labels).set(f64::from(h.consecutive_failures));
                metrics::gauge!(DETECTION_UNREADABLE, &labels).set(f64::from(h.unreadable_records));
                metrics::gauge!(DETECTION_PENDING, &labels).set(f64::from(h.pending_plans));
                // Seconds since the epoch fit an f64 exactly.
                #[allow(clippy::cast_precision_loss)]
                if let Some(t) = h.last_good_poll_at {
                    metrics::gauge!(DETECTION_LAST_GOOD, &labels).set(t.timestamp() as f64);
                }
            }
        });
    }

    /// Sets the quarantine gauges.
    pub(crate) fn quarantine(&self, workflows: usize, deliveries: usize, skipped: u64) {
        self.in_scope(|| {
            // Counts fit an f64 exactly far beyond any store's size.
            #[allow(clippy::cast_precision_loss)]
            {
                metrics::gauge!(QUARANTINED, "kind" => "workflow").set(workflows as f64);
                metrics::gauge!(QUARANTINED, "kind" => "delivery").set(deliveries as f64);
                metrics::gauge!(SKIPPED_UNDECODABLE).set(skipped as f64);
            }
        });
    }

    /// Refreshes the workflow gauges and the operatory-to-ledger histogram from the store, at
    /// most once every [`REFRESH_EVERY`]: one `GROUP BY` over the status column and one indexed
    /// read of the ledger notes written since the last refresh. Nothing is listed or decoded, so
    /// a flood of scrapes costs the store at most two small queries per interval. Concurrent
    /// scrapes wait for the one refresh in progress.
    pub(crate) async fn refresh(&self, store: &dyn ReportStore) {
        let mut cache = self.inner.cache.lock().await;
        if cache.last.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return;
        }
        cache.last = Some(Instant::now());
        match store.workflow_counts().await {
            Ok(found) => {
                let mut counts: BTreeMap<&'static str, u64> =
                    STATUSES.iter().map(|s| (s.label(), 0)).collect();
                for (status, n) in found {
                    *counts.entry(status.label()).or_default() += n;
                }
                self.in_scope(|| {
                    for (status, n) in counts {
                        // Counts fit an f64 exactly far beyond any store's size.
                        #[allow(clippy::cast_precision_loss)]
                        metrics::gauge!(WORKFLOWS, "status" => status).set(n as f64);
                    }
                });
            }
            // Serve what we have: a scrape that fails outright hides the other metrics too.
            Err(e) => tracing::warn!(error = %e, "metrics: counting workflows failed"),
        }
        match store
            .ledger_notes_after(cache.mark.as_ref(), NOTES_PER_REFRESH)
            .await
        {
            Ok(notes) => {
                if let Some(last) = notes.last() {
                    cache.mark = Some((last.written_at, last.id.clone()));
                }
                self.in_scope(|| {
                    for n in notes {
                        #[allow(clippy::cast_precision_loss)]
                        let secs = (n.written_at - n.accepted_at).num_milliseconds().max(0) as f64
                            / 1000.0;
                        metrics::histogram!(OPERATORY_TO_LEDGER).record(secs);
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "metrics: reading ledger note times failed"),
        }
    }
}
