//! Payments posted to the practice's ledger: Open Dental `POST /payments` (no idempotency key)
//! through the engine's adapter against the sandbox's stand-in. A Stripe payment posted again
//! (the runner re-runs the step from its journal after a crash between the call and the commit,
//! or after a lost answer) is found by its marker and never posted twice.

use chairside_engine::adapters::opendental::OpenDentalPractice;
use chairside_engine::ports::{PaymentPosting, PracticeSystem, payment_marker};
use financing_core::{Money, PatientId};
use opendental_client::{AcceptanceRule, PatNum};
use sandbox::{Fault, FaultRule, Persona, Pms, Sandbox, SandboxConfig, System};

async fn open_dental() -> (
    Sandbox,
    OpenDentalPractice,
    opendental_client::Client,
    PatientId,
) {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let seeded = sandbox
        .seed_persona(Pms::OpenDental, Persona::InstantApproval)
        .expect("seeded");
    let cfg = &sandbox.config().opendental;
    let client = opendental_client::Client::builder(
        sandbox.urls().opendental.clone(),
        cfg.developer_key.clone(),
        cfg.customer_key.clone(),
    )
    .build()
    .expect("client");
    let pms = OpenDentalPractice::new(
        client.clone(),
        AcceptanceRule::default(),
        "America/Los_Angeles".parse().expect("zone"),
    );
    (sandbox, pms, client, PatientId::new(seeded.patient.pms_id))
}

async fn payments_for(
    client: &opendental_client::Client,
    patient: &PatientId,
    stripe_id: &str,
) -> Vec<Money> {
    let pat = PatNum::new(patient.as_str().parse().expect("PatNum"));
    client
        .list_payments(pat)
        .await
        .expect("list payments")
        .into_iter()
        .filter(|p| p.pay_note.contains(&payment_marker(stripe_id)))
        .map(|p| p.pay_amt)
        .collect()
}

#[tokio::test]
async fn a_stripe_payment_posted_again_after_a_crash_is_found_by_its_marker_and_posted_once() {
    // Arrange
    let (sandbox, pms, client, patient) = open_dental().await;
    let amount = Money::usd(15_500);
    // Act: the first attempt posts; the runner crashed before committing, so the step runs
    // again with the same Stripe payment.
    let first = pms
        .post_payment(
            &patient,
            "pi_card_1",
            amount,
            "Chairside: payment of $155.00",
        )
        .await
        .expect("first post");
    let again = pms
        .post_payment(
            &patient,
            "pi_card_1",
            amount,
            "Chairside: payment of $155.00",
        )
        .await
        .expect("second post");
    // Assert
    assert!(matches!(first, PaymentPosting::Posted(_)), "{first:?}");
    assert!(
        matches!(again, PaymentPosting::AlreadyPosted(_)),
        "{again:?}"
    );
    assert_eq!(
        payments_for(&client, &patient, "pi_card_1").await,
        vec![amount]
    );
    // Another Stripe payment is its own payment.
    pms.post_payment(
        &patient,
        "in_2",
        Money::usd(5_000),
        "Chairside: installment",
    )
    .await
    .expect("other payment");
    assert_eq!(
        payments_for(&client, &patient, "in_2").await,
        vec![Money::usd(5_000)]
    );
    sandbox.stop().await;
}

#[tokio::test]
async fn a_payment_whose_answer_was_lost_is_reconciled_before_it_is_posted_again() {
    // Arrange: Open Dental records the payment, then the connection drops before the answer.
    let (sandbox, pms, client, patient) = open_dental().await;
    sandbox.faults().set(
        System::OpenDental,
        vec![
            FaultRule::new(Fault::applied_then_reset())
                .on("POST", "/api/v1/payments")
                .times(1),
        ],
    );
    let amount = Money::usd(15_500);
    // Act
    let lost = pms
        .post_payment(&patient, "pi_lost", amount, "Chairside: payment")
        .await
        .expect_err("the answer was lost");
    let retried = pms
        .post_payment(&patient, "pi_lost", amount, "Chairside: payment")
        .await
        .expect("the retry reconciles");
    // Assert
    assert_eq!(
        lost.kind(),
        financing_core::ErrorKind::Indeterminate,
        "{lost}"
    );
    assert!(
        matches!(retried, PaymentPosting::AlreadyPosted(_)),
        "{retried:?}"
    );
    assert_eq!(
        payments_for(&client, &patient, "pi_lost").await,
        vec![amount]
    );
    sandbox.stop().await;
}
