//! The embedding example end to end: the engine built by an embedding program, with the made-up
//! "Acme" lender registered as a plug-in, takes one accepted Open Dental plan (a sandbox
//! stand-in) through the waterfall, the patient's summary email and the ledger note.

use std::sync::Arc;
use std::time::Duration;

use chairside_examples::embedding::{Systems, build_engine, run_until_settled};
use chairside_examples::third_lender::AcmeLender;
use chairside_workflow::Status;
use financing_core::{LenderId, Money};
use sandbox::{Persona, Pms, Sandbox, SandboxConfig};

async fn systems(sandbox: &Sandbox) -> Systems {
    let cfg = sandbox.config();
    Systems {
        opendental: sandbox.urls().opendental.clone(),
        opendental_developer_key: cfg.opendental.developer_key.clone(),
        opendental_customer_key: cfg.opendental.customer_key.clone(),
        stripe: sandbox.urls().stripe.clone(),
        stripe_key: cfg.stripe.secret_key.clone(),
        smtp: sandbox.urls().smtp,
        public_base_url: "http://127.0.0.1:9/".parse().expect("url"),
    }
}

#[tokio::test]
async fn an_embedded_engine_finances_an_accepted_plan_through_a_plug_in_lender() {
    // Arrange: one accepted plan ($950 for the patient) and a plug-in lender with room for it.
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = Arc::new(AcmeLender::new(Money::usd(500_000)));
    let engine = build_engine(
        dir.path(),
        &systems(&sandbox).await,
        LenderId::new("acme"),
        acme.clone(),
    )
    .await
    .expect("engine");
    // The install's first poll takes its baseline: a fresh install starts from now, so the plan
    // is accepted after it (older plans are started on purpose by a backfill).
    engine
        .runner()
        .poll()
        .await
        .expect("the install's first poll");
    let case = sandbox
        .seed_persona(Pms::OpenDental, Persona::InstantApproval)
        .expect("seed");
    sandbox.accept_plan(case.plan.key).expect("accept");

    // Act
    let states = run_until_settled(&engine, Duration::from_secs(60))
        .await
        .expect("run");

    // Assert: one workflow, done, financed by the plug-in for the patient's whole portion.
    assert_eq!(states.len(), 1, "one plan, one workflow");
    let state = &states[0];
    assert_eq!(state.status, Status::Done, "{state:?}");
    let result = state.result.as_ref().expect("a financing result");
    assert_eq!(
        result.financed,
        Some((LenderId::new("acme"), Money::usd(95_000)))
    );
    assert_eq!(acme.applications_opened(), 1, "one application, not two");
    // The practice system got exactly one ledger note, and the patient an email.
    let notes = sandbox.ledger_notes();
    assert_eq!(notes.len(), 1, "one ledger note: {notes:?}");
    assert_eq!(notes[0].patient_pms_id, case.patient.pms_id);
    assert!(
        !sandbox.smtp().messages().is_empty(),
        "the patient was emailed"
    );
    sandbox.stop().await;
}
