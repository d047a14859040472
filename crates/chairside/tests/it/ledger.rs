//! Payments posted to the practice's ledger: Open Dental `POST /payments` (no idempotency key)
//! through the engine's adapter against the sandbox's stand-in. A Stripe payment posted again
//! (the runner re-runs the step from its journal after a crash between the call and the commit,
//! or after a lost answer) is found by its marker and never posted twice. NexHealth
//! `POST /payments` (asynchronous) keyed by its `transaction_id`; refunds reversed in both.

use chairside_engine::adapters::nexhealth::NexHealthPractice;
use chairside_engine::adapters::opendental::OpenDentalPractice;
use chairside_engine::ports::{PaymentPosting, PracticeSystem, payment_marker, refund_marker};
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

#[tokio::test]
async fn partial_refunds_are_negative_payments_in_open_dental_each_once() {
    // Arrange: a $155.00 payment posted, then two partial refunds on its charge.
    let (sandbox, pms, client, patient) = open_dental().await;
    pms.post_payment(&patient, "pi_r", Money::usd(15_500), "Chairside: payment")
        .await
        .expect("payment");
    let pat = PatNum::new(patient.as_str().parse().expect("PatNum"));
    let refunds = |client: opendental_client::Client, key: &'static str| async move {
        client
            .list_payments(pat)
            .await
            .expect("list")
            .into_iter()
            .filter(|p| p.pay_note.contains(&refund_marker(key)))
            .map(|p| p.pay_amt.minor())
            .collect::<Vec<_>>()
    };

    // Act: the first refund ($50 of the total $50), repeated after a crash; the second ($25
    // more, total $75).
    let first = pms
        .post_refund(
            &patient,
            "ch_r:5000",
            Money::usd(5_000),
            "Chairside: refund",
        )
        .await
        .expect("first refund");
    let again = pms
        .post_refund(
            &patient,
            "ch_r:5000",
            Money::usd(5_000),
            "Chairside: refund",
        )
        .await
        .expect("repeat");
    let second = pms
        .post_refund(
            &patient,
            "ch_r:7500",
            Money::usd(2_500),
            "Chairside: refund",
        )
        .await
        .expect("second refund");

    // Assert
    assert!(matches!(first, PaymentPosting::Posted(_)), "{first:?}");
    assert!(
        matches!(again, PaymentPosting::AlreadyPosted(_)),
        "{again:?}"
    );
    assert!(matches!(second, PaymentPosting::Posted(_)), "{second:?}");
    assert_eq!(refunds(client.clone(), "ch_r:5000").await, vec![-5_000]);
    assert_eq!(refunds(client.clone(), "ch_r:7500").await, vec![-2_500]);
    let balance: i64 = client
        .list_payments(pat)
        .await
        .expect("list")
        .iter()
        .map(|p| p.pay_amt.minor())
        .sum();
    assert_eq!(balance, 15_500 - 7_500, "the ledger nets the refunds");
    sandbox.stop().await;
}

async fn nexhealth() -> (
    Sandbox,
    NexHealthPractice,
    nexhealth_client::Client,
    PatientId,
) {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let seeded = sandbox
        .seed_persona(Pms::NexHealth, Persona::InstantApproval)
        .expect("seeded");
    let cfg = &sandbox.config().nexhealth;
    let client = nexhealth_client::Client::builder(
        sandbox.urls().nexhealth.clone(),
        nexhealth_client::Credentials::new(
            cfg.api_key.clone(),
            cfg.subdomain.clone(),
            nexhealth_client::LocationId::new(cfg.location_id.to_string()),
        ),
    )
    .build()
    .expect("client");
    (
        sandbox,
        NexHealthPractice::new(client.clone()),
        client,
        PatientId::new(seeded.patient.pms_id),
    )
}

/// The sandbox's NexHealth ledger lines for `patient`, as amounts (a payment positive).
fn nexhealth_ledger(sandbox: &Sandbox, patient: &PatientId) -> Vec<(i64, String)> {
    sandbox
        .ledger_notes()
        .into_iter()
        .filter(|n| {
            n.pms == Pms::NexHealth
                && n.kind == sandbox::NoteKind::Payment
                && n.patient_pms_id == patient.as_str()
        })
        .map(|n| (n.amount.unwrap_or_default(), n.text))
        .collect()
}

#[tokio::test]
async fn a_stripe_payment_reaches_the_nexhealth_ledger_once_and_a_refund_reverses_it() {
    // Arrange
    let (sandbox, pms, client, patient) = nexhealth().await;
    let transaction = nexhealth_client::TransactionId::new("chairside", "pi_nx").expect("id");
    let nx_patient = nexhealth_client::PatientId::new(patient.as_str());

    // Act: posted; posted again once NexHealth has written it to the EHR (a retry after a
    // crash); then a partial refund.
    let first = pms
        .post_payment(
            &patient,
            "pi_nx",
            Money::usd(20_000),
            "Chairside: payment of $200.00",
        )
        .await
        .expect("payment");
    // NexHealth lists the payment once the EHR has it.
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = client
            .find_payments(&nx_patient, &transaction)
            .await
            .expect("lookup");
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let again = pms
        .post_payment(
            &patient,
            "pi_nx",
            Money::usd(20_000),
            "Chairside: payment of $200.00",
        )
        .await
        .expect("repeat");
    let refund = pms
        .post_refund(
            &patient,
            "ch_nx:6000",
            Money::usd(6_000),
            "Chairside: refund",
        )
        .await
        .expect("refund");

    // Assert
    assert_eq!(
        first,
        PaymentPosting::Posted("chairside:pi_nx".into()),
        "{first:?}"
    );
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].signed_minor,
        Some(-20_000),
        "a payment is negative"
    );
    assert!(
        matches!(again, PaymentPosting::AlreadyPosted(_)),
        "found by its transaction id once in the EHR: {again:?}"
    );
    assert!(matches!(refund, PaymentPosting::Posted(_)), "{refund:?}");
    let ledger = nexhealth_ledger(&sandbox, &patient);
    assert_eq!(
        ledger.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![20_000, -6_000],
        "one payment, one refund"
    );
    assert!(ledger[0].1.contains(&payment_marker("pi_nx")));
    assert!(ledger[1].1.contains(&refund_marker("ch_nx:6000")));
    sandbox.stop().await;
}

#[tokio::test]
async fn a_nexhealth_payment_write_without_an_answer_is_for_staff_not_posted_again() {
    // Arrange: NexHealth queues the write, then the connection drops before the answer.
    let (sandbox, pms, _client, patient) = nexhealth().await;
    sandbox.faults().set(
        System::NexHealth,
        vec![
            FaultRule::new(Fault::applied_then_reset())
                .on("POST", "/payments")
                .times(1),
        ],
    );

    // Act
    let lost = pms
        .post_payment(&patient, "pi_lost", Money::usd(1_000), "Chairside: payment")
        .await
        .expect_err("the answer was lost");

    // Assert: permanent (a staff task), naming the transaction id, no patient data.
    assert_eq!(lost.kind(), financing_core::ErrorKind::Permanent, "{lost}");
    assert!(lost.to_string().contains("chairside:pi_lost"), "{lost}");
    assert_eq!(nexhealth_ledger(&sandbox, &patient).len(), 1, "queued once");
    sandbox.stop().await;
}
