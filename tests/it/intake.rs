//! New-patient intake over real HTTP: staff start an intake, the patient types their details on
//! the intake page, the financing chain runs, and at case acceptance the patient is created in
//! the practice system once (Open Dental, NexHealth) or left to staff (Dentrix Ascend), even when
//! the practice system applies the create and the answer is lost.

use std::time::Duration;

use chairside::demo::report;
use chairside::demo::world::{World, WorldOptions};
use chairside_workflow::{Status, TaskKind};
use sandbox::{Fault, FaultRule, Pms, SandboxConfig, System};

async fn run_intakes(
    sandbox: SandboxConfig,
) -> (World, Vec<chairside::demo::Row>, bool, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = WorldOptions {
        sandbox,
        ..WorldOptions::default()
    };
    let mut world = World::start(dir.path(), options)
        .await
        .expect("world starts");
    world.seed_intakes().await.expect("intakes start");
    let settled = world.drive(Duration::from_secs(90)).await.expect("driving");
    let (rows, problems) = report(&world).await.expect("report");
    assert!(problems.is_empty(), "invariants broken: {problems:?}");
    // The temporary directory outlives the world's store: the caller holds it.
    (world, rows, settled, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_patient_is_financed_and_created_once_in_the_practice_system() {
    // Arrange + Act: one intake at each practice (Open Dental, NexHealth, Dentrix Ascend).
    let (world, rows, settled, _dir) = run_intakes(SandboxConfig::default()).await;

    // Assert
    assert!(settled, "every intake workflow settled");
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert!(
            row.ok,
            "{} ended as {} (expected {})",
            row.plan, row.path, row.expected
        );
    }
    for case in &world.intakes {
        let state = world
            .intake_workflow(case)
            .await
            .expect("store")
            .expect("the intake started a workflow");
        let records = world.sandbox.pms_patient_ids(
            case.pms,
            &case.patient.first_name,
            &case.patient.last_name,
        );
        let link = state.intake.as_ref().expect("an intake workflow");
        match case.pms {
            Pms::Dentrix => {
                assert_eq!(state.status, Status::WaitingOnStaff);
                assert_eq!(
                    state.staff_task.as_ref().map(|t| t.kind),
                    Some(TaskKind::PatientRecord)
                );
                assert!(
                    records.is_empty(),
                    "Chairside never writes an Ascend patient"
                );
                assert_eq!(link.practice_patient, None);
                // The task names the case's treatment plan to enter with the patient.
                let reason = &state.staff_task.as_ref().expect("task").reason;
                assert!(
                    reason.contains("treatment plan \"Financed case (Chairside)\""),
                    "{reason}"
                );
                assert_eq!(link.practice_plan, None);
            }
            _ => {
                assert_eq!(state.status, Status::Done);
                assert_eq!(records.len(), 1, "{}: one record", case.pms);
                assert_eq!(
                    link.practice_patient
                        .as_ref()
                        .map(|p| p.as_str().to_owned()),
                    Some(records[0].clone()),
                    "the ledger note went to the created patient"
                );
                let audit = chairside_engine::store::ReportStore::audit(&*world.store, &state.id)
                    .await
                    .expect("audit");
                assert!(audit.iter().any(|a| a.detail.contains("patient created")));
                let marker = chairside_workflow::intake::plan_marker(&state.id);
                if case.pms == Pms::OpenDental {
                    // The case's plan is in Open Dental, on that patient, once, Inactive.
                    let plans: Vec<_> = world
                        .sandbox
                        .od_written_plans()
                        .into_iter()
                        .filter(|p| p["Note"].as_str().is_some_and(|n| n.contains(&marker)))
                        .collect();
                    assert_eq!(plans.len(), 1, "one case plan: {plans:?}");
                    assert_eq!(plans[0]["PatNum"].to_string(), records[0]);
                    assert_eq!(plans[0]["TPStatus"], "Inactive");
                    assert_eq!(plans[0]["Heading"], "Financed case (Chairside)");
                    assert_eq!(
                        link.practice_plan.clone(),
                        Some(plans[0]["TreatPlanNum"].to_string())
                    );
                    assert!(audit.iter().any(|a| a.detail.contains("case plan written")));
                } else {
                    // NexHealth's plans are read-only: staff enter it, the workflow is done.
                    assert_eq!(
                        link.practice_plan.as_deref(),
                        Some(chairside_workflow::intake::PLAN_FOR_STAFF)
                    );
                    assert!(
                        audit
                            .iter()
                            .any(|a| a.detail.contains("case plan left to staff"))
                    );
                }
            }
        }
        // The patient's own consent, with the wording they saw, is on record.
        let phone = case
            .patient
            .mobile_phone
            .as_deref()
            .expect("a mobile phone");
        let consent = chairside_engine::store::PatientStore::sms_consent(
            &*world.store,
            &case.practice,
            phone,
        )
        .await
        .expect("store")
        .expect("a consent record");
        assert_eq!(consent.source, messaging::sources::INTAKE_PAGE);
        assert_eq!(consent.wording, messaging::PATIENT_PAGE_WORDING);
        assert_eq!(consent.recorded_by, "patient");
    }
    // The CRM: one deal per intake, in its outcome's stage, with nothing clinical on it.
    let mut deals = Vec::new();
    for _ in 0..100 {
        deals = world.crm.deals();
        let ready = world.intakes.len()
            <= deals
                .iter()
                .filter(|d| d.properties.get("dealstage").map(String::as_str) == Some("financed"))
                .count();
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for case in &world.intakes {
        let state = world
            .intake_workflow(case)
            .await
            .expect("store")
            .expect("workflow");
        let mine: Vec<_> = deals
            .iter()
            .filter(|d| {
                d.properties
                    .get("chairside_workflow_id")
                    .map(String::as_str)
                    == Some(state.id.as_str())
            })
            .collect();
        assert_eq!(mine.len(), 1, "{}: one deal", case.pms);
        // Financed; or already paid once a payment was noted in the ledger (a deposit, or an
        // installment; Empire Dental charges the card the patient saved: card on file). The CRM's
        // rule (`stage_for`) moves a deal to paid on any noted payment, not on the deposit flag.
        // The paid update follows the financed one through the outbox, so it may still be on its
        // way when the test looks.
        let stages: &[&str] = if !state.stripe.payments_noted.is_empty() {
            &["financed", "paid"]
        } else {
            &["financed"]
        };
        let stage = mine[0].properties.get("dealstage").map(String::as_str);
        assert!(
            stage.is_some_and(|s| stages.contains(&s)),
            "{}: {:?}",
            case.pms,
            mine[0].properties
        );
        let all = format!("{:?}", mine[0].properties);
        assert!(
            !all.contains("D9999") && !all.contains("onsultation"),
            "{all}"
        );
        assert!(
            !all.contains("amount"),
            "amounts stay out unless turned on: {all}"
        );
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_applied_but_unanswered_is_found_by_the_search_and_never_repeated() {
    // Arrange: Open Dental and NexHealth apply every patient create and drop the answer.
    let mut sandbox = SandboxConfig::default();
    sandbox.faults.insert(
        System::OpenDental,
        vec![
            FaultRule::new(Fault::applied_then_reset()).on("POST", "/api/v1/patients"),
            FaultRule::new(Fault::applied_then_reset()).on("POST", "/api/v1/treatplans"),
        ],
    );
    sandbox.faults.insert(
        System::NexHealth,
        vec![FaultRule::new(Fault::applied_then_reset()).on("POST", "/patients")],
    );

    // Act
    let (world, rows, settled, _dir) = run_intakes(sandbox).await;

    // Assert: the retry searched first, found the patient and created no second one.
    assert!(settled, "every intake workflow settled");
    for row in &rows {
        assert!(
            row.ok,
            "{} ended as {} (expected {})",
            row.plan, row.path, row.expected
        );
    }
    for case in world.intakes.iter().filter(|c| c.pms != Pms::Dentrix) {
        let records = world.sandbox.pms_patient_ids(
            case.pms,
            &case.patient.first_name,
            &case.patient.last_name,
        );
        assert_eq!(records.len(), 1, "{}: exactly one record", case.pms);
        // The answer was lost, so the workflow learned of the record by the search.
        let state = world
            .intake_workflow(case)
            .await
            .expect("store")
            .expect("a workflow");
        let audit = chairside_engine::store::ReportStore::audit(&*world.store, &state.id)
            .await
            .expect("audit");
        assert!(
            audit.iter().any(|a| a.detail.contains("patient matched")),
            "{}: {:?}",
            case.pms,
            audit.iter().map(|a| &a.detail).collect::<Vec<_>>()
        );
        if case.pms == Pms::OpenDental {
            // The plan's create was applied and its answer lost: the marker lookup found it.
            let marker = chairside_workflow::intake::plan_marker(&state.id);
            let plans = world
                .sandbox
                .od_written_plans()
                .into_iter()
                .filter(|p| p["Note"].as_str().is_some_and(|n| n.contains(&marker)))
                .count();
            assert_eq!(plans, 1, "exactly one case plan");
            assert!(
                audit.iter().any(|a| a
                    .detail
                    .contains("case plan already in the practice system")),
                "{:?}",
                audit.iter().map(|a| &a.detail).collect::<Vec<_>>()
            );
        }
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_hears_of_a_financed_case_with_its_date_once_and_of_nothing_else() {
    // Arrange: a financed plan with a treatment date (the example plan is in 14 days), and a
    // declined one, at the Texas practice (lab: cases@lab-of-lone-star-dental.example).
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut world = World::start(dir.path(), WorldOptions::default())
        .await
        .expect("world starts");
    let texas = &chairside::demo::world::PRACTICES[0];
    world
        .seed(texas, sandbox::Persona::InstantApproval)
        .expect("seed");
    world
        .seed(texas, sandbox::Persona::NeverCompletes)
        .expect("seed");

    // Act
    let settled = world.drive(Duration::from_secs(90)).await.expect("driving");
    // The dispatcher runs beside the runner: give it a moment after the last step.
    let lab = "cases@lab-of-lone-star-dental.example";
    let mut mails = Vec::new();
    for _ in 0..100 {
        mails = world.sandbox.smtp().messages_to(lab);
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A later round sends nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = world.sandbox.smtp().messages_to(lab).len();

    // Assert
    assert!(settled);
    assert_eq!(mails.len(), 1, "one email for the one financed case");
    assert_eq!(later, 1, "and only one");
    let financed = world
        .workflow_of(&world.cases[0])
        .await
        .expect("store")
        .expect("workflow");
    let mail = &mails[0];
    let body = format!("{} {}", mail.subject.clone().unwrap_or_default(), mail.text);
    assert!(body.contains(financed.key.plan_id.as_str()), "{body}");
    let day = financed.treatment_date.expect("a treatment date");
    assert!(body.contains(&day.format("%Y-%m-%d").to_string()), "{body}");
    assert!(!body.contains('$'), "no financial data: {body}");
    assert!(!body.to_lowercase().contains("carecredit"), "{body}");
    world.stop().await;
}
