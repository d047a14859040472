//! Off-session charges of a saved card through the engine's Stripe adapter against the sandbox's
//! Stripe: a charge whose answer never reached the store is found by its metadata before
//! charging again, whatever idempotency key the repeat carries (Stripe forgets keys after 24
//! hours; a staff retry may come later), so a purpose is never charged twice; a declined attempt
//! does not count as a charge.

use chairside_engine::adapters::stripe::StripePayments;
use chairside_engine::ports::{CardChargeRequest, CardOutcome, Payments};
use chairside_workflow::WorkflowId;
use financing_core::{Money, PatientId, PracticeId};
use sandbox::{Sandbox, SandboxConfig};
use secrecy::ExposeSecret;
use stripe_schedule::{Client, CustomerDetails, IdempotencyKey};

async fn stripe() -> (Sandbox, Client, StripePayments, String) {
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox starts");
    let client = Client::builder(secrecy::SecretString::from(
        sandbox
            .config()
            .stripe
            .secret_key
            .expose_secret()
            .to_owned(),
    ))
    .base_url(sandbox.urls().stripe.clone())
    .timeout(std::time::Duration::from_secs(5))
    .build()
    .expect("client");
    let practice = PracticeId::new("smile");
    let patient = PatientId::new("p-offsession");
    let customer = client
        .find_or_create_customer(
            &practice,
            &patient,
            &CustomerDetails {
                email: Some("p-offsession@example.test".into()),
                ..Default::default()
            },
            &IdempotencyKey::for_customer(&practice, &patient),
        )
        .await
        .expect("customer");
    let payments = StripePayments::new(client.clone(), "Smile Dental treatment plan", None);
    (sandbox, client, payments, customer.id.as_str().to_owned())
}

fn request<'a>(
    practice: &'a PracticeId,
    customer: &'a str,
    payment_method: &'a str,
    workflow: &'a WorkflowId,
    purpose: &'a str,
    key: &'a str,
) -> CardChargeRequest<'a> {
    CardChargeRequest {
        practice,
        customer,
        payment_method,
        amount: Money::usd(30_000),
        workflow,
        purpose,
        key,
    }
}

fn charged(stripe: &sandbox::StripeHandle, workflow: &WorkflowId, purpose: &str) -> u32 {
    stripe
        .charges_per_installment()
        .get(&(workflow.as_str().to_owned(), purpose.to_owned()))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_charge_repeated_under_another_key_is_found_by_its_metadata_and_made_once() {
    // Arrange
    let (sandbox, _client, payments, customer) = stripe().await;
    let practice = PracticeId::new("smile");
    let wf = WorkflowId::new("wf_offsession_1");

    // Act: the co-pay is charged; its answer is "lost"; the repeat comes after Stripe forgot
    // the first key (a different key reaches Stripe as a new request).
    let first = payments
        .charge_card(&request(
            &practice,
            &customer,
            "pm_card_visa",
            &wf,
            "copay",
            "wf_offsession_1:charge_card:7",
        ))
        .await
        .expect("charged");
    let again = payments
        .charge_card(&request(
            &practice,
            &customer,
            "pm_card_visa",
            &wf,
            "copay",
            "wf_offsession_1:charge_card:9",
        ))
        .await
        .expect("reconciled");
    // The deposit of the same workflow is its own charge.
    let deposit = payments
        .charge_card(&request(
            &practice,
            &customer,
            "pm_card_visa",
            &wf,
            "deposit",
            "wf_offsession_1:charge_card:3",
        ))
        .await
        .expect("charged");

    // Assert
    let (CardOutcome::Charged { payment_intent: a }, CardOutcome::Charged { payment_intent: b }) =
        (&first, &again)
    else {
        panic!("expected two charged outcomes, got {first:?} and {again:?}");
    };
    assert_eq!(a, b, "the repeat reports the first PaymentIntent");
    assert!(matches!(deposit, CardOutcome::Charged { payment_intent } if &payment_intent != a));
    let stripe = sandbox.stripe();
    assert_eq!(charged(&stripe, &wf, "copay"), 1);
    assert_eq!(charged(&stripe, &wf, "deposit"), 1);
    sandbox.stop().await;
}

#[tokio::test]
async fn a_declined_attempt_is_not_a_charge_so_a_retry_with_another_card_charges() {
    // Arrange
    let (sandbox, _client, payments, customer) = stripe().await;
    let practice = PracticeId::new("smile");
    let wf = WorkflowId::new("wf_offsession_2");

    // Act
    let declined = payments
        .charge_card(&request(
            &practice,
            &customer,
            "pm_card_chargeDeclinedInsufficientFunds",
            &wf,
            "copay",
            "wf_offsession_2:charge_card:4",
        ))
        .await
        .expect("an outcome");
    let retried = payments
        .charge_card(&request(
            &practice,
            &customer,
            "pm_card_visa",
            &wf,
            "copay",
            "wf_offsession_2:charge_card:6",
        ))
        .await
        .expect("an outcome");

    // Assert
    assert!(
        matches!(&declined, CardOutcome::Declined { reason, authentication: false, .. } if reason.contains("insufficient_funds")),
        "{declined:?}"
    );
    assert!(
        matches!(retried, CardOutcome::Charged { .. }),
        "{retried:?}"
    );
    assert_eq!(charged(&sandbox.stripe(), &wf, "copay"), 1);
    sandbox.stop().await;
}
