//! The sealed columns: which they are, how a row's associated data is built, and the batched
//! re-seal behind `chairside rotate-key` and the start-up sealing of rows written before
//! migration 0003. See `docs/data-at-rest.md` for what stays in clear and why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chairside_workflow::WorkflowState;
use serde::de::DeserializeOwned;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use super::patient::fold_consent;
use crate::store::crypto::{CryptoError, Keyring};
use crate::store::{Result, StoreError};

/// One column sealed with the keyring, bound to its row by the associated data
/// `{aad}{key columns joined by '/'}`.
#[derive(Debug)]
pub(in crate::store) struct SealedColumn {
    pub(in crate::store) table: &'static str,
    pub(in crate::store) column: &'static str,
    pub(in crate::store) keys: &'static [&'static str],
    aad: &'static str,
}

/// The workflow state document: amounts, lender links, Checkout URLs, names.
pub(in crate::store) const WORKFLOW_STATE: SealedColumn = SealedColumn {
    table: "workflows",
    column: "state",
    keys: &["id"],
    aad: "workflows:",
};
/// Outbox commands: messages with their bodies and links, amounts, notes.
pub(in crate::store) const OUTBOX_COMMAND: SealedColumn = SealedColumn {
    table: "outbox",
    column: "command",
    keys: &["workflow_id", "seq"],
    aad: "outbox:",
};
/// Inbox events: lender decisions with amounts and links, payment facts.
pub(in crate::store) const INBOX_EVENT: SealedColumn = SealedColumn {
    table: "inbox",
    column: "event",
    keys: &["id"],
    aad: "inbox:",
};
/// Audit details: prices, Stripe ids, lender outcomes.
pub(in crate::store) const EVENTS_DETAIL: SealedColumn = SealedColumn {
    table: "events",
    column: "detail",
    keys: &["id"],
    aad: "events:",
};
/// Staff task reasons: may quote amounts or a counteroffer.
pub(in crate::store) const TASK_REASON: SealedColumn = SealedColumn {
    table: "staff_tasks",
    column: "reason",
    keys: &["id"],
    aad: "staff_tasks:",
};
/// Patient contacts (their associated data predates this module and is kept).
pub(in crate::store) const PATIENT_CONTACT: SealedColumn = SealedColumn {
    table: "patients",
    column: "contact",
    keys: &["practice_id", "patient_id"],
    aad: "patient:",
};

/// The phone number of an SMS consent row, kept only so `rotate-key` can re-hash the row under the
/// current key. Bound to the row's practice and lookup hash: a sealed number moved to another row
/// does not open.
pub(in crate::store) const CONSENT_PHONE: SealedColumn = SealedColumn {
    table: "sms_consent",
    column: "phone_sealed",
    keys: &["practice_id", "phone_key"],
    aad: "sms_consent:",
};

/// Consent rows a rotation re-hashes: a sealed number, and a hash or seal not under the current
/// key. `?1` is the current key id, `?2` the current header.
const CONSENT_PENDING: &str = "phone_sealed IS NOT NULL
    AND (key_id IS NOT ?1 OR typeof(phone_sealed) <> 'blob' OR substr(phone_sealed, 1, 2) <> ?2)";

/// An intake's consultation summary (staff-facing; never sent anywhere).
pub(in crate::store) const INTAKE_SUMMARY: SealedColumn = SealedColumn {
    table: "intakes",
    column: "summary",
    keys: &["id"],
    aad: "intakes:",
};

/// A patient's report of a link-only lender's decision: the lender, the amount reported.
pub(in crate::store) const PATIENT_REPORT: SealedColumn = SealedColumn {
    table: "patient_reports",
    column: "report",
    keys: &["id"],
    aad: "patient_reports:",
};

/// Every sealed column a rotation re-seals (consent numbers are re-hashed apart).
pub(in crate::store) const ALL: [&SealedColumn; 8] = [
    &WORKFLOW_STATE,
    &OUTBOX_COMMAND,
    &INBOX_EVENT,
    &EVENTS_DETAIL,
    &TASK_REASON,
    &PATIENT_CONTACT,
    &INTAKE_SUMMARY,
    &PATIENT_REPORT,
];

impl SealedColumn {
    pub(in crate::store) fn associated(&self, keys: &[&str]) -> Vec<u8> {
        format!("{}{}", self.aad, keys.join("/")).into_bytes()
    }

    fn fail(&self, keys: &[&str], source: CryptoError) -> StoreError {
        StoreError::Sealed {
            table: self.table,
            row: keys.join("/"),
            source,
        }
    }

    /// Seals `plain` for the row named by `keys`.
    pub(in crate::store) fn seal(
        &self,
        ring: &Keyring,
        keys: &[&str],
        plain: &[u8],
    ) -> Result<Vec<u8>> {
        ring.seal(plain, &self.associated(keys))
            .map_err(|e| self.fail(keys, e))
    }

    /// Seals `value` as JSON.
    pub(in crate::store) fn seal_json<T: serde::Serialize>(
        &self,
        ring: &Keyring,
        keys: &[&str],
        value: &T,
    ) -> Result<Vec<u8>> {
        self.seal(ring, keys, &serde_json::to_vec(value)?)
    }

    /// Opens the row's value.
    pub(in crate::store) fn open(
        &self,
        ring: &Keyring,
        keys: &[&str],
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        ring.open(sealed, &self.associated(keys))
            .map_err(|e| self.fail(keys, e))
    }

    /// Opens the row's value as JSON.
    pub(in crate::store) fn open_json<T: DeserializeOwned>(
        &self,
        ring: &Keyring,
        keys: &[&str],
        sealed: &[u8],
    ) -> Result<T> {
        Ok(serde_json::from_slice(&self.open(ring, keys, sealed)?)?)
    }

    /// Opens the row's value as text.
    pub(in crate::store) fn open_text(
        &self,
        ring: &Keyring,
        keys: &[&str],
        sealed: &[u8],
    ) -> Result<String> {
        String::from_utf8(self.open(ring, keys, sealed)?)
            .map_err(|_| self.fail(keys, CryptoError::Decrypt))
    }
}

/// The id the next row of an `AUTOINCREMENT` table gets, so its sealed column can be bound to it
/// before the insert. Every write holds the `BEGIN IMMEDIATE` lock, so nothing takes it first.
pub(super) async fn next_id(conn: &mut SqliteConnection, table: &'static str) -> Result<i64> {
    let sql = format!(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0),
                    COALESCE((SELECT MAX(id) FROM {table}), 0)) + 1"
    );
    Ok(sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?)
}

/// Which rows a re-seal pass takes.
#[derive(Clone, Copy, Debug)]
enum Pass {
    /// Rows written before migration 0003: plain text, or contacts without a key id.
    Legacy,
    /// Every row not sealed under the current key.
    Rotate,
}

/// What a re-seal pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Rows re-sealed per table, in table order.
    pub resealed: Vec<(&'static str, u64)>,
    /// Write transactions used (one per batch).
    pub batches: u64,
    /// SMS consent rows that cannot be re-hashed under the current key: written before migration
    /// 0007, they hold no sealed number. They are found only while the key they were hashed with
    /// stays in the keyring, so while this is not 0 no previous key may be removed. Each is
    /// sealed and re-hashed on the next consent change for its number.
    pub consent_not_rehashable: u64,
}

impl ResealReport {
    /// Rows re-sealed (or re-hashed) in all tables.
    pub fn total(&self) -> u64 {
        self.resealed.iter().map(|(_, n)| n).sum()
    }

    /// Whether the pass left nothing that needs a previous key: every value is sealed, and every
    /// consent row hashed, under the current key. False while consent rows written before
    /// migration 0007 remain, because removing the key they were hashed with would lose an
    /// opt-out and let a patient who texted STOP be texted again.
    pub fn previous_keys_removable(&self) -> bool {
        self.consent_not_rehashable == 0
    }
}

impl SqliteStore {
    /// The events waiting in a workflow's inbox, oldest first, opened (operations and tests:
    /// the column is sealed, so the file alone does not show them).
    ///
    /// # Errors
    /// [`StoreError::Sealed`], [`StoreError::Database`].
    pub async fn inbox_events(
        &self,
        workflow: &chairside_workflow::WorkflowId,
    ) -> Result<Vec<chairside_workflow::Event>> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, event FROM inbox WHERE workflow_id = ? ORDER BY id")
                .bind(workflow.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|(id, sealed)| INBOX_EVENT.open_json(&self.key, &[&id.to_string()], sealed))
            .collect()
    }

    /// Re-seals every sealed value not yet under the keyring's current key, `batch` rows per
    /// transaction. Idempotent and resumable: a pass interrupted at any point leaves every row
    /// readable (under the old or the new key), and the next pass takes only what is left.
    ///
    /// # Errors
    /// [`StoreError::Sealed`] naming the table and row of a value no key in the ring opens;
    /// [`StoreError::Database`].
    /// SMS consent rows are re-hashed too: the sealed number is opened, hashed under the current
    /// key, and the row merged with any row already held for that hash (the latest change wins,
    /// an opt-out at an equal instant), so an opt-out survives the old key's removal. Rows
    /// without a sealed number are counted in
    /// [`ResealReport::consent_not_rehashable`].
    pub async fn rotate_key(&self, batch: u32) -> Result<ResealReport> {
        let mut report = self.reseal(Pass::Rotate, batch).await?;
        self.rehash_consent(batch, &mut report).await?;
        report.consent_not_rehashable = self.consent_rows_not_rehashable().await?;
        Ok(report)
    }

    /// SMS consent rows written before migration 0007: no sealed number, so a rotation cannot
    /// re-hash them (see [`ResealReport::consent_not_rehashable`]).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn consent_rows_not_rehashable(&self) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sms_consent WHERE phone_sealed IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn rehash_consent(&self, batch: u32, report: &mut ResealReport) -> Result<()> {
        let batch = batch.max(1);
        let header = self.key.current_header();
        let current = i64::from(self.key.current_id());
        let select = format!(
            "SELECT rowid, practice_id, phone_key, phone_sealed FROM sms_consent
             WHERE rowid > ?3 AND {CONSENT_PENDING} ORDER BY rowid LIMIT ?4"
        );
        let mut after = 0_i64;
        let mut done = 0_u64;
        loop {
            let mut tx = self.begin().await?;
            let rows = sqlx::query(&select)
                .bind(current)
                .bind(&header[..])
                .bind(after)
                .bind(i64::from(batch))
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                let rowid: i64 = row.try_get("rowid")?;
                after = rowid;
                let practice: String = row.try_get("practice_id")?;
                let hash: String = row.try_get("phone_key")?;
                // An earlier row of this batch may have folded this one in already.
                let still: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM sms_consent WHERE rowid = ?")
                        .bind(rowid)
                        .fetch_optional(&mut *tx)
                        .await?;
                if still.is_none() {
                    continue;
                }
                let phone = CONSENT_PHONE.open_text(
                    &self.key,
                    &[&practice, &hash],
                    row.try_get::<&[u8], _>("phone_sealed")?,
                )?;
                fold_consent(&mut tx, &self.key, &practice, &phone, None, Some(rowid)).await?;
            }
            let n = rows.len() as u64;
            if n == 0 {
                tx.rollback().await?;
                break;
            }
            self.finish(tx).await?;
            report.batches += 1;
            done += n;
            if n < u64::from(batch) {
                break;
            }
        }
        report.resealed.push((CONSENT_PHONE.table, done));
        Ok(())
    }

    /// How many sealed values, and consent rows that can be re-hashed, are not under the current
    /// key (0 after a finished rotation). Consent rows that cannot be re-hashed are counted apart,
    /// by [`SqliteStore::consent_rows_not_rehashable`].
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn rows_not_under_current_key(&self) -> Result<u64> {
        let mut total = 0;
        for col in ALL {
            let sql = format!(
                "SELECT COUNT(*) FROM {} WHERE {}",
                col.table,
                Self::pending(col, Pass::Rotate)
            );
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(&self.key.current_header()[..])
                .fetch_one(&self.pool)
                .await?;
            total += u64::try_from(n).unwrap_or(0);
        }
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM sms_consent WHERE {CONSENT_PENDING}"
        ))
        .bind(i64::from(self.key.current_id()))
        .bind(&self.key.current_header()[..])
        .fetch_one(&self.pool)
        .await?;
        total += u64::try_from(n).unwrap_or(0);
        Ok(total)
    }

    /// Seals the rows written before migration 0003 (called by `migrate`).
    pub(super) async fn seal_legacy_rows(&self) -> Result<ResealReport> {
        self.reseal(Pass::Legacy, 500).await
    }

    fn pending(col: &SealedColumn, pass: Pass) -> String {
        let c = col.column;
        match pass {
            Pass::Legacy => format!(
                "{c} IS NOT NULL AND (typeof({c}) <> 'blob' OR substr({c}, 1, 1) = X'00') AND ?1 IS NOT NULL"
            ),
            Pass::Rotate => {
                format!("{c} IS NOT NULL AND NOT (typeof({c}) = 'blob' AND substr({c}, 1, 2) = ?1)")
            }
        }
    }

    async fn reseal(&self, pass: Pass, batch: u32) -> Result<ResealReport> {
        let batch = batch.max(1);
        let header = self.key.current_header();
        let mut report = ResealReport::default();
        for col in ALL {
            let keys: Vec<String> = col
                .keys
                .iter()
                .map(|k| format!("CAST({k} AS TEXT)"))
                .collect();
            let select = format!(
                "SELECT rowid, {}, {c} AS value, typeof({c}) AS kind FROM {t}
                 WHERE rowid > ?2 AND {pending} ORDER BY rowid LIMIT ?3",
                keys.join(", "),
                c = col.column,
                t = col.table,
                pending = Self::pending(col, pass),
            );
            let update = format!(
                "UPDATE {} SET {} = ? WHERE rowid = ?",
                col.table, col.column
            );
            let mut after = 0_i64;
            let mut done = 0_u64;
            loop {
                let mut tx = self.begin().await?;
                let rows = sqlx::query(&select)
                    .bind(&header[..])
                    .bind(after)
                    .bind(i64::from(batch))
                    .fetch_all(&mut *tx)
                    .await?;
                for row in &rows {
                    let rowid: i64 = row.try_get(0)?;
                    let key_values: Vec<String> = (1..=col.keys.len())
                        .map(|i| row.try_get::<String, _>(i))
                        .collect::<Result<_, _>>()?;
                    let key_refs: Vec<&str> = key_values.iter().map(String::as_str).collect();
                    let plain = if row.try_get::<&str, _>("kind")? == "blob" {
                        col.open(&self.key, &key_refs, row.try_get::<&[u8], _>("value")?)?
                    } else {
                        // Written in clear before migration 0003.
                        row.try_get::<String, _>("value")?.into_bytes()
                    };
                    sqlx::query(&update)
                        .bind(col.seal(&self.key, &key_refs, &plain)?)
                        .bind(rowid)
                        .execute(&mut *tx)
                        .await?;
                    after = rowid;
                }
                let n = rows.len() as u64;
                if n == 0 {
                    tx.rollback().await?;
                    break;
                }
                self.finish(tx).await?;
                report.batches += 1;
                done += n;
                if n < u64::from(batch) {
                    break;
                }
            }
            report.resealed.push((col.table, done));
        }
        Ok(report)
    }
}

/// The workflow states the store last sealed or opened, each with the exact sealed bytes it was
/// read from or written as, shared by the store's writer and reader threads. A step loads (reader)
/// the state its previous step committed (writer), and its own commit reads the state stored
/// before it (the outbound events compare the two): when the stored bytes are the cached ones, the
/// state is taken from here instead of decrypted and parsed again. The cache belongs to one store
/// and opens with that store's keyring only, and holds only bytes sealed under its current key.
/// Equal bytes are the same authenticated ciphertext (a fresh random nonce per seal), so a hit
/// returns what opening them would; bytes remembered by a transaction that then rolled back are
/// never stored, so they are never matched.
///
/// Each workflow keeps two states: its latest, and the one before it. A commit remembers its state
/// before its transaction commits, and the other thread may meanwhile read the row as it still is;
/// that read finds the state before (docs/performance.md, "Statements found by address"). A state
/// opened on a miss never displaces the latest: the workflow's next load reads the committed row.
pub(super) struct StateCache {
    ring: Arc<Keyring>,
    /// Each state shared (`Arc`): a hit hands it out without copying the document, and a
    /// commit's state goes in without a copy either.
    states: Mutex<HashMap<String, Entry>>,
}

/// A cached state: the exact sealed bytes it is stored as, and the state they open to.
type Cached = (Vec<u8>, Arc<WorkflowState>);

/// A workflow's cached states.
struct Entry {
    /// The state its last commit remembered, or the first one opened.
    latest: Cached,
    /// The one before: what the latest replaced, or what a read found while the latest's
    /// transaction had not committed (or had rolled back).
    before: Option<Cached>,
}

impl Entry {
    fn find(&self, sealed: &[u8]) -> Option<Arc<WorkflowState>> {
        std::iter::once(&self.latest)
            .chain(&self.before)
            .find(|(bytes, _)| bytes.as_slice() == sealed)
            .map(|(_, state)| state.clone())
    }
}

/// At most this many workflows' states are kept (the runner works on `concurrency` workflows at
/// once; the rest are read rarely).
const STATE_CACHE_MAX: usize = 256;

impl StateCache {
    /// An empty cache opening with `ring`, the store's keyring.
    pub(super) fn new(ring: Arc<Keyring>) -> Self {
        Self {
            ring,
            states: Mutex::new(HashMap::new()),
        }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding it leaves whole entries: each is changed at once.
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `sealed` was sealed under the current key (the only bytes the cache holds).
    fn under_current_key(&self, sealed: &[u8]) -> bool {
        Keyring::key_id(sealed).ok().flatten() == Some(self.ring.current_id())
    }

    /// Opens workflow `id`'s stored state `sealed`, from the cache when it holds these very
    /// bytes, otherwise decrypted and parsed (and then cached).
    pub(super) fn open(&self, id: &str, sealed: &[u8]) -> Result<WorkflowState> {
        self.open_shared(id, sealed).map(Arc::unwrap_or_clone)
    }

    /// As [`StateCache::open`], the state shared with the cache (no copy of the document when
    /// the cache holds these bytes).
    pub(super) fn open_shared(&self, id: &str, sealed: &[u8]) -> Result<Arc<WorkflowState>> {
        if !self.under_current_key(sealed) {
            return WORKFLOW_STATE
                .open_json(&self.ring, &[id], sealed)
                .map(Arc::new);
        }
        let cached = self.states().get(id).and_then(|entry| entry.find(sealed));
        if let Some(state) = cached {
            return Ok(state);
        }
        let state: Arc<WorkflowState> =
            Arc::new(WORKFLOW_STATE.open_json(&self.ring, &[id], sealed)?);
        self.keep(id, (sealed.to_vec(), state.clone()), false);
        Ok(state)
    }

    /// Records that workflow `id`'s state is now stored as `sealed` (sealed from `state`), so the
    /// next [`StateCache::open`] of these bytes neither decrypts nor parses. Takes both as they
    /// are: nothing is copied.
    pub(super) fn remember(&self, id: &str, sealed: Vec<u8>, state: Arc<WorkflowState>) {
        if self.under_current_key(&sealed) {
            self.keep(id, (sealed, state), true);
        }
    }

    /// Caches `state` as workflow `id`'s. A commit's state (`committed`) becomes the latest and
    /// the latest becomes the state before; a state opened on a miss becomes the state before, or
    /// the latest of a workflow the cache did not hold. Under callgrind at 96 plans, 521 states
    /// were opened on misses while a state opened on a miss replaced the latest, where one per
    /// new workflow (96) was expected.
    fn keep(&self, id: &str, state: Cached, committed: bool) {
        let mut states = self.states();
        if let Some(entry) = states.get_mut(id) {
            if committed && entry.latest.0 == state.0 {
                // The same commit remembered again (its transaction ran a second time, see
                // `thread`): the state before stays what it was.
                entry.latest = state;
            } else if committed {
                entry.before = Some(std::mem::replace(&mut entry.latest, state));
            } else {
                entry.before = Some(state);
            }
            return;
        }
        if states.len() >= STATE_CACHE_MAX {
            // Any one goes: a miss only costs a decrypt.
            if let Some(old) = states.keys().next().cloned() {
                states.remove(&old);
            }
        }
        states.insert(
            id.to_owned(),
            Entry {
                latest: state,
                before: None,
            },
        );
    }
}

#[cfg(test)]
mod state_cache_tests {
    use std::sync::Arc;

    use chairside_workflow::{WorkflowKey, WorkflowState};
    use financing_core::{PatientId, PlanId, PracticeId};

    use super::{StateCache, WORKFLOW_STATE};
    use crate::store::crypto::{DataKey, Keyring};

    fn state(plan: &str) -> WorkflowState {
        WorkflowState::new(
            WorkflowKey {
                practice_id: PracticeId::new("smile-dental-test"),
                plan_id: PlanId::new(plan),
                revision: "1".into(),
            },
            PatientId::new("pat-1"),
            "2026-06-02T15:00:00Z".parse().unwrap(),
        )
    }

    #[test]
    fn a_state_opens_from_its_bytes_once_and_then_from_the_cache() {
        let ring = Arc::new(Keyring::from(DataKey::generate()));
        let cache = StateCache::new(ring.clone());
        let original = state("tx-1");
        let sealed = WORKFLOW_STATE
            .seal_json(&ring, &["wf-1"], &original)
            .unwrap();
        // A miss decrypts and parses.
        assert_eq!(cache.open("wf-1", &sealed).unwrap(), original);
        // Bound to its row: the same bytes under another id do not open.
        assert!(cache.open("wf-2", &sealed).is_err());
        // A hit returns what was remembered for these very bytes without opening them: the
        // remembered state differs from the sealed one only so the test can tell.
        let remembered = state("tx-remembered");
        cache.remember("wf-1", sealed.clone(), Arc::new(remembered.clone()));
        assert_eq!(cache.open("wf-1", &sealed).unwrap(), remembered);
    }

    #[test]
    fn other_bytes_or_another_keyring_are_never_served_from_the_cache() {
        let ring = Arc::new(Keyring::from(DataKey::generate()));
        let cache = StateCache::new(ring.clone());
        let original = state("tx-1");
        let sealed = WORKFLOW_STATE
            .seal_json(&ring, &["wf-1"], &original)
            .unwrap();
        cache.remember("wf-1", sealed.clone(), Arc::new(original.clone()));
        // Tampered bytes are opened (and refused), not matched by id.
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(cache.open("wf-1", &tampered).is_err());
        // A newer state of the row is read from its bytes, not from the older entry.
        let newer = state("tx-newer");
        let resealed = WORKFLOW_STATE.seal_json(&ring, &["wf-1"], &newer).unwrap();
        assert_eq!(cache.open("wf-1", &resealed).unwrap(), newer);
        // Another keyring (a wrong data key) cannot read the row: its store's cache opens with
        // that keyring only.
        cache.remember("wf-1", sealed.clone(), Arc::new(original.clone()));
        let other = StateCache::new(Arc::new(Keyring::from(DataKey::generate())));
        assert!(other.open("wf-1", &sealed).is_err());
    }

    #[test]
    fn a_read_of_the_row_as_it_was_does_not_displace_the_state_a_commit_remembered() {
        let ring = Arc::new(Keyring::from(DataKey::generate()));
        let cache = StateCache::new(ring.clone());
        let before = state("tx-before");
        let stored = WORKFLOW_STATE.seal_json(&ring, &["wf-1"], &before).unwrap();
        // A step's commit remembers its state before its transaction commits. What it remembers
        // differs from what it sealed only so the test can tell a hit from an open.
        let committed = WORKFLOW_STATE
            .seal_json(&ring, &["wf-1"], &state("tx-after"))
            .unwrap();
        let remembered = state("tx-remembered");
        cache.remember("wf-1", committed.clone(), Arc::new(remembered.clone()));
        // Meanwhile the reading thread still sees the row as it was: opened from its bytes.
        assert_eq!(cache.open("wf-1", &stored).unwrap(), before);
        // The next load reads the committed row: a hit.
        assert_eq!(cache.open("wf-1", &committed).unwrap(), remembered);
        // A workflow without an entry gets one from its first open.
        let other = WORKFLOW_STATE.seal_json(&ring, &["wf-2"], &before).unwrap();
        let first = cache.open_shared("wf-2", &other).unwrap();
        assert_eq!(*first, before);
        assert!(Arc::ptr_eq(
            &first,
            &cache.open_shared("wf-2", &other).unwrap()
        ));
    }

    /// Workflow `wf-1`'s row sealed for `plan`'s state, under `ring`.
    fn sealed(ring: &Keyring, plan: &str) -> Vec<u8> {
        WORKFLOW_STATE
            .seal_json(ring, &["wf-1"], &state(plan))
            .unwrap()
    }

    /// What a commit sealed, and what it remembered (which differs from what it sealed, so a
    /// hit shows).
    type Commit = (Vec<u8>, WorkflowState);

    /// A cache of `wf-1` after two commits, with its keyring and the two commits.
    fn two_commits() -> (StateCache, Arc<Keyring>, [Commit; 2]) {
        let ring = Arc::new(Keyring::from(DataKey::generate()));
        let cache = StateCache::new(ring.clone());
        let commits = [
            (sealed(&ring, "tx-1"), state("tx-1-kept")),
            (sealed(&ring, "tx-2"), state("tx-2-kept")),
        ];
        for (bytes, kept) in &commits {
            cache.remember("wf-1", bytes.clone(), Arc::new(kept.clone()));
        }
        (cache, ring, commits)
    }

    #[test]
    fn the_state_before_the_latest_is_served_too_while_or_after_its_commit_goes_wrong() {
        let (cache, ring, [(first, first_kept), (second, second_kept)]) = two_commits();
        // The row as it was before the second commit, and as it is after: both hits.
        assert_eq!(cache.open("wf-1", &first).unwrap(), first_kept);
        assert_eq!(cache.open("wf-1", &second).unwrap(), second_kept);
        // A third commit remembers its state and rolls back: the row still holds the second.
        let third = sealed(&ring, "tx-3");
        cache.remember("wf-1", third, Arc::new(state("tx-3-kept")));
        assert_eq!(cache.open("wf-1", &second).unwrap(), second_kept);
        // Two commits on, the first is gone: opened from its bytes, then kept as the state
        // before (a second read is the same shared state).
        assert_eq!(cache.open("wf-1", &first).unwrap(), state("tx-1"));
        let opened = cache.open_shared("wf-1", &first).unwrap();
        assert!(Arc::ptr_eq(
            &opened,
            &cache.open_shared("wf-1", &first).unwrap()
        ));
    }

    #[test]
    fn a_commit_remembered_twice_keeps_the_state_before_it() {
        // A group commit that runs its transactions a second time (`thread`) remembers each
        // step's state again.
        let (cache, _ring, [(first, first_kept), (second, second_kept)]) = two_commits();
        cache.remember("wf-1", second.clone(), Arc::new(second_kept.clone()));
        // The row as it is until the second commit is on disk is still a hit.
        assert_eq!(cache.open("wf-1", &first).unwrap(), first_kept);
        assert_eq!(cache.open("wf-1", &second).unwrap(), second_kept);
    }
}
