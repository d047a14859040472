//! The waterfall across both real lender clients, each against its own wiremock server:
//! CareCredit first, Sunbit second, the practice's in-house plan last.
//!
//! The driver below is what the orchestrator does, minus durability: ask `Waterfall::next`, call
//! the lender it names through `FinancingProvider` (cardholder lookup, then the application), wait
//! for the decision (CareCredit by pullback, Sunbit by signed webhook or purchase read), record the
//! attempt, repeat.

use std::collections::HashMap;
use std::time::Duration;

use carecredit_client::PartnerCode;
use chrono::Utc;
use financing_core::{
    Applicant, ApplicationHandle, ApplicationRef, Attempt, AttemptOutcome, Decision, DepositRule,
    FinancingRequest, InHouseOffer, InHouseTerms, InstallmentInterval, LenderId, LenderLocation,
    LenderSlot, LocationId, Money, PartialApprovalRule, PracticeId, SharedProvider, Step, UsState,
    Waterfall, WaterfallOutcome, WaterfallPolicy,
};
use serde_json::{Value, json};
use std::sync::Arc;
use wiremock::matchers::{any, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REFERENCE: &str = "wf-e2e-0001-finance";
const LOCATION: &str = "main-st";
const AMOUNT: Money = Money::usd(180_000);
const WEBHOOK_SECRET: &str = "whsec-e2e-test";

/// How a lender's decision reaches us in a scenario.
enum Delivery {
    /// Poll `application_status`.
    Poll,
    /// Sunbit posts this webhook body (signed here as Sunbit would).
    SunbitWebhook(Value),
}

struct Lenders {
    carecredit: MockServer,
    sunbit: MockServer,
    providers: Vec<SharedProvider>,
}

impl Lenders {
    async fn start() -> Self {
        let carecredit = MockServer::start().await;
        let sunbit = MockServer::start().await;
        let cc = carecredit_client::Client::builder(
            carecredit.uri().parse().unwrap(),
            carecredit_client::Credentials {
                partner_code: PartnerCode::new("CHAIRSIDE-E2E"),
                client_id: "e2e-client".into(),
                client_secret: "e2e-secret".into(),
            },
        )
        .merchant(LocationId::new(LOCATION), "5348120000000001")
        .retry(carecredit_client::RetryPolicy::none())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
        let sb = sunbit_client::Client::builder(
            sunbit.uri().parse().unwrap(),
            sunbit_client::Credentials {
                key: "e2e-key".into(),
                secret: "e2e-secret".into(),
            },
        )
        .location(LocationId::new(LOCATION), "smile-main")
        .retry(sunbit_client::RetryPolicy::none())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
        Mock::given(method("POST"))
            .and(path(carecredit_client::wire::TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": "tok-e2e", "token_type": "Bearer", "expires_in": 3600,
            })))
            .mount(&carecredit)
            .await;
        Self {
            carecredit,
            sunbit,
            providers: vec![Arc::new(cc), Arc::new(sb)],
        }
    }

    fn waterfall(&self, policy: WaterfallPolicy) -> Waterfall {
        let slots = self
            .providers
            .iter()
            .map(|p| LenderSlot {
                lender: p.id(),
                limits: p.limits(),
            })
            .collect();
        Waterfall::new(slots, policy)
    }

    fn provider(&self, id: &LenderId) -> &SharedProvider {
        self.providers.iter().find(|p| &p.id() == id).unwrap()
    }

    /// CareCredit: no account on lookup, no session yet, a new session, then this pullback.
    async fn carecredit_answers(&self, pullback: Value) {
        let server = &self.carecredit;
        Mock::given(method("POST"))
            .and(path(carecredit_client::wire::CARDHOLDER_LOOKUP_PATH))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({ "status": "AccountNotFoundQS" })),
            )
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(carecredit_client::wire::PREFILL_SESSIONS_PATH))
            .and(query_param("partnerTransactionID", REFERENCE))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("POST"))
            .and(path(carecredit_client::wire::PREFILL_SESSIONS_PATH))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "sessionId": "sess-e2e",
                "pageUrl": "https://apply.carecredit.test/p/sess-e2e",
            })))
            .expect(1)
            .mount(server)
            .await;
        let mut body = pullback;
        body["sessionId"] = json!("sess-e2e");
        Mock::given(method("GET"))
            .and(path(
                carecredit_client::wire::PULLBACK_PATH.replace("{sessionId}", "sess-e2e"),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(server)
            .await;
    }

    /// Sunbit: the prequalification link, and optionally the purchase read.
    async fn sunbit_link(&self, purchase: Option<Value>) {
        Mock::given(method("PUT"))
            .and(path(sunbit_client::wire::ONLINE_LINK_PATH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "url": "https://apply.sunbit.test/p/e2e" })),
            )
            .expect(1)
            .mount(&self.sunbit)
            .await;
        if let Some(body) = purchase {
            Mock::given(method("GET"))
                .and(path(sunbit_client::wire::EPAY_PATH))
                .and(query_param("transactionId", REFERENCE))
                .respond_with(ResponseTemplate::new(200).set_body_json(body))
                .expect(1)
                .mount(&self.sunbit)
                .await;
        }
    }

    /// Sunbit must never be asked.
    async fn sunbit_untouched(&self) {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&self.sunbit)
            .await;
    }

    /// Runs the waterfall to its end, as the orchestrator would.
    async fn run(
        &self,
        waterfall: &Waterfall,
        request: &FinancingRequest,
        deliveries: &HashMap<&str, Delivery>,
    ) -> (WaterfallOutcome, Vec<Attempt>) {
        let mut attempts = Vec::new();
        loop {
            let (lender, amount) = match waterfall.next(request.amount, &attempts) {
                Step::Finished(outcome) => return (outcome, attempts),
                Step::Ask { lender, amount } => (lender, amount),
            };
            let provider = self.provider(&lender);
            let asked = FinancingRequest {
                amount,
                ..request.clone()
            };
            let outcome = match decide(provider, &asked, &deliveries[lender.as_str()]).await {
                Ok(decision) => AttemptOutcome::from_decision(&decision, amount)
                    .expect("the scenario delivers a final decision"),
                Err(reason) => AttemptOutcome::Failed { reason },
            };
            attempts.push(Attempt {
                lender,
                amount,
                contacted_at: Utc::now(),
                outcome,
            });
        }
    }
}

/// One lender's part: lookup first (an existing account that covers the amount skips the
/// application), then the hosted application and its decision.
async fn decide(
    provider: &SharedProvider,
    request: &FinancingRequest,
    delivery: &Delivery,
) -> Result<Decision, String> {
    if let Some(
        found @ Decision::Cardholder {
            available_credit, ..
        },
    ) = provider
        .lookup_cardholder(request)
        .await
        .map_err(|e| e.to_string())?
        && available_credit.minor() >= request.amount.minor()
    {
        return Ok(found);
    }
    let started = provider
        .start_application(request)
        .await
        .map_err(|e| e.to_string())?;
    let Decision::ApplicationStarted {
        lender_reference, ..
    } = started
    else {
        return Ok(started);
    };
    match delivery {
        Delivery::Poll => {
            let handle = ApplicationHandle {
                reference: request.reference.clone(),
                lender_reference,
                location: request.location.clone(),
                amount: request.amount,
            };
            provider
                .application_status(&handle)
                .await
                .map_err(|e| e.to_string())
        }
        Delivery::SunbitWebhook(body) => {
            let raw = serde_json::to_vec(body).unwrap();
            let t = Utc::now().timestamp();
            let header = sunbit_client::sign(&WEBHOOK_SECRET.into(), t, &raw);
            let event = sunbit_client::WebhookVerifier::new(WEBHOOK_SECRET.into())
                .verify(Some(&header), &raw, Utc::now())
                .and_then(|v| v.event())
                .map_err(|e| e.to_string())?;
            assert_eq!(event.referral.as_ref(), Some(&request.reference));
            let decision = event
                .decision(request.amount)
                .expect("a prequalification decision");
            if !matches!(decision, Decision::Prequalified { .. }) {
                return Ok(decision);
            }
            // A prequalification is not financing: read the purchase, as the orchestrator does.
            let handle = ApplicationHandle {
                reference: request.reference.clone(),
                lender_reference,
                location: request.location.clone(),
                amount: request.amount,
            };
            provider
                .application_status(&handle)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

fn request() -> FinancingRequest {
    FinancingRequest {
        reference: ApplicationRef::new(REFERENCE),
        location: LenderLocation {
            practice_id: PracticeId::new("smile-test-dental"),
            location_id: LocationId::new(LOCATION),
            state: UsState::TX,
        },
        amount: AMOUNT,
        prefill: None,
        lookup: Some(Applicant {
            first_name: "Marisol".into(),
            last_name: "Testcase".into(),
            mobile_phone: Some("+15555550100".into()),
            email: None,
            address_lines: vec![],
            city: None,
            state: None,
            postal_code: None,
            date_of_birth: None,
        }),
        return_url: None,
    }
}

fn sunbit_prequal(event_type: &str, approval: Option<&str>) -> Value {
    let mut payload = json!({
        "purchaseId": "pur-e2e",
        "location": "smile-main",
        "purchaseAmountEntered": "1800.0",
        "referral": REFERENCE,
        "validUntil": "2099-01-01",
    });
    if let Some(a) = approval {
        payload["approvalAmount"] = json!(a);
    }
    json!({ "eventType": event_type, "payload": payload })
}

fn ids(attempts: &[Attempt]) -> Vec<(&str, &'static str)> {
    attempts
        .iter()
        .map(|a| (a.lender.as_str(), a.outcome.label()))
        .collect()
}

fn terms() -> InHouseTerms {
    InHouseTerms {
        deposit: DepositRule::BasisPoints(2_000),
        installments: 6,
        interval: InstallmentInterval::MONTHLY,
    }
}

#[tokio::test]
async fn carecredit_declines_then_sunbit_approves_by_webhook() {
    // Arrange
    let lenders = Lenders::start().await;
    lenders
        .carecredit_answers(json!({ "status": "Declined" }))
        .await;
    lenders
        .sunbit_link(Some(json!({
            "purchaseId": "pur-e2e",
            "status": "COMPLETED",
            "approvalAmount": "2000.0",
            "purchaseAmount": "1800.0",
        })))
        .await;
    let deliveries = HashMap::from([
        ("carecredit", Delivery::Poll),
        (
            "sunbit",
            Delivery::SunbitWebhook(sunbit_prequal("PREQUAL_APPROVED", Some("2000.0"))),
        ),
    ]);
    let waterfall = lenders.waterfall(WaterfallPolicy::default());

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &request(), &deliveries).await;

    // Assert: the prequalification is followed by the purchase, which finances the amount asked.
    assert_eq!(
        outcome,
        WaterfallOutcome::Financed {
            lender: LenderId::new("sunbit"),
            amount: AMOUNT,
        }
    );
    assert_eq!(
        ids(&attempts),
        [("carecredit", "declined"), ("sunbit", "approved")]
    );
}

#[tokio::test]
async fn a_carecredit_counteroffer_stops_for_staff_when_the_policy_says_so() {
    // Arrange
    let lenders = Lenders::start().await;
    lenders
        .carecredit_answers(json!({
            "status": "Completed",
            "applicationDetails": { "applicationId": "app-e2e", "creditLine": "1000.00" },
        }))
        .await;
    lenders.sunbit_untouched().await;
    let deliveries = HashMap::from([("carecredit", Delivery::Poll), ("sunbit", Delivery::Poll)]);
    let waterfall = lenders.waterfall(WaterfallPolicy {
        on_partial: PartialApprovalRule::StopForStaff,
        in_house_fallback: true,
    });

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &request(), &deliveries).await;

    // Assert
    assert_eq!(
        outcome,
        WaterfallOutcome::CounterofferForStaff {
            lender: LenderId::new("carecredit"),
            approved: Money::usd(100_000),
            requested: AMOUNT,
        }
    );
    assert_eq!(ids(&attempts), [("carecredit", "partially_approved")]);
}

#[tokio::test]
async fn a_carecredit_counteroffer_moves_on_and_sunbit_covers_the_whole_amount() {
    // Arrange
    let lenders = Lenders::start().await;
    lenders
        .carecredit_answers(json!({
            "status": "Completed",
            "applicationDetails": { "applicationId": "app-e2e", "creditLine": "1000.00" },
        }))
        .await;
    lenders
        .sunbit_link(Some(json!({
            "purchaseId": "pur-e2e",
            "status": "COMPLETED",
            "approvalAmount": "1800.0",
            "purchaseAmount": "1800.0",
            "purchaseAmountEntered": "1800.0",
            "validUntil": "2099-01-01",
        })))
        .await;
    let deliveries = HashMap::from([("carecredit", Delivery::Poll), ("sunbit", Delivery::Poll)]);
    let waterfall = lenders.waterfall(WaterfallPolicy {
        on_partial: PartialApprovalRule::ContinueForFullCoverage,
        in_house_fallback: true,
    });

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &request(), &deliveries).await;

    // Assert
    assert_eq!(
        outcome,
        WaterfallOutcome::Financed {
            lender: LenderId::new("sunbit"),
            amount: AMOUNT,
        }
    );
    assert_eq!(
        ids(&attempts),
        [("carecredit", "partially_approved"), ("sunbit", "approved")]
    );
}

#[tokio::test]
async fn a_carecredit_counteroffer_stands_with_the_remainder_in_house_when_sunbit_declines() {
    // Arrange
    let lenders = Lenders::start().await;
    lenders
        .carecredit_answers(json!({
            "status": "Completed",
            "applicationDetails": { "applicationId": "app-e2e", "creditLine": "1000.00" },
        }))
        .await;
    lenders.sunbit_link(None).await;
    let deliveries = HashMap::from([
        ("carecredit", Delivery::Poll),
        (
            "sunbit",
            Delivery::SunbitWebhook(sunbit_prequal("PREQUAL_FAILED", None)),
        ),
    ]);
    let waterfall = lenders.waterfall(WaterfallPolicy {
        on_partial: PartialApprovalRule::ContinueForFullCoverage,
        in_house_fallback: true,
    });

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &request(), &deliveries).await;

    // Assert
    assert_eq!(
        outcome,
        WaterfallOutcome::CounterofferWithRemainder {
            lender: LenderId::new("carecredit"),
            approved: Money::usd(100_000),
            remainder: Money::usd(80_000),
            in_house: true,
        }
    );
    assert_eq!(
        ids(&attempts),
        [("carecredit", "partially_approved"), ("sunbit", "declined")]
    );
    let plan = InHouseOffer::compute(Money::usd(80_000), &terms()).unwrap();
    assert_eq!(plan.deposit, Money::usd(16_000));
    assert_eq!(
        Money::sum(
            financing_core::Currency::Usd,
            plan.installments.iter().copied()
        )
        .unwrap(),
        Money::usd(64_000)
    );
}

#[tokio::test]
async fn both_lenders_decline_and_the_in_house_plan_is_offered() {
    // Arrange
    let lenders = Lenders::start().await;
    lenders
        .carecredit_answers(json!({ "status": "AccountNotFoundQS" }))
        .await;
    lenders.sunbit_link(None).await;
    let deliveries = HashMap::from([
        ("carecredit", Delivery::Poll),
        (
            "sunbit",
            Delivery::SunbitWebhook(sunbit_prequal("PREQUAL_FAILED", None)),
        ),
    ]);
    let waterfall = lenders.waterfall(WaterfallPolicy::default());

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &request(), &deliveries).await;

    // Assert
    assert_eq!(
        outcome,
        WaterfallOutcome::NoLenderApproved { in_house: true }
    );
    assert_eq!(
        ids(&attempts),
        [("carecredit", "declined"), ("sunbit", "declined")]
    );
    let plan = InHouseOffer::compute(AMOUNT, &terms()).unwrap();
    assert_eq!(plan.total, AMOUNT);
    assert_eq!(plan.deposit, Money::usd(36_000));
    assert_eq!(plan.installments.len(), 6);
}

#[tokio::test]
async fn a_returning_carecredit_cardholder_with_enough_credit_skips_every_application() {
    // Arrange
    let lenders = Lenders::start().await;
    Mock::given(method("POST"))
        .and(path(carecredit_client::wire::CARDHOLDER_LOOKUP_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "AccountFound",
            "availableCredit": "5000.00",
            "lookupDetails": { "accountToken": "acct-e2e" },
        })))
        .expect(1)
        .mount(&lenders.carecredit)
        .await;
    Mock::given(method("POST"))
        .and(path(carecredit_client::wire::PREFILL_SESSIONS_PATH))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&lenders.carecredit)
        .await;
    lenders.sunbit_untouched().await;
    let deliveries = HashMap::from([("carecredit", Delivery::Poll), ("sunbit", Delivery::Poll)]);
    let waterfall = lenders.waterfall(WaterfallPolicy::default());

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &request(), &deliveries).await;

    // Assert
    assert_eq!(
        outcome,
        WaterfallOutcome::Financed {
            lender: LenderId::new("carecredit"),
            amount: AMOUNT,
        }
    );
    assert_eq!(ids(&attempts), [("carecredit", "approved")]);
}

#[tokio::test]
async fn an_amount_below_the_carecredit_minimum_goes_straight_to_sunbit() {
    // Arrange: $150 is under CareCredit's $200 promotion minimum.
    let lenders = Lenders::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&lenders.carecredit)
        .await;
    lenders
        .sunbit_link(Some(json!({
            "purchaseId": "pur-e2e",
            "status": "COMPLETED",
            "approvalAmount": "150.0",
            "purchaseAmount": "150.0",
        })))
        .await;
    let mut small = request();
    small.amount = Money::usd(15_000);
    let mut approval = sunbit_prequal("PREQUAL_APPROVED", Some("150.0"));
    approval["payload"]["purchaseAmountEntered"] = json!("150.0");
    let deliveries = HashMap::from([
        ("carecredit", Delivery::Poll),
        ("sunbit", Delivery::SunbitWebhook(approval)),
    ]);
    let waterfall = lenders.waterfall(WaterfallPolicy::default());

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &small, &deliveries).await;

    // Assert
    assert_eq!(
        waterfall.skipped(small.amount),
        [&LenderId::new("carecredit")]
    );
    assert_eq!(
        outcome,
        WaterfallOutcome::Financed {
            lender: LenderId::new("sunbit"),
            amount: Money::usd(15_000),
        }
    );
    assert_eq!(ids(&attempts), [("sunbit", "approved")]);
}

#[tokio::test]
async fn a_sunbit_purchase_below_the_amount_asked_is_a_counteroffer_whatever_the_patient_typed() {
    // Arrange: prequalified for $2,000; the patient typed and bought $1,000 of the $1,800 asked.
    let lenders = Lenders::start().await;
    lenders
        .carecredit_answers(json!({ "status": "Declined" }))
        .await;
    lenders
        .sunbit_link(Some(json!({
            "purchaseId": "pur-e2e",
            "status": "COMPLETED",
            "approvalAmount": "2000.0",
            "purchaseAmount": "1000.0",
            "purchaseAmountEntered": "1000.0",
        })))
        .await;
    let mut approval = sunbit_prequal("PREQUAL_APPROVED", Some("2000.0"));
    approval["payload"]["purchaseAmountEntered"] = json!("1000.0");
    let deliveries = HashMap::from([
        ("carecredit", Delivery::Poll),
        ("sunbit", Delivery::SunbitWebhook(approval)),
    ]);
    let waterfall = lenders.waterfall(WaterfallPolicy::default());

    // Act
    let (outcome, attempts) = lenders.run(&waterfall, &request(), &deliveries).await;

    // Assert: not full financing; the $800 gap is for staff to collect.
    assert_eq!(
        outcome,
        WaterfallOutcome::CounterofferForStaff {
            lender: LenderId::new("sunbit"),
            approved: Money::usd(100_000),
            requested: AMOUNT,
        }
    );
    assert_eq!(
        ids(&attempts),
        [("carecredit", "declined"), ("sunbit", "partially_approved")]
    );
}
