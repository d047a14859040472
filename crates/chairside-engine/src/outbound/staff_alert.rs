//! Staff alerts as a [`Subscriber`]: each new staff task (`workflow.needs_staff`) emails the
//! practice's staff address, at most once per task; tasks that arrive together (within the
//! practice's digest window) go out as one email listing them all.
//!
//! What the alert says is minimum necessary (COMPLIANCE.md §6): the patient's initials, the plan's
//! id in the practice system, the task's reason (reasons carry no PHI: amounts, lender names,
//! what to do) and a link to the dashboard, where staff sign in for the rest. Never a name, a
//! phone, an email or a procedure.
//!
//! The digest: a task's alert waits until its window (`digest_window`) has passed, then its
//! delivery (the lead) collects every task of the practice written within one window of it that
//! no alert holds yet ([`plan_digest`], pure) and records the set, all or nothing, in the store
//! ([`OutboxStore::collect_digest`](crate::store::OutboxStore::collect_digest)) before anything is sent. An event belongs to one digest
//! only; the lead's delivery sends it, the others' deliveries find it collected and are done. A
//! single task reads as it always did (the [`StaffAlert`] email, under the key
//! `staff-alert:{event id}`); several are one [`StaffDigest`] email, under a key derived from
//! the set ([`digest_key`]).
//!
//! At most once: the dispatcher delivers each event once per subscriber (and again only after a
//! crash mid-call); a crash after collecting and before sending leaves the lead's delivery to be
//! retried, which finds its digest and sends it; the send is journalled under the digest's key
//! before it goes out ([`DeliveryStore`]), so an attempt whose outcome is unknown is taken as
//! sent, never repeated.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Language, PracticeId};
use messaging::{
    EmailAddress, EmailMessageId, EmailSender, RenderedEmail, StaffAlert, StaffDigest,
    StaffDigestTask, Templates,
};
use sha2::{Digest as _, Sha256};
use url::Url;

use super::events::{EventType, OutboundEvent};
use super::{DeliveryError, Subscriber};
use crate::store::detection::{DetectionKind, DetectionTask};
use crate::store::outbox::{Digest, StoredEvent};
use crate::store::{DeliveryStore, SendRecord, Store};
use chairside_workflow::{TaskKind, WorkflowState};

/// The journal channel of staff alerts.
const CHANNEL: &str = "staff_alert";

/// The most tasks one digest lists; more make another digest.
pub const MAX_DIGEST: usize = 25;

/// The digest window when the practice sets none.
pub const DEFAULT_DIGEST_WINDOW: Duration = Duration::from_secs(120);

/// Sends a staff alert email under a stable key (the practice's SMTP sender; a fake in tests).
#[async_trait]
pub trait AlertMailer: Send + Sync {
    /// Sends `email` to `to` with the stable `Message-ID` of `key`.
    ///
    /// # Errors
    /// [`messaging::Error`]; [`financing_core::ErrorKind::Indeterminate`] when the server may
    /// have it.
    async fn send_keyed(
        &self,
        to: &EmailAddress,
        email: &RenderedEmail,
        key: &str,
    ) -> messaging::Result<EmailMessageId>;
}

#[async_trait]
impl AlertMailer for EmailSender {
    async fn send_keyed(
        &self,
        to: &EmailAddress,
        email: &RenderedEmail,
        key: &str,
    ) -> messaging::Result<EmailMessageId> {
        EmailSender::send_keyed(self, to, email, key).await
    }
}

/// One practice's alert settings.
#[derive(Clone)]
pub struct AlertRoute {
    /// The practice's name, as staff know it.
    pub practice_name: String,
    /// Where alerts go: the practice's own staff mailbox.
    pub to: EmailAddress,
    /// The practice's SMTP sender.
    pub sender: Arc<dyn AlertMailer>,
    /// Only these task kinds (labels, `counteroffer`, `patient_quiet`, ...); `None` for all.
    pub kinds: Option<Vec<String>>,
    /// Tasks written within this of each other go out as one digest; each alert waits this long
    /// for company. Zero: one email per task, at once.
    pub digest_window: Duration,
    /// The staff's language: the alert and the digest are written in it.
    pub language: Language,
}

impl fmt::Debug for AlertRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertRoute")
            .field("kinds", &self.kinds)
            .field("digest_window", &self.digest_window)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// Emails each practice's staff address about new tasks. See the [module documentation](self).
pub struct StaffAlerts {
    routes: HashMap<PracticeId, AlertRoute>,
    store: Arc<dyn Store>,
    journal: Arc<dyn DeliveryStore>,
    templates: Arc<Templates>,
    dashboard: Url,
}

impl fmt::Debug for StaffAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffAlerts")
            .field("practices", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl StaffAlerts {
    /// Alerts for the practices in `routes`, read from `store`, each send journalled in `journal`
    /// (at most once), linking to the dashboard under `public_base_url`
    /// (`{base}staff/workflows/{id}`).
    ///
    /// # Errors
    /// A message when the shipped templates do not load.
    pub fn new(
        routes: HashMap<PracticeId, AlertRoute>,
        store: Arc<dyn Store>,
        journal: Arc<dyn DeliveryStore>,
        public_base_url: Url,
    ) -> Result<Self, String> {
        let templates = Templates::load().map_err(|e| format!("staff alert templates: {e}"))?;
        Ok(Self {
            routes,
            store,
            journal,
            templates: Arc::new(templates),
            dashboard: public_base_url,
        })
    }
}

/// What a task kind asks of staff, for an alert whose task is no longer on the workflow (raised
/// beside it, or already answered): never the patient's details.
pub fn kind_reason(kind: &str) -> String {
    let Some(kind) = TaskKind::from_label(kind) else {
        return "a task needs a person".to_owned();
    };
    // Exhaustive, so a new kind cannot ship without saying what it asks (as `kind_es`).
    let what = match kind {
        TaskKind::BadData => "the plan's data cannot be priced; correct it in the practice system",
        TaskKind::Unreachable => {
            "a message could not reach the patient; check or add their phone and email"
        }
        TaskKind::Counteroffer => "a lender made a counteroffer to discuss with the patient",
        TaskKind::PatientQuiet => "the patient did not finish; call them, then resend the link",
        TaskKind::NoFinancing => "no lender approved; discuss payment with the patient",
        TaskKind::PaymentFailed => "a payment failed; the patient was told",
        TaskKind::PaymentReversed => "a payment was refunded, disputed or its schedule ended",
        TaskKind::SystemError => "an external call failed; retry once the cause is fixed",
        TaskKind::ConsentRefusal => "the patient refused texts in their own words",
        TaskKind::Settlement => "a lender charge is for staff to run",
        TaskKind::LenderNeedsStaff => "a lender needs a person",
        TaskKind::LenderNoDecision => {
            "no decision was recorded for a link-only lender; check its portal and record it"
        }
        TaskKind::PatientRecord => {
            "the patient's record is to be entered in the practice system by hand"
        }
        TaskKind::PlanRecord => {
            "the treatment plan is to be entered in the practice system by hand"
        }
        TaskKind::PatientReport => {
            "the patient reported a lender's decision; check the lender's portal and confirm"
        }
    };
    what.to_owned()
}

/// The alert for `task` (its label) on `state`: the plan's id and the task's reason when the
/// workflow still carries that task, else what the kind asks. Pure.
pub fn alert_reason(state: &WorkflowState, task: &str) -> String {
    let reason = state
        .staff_task
        .as_ref()
        .filter(|t| t.kind.label() == task)
        .map_or_else(|| kind_reason(task), |t| t.reason.clone());
    format!(
        "plan {} ({}): {reason}",
        state.key.plan_id,
        task.replace('_', " ")
    )
}

/// A task kind in Spanish: its name and what it asks of staff. Every kind has one (the match is
/// exhaustive, so a new kind cannot ship without its Spanish).
fn kind_es(kind: TaskKind) -> (&'static str, &'static str) {
    match kind {
        TaskKind::BadData => (
            "datos del plan",
            "no se puede calcular el precio con los datos del plan; corríjalos en el sistema del consultorio",
        ),
        TaskKind::Unreachable => (
            "paciente sin contacto",
            "un mensaje no llegó al paciente; revise o agregue su teléfono y su correo electrónico",
        ),
        TaskKind::Counteroffer => (
            "contraoferta",
            "un prestamista hizo una contraoferta que hay que hablar con el paciente",
        ),
        TaskKind::PatientQuiet => (
            "paciente sin respuesta",
            "el paciente no terminó; llámelo y luego reenvíe el enlace",
        ),
        TaskKind::NoFinancing => (
            "sin financiamiento",
            "ningún prestamista aprobó; hable del pago con el paciente",
        ),
        TaskKind::PaymentFailed => ("pago fallido", "un pago falló; ya se le avisó al paciente"),
        TaskKind::PaymentReversed => (
            "pago revertido",
            "un pago fue reembolsado o disputado, o su calendario de pagos terminó",
        ),
        TaskKind::SystemError => (
            "error de sistema",
            "una llamada a otro sistema falló; vuelva a intentarlo cuando la causa esté corregida",
        ),
        TaskKind::ConsentRefusal => (
            "rechazo de mensajes",
            "el paciente rechazó los mensajes de texto con sus propias palabras",
        ),
        TaskKind::Settlement => (
            "cobro al prestamista",
            "el personal debe hacer un cobro al prestamista",
        ),
        TaskKind::LenderNeedsStaff => ("prestamista", "un prestamista necesita a una persona"),
        TaskKind::LenderNoDecision => (
            "sin decisión del prestamista",
            "no se registró la decisión del prestamista a tiempo; búsquela en el portal del prestamista",
        ),
        TaskKind::PatientRecord => (
            "ficha del paciente",
            "cree al paciente en el sistema del consultorio con los datos del registro de admisión",
        ),
        TaskKind::PlanRecord => (
            "plan de tratamiento",
            "ingrese el plan de tratamiento del caso en el sistema del consultorio",
        ),
        TaskKind::PatientReport => (
            "informe del paciente",
            "el paciente informó la decisión de un prestamista; revísela en el portal del prestamista y confírmela o rechácela",
        ),
    }
}

/// The alert for `task` (its label) on `state` in the staff's language `lang`. English is
/// [`alert_reason`]. In Spanish, the kind's name and what it asks: the task's own reason is
/// written by the workflow in English (it names amounts and lenders; no PHI), so the alert
/// points to the dashboard for it rather than mixing languages. Pure.
pub fn alert_reason_in(state: &WorkflowState, task: &str, lang: Language) -> String {
    match (lang, TaskKind::from_label(task)) {
        (Language::Es, Some(kind)) => {
            let (name, what) = kind_es(kind);
            format!(
                "plan {} ({name}): {what}. Los detalles están en el panel.",
                state.key.plan_id
            )
        }
        (Language::Es, None) => format!(
            "plan {}: una tarea necesita a una persona. Los detalles están en el panel.",
            state.key.plan_id
        ),
        _ => alert_reason(state, task),
    }
}

/// What a set-aside (quarantined) workflow's alert says: what happened and what to do. The
/// front desk cannot repair stored data; the operator can, and nothing runs for the plan until
/// then, so the patient may need a call.
pub fn set_aside_reason_in(plan: &str, lang: Language) -> String {
    match lang {
        Language::Es => format!(
            "plan {plan} (apartado): sus datos guardados no se pueden leer, así que Chairside lo \
             apartó y no hará nada más con él. Pida al operador de Chairside que lo repare; \
             mientras tanto, atienda al paciente directamente. Está en la sección \"Set aside\" \
             del panel."
        ),
        _ => format!(
            "plan {plan} (set aside): its stored data could not be read, so Chairside set it \
             aside and will do nothing more with it. Ask your Chairside operator to repair it; \
             until then, look after the patient directly. It is listed under \"Set aside\" on \
             the dashboard."
        ),
    }
}

/// A detection kind in English and Spanish: its name, what happened, and what to do (staff
/// fix the plan in the practice system; Chairside reads it again on its own; the task is
/// dismissed on the dashboard). Exhaustive, so a new kind cannot ship without both languages.
fn detection_words(
    kind: DetectionKind,
    lang: Language,
) -> (&'static str, &'static str, &'static str) {
    const FIX_EN: &str = "Open the plan in the practice system and correct that field; Chairside \
                          reads the plan again on its own when it changes there. Dismiss the task \
                          on the dashboard once it is fixed.";
    const FIX_ES: &str = "Abra el plan en el sistema del consultorio y corrija ese campo; \
                          Chairside vuelve a leer el plan por sí solo cuando cambia allí. Descarte \
                          la tarea en el panel cuando esté corregida.";
    match (kind, lang) {
        (DetectionKind::UnreadableRecord, Language::Es) => (
            "registro ilegible",
            "el registro del plan en el sistema del consultorio no se pudo leer",
            FIX_ES,
        ),
        (DetectionKind::UnreadableRecord, _) => (
            "unreadable record",
            "the practice system's record of the plan could not be read",
            FIX_EN,
        ),
        (DetectionKind::UnreadablePlan, Language::Es) => (
            "plan ilegible",
            "los detalles del plan no se pudieron leer",
            FIX_ES,
        ),
        (DetectionKind::UnreadablePlan, _) => (
            "unreadable plan",
            "the plan's details could not be read",
            FIX_EN,
        ),
        (DetectionKind::PlanCheck, Language::Es) => (
            "plan con errores",
            "el plan no pasó una verificación (otro plan u otro paciente, un monto negativo o \
             por encima del límite, demasiados procedimientos)",
            FIX_ES,
        ),
        (DetectionKind::PlanCheck, _) => ("plan check", "the plan failed a check", FIX_EN),
        (DetectionKind::PlanNotLoading, Language::Es) => (
            "plan que no carga",
            "los detalles del plan no cargaron varias veces seguidas",
            "Verifique que el plan abra en el sistema del consultorio; Chairside lo vuelve a leer \
             por sí solo cuando cambia allí (después de una carga inicial, vuelva a ejecutarla). \
             Descarte la tarea en el panel cuando esté resuelta.",
        ),
        (DetectionKind::PlanNotLoading, _) => (
            "plan not loading",
            "the plan's details failed to load several times in a row",
            "Check that the plan opens in the practice system; Chairside reads it again on its \
             own when it changes there (after a backfill, run the backfill again). Dismiss the \
             task on the dashboard once it is handled.",
        ),
        (DetectionKind::EditedAfterDone, Language::Es) => (
            "plan modificado",
            "lo financiado cambió después de completar el financiamiento; no se canceló ni se \
             reinició nada",
            "Revise el plan con el paciente y luego descarte la tarea en el panel.",
        ),
        (DetectionKind::EditedAfterDone, _) => (
            "edited after financing",
            "what is financed changed after financing was completed; nothing was cancelled or \
             restarted",
            "Review the plan with the patient, then dismiss the task on the dashboard.",
        ),
    }
}

/// The alert for a detection task (a plan that could not be started, before any workflow) in
/// the staff's language: the plan, the practice system, the field path (never a value), what
/// happened and what to do. English adds the task's own description (it names no value); Spanish
/// keeps to its own words. Pure.
pub fn detection_reason_in(task: &DetectionTask, lang: Language) -> String {
    let (name, what, todo) = detection_words(task.task.kind, lang);
    match lang {
        Language::Es => format!(
            "plan {} ({name}, {}, campo {}): {what}. {todo}",
            task.task.plan_id, task.source, task.task.field
        ),
        _ => format!(
            "plan {} ({name}, {}, field {}): {what}: {}. {todo}",
            task.task.plan_id,
            task.source,
            task.task.field,
            task.task.problem.trim_end_matches('.')
        ),
    }
}

/// What the lead's delivery does with its alert. See [`plan_digest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestPlan {
    /// The window is still open: try again at this time.
    Wait(DateTime<Utc>),
    /// Collect these events (ids, oldest first, the lead among them) into one alert.
    Collect(Vec<String>),
}

fn window_of(window: Duration) -> chrono::Duration {
    chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX)
}

/// Which tasks go into the alert led by `lead` at `now`, given the practice's `candidates` (new
/// tasks no alert holds yet, any order). Pure.
///
/// The lead waits until `window` has passed since it was written; then it takes every candidate
/// written within `window` of it (before or after), oldest first, at most [`MAX_DIGEST`] with
/// the lead always among them.
pub fn plan_digest(
    lead: &StoredEvent,
    candidates: &[StoredEvent],
    window: Duration,
    now: DateTime<Utc>,
) -> DigestPlan {
    let window = window_of(window);
    let closes = lead
        .created_at
        .checked_add_signed(window)
        .unwrap_or(lead.created_at);
    if now < closes {
        return DigestPlan::Wait(closes);
    }
    let opens = lead
        .created_at
        .checked_sub_signed(window)
        .unwrap_or(lead.created_at);
    let mut others: Vec<&StoredEvent> = candidates
        .iter()
        .filter(|e| e.event_id != lead.event_id && e.created_at >= opens && e.created_at < closes)
        .collect();
    others.sort_by_key(|e| e.row);
    others.dedup_by(|a, b| a.event_id == b.event_id);
    others.truncate(MAX_DIGEST - 1);
    others.push(lead);
    others.sort_by_key(|e| e.row);
    DigestPlan::Collect(others.into_iter().map(|e| e.event_id.clone()).collect())
}

/// The message key a set of tasks is journalled and sent under: `staff-alert:{id}` for one (as
/// before digests), `staff-digest:{hash}` of the sorted ids for several. Pure and stable: the same
/// set always has the same key.
pub fn digest_key(event_ids: &[String]) -> String {
    match event_ids {
        [one] => format!("staff-alert:{one}"),
        many => {
            let mut sorted: Vec<&str> = many.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            let hash = Sha256::digest(sorted.join("\n").as_bytes());
            format!("staff-digest:{}", hex::encode(&hash[..16]))
        }
    }
}

fn store_failed() -> DeliveryError {
    DeliveryError::retry(None, "the store failed")
}

impl StaffAlerts {
    fn route_wants(route: &AlertRoute, event: &StoredEvent) -> bool {
        if !matches!(
            EventType::from_label(&event.kind),
            Some(EventType::NeedsStaff | EventType::PlanNeedsStaff)
        ) {
            return false;
        }
        match &route.kinds {
            None => true,
            Some(kinds) => OutboundEvent::from_payload(&event.payload)
                .ok()
                .and_then(|e| e.data.task)
                .is_some_and(|t| kinds.contains(&t)),
        }
    }

    /// Whether the event was alerted alone before digests (its own journal record).
    async fn alerted_alone(&self, event_id: &str) -> Result<bool, DeliveryError> {
        Ok(self
            .journal
            .send_record(&format!("staff-alert:{event_id}"), CHANNEL)
            .await
            .map_err(|_| store_failed())?
            .is_some())
    }

    /// The line of a detection task (`plan.needs_staff`): no patient is known yet (`?`), the
    /// reason says what happened and what to do, the link opens the dashboard's detection
    /// section. `None` when the task is gone or already resolved: it is not alerted.
    async fn plan_line(
        &self,
        event: &StoredEvent,
        lang: Language,
    ) -> Result<Option<StaffDigestTask>, DeliveryError> {
        let Some(row) = OutboundEvent::from_payload(&event.payload)
            .ok()
            .and_then(|e| e.data.detection_task)
        else {
            return Ok(None);
        };
        let task = self
            .store
            .detection_task(&PracticeId::new(event.practice_id.as_str()), row)
            .await
            .map_err(|_| store_failed())?;
        let Some(task) = task.filter(|t| t.resolved_at.is_none()) else {
            return Ok(None);
        };
        let link = self
            .dashboard
            .join("staff#detection")
            .map_err(|_| DeliveryError::give_up(None, "the dashboard link does not parse"))?;
        Ok(Some(StaffDigestTask {
            patient_initials: "?".to_owned(),
            reason: detection_reason_in(&task, lang),
            dashboard_link: link,
        }))
    }

    /// The line of a workflow set aside because its stored data does not read (quarantined), or
    /// `None` when the event's workflow is not in the quarantine. Nothing is read from the
    /// workflow (its state may not open): no initials, the plan from the event, the dashboard's
    /// "set aside" section as the link.
    async fn set_aside_line(
        &self,
        event: &StoredEvent,
        lang: Language,
    ) -> Result<Option<StaffDigestTask>, DeliveryError> {
        let held = self
            .store
            .quarantined_workflows(Some(&PracticeId::new(event.practice_id.as_str())))
            .await
            .map_err(|_| store_failed())?;
        if !held
            .iter()
            .any(|q| q.workflow_id.as_str() == event.workflow_id.as_str())
        {
            return Ok(None);
        }
        let plan = OutboundEvent::from_payload(&event.payload)
            .ok()
            .map(|e| e.data.plan_id)
            .unwrap_or_default();
        let link = self
            .dashboard
            .join("staff#held")
            .map_err(|_| DeliveryError::give_up(None, "the dashboard link does not parse"))?;
        Ok(Some(StaffDigestTask {
            patient_initials: "?".to_owned(),
            reason: set_aside_reason_in(&plan, lang),
            dashboard_link: link,
        }))
    }

    /// One task of an alert: the patient's initials, the reason, the dashboard link. `None` when
    /// the workflow is gone or no longer reads, or a detection task was resolved (the alert goes
    /// out without it).
    async fn task_line(
        &self,
        event: &StoredEvent,
        lang: Language,
    ) -> Result<Option<StaffDigestTask>, DeliveryError> {
        if EventType::from_label(&event.kind) == Some(EventType::PlanNeedsStaff) {
            return self.plan_line(event, lang).await;
        }
        let task = OutboundEvent::from_payload(&event.payload)
            .ok()
            .and_then(|e| e.data.task)
            .unwrap_or_else(|| TaskKind::SystemError.label().to_owned());
        if task == TaskKind::SystemError.label()
            && let Some(line) = self.set_aside_line(event, lang).await?
        {
            return Ok(Some(line));
        }
        let workflow = chairside_workflow::WorkflowId::new(event.workflow_id.as_str());
        let state = match self.store.workflow(&workflow).await {
            Ok(Some(row)) => row.state,
            Ok(None) => return Ok(None),
            Err(e) if e.is_unreadable() => return Ok(None),
            Err(_) => return Err(store_failed()),
        };
        let initials = self
            .store
            .patient(&state.key.practice_id, &state.patient_id)
            .await
            .map_err(|_| store_failed())?
            .map_or_else(|| "?".to_owned(), |c| c.initials());
        let link = self
            .dashboard
            .join(&format!("staff/workflows/{}", state.id))
            .map_err(|_| DeliveryError::give_up(None, "the dashboard link does not parse"))?;
        Ok(Some(StaffDigestTask {
            patient_initials: initials,
            reason: alert_reason_in(&state, &task, lang),
            dashboard_link: link,
        }))
    }

    /// Sends a collected digest once: one task as the single alert, several as the digest.
    async fn send_digest(
        &self,
        route: &AlertRoute,
        digest: &Digest,
        now: DateTime<Utc>,
    ) -> Result<Option<u16>, DeliveryError> {
        let key = digest.key.as_str();
        match self
            .journal
            .send_record(key, CHANNEL)
            .await
            .map_err(|_| store_failed())?
        {
            // Sent, or an attempt whose outcome is unknown: at most once.
            Some(SendRecord::Sent { .. } | SendRecord::Attempting { .. }) => return Ok(None),
            None => {}
        }
        let mut tasks = Vec::with_capacity(digest.events.len());
        for event in &digest.events {
            if let Some(line) = self.task_line(event, route.language).await? {
                tasks.push(line);
            }
        }
        let rendered = match tasks.len() {
            // Detection tasks resolved before their alert went out: nothing to say.
            0 if digest
                .events
                .iter()
                .all(|e| EventType::from_label(&e.kind) == Some(EventType::PlanNeedsStaff)) =>
            {
                return Ok(None);
            }
            0 => return Err(DeliveryError::give_up(None, "the workflow is gone")),
            1 => {
                let t = tasks.remove(0);
                self.templates.render_email(
                    route.language,
                    &StaffAlert {
                        practice_name: route.practice_name.clone(),
                        patient_initials: t.patient_initials,
                        reason: t.reason,
                        dashboard_link: t.dashboard_link,
                    },
                )
            }
            _ => self.templates.render_email(
                route.language,
                &StaffDigest {
                    practice_name: route.practice_name.clone(),
                    tasks,
                },
            ),
        };
        let email = rendered
            .map_err(|e| DeliveryError::give_up(None, format!("the alert did not render: {e}")))?;
        self.journal
            .begin_send(key, CHANNEL, None, now)
            .await
            .map_err(|_| store_failed())?;
        match route.sender.send_keyed(&route.to, &email, key).await {
            Ok(id) => {
                self.journal
                    .finish_send(key, CHANNEL, true, Some(id.as_ref()), now)
                    .await
                    .map_err(|_| store_failed())?;
                Ok(None)
            }
            Err(e) if e.kind() == financing_core::ErrorKind::Indeterminate => {
                // The server may have it: taken as sent (the journal keeps the attempt).
                Ok(None)
            }
            Err(e) => {
                self.journal
                    .finish_send(key, CHANNEL, false, None, now)
                    .await
                    .map_err(|_| store_failed())?;
                Err(DeliveryError::retry(
                    None,
                    format!("the staff alert email failed ({:?})", e.kind()),
                ))
            }
        }
    }
}

#[async_trait]
impl Subscriber for StaffAlerts {
    fn id(&self) -> &str {
        "staff-alerts"
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        self.routes
            .get(&PracticeId::new(event.practice_id.as_str()))
            .is_some_and(|route| Self::route_wants(route, event))
    }

    async fn deliver(
        &self,
        event: &StoredEvent,
        _attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<u16>, DeliveryError> {
        let route = self
            .routes
            .get(&PracticeId::new(event.practice_id.as_str()))
            .ok_or_else(|| DeliveryError::give_up(None, "no staff alert address"))?;
        // A lost race to collect means another delivery took some of our candidates: look again
        // (each round, at least one more event is in a digest, so this ends).
        for _ in 0..=MAX_DIGEST {
            if let Some(digest) = self
                .store
                .digest_of(&event.event_id)
                .await
                .map_err(|_| store_failed())?
            {
                // The lead's delivery sends it (again after a crash); the others are done.
                if digest.lead != event.event_id {
                    return Ok(None);
                }
                return self.send_digest(route, &digest, now).await;
            }
            if self.alerted_alone(&event.event_id).await? {
                return Ok(None);
            }
            let window = window_of(route.digest_window);
            let from = event
                .created_at
                .checked_sub_signed(window)
                .unwrap_or(event.created_at);
            let until = event
                .created_at
                .checked_add_signed(window)
                .unwrap_or(event.created_at);
            let mut candidates = Vec::new();
            if now >= until {
                // Workflow tasks and detection tasks digest together.
                let mut found = Vec::new();
                for kind in [EventType::NeedsStaff, EventType::PlanNeedsStaff] {
                    found.extend(
                        self.store
                            .undigested_events(
                                &event.practice_id,
                                kind.label(),
                                from,
                                until,
                                u32::try_from(MAX_DIGEST * 4).unwrap_or(u32::MAX),
                            )
                            .await
                            .map_err(|_| store_failed())?,
                    );
                }
                found.sort_by_key(|e| e.row);
                for candidate in found {
                    if candidate.event_id != event.event_id
                        && Self::route_wants(route, &candidate)
                        && !self.alerted_alone(&candidate.event_id).await?
                    {
                        candidates.push(candidate);
                    }
                }
            }
            let ids = match plan_digest(event, &candidates, route.digest_window, now) {
                DigestPlan::Wait(at) => {
                    let wait = (at - now).to_std().unwrap_or_default();
                    return Err(DeliveryError::not_yet(
                        wait,
                        "waiting for the digest window to close",
                    ));
                }
                DigestPlan::Collect(ids) => ids,
            };
            let key = digest_key(&ids);
            if self
                .store
                .collect_digest(&key, &event.practice_id, &event.event_id, &ids, now)
                .await
                .map_err(|_| store_failed())?
            {
                let digest = self
                    .store
                    .digest_of(&event.event_id)
                    .await
                    .map_err(|_| store_failed())?
                    .ok_or_else(store_failed)?;
                return self.send_digest(route, &digest, now).await;
            }
        }
        Err(store_failed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chairside_workflow::{StaffTask, WorkflowKey};
    use financing_core::{PatientId, PlanId};

    fn state(task: Option<StaffTask>) -> WorkflowState {
        let mut s = WorkflowState::new(
            WorkflowKey {
                practice_id: PracticeId::new("smile"),
                plan_id: PlanId::new("tx-77"),
                revision: "1".into(),
            },
            PatientId::new("pat-1"),
            DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
        );
        s.staff_task = task;
        s
    }

    #[test]
    fn an_alert_names_the_plan_and_the_tasks_own_reason_and_nothing_about_the_patient() {
        let s = state(Some(StaffTask {
            kind: TaskKind::Counteroffer,
            reason: "CareCredit approved $600.00, $400.00 short of the amount asked".into(),
        }));
        assert_eq!(
            alert_reason(&s, "counteroffer"),
            "plan tx-77 (counteroffer): CareCredit approved $600.00, $400.00 short of the amount asked"
        );
    }

    #[test]
    fn a_task_raised_beside_the_workflow_is_described_by_its_kind() {
        let s = state(None);
        assert_eq!(
            alert_reason(&s, "payment_failed"),
            "plan tx-77 (payment failed): a payment failed; the patient was told"
        );
        assert_eq!(kind_reason("new_kind"), "a task needs a person");
    }

    #[test]
    fn a_spanish_alert_names_the_plan_and_what_the_kind_asks_in_spanish_for_every_kind() {
        // Arrange: the workflow carries a counteroffer whose own reason is the machine's English.
        let s = state(Some(StaffTask {
            kind: TaskKind::Counteroffer,
            reason: "CareCredit approved $600.00, $400.00 short of the amount asked".into(),
        }));

        // Act
        let reason = alert_reason_in(&s, "counteroffer", Language::Es);

        // Assert: all Spanish, the details left to the dashboard.
        assert_eq!(
            reason,
            "plan tx-77 (contraoferta): un prestamista hizo una contraoferta que hay que hablar \
             con el paciente. Los detalles están en el panel."
        );
        assert_eq!(
            alert_reason_in(&s, "counteroffer", Language::En),
            alert_reason(&s, "counteroffer"),
            "English is unchanged"
        );
        // Every kind reads in Spanish, none in English.
        for kind in TaskKind::ALL {
            let es = alert_reason_in(&state(None), kind.label(), Language::Es);
            assert!(es.starts_with("plan tx-77 ("), "{es}");
            assert!(!es.contains(kind.label()), "the English label in: {es}");
            for english in [" the ", "patient", "payment", "staff", "lender"] {
                assert!(!es.contains(english), "English `{english}` in: {es}");
            }
        }
        assert!(
            alert_reason_in(&state(None), "new_kind", Language::Es)
                .contains("una tarea necesita a una persona")
        );
    }

    #[test]
    fn a_detection_alert_says_what_happened_and_what_to_do_in_each_language_for_every_kind() {
        for kind in DetectionKind::ALL {
            let task = DetectionTask {
                id: 3,
                practice_id: PracticeId::new("smile"),
                source: "dentrix".into(),
                task: crate::store::detection::NewDetectionTask {
                    kind,
                    plan_id: "10002".into(),
                    marker: "m1".into(),
                    field: "procedures[0].fee".into(),
                    problem: "the amount is negative".into(),
                },
                created_at: DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
                resolved_at: None,
            };
            let en = detection_reason_in(&task, Language::En);
            assert!(
                en.starts_with("plan 10002 (")
                    && en.contains(", dentrix, field procedures[0].fee)"),
                "{en}"
            );
            assert!(
                en.contains("the amount is negative"),
                "the task's own words: {en}"
            );
            assert!(en.contains("dashboard"), "how to dismiss: {en}");
            let es = detection_reason_in(&task, Language::Es);
            assert!(es.contains(", dentrix, campo procedures[0].fee)"), "{es}");
            assert!(es.contains("panel"), "{es}");
            for english in [" the ", "amount", "plan's", "dashboard", kind.label()] {
                assert!(!es.contains(english), "English `{english}` in: {es}");
            }
        }
    }

    fn event(row: i64, at_secs: i64) -> StoredEvent {
        StoredEvent {
            row,
            event_id: format!("evt_{row}"),
            kind: "workflow.needs_staff".into(),
            workflow_id: format!("wf_{row}"),
            practice_id: "smile".into(),
            payload: Vec::new(),
            created_at: DateTime::from_timestamp(1_780_000_000 + at_secs, 0).unwrap_or_default(),
        }
    }

    const WINDOW: Duration = Duration::from_secs(120);

    fn ids(v: &[i64]) -> Vec<String> {
        v.iter().map(|r| format!("evt_{r}")).collect()
    }

    #[test]
    fn an_alert_waits_for_its_window_to_close() {
        let lead = event(1, 0);
        let now = lead.created_at + chrono::Duration::seconds(119);
        assert_eq!(
            plan_digest(&lead, &[], WINDOW, now),
            DigestPlan::Wait(lead.created_at + chrono::Duration::seconds(120))
        );
    }

    #[test]
    fn tasks_within_the_window_of_the_lead_go_together_oldest_first_and_others_wait() {
        let lead = event(3, 100);
        let candidates = [event(5, 219), event(1, -20), event(4, 220), event(2, -21)];
        let now = lead.created_at + chrono::Duration::seconds(120);
        // -20 and 219 are within 120 s of 100 on either side; -21 is not, nor 220 (the window
        // closes at 220, exclusive).
        assert_eq!(
            plan_digest(&lead, &candidates, WINDOW, now),
            DigestPlan::Collect(ids(&[1, 3, 5]))
        );
    }

    #[test]
    fn a_lone_task_is_a_digest_of_one_and_a_zero_window_sends_at_once_alone() {
        let lead = event(7, 0);
        assert_eq!(
            plan_digest(&lead, &[event(8, 0)], Duration::ZERO, lead.created_at),
            DigestPlan::Collect(ids(&[7]))
        );
        assert_eq!(digest_key(&ids(&[7])), "staff-alert:evt_7");
    }

    #[test]
    fn a_digest_holds_at_most_max_digest_tasks_and_always_its_lead() {
        let lead = event(100, 60);
        let candidates: Vec<StoredEvent> = (1..60).map(|r| event(r, 0)).collect();
        let now = lead.created_at + chrono::Duration::seconds(120);
        let DigestPlan::Collect(got) = plan_digest(&lead, &candidates, WINDOW, now) else {
            panic!("the window has closed");
        };
        assert_eq!(got.len(), MAX_DIGEST);
        assert_eq!(got.last(), Some(&"evt_100".to_owned()));
        assert_eq!(got[..MAX_DIGEST - 1], ids(&(1..25).collect::<Vec<_>>())[..]);
    }

    #[test]
    fn a_digest_key_depends_on_the_set_only() {
        let a = digest_key(&ids(&[1, 2, 3]));
        assert_eq!(a, digest_key(&ids(&[3, 1, 2])));
        assert_ne!(a, digest_key(&ids(&[1, 2])));
        assert!(a.starts_with("staff-digest:") && a.len() == "staff-digest:".len() + 32);
    }
}
