//! In-house installments of a card-on-file practice, the whole chain over the sandbox: the
//! patient accepts the plan and saves a card on the patient page (the authorization naming the
//! installments); the schedule waits for the card and is created charging it from the start
//! (`charge_automatically`, the card as `default_payment_method`), so the first installment is
//! charged to the card, never emailed, and no schedule is ever switched afterwards. A card the
//! bank wants authenticated fails its installment: the patient page shows the invoice's own pay
//! link and staff get a task.

use std::time::{Duration, Instant};

use chairside::demo::world::{PRACTICES, World, WorldOptions};
use chairside_workflow::WorkflowState;
use sandbox::{Persona, TestCard};

/// Waits until `check` holds for the case's workflow (the card is saved by the sandbox's
/// patient after the workflow settled, asynchronously).
async fn until(
    world: &World,
    case: usize,
    what: &str,
    check: impl Fn(&WorkflowState) -> bool,
) -> WorkflowState {
    let started = Instant::now();
    loop {
        if let Some(s) = world.workflow_of(&world.cases[case]).await.expect("store")
            && check(&s)
        {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_card_pays_the_in_house_installments_and_a_failed_one_is_a_pay_link_and_a_task() {
    // Arrange: two patients decline everywhere and take Empire Dental's in-house plan; one
    // saves a card that pays, one a card whose bank asks for authentication.
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut world = World::start(dir.path(), WorldOptions::default())
        .await
        .expect("world starts");
    let empire = &PRACTICES[2];
    assert!(empire.card_on_file);
    world
        .seed_with_card(empire, Persona::DeclineEverywhere, TestCard::Visa)
        .expect("seeded");
    world
        .seed_with_card(
            empire,
            Persona::DeclineEverywhere,
            TestCard::AuthenticationRequired,
        )
        .expect("seeded");
    assert!(
        world.drive(Duration::from_secs(120)).await.expect("drive"),
        "every workflow settles"
    );
    let runner = world.runner.clone();
    let work = tokio::spawn(async move {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let stop = async move {
            let mut rx = rx;
            let _ = rx.wait_for(|s| *s).await;
        };
        runner.work(stop).await
    });
    let paying = until(&world, 0, "the schedule on the card", |s| {
        s.stripe.schedule_id.is_some() && s.stripe.schedule_card.is_some()
    })
    .await;
    let failing = until(&world, 1, "the schedule on the card", |s| {
        s.stripe.schedule_id.is_some() && s.stripe.schedule_card.is_some()
    })
    .await;
    let stripe = world.sandbox.stripe();
    for s in [&paying, &failing] {
        let schedule = stripe
            .object(s.stripe.schedule_id.as_deref().expect("a schedule"))
            .expect("in Stripe");
        assert_eq!(
            schedule["default_settings"]["collection_method"],
            "charge_automatically"
        );
        assert_eq!(
            schedule["default_settings"]["default_payment_method"].as_str(),
            s.stripe.payment_method.as_deref()
        );
        assert!(
            s.stripe
                .card_authorization
                .as_ref()
                .is_some_and(|a| a.wording.contains("installments of my payment plan")),
            "the agreement named the installments"
        );
        assert_eq!(s.stripe.installments_by_invoice, None);
    }
    // Created on the card: never switched afterwards.
    let updates: Vec<String> = world
        .sandbox
        .requests(sandbox::System::Stripe)
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.starts_with("/v1/subscription_schedules/")
                && !r.path.ends_with("/cancel")
        })
        .map(|r| r.path)
        .collect();
    assert!(updates.is_empty(), "{updates:?}");

    // The first installment, billed when the schedule started: charged to the card, never an
    // emailed invoice; the authentication-required card's is its pay link and a task.
    let customers: Vec<&str> = [&paying, &failing]
        .iter()
        .map(|s| s.stripe.customer_id.as_deref().expect("customer"))
        .collect();
    let first_invoice = |customer: &str| {
        stripe
            .invoices()
            .into_iter()
            .filter(|i| i["customer"] == customer)
            .find(|i| i["billing_reason"] == "subscription_create")
            .expect("the first installment's invoice")
    };
    assert!(
        stripe
            .invoices()
            .iter()
            .filter(|i| customers.iter().any(|c| i["customer"] == *c))
            .all(|i| i["collection_method"] == "charge_automatically"),
        "no installment invoice is emailed"
    );
    let first_paid = first_invoice(customers[0]);
    assert_eq!(first_paid["status"], "paid", "{first_paid}");
    let first_failed = first_invoice(customers[1]);
    assert_eq!(first_failed["status"], "open", "{first_failed}");
    let failed_first = first_failed["id"].as_str().expect("id").to_owned();
    // One `invoice.payment_failed` is two events, two steps: the link first, then the failure
    // and its task. Wait for the second, or the task may not be written yet.
    let failing = until(
        &world,
        1,
        "the first installment's pay link and failure",
        |s| {
            s.stripe.installment_pay_link.is_some()
                && s.stripe.failures_handled.contains(&failed_first)
        },
    )
    .await;
    let link = failing.stripe.installment_pay_link.clone().expect("link");
    assert_eq!(link.invoice_id, failed_first);
    assert!(link.url.contains(&failed_first), "{}", link.url);
    let tasks = world
        .store
        .tasks(Some(&failing.key.practice_id), false)
        .await
        .expect("tasks");
    assert!(
        tasks.iter().any(|t| t.workflow_id == failing.id
            && t.task.reason.contains("not charged for an installment")),
        "{tasks:?}"
    );
    let paying = until(&world, 0, "the first installment noted", |s| {
        s.stripe
            .payments_noted
            .iter()
            .any(|id| first_paid["id"] == id.as_str())
    })
    .await;

    // Act: Stripe bills the next installment of every schedule.
    let billed = stripe.advance_schedules().await;

    // Assert: one schedule per workflow; the Visa's second installment charged to it too.
    assert!(stripe.schedules_per_workflow().values().all(|n| *n == 1));
    let of = |s: &WorkflowState| {
        billed
            .iter()
            .find(|b| Some(b.schedule.as_str()) == s.stripe.schedule_id.as_deref())
            .cloned()
            .expect("billed")
    };
    assert!(of(&paying).paid, "the saved card paid the installment");
    assert_eq!(of(&paying).index, 1);
    assert!(!of(&failing).paid);
    work.abort();
    world.stop().await;
}
