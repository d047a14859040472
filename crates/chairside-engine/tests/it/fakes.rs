//! In-memory stand-ins for the practice system, the lenders, Stripe and messaging, with scripted
//! faults, and a clock the tests move by hand.
//!
//! Every fake records its calls, so tests assert on what reached "the outside world": one customer
//! per patient, one Stripe object per idempotency key, one ledger note per marker.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chairside_engine::clock::Clock;
use chairside_engine::ports::{
    Channel, Delivery, DepositLinkState, ExternalError, MessageContent, Messenger, Payments,
    PlanChanges, PlanState, PlanSummary, PracticeProfile, PracticeSystem,
};
use chairside_workflow::WorkflowId;
use chrono::{DateTime, Utc};
use financing_core::{
    ApplicationHandle, ApplicationRef, Decision, ErrorKind, FinancingProvider, FinancingRequest,
    InHouseOffer, LenderId, LenderReference, Money, Offer, PatientContact, PatientId, PlanId,
    PracticeId, ProviderError, Settlement, SettlementRequest, TreatmentPlan,
};
use tokio::sync::Notify;
use url::Url;

/// A clock that only moves when a test moves it.
#[derive(Debug)]
pub(crate) struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub(crate) fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub(crate) fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }

    pub(crate) fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// What a scripted call does instead of answering normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Fails before anything happens on the other side.
    Fail(ErrorKind),
    /// Does the work, then reports a failure: "applied, but the response was lost".
    FailAfterApplying(ErrorKind),
    /// Does the work, then never answers until the gate opens (a process that dies mid-call).
    HangAfterApplying,
    /// Answers normally (to script a fault for a later call).
    Pass,
}

/// Lets a test see that a call is hanging, and let it go.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    entered: Notify,
    release: Notify,
}

impl Gate {
    /// Waits until a call hangs at the gate (5 s at most, so a broken test fails instead of hanging).
    pub(crate) async fn entered(&self) {
        tokio::time::timeout(Duration::from_secs(5), self.entered.notified())
            .await
            .expect("no call reached the gate");
    }

    /// Lets the hanging call answer.
    pub(crate) fn open(&self) {
        self.release.notify_one();
    }

    async fn hang(&self) {
        self.entered.notify_one();
        self.release.notified().await;
    }
}

/// Scripted faults and a call log, shared by every fake.
#[derive(Debug, Default)]
pub(crate) struct Script {
    faults: Mutex<HashMap<&'static str, VecDeque<Fault>>>,
    calls: Mutex<Vec<(&'static str, String)>>,
    /// Where `HangAfterApplying` calls wait.
    pub(crate) gate: Gate,
}

fn scripted_error(op: &str, kind: ErrorKind) -> ExternalError {
    // Shaped like a connector error: operation and status, never a body.
    let status = match kind {
        ErrorKind::Transient { .. } => "HTTP 503",
        ErrorKind::Permanent => "HTTP 400",
        _ => "timed out after the request was sent",
    };
    ProviderError::new(kind, format!("{op}: {status}"))
}

impl Script {
    /// The next `times` calls of `op` meet `fault`.
    pub(crate) fn fault(&self, op: &'static str, fault: Fault, times: usize) {
        let mut faults = self.faults.lock().unwrap();
        let queue = faults.entry(op).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// The next `times` calls of `op` fail with `kind` before anything happens.
    pub(crate) fn fail(&self, op: &'static str, kind: ErrorKind, times: usize) {
        self.fault(op, Fault::Fail(kind), times);
    }

    /// The detail (usually the idempotency key) of every call of `op`, in order.
    pub(crate) fn calls(&self, op: &str) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, d)| d.clone())
            .collect()
    }

    pub(crate) fn count(&self, op: &str) -> usize {
        self.calls(op).len()
    }

    /// Every call, whatever the operation.
    pub(crate) fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Records a call and applies a fault that strikes before the work.
    fn enter(
        &self,
        op: &'static str,
        detail: impl Into<String>,
    ) -> Result<Option<Fault>, ExternalError> {
        self.calls.lock().unwrap().push((op, detail.into()));
        let fault = self
            .faults
            .lock()
            .unwrap()
            .get_mut(op)
            .and_then(VecDeque::pop_front);
        match fault {
            Some(Fault::Fail(kind)) => Err(scripted_error(op, kind)),
            other => Ok(other),
        }
    }

    /// Applies a fault that strikes after the work.
    async fn leave<T>(&self, op: &str, fault: Option<Fault>, value: T) -> Result<T, ExternalError> {
        match fault {
            Some(Fault::FailAfterApplying(kind)) => Err(scripted_error(op, kind)),
            Some(Fault::HangAfterApplying) => {
                self.gate.hang().await;
                Ok(value)
            }
            _ => Ok(value),
        }
    }
}

/// A ledger note in the fake practice system.
#[derive(Clone, Debug)]
pub(crate) struct Note {
    pub(crate) id: String,
    pub(crate) patient: PatientId,
    pub(crate) marker: String,
    pub(crate) text: String,
}

#[derive(Debug, Default)]
struct PmsData {
    feed: Vec<PlanSummary>,
    /// Records the feed cannot read, returned with every poll (as an inclusive cursor would).
    unreadable: Vec<chairside_engine::ports::UnreadableRecord>,
    plans: HashMap<(PlanId, String), TreatmentPlan>,
    patients: HashMap<PatientId, PatientContact>,
    notes: Vec<Note>,
}

/// The practice system: a change feed with a numeric cursor, plans, patients and notes.
#[derive(Debug, Default)]
pub(crate) struct FakePms {
    pub(crate) script: Script,
    data: Mutex<PmsData>,
    /// When set, the feed ignores the cursor and returns everything (a system that re-sends).
    pub(crate) ignore_cursor: std::sync::atomic::AtomicBool,
}

impl FakePms {
    /// The patient accepted `plan`: the plan, the patient and a feed entry appear.
    pub(crate) fn accept(
        &self,
        plan: TreatmentPlan,
        patient: PatientContact,
        accepted_at: DateTime<Utc>,
    ) {
        let mut d = self.data.lock().unwrap();
        d.feed.push(PlanSummary {
            plan_id: plan.id.clone(),
            revision: plan.revision.clone(),
            patient_id: plan.patient_id.clone(),
            state: PlanState::Accepted,
            accepted_at: Some(accepted_at),
        });
        d.patients.insert(patient.id.clone(), patient);
        d.plans
            .insert((plan.id.clone(), plan.revision.clone()), plan);
    }

    /// A record the feed cannot read appears (returned with every poll from now on).
    pub(crate) fn unreadable(&self, record: chairside_engine::ports::UnreadableRecord) {
        self.data.lock().unwrap().unreadable.push(record);
    }

    /// What the patient endpoint answers for `asked` (another patient, a hostile name, ...).
    pub(crate) fn set_patient(&self, asked: &PatientId, answer: PatientContact) {
        self.data
            .lock()
            .unwrap()
            .patients
            .insert(asked.clone(), answer);
    }

    /// The plan was deleted in the practice system.
    pub(crate) fn delete(&self, plan: &PlanId, patient: &PatientId) {
        self.data.lock().unwrap().feed.push(PlanSummary {
            plan_id: plan.clone(),
            revision: "deleted".to_owned(),
            patient_id: patient.clone(),
            state: PlanState::Deleted,
            accepted_at: None,
        });
    }

    /// The plan was rejected after acceptance.
    pub(crate) fn reject(&self, plan: &PlanId, revision: &str, patient: &PatientId) {
        self.data.lock().unwrap().feed.push(PlanSummary {
            plan_id: plan.clone(),
            revision: revision.to_owned(),
            patient_id: patient.clone(),
            state: PlanState::Rejected,
            accepted_at: None,
        });
    }

    pub(crate) fn notes(&self) -> Vec<Note> {
        self.data.lock().unwrap().notes.clone()
    }

    pub(crate) fn notes_for(&self, workflow: &WorkflowId) -> Vec<Note> {
        self.notes()
            .into_iter()
            .filter(|n| n.marker.contains(workflow.as_str()))
            .collect()
    }
}

#[async_trait]
impl PracticeSystem for FakePms {
    fn source(&self) -> &str {
        "fakepms"
    }

    async fn changed_plans(&self, cursor: Option<&str>) -> Result<PlanChanges, ExternalError> {
        let fault = self.script.enter("changed_plans", cursor.unwrap_or("-"))?;
        let changes = {
            let d = self.data.lock().unwrap();
            let from = if self
                .ignore_cursor
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                0
            } else {
                cursor.and_then(|c| c.parse().ok()).unwrap_or(0_usize)
            };
            let mut changes = PlanChanges::new(
                d.feed.get(from..).unwrap_or_default().to_vec(),
                d.feed.len().to_string(),
            );
            changes.unreadable.clone_from(&d.unreadable);
            changes
        };
        self.script.leave("changed_plans", fault, changes).await
    }

    async fn plan(&self, summary: &PlanSummary) -> Result<TreatmentPlan, ExternalError> {
        let fault = self.script.enter("plan", summary.plan_id.as_str())?;
        // Looked up by the feed's marker (detection) or by the workflow's revision, which is the
        // fingerprint of the plan (loading a workflow's plan).
        let plan = {
            let d = self.data.lock().unwrap();
            d.plans
                .get(&(summary.plan_id.clone(), summary.revision.clone()))
                .or_else(|| {
                    d.plans.values().find(|p| {
                        p.id == summary.plan_id
                            && financing_core::check::fingerprint(p) == summary.revision
                    })
                })
                .cloned()
        }
        .ok_or_else(|| ProviderError::new(ErrorKind::Permanent, "plan: HTTP 404"))?;
        self.script.leave("plan", fault, plan).await
    }

    async fn patient(&self, patient: &PatientId) -> Result<PatientContact, ExternalError> {
        let fault = self.script.enter("patient", patient.as_str())?;
        let contact = self
            .data
            .lock()
            .unwrap()
            .patients
            .get(patient)
            .cloned()
            .ok_or_else(|| ProviderError::new(ErrorKind::Permanent, "patient: HTTP 404"))?;
        self.script.leave("patient", fault, contact).await
    }

    async fn find_note(
        &self,
        patient: &PatientId,
        marker: &str,
    ) -> Result<Option<String>, ExternalError> {
        let fault = self.script.enter("find_note", marker)?;
        let found = self
            .data
            .lock()
            .unwrap()
            .notes
            .iter()
            .find(|n| &n.patient == patient && n.text.contains(&format!("[chairside:{marker}]")))
            .map(|n| n.id.clone());
        self.script.leave("find_note", fault, found).await
    }

    async fn write_note(
        &self,
        patient: &PatientId,
        marker: &str,
        text: &str,
    ) -> Result<String, ExternalError> {
        let fault = self.script.enter("write_note", marker)?;
        let id = {
            let mut d = self.data.lock().unwrap();
            let id = format!("note-{}", d.notes.len() + 1);
            d.notes.push(Note {
                id: id.clone(),
                patient: patient.clone(),
                marker: marker.to_owned(),
                // Like every adapter: the marker rides in the note's text.
                text: format!("{text}\n[chairside:{marker}]"),
            });
            id
        };
        self.script.leave("write_note", fault, id).await
    }
}

/// How a fake lender answers one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A hosted application link for the patient.
    Link,
    /// Approved for the amount asked.
    Approve,
    /// Approved for this many cents (a counteroffer when below the amount asked).
    ApproveCents(i64),
    /// Declined.
    Decline,
    /// No decision yet.
    Pending,
}

#[derive(Debug, Default)]
struct LenderData {
    on_start: VecDeque<Answer>,
    on_status: VecDeque<Answer>,
    cardholder_credit: Option<Money>,
    /// Applications by our reference: opening twice with one reference opens one application.
    applications: HashMap<ApplicationRef, LenderReference>,
    requests: Vec<FinancingRequest>,
    /// Purchases by our reference: charging twice with one reference charges once.
    purchases: HashMap<ApplicationRef, (LenderReference, Money)>,
    /// The lender takes no charge through its API (`Settlement::Manual`).
    manual_settlement: bool,
}

/// A lender with scripted decisions per call.
#[derive(Debug)]
pub(crate) struct FakeLender {
    id: LenderId,
    name: &'static str,
    default_start: Answer,
    default_status: Answer,
    pub(crate) script: Script,
    data: Mutex<LenderData>,
}

impl FakeLender {
    /// A lender that opens a hosted link and then answers "pending" until scripted otherwise.
    pub(crate) fn new(id: &str, name: &'static str) -> Self {
        Self::answering(id, name, Answer::Link, Answer::Pending)
    }

    pub(crate) fn answering(
        id: &str,
        name: &'static str,
        default_start: Answer,
        default_status: Answer,
    ) -> Self {
        Self {
            id: LenderId::new(id),
            name,
            default_start,
            default_status,
            script: Script::default(),
            data: Mutex::new(LenderData::default()),
        }
    }

    /// The next `start_application` answers `answer`.
    pub(crate) fn on_start(&self, answer: Answer) {
        self.data.lock().unwrap().on_start.push_back(answer);
    }

    /// The next `application_status` answers `answer`.
    pub(crate) fn on_status(&self, answer: Answer) {
        self.data.lock().unwrap().on_status.push_back(answer);
    }

    /// The patient holds an account with this much available credit.
    pub(crate) fn cardholder(&self, credit: Money) {
        self.data.lock().unwrap().cardholder_credit = Some(credit);
    }

    /// Every request the lender received (lookups and starts).
    pub(crate) fn requests(&self) -> Vec<FinancingRequest> {
        self.data.lock().unwrap().requests.clone()
    }

    /// Purchases charged (distinct, by our reference), with their amounts.
    pub(crate) fn purchases(&self) -> Vec<Money> {
        self.data
            .lock()
            .unwrap()
            .purchases
            .values()
            .map(|(_, m)| *m)
            .collect()
    }

    /// From now on the lender's API takes no charge: staff run it.
    pub(crate) fn settles_by_hand(&self) {
        self.data.lock().unwrap().manual_settlement = true;
    }

    /// Distinct applications opened.
    pub(crate) fn applications(&self) -> usize {
        self.data.lock().unwrap().applications.len()
    }

    fn decision(
        &self,
        answer: Answer,
        amount: Money,
        lender_reference: LenderReference,
    ) -> Decision {
        let offer = |cents: i64| Offer {
            lender: self.id.clone(),
            amount: Money::usd(cents),
            promotion: Some("12 months".into()),
            term_months: Some(12),
            apr_bps: None,
            expires_at: None,
            lender_reference: Some(lender_reference.clone()),
        };
        match answer {
            Answer::Link => Decision::ApplicationStarted {
                link: Url::parse(&format!(
                    "https://{}.lender.test/apply/{}",
                    self.id,
                    lender_reference.as_str()
                ))
                .unwrap(),
                lender_reference,
                expires_at: None,
            },
            Answer::Approve => Decision::Approved {
                offer: offer(amount.minor()),
                raw_status: "Approved".into(),
            },
            Answer::ApproveCents(cents) if cents < amount.minor() => Decision::PartiallyApproved {
                offer: offer(cents),
                requested: amount,
                raw_status: "Approved".into(),
            },
            Answer::ApproveCents(cents) => Decision::Approved {
                offer: offer(cents),
                raw_status: "Approved".into(),
            },
            Answer::Decline => Decision::Declined {
                reason: None,
                raw_status: "Declined".into(),
            },
            Answer::Pending => Decision::Pending {
                poll_after: None,
                raw_status: "Pending".into(),
            },
        }
    }
}

#[async_trait]
impl FinancingProvider for FakeLender {
    fn id(&self) -> LenderId {
        self.id.clone()
    }

    fn display_name(&self) -> &str {
        self.name
    }

    async fn lookup_cardholder(
        &self,
        request: &FinancingRequest,
    ) -> Result<Option<Decision>, ProviderError> {
        let fault = self
            .script
            .enter("lookup_cardholder", request.reference.as_str())?;
        let found = {
            let mut d = self.data.lock().unwrap();
            d.requests.push(request.clone());
            d.cardholder_credit.map(|credit| Decision::Cardholder {
                available_credit: credit,
                lender_reference: Some(LenderReference::new("acct-1")),
            })
        };
        self.script.leave("lookup_cardholder", fault, found).await
    }

    async fn start_application(
        &self,
        request: &FinancingRequest,
    ) -> Result<Decision, ProviderError> {
        let fault = self
            .script
            .enter("start_application", request.reference.as_str())?;
        let decision = {
            let mut d = self.data.lock().unwrap();
            d.requests.push(request.clone());
            let answer = d.on_start.pop_front().unwrap_or(self.default_start);
            let n = d.applications.len() + 1;
            let reference = d
                .applications
                .entry(request.reference.clone())
                .or_insert_with(|| LenderReference::new(format!("app-{n}")))
                .clone();
            self.decision(answer, request.amount, reference)
        };
        self.script
            .leave("start_application", fault, decision)
            .await
    }

    async fn application_status(
        &self,
        application: &ApplicationHandle,
    ) -> Result<Decision, ProviderError> {
        let fault = self
            .script
            .enter("application_status", application.lender_reference.as_str())?;
        let decision = {
            let mut d = self.data.lock().unwrap();
            let answer = d.on_status.pop_front().unwrap_or(self.default_status);
            self.decision(
                answer,
                application.amount,
                application.lender_reference.clone(),
            )
        };
        self.script
            .leave("application_status", fault, decision)
            .await
    }

    async fn cancel_application(
        &self,
        application: &ApplicationHandle,
    ) -> Result<(), ProviderError> {
        let fault = self
            .script
            .enter("cancel_application", application.lender_reference.as_str())?;
        self.script.leave("cancel_application", fault, ()).await
    }

    async fn settle(&self, request: &SettlementRequest) -> Result<Settlement, ProviderError> {
        let fault = self.script.enter("settle", request.reference.as_str())?;
        let settled = {
            let mut d = self.data.lock().unwrap();
            if d.manual_settlement {
                Settlement::Manual
            } else {
                let n = d.purchases.len() + 1;
                let (purchase, _) = d
                    .purchases
                    .entry(request.reference.clone())
                    .or_insert_with(|| {
                        (
                            LenderReference::new(format!("purchase-{n}")),
                            request.amount,
                        )
                    })
                    .clone();
                Settlement::Charged { purchase }
            }
        };
        self.script.leave("settle", fault, settled).await
    }
}

/// A Stripe customer.
#[derive(Clone, Debug)]
pub(crate) struct Customer {
    pub(crate) id: String,
    pub(crate) patient: PatientId,
}

/// A Checkout Session for a deposit.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) customer: String,
    pub(crate) amount: Money,
    pub(crate) workflow: WorkflowId,
    pub(crate) key: String,
    pub(crate) expired: bool,
    /// Paid in Stripe (a test says so with [`FakeStripe::pay_session`]).
    pub(crate) paid: bool,
}

/// An installment schedule.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    pub(crate) id: String,
    pub(crate) customer: String,
    pub(crate) offer: InHouseOffer,
    pub(crate) workflow: WorkflowId,
    pub(crate) key: String,
    pub(crate) cancelled: bool,
}

#[derive(Debug, Default)]
struct StripeData {
    customers: Vec<(PracticeId, Customer)>,
    sessions: Vec<Session>,
    schedules: Vec<Schedule>,
    /// Idempotency key -> the object id it created: the same key replays the same object.
    by_key: HashMap<String, String>,
    next: u32,
    /// Refunds by charge, newest first (`list_refunds`).
    refunds: HashMap<String, Vec<chairside_workflow::refunds::ListedRefund>>,
}

impl StripeData {
    fn next_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_test{:04}", self.next)
    }
}

/// Stripe: customers found by metadata, objects replayed per idempotency key.
#[derive(Debug, Default)]
pub(crate) struct FakeStripe {
    pub(crate) script: Script,
    data: Mutex<StripeData>,
}

impl FakeStripe {
    pub(crate) fn customers(&self) -> Vec<Customer> {
        let d = self.data.lock().unwrap();
        d.customers.iter().map(|(_, c)| c.clone()).collect()
    }

    pub(crate) fn sessions(&self) -> Vec<Session> {
        self.data.lock().unwrap().sessions.clone()
    }

    /// Refunds `amount` cents of `charge` under refund `id` (listed newest first).
    pub(crate) fn refund(&self, charge: &str, id: &str, amount: i64) {
        let mut d = self.data.lock().unwrap();
        d.refunds.entry(charge.to_owned()).or_default().insert(
            0,
            chairside_workflow::refunds::ListedRefund {
                id: id.to_owned(),
                amount: Money::usd(amount),
                returns_money: true,
            },
        );
    }

    /// Marks a session paid, as the patient paying it would.
    pub(crate) fn pay_session(&self, id: &str) {
        let mut d = self.data.lock().unwrap();
        let s = d
            .sessions
            .iter_mut()
            .find(|s| s.id == id)
            .expect("no such session");
        s.paid = true;
    }

    /// Marks a session expired, as Stripe does after 24 hours.
    pub(crate) fn expire_session(&self, id: &str) {
        let mut d = self.data.lock().unwrap();
        let s = d
            .sessions
            .iter_mut()
            .find(|s| s.id == id)
            .expect("no such session");
        s.expired = true;
    }

    pub(crate) fn schedules(&self) -> Vec<Schedule> {
        self.data.lock().unwrap().schedules.clone()
    }

    pub(crate) fn sessions_for(&self, workflow: &WorkflowId) -> Vec<Session> {
        self.sessions()
            .into_iter()
            .filter(|s| &s.workflow == workflow)
            .collect()
    }

    pub(crate) fn schedules_for(&self, workflow: &WorkflowId) -> Vec<Schedule> {
        self.schedules()
            .into_iter()
            .filter(|s| &s.workflow == workflow)
            .collect()
    }
}

#[async_trait]
impl Payments for FakeStripe {
    async fn list_refunds(
        &self,
        charge: &str,
    ) -> Result<Option<Vec<chairside_workflow::refunds::ListedRefund>>, ExternalError> {
        self.script.enter("list_refunds", charge)?;
        let d = self.data.lock().unwrap();
        Ok(Some(d.refunds.get(charge).cloned().unwrap_or_default()))
    }

    async fn ensure_customer(
        &self,
        practice: &PracticeId,
        patient: &PatientContact,
        key: &str,
    ) -> Result<String, ExternalError> {
        let fault = self.script.enter("ensure_customer", key)?;
        let id = {
            let mut d = self.data.lock().unwrap();
            // Search by metadata first, like the real adapter: never a second customer.
            let found = d
                .customers
                .iter()
                .find(|(p, c)| p == practice && c.patient == patient.id)
                .map(|(_, c)| c.id.clone());
            match found {
                Some(id) => id,
                None => {
                    let id = d.next_id("cus");
                    d.customers.push((
                        practice.clone(),
                        Customer {
                            id: id.clone(),
                            patient: patient.id.clone(),
                        },
                    ));
                    d.by_key.insert(key.to_owned(), id.clone());
                    id
                }
            }
        };
        self.script.leave("ensure_customer", fault, id).await
    }

    async fn create_deposit_link(
        &self,
        _practice: &PracticeId,
        customer: &str,
        amount: Money,
        workflow: &WorkflowId,
        key: &str,
    ) -> Result<(String, String), ExternalError> {
        let fault = self.script.enter("create_deposit_link", key)?;
        let session = {
            let mut d = self.data.lock().unwrap();
            let replay = d
                .by_key
                .get(key)
                .and_then(|id| d.sessions.iter().find(|s| &s.id == id))
                .cloned();
            match replay {
                Some(s) => s,
                None => {
                    let id = d.next_id("cs");
                    let s = Session {
                        url: format!("https://checkout.stripe.test/c/pay/{id}"),
                        id,
                        customer: customer.to_owned(),
                        amount,
                        workflow: workflow.clone(),
                        key: key.to_owned(),
                        expired: false,
                        paid: false,
                    };
                    d.by_key.insert(key.to_owned(), s.id.clone());
                    d.sessions.push(s.clone());
                    s
                }
            }
        };
        self.script
            .leave("create_deposit_link", fault, (session.id, session.url))
            .await
    }

    async fn create_schedule(
        &self,
        _practice: &PracticeId,
        customer: &str,
        offer: &InHouseOffer,
        workflow: &WorkflowId,
        key: &str,
    ) -> Result<String, ExternalError> {
        let fault = self.script.enter("create_schedule", key)?;
        let id = {
            let mut d = self.data.lock().unwrap();
            match d.by_key.get(key).cloned() {
                Some(id) => id,
                None => {
                    let id = d.next_id("sub_sched");
                    d.schedules.push(Schedule {
                        id: id.clone(),
                        customer: customer.to_owned(),
                        offer: offer.clone(),
                        workflow: workflow.clone(),
                        key: key.to_owned(),
                        cancelled: false,
                    });
                    d.by_key.insert(key.to_owned(), id.clone());
                    id
                }
            }
        };
        self.script.leave("create_schedule", fault, id).await
    }

    async fn cancel_schedule(&self, schedule: &str, key: &str) -> Result<(), ExternalError> {
        let fault = self.script.enter("cancel_schedule", key)?;
        {
            let mut d = self.data.lock().unwrap();
            let s = d
                .schedules
                .iter_mut()
                .find(|s| s.id == schedule)
                .ok_or_else(|| {
                    ProviderError::new(ErrorKind::Permanent, "cancel schedule: HTTP 404")
                })?;
            s.cancelled = true;
        }
        self.script.leave("cancel_schedule", fault, ()).await
    }

    async fn deposit_link_state(&self, session: &str) -> Result<DepositLinkState, ExternalError> {
        let fault = self.script.enter("deposit_link_state", session)?;
        let state = {
            let d = self.data.lock().unwrap();
            match d.sessions.iter().find(|s| s.id == session) {
                Some(s) if s.paid => DepositLinkState::Paid,
                Some(s) if !s.expired => DepositLinkState::Open { url: s.url.clone() },
                _ => DepositLinkState::Dead,
            }
        };
        self.script.leave("deposit_link_state", fault, state).await
    }

    async fn expire_deposit_link(&self, session: &str, key: &str) -> Result<(), ExternalError> {
        let fault = self.script.enter("expire_deposit_link", key)?;
        {
            let mut d = self.data.lock().unwrap();
            let s = d
                .sessions
                .iter_mut()
                .find(|s| s.id == session)
                .ok_or_else(|| {
                    ProviderError::new(ErrorKind::Permanent, "expire session: HTTP 404")
                })?;
            s.expired = true;
        }
        self.script.leave("expire_deposit_link", fault, ()).await
    }
}

/// One message that went out.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    pub(crate) patient: PatientId,
    /// The language the message is rendered in (the patient's).
    pub(crate) language: financing_core::Language,
    pub(crate) content: MessageContent,
    pub(crate) channels: Vec<Channel>,
    pub(crate) key: String,
}

/// Email and SMS: records every send.
#[derive(Debug, Default)]
pub(crate) struct FakeMessenger {
    pub(crate) script: Script,
    sent: Mutex<Vec<Sent>>,
    /// The patient of the in-house offer: when set, the offer is answered on the patient page
    /// (accepted, unless `decline_in_house`) as soon as it is delivered, as a patient would.
    pub(crate) patient_page:
        std::sync::OnceLock<std::sync::Arc<dyn chairside_engine::store::Store>>,
    /// Leave in-house offers unanswered.
    pub(crate) quiet_on_in_house: std::sync::atomic::AtomicBool,
    /// When set, messages are prepared ([`Messenger::prepare`]) for the runner to journal with
    /// their intent; each prepared send reads the journal from this database as it goes out.
    pub(crate) prepare_on: std::sync::OnceLock<sqlx::SqlitePool>,
    /// Per prepared send: its key and each channel's journal state when it went out.
    pub(crate) journal_at_send: Mutex<Vec<(String, Vec<Option<String>>)>>,
    /// What `went_out` answers: set, every message's email is taken as gone out.
    pub(crate) email_went_out: std::sync::atomic::AtomicBool,
}

impl FakeMessenger {
    pub(crate) fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    pub(crate) fn sent_to(&self, patient: &PatientId) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| &s.patient == patient)
            .collect()
    }
}

#[async_trait]
impl Messenger for FakeMessenger {
    async fn went_out(&self, _key: &str) -> Result<bool, ExternalError> {
        Ok(self
            .email_went_out
            .load(std::sync::atomic::Ordering::SeqCst))
    }

    async fn prepare(
        &self,
        _practice: &PracticeProfile,
        _patient: &PatientContact,
        _content: &MessageContent,
        channels: &[Channel],
        _key: &str,
    ) -> Result<Option<chairside_engine::ports::PreparedSend>, ExternalError> {
        if self.prepare_on.get().is_none() {
            return Ok(None);
        }
        let journal = channels
            .iter()
            .map(|c| match c {
                Channel::Email => ("email", None),
                Channel::Sms => ("sms", Some("digest".to_owned())),
            })
            .collect();
        Ok(Some(chairside_engine::ports::PreparedSend {
            journal,
            rendered: Box::new(()),
        }))
    }

    async fn send_prepared(
        &self,
        practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
        prepared: chairside_engine::ports::PreparedSend,
    ) -> Result<Delivery, ExternalError> {
        if let Some(pool) = self.prepare_on.get() {
            let mut records = Vec::new();
            for (channel, _) in &prepared.journal {
                let state: Option<String> = sqlx::query_scalar(
                    "SELECT state FROM message_sends WHERE message_key = ? AND channel = ?",
                )
                .bind(key)
                .bind(channel)
                .fetch_optional(pool)
                .await
                .unwrap();
                records.push(state);
            }
            self.journal_at_send
                .lock()
                .unwrap()
                .push((key.to_owned(), records));
        }
        self.send(practice, patient, content, channels, key).await
    }

    async fn send(
        &self,
        _practice: &PracticeProfile,
        patient: &PatientContact,
        content: &MessageContent,
        channels: &[Channel],
        key: &str,
    ) -> Result<Delivery, ExternalError> {
        let fault = self.script.enter("send", key)?;
        let delivery = {
            let mut sent = self.sent.lock().unwrap();
            sent.push(Sent {
                patient: patient.id.clone(),
                language: patient.preferred_language,
                content: content.clone(),
                channels: channels.to_vec(),
                key: key.to_owned(),
            });
            Delivery {
                sent: channels
                    .iter()
                    .map(|c| (*c, format!("msg-{}", sent.len())))
                    .collect(),
            }
        };
        if matches!(content, MessageContent::InHouseOffer(_))
            && !self
                .quiet_on_in_house
                .load(std::sync::atomic::Ordering::SeqCst)
            && let Some(store) = self.patient_page.get()
        {
            // The patient reads the offer and accepts it on the page.
            let workflow =
                chairside_workflow::WorkflowId::new(key.split(':').next().unwrap_or_default());
            let event = chairside_workflow::Event::InHouseAnswered {
                accepted: true,
                wording: "Accept the payment plan (test patient)".into(),
            };
            store
                .queue_patient_answer(&workflow, &event, "patient accepted", chrono::Utc::now())
                .await
                .map_err(|e| {
                    ExternalError::new(financing_core::ErrorKind::TRANSIENT, e.to_string())
                })?;
        }
        self.script.leave("send", fault, delivery).await
    }
}
