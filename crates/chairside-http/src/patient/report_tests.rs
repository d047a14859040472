//! Request-level tests of the patient's report of a link-only lender's decision: the page's form
//! (English and Spanish), and the staff buttons that confirm or refuse it.

use axum::http::StatusCode;
use axum::response::Response;

use crate::testkit::{ALICE_PASSWORD, Kit, body_text, form, get, post_form, smile, with_cookie};
use chairside_workflow::{Event, TaskKind, WorkflowId, WorkflowState};

/// A workflow of patient `patient` waiting for Cherry's decision on $640.00 (a link-only lender).
fn at_cherry(kit: &Kit, plan: &str, patient: &str) -> WorkflowState {
    let mut s = kit.financing_state(smile(), plan, patient);
    // As the runner records it when it asks a lender (the provider's display name).
    s.lender_names
        .push((financing_core::LenderId::new("cherry"), "Cherry".into()));
    if let chairside_workflow::Stage::Financing(c) = &mut s.stage {
        c.lender = financing_core::LenderId::new("cherry");
        if let chairside_workflow::LenderPhase::AwaitingPatient { session, .. } = &mut c.phase {
            session.decide_by = Some(kit.now() + chrono::Duration::days(2));
        }
    }
    s
}

fn location(res: &Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

async fn page(kit: &Kit, uri: &str) -> String {
    let res = kit.send(get(uri)).await;
    assert_eq!(res.status(), StatusCode::OK, "{uri}");
    body_text(res).await
}

async fn report(kit: &Kit, wf: &WorkflowId, lender: &str, outcome: &str, amount: &str) -> Response {
    kit.send(post_form(
        &format!("/p/{}/report", kit.token(wf)),
        form(&[("lender", lender), ("outcome", outcome), ("amount", amount)]),
        None,
    ))
    .await
}

async fn report_tasks(kit: &Kit) -> Vec<(i64, String)> {
    kit.store
        .tasks(None, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.task.kind == TaskKind::PatientReport)
        .map(|t| (t.id, t.task.reason))
        .collect()
}

async fn staff_action(
    kit: &Kit,
    wf: &WorkflowId,
    session: &str,
    csrf: &str,
    action: &str,
    task: i64,
) -> Response {
    kit.send(post_form(
        &format!("/staff/workflows/{wf}/actions"),
        form(&[
            ("csrf", csrf),
            ("action", action),
            ("task", &task.to_string()),
        ]),
        Some(session),
    ))
    .await
}

#[tokio::test]
async fn a_patient_reports_cherrys_approval_on_the_page_and_staff_confirm_it() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed(at_cherry(&kit, "tx-1", "pat-1")).await;
    let base = format!("/p/{}", kit.token(&wf));
    let shown = page(&kit, &base).await.replace("&#x2f;", "/");
    assert!(shown.contains("Already applied with Cherry?"), "{shown}");
    assert!(
        shown.contains(&format!(r#"action="{base}/report""#)),
        "{shown}"
    );

    // Act: nonsense first, then $800.
    let bad = report(&kit, &wf, "cherry", "approved", "eight hundred").await;
    assert_eq!(bad.status(), StatusCode::SEE_OTHER);
    let back = location(&bad);
    assert!(back.contains("report_error=amount"), "{back}");
    let named = page(&kit, &back).await;
    assert!(
        named.contains("Enter the amount in dollars, like 1200.00."),
        "{named}"
    );
    assert!(
        report_tasks(&kit).await.is_empty(),
        "bad input raises nothing"
    );
    let res = report(&kit, &wf, "cherry", "approved", "$800").await;

    // Assert: one task; nothing decided; the page thanks the patient instead of the form.
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let tasks = report_tasks(&kit).await;
    assert_eq!(
        tasks.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(),
        vec!["Patient reports Cherry approved $800.00: check the Cherry portal and confirm"]
    );
    assert!(kit.inbox(&wf).await.is_empty(), "a report decides nothing");
    let thanked = page(&kit, &base).await;
    assert!(
        thanked.contains("Thanks: the practice will confirm with Cherry."),
        "{thanked}"
    );
    assert!(!thanked.contains(r#"name="outcome""#), "{thanked}");
    assert!(!thanked.contains("/apply"), "{thanked}");

    // Staff see the report with its buttons and the decision form pre-filled with it.
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let staff = body_text(
        kit.send(with_cookie(
            get(&format!("/staff/workflows/{wf}")),
            &session,
        ))
        .await,
    )
    .await;
    for shown in [
        r#"value="confirm_patient_report""#,
        r#"value="dismiss_patient_report""#,
        r#"value="approved" checked"#,
        r#"value="800.00""#,
        "Patient reports Cherry approved $800.00",
    ] {
        assert!(staff.contains(shown), "{shown}: {staff}");
    }
    let dashboard = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    assert!(
        dashboard.contains(r#"value="confirm_patient_report""#),
        "{dashboard}"
    );

    // Confirm records exactly the report through record_lender_decision; a second click is 409.
    let task = tasks[0].0;
    let confirmed = staff_action(&kit, &wf, &session, &csrf, "confirm_patient_report", task).await;
    let again = staff_action(&kit, &wf, &session, &csrf, "confirm_patient_report", task).await;
    assert_eq!(confirmed.status(), StatusCode::SEE_OTHER);
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let inbox = kit.inbox(&wf).await;
    assert!(
        matches!(
            inbox.as_slice(),
            [Event::LenderDecided { lender, decision: financing_core::Decision::Approved { offer, .. } }]
                if lender.as_str() == "cherry" && offer.amount == financing_core::Money::usd(80_000)
        ),
        "{inbox:?}"
    );
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(
        audit.iter().any(|a| a.kind == "staff_action"
            && a.actor == "staff:alice"
            && a.detail
                == "record_lender_decision: cherry approved $800.00; reason: confirmed the patient's report"),
        "{audit:?}"
    );
    assert!(report_tasks(&kit).await.is_empty());
}

#[tokio::test]
async fn a_spanish_speaking_patient_reports_in_spanish_and_not_confirmed_brings_the_form_back() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed(at_cherry(&kit, "tx-es", "pat-es")).await;
    let base = format!("/p/{}", kit.token(&wf));
    let shown = page(&kit, &base).await;
    assert!(
        shown.contains("¿Ya hizo su solicitud con Cherry?"),
        "{shown}"
    );
    assert!(shown.contains("Todavía estoy esperando"), "{shown}");

    // Act
    let zero = report(&kit, &wf, "cherry", "approved", "0.00").await;
    let named = page(&kit, &location(&zero)).await;
    assert!(
        named.contains("El monto debe ser mayor que $0.00."),
        "{named}"
    );
    let none = report(&kit, &wf, "cherry", "", "").await;
    let named = page(&kit, &location(&none)).await;
    assert!(named.contains("Elija una de las respuestas."), "{named}");
    assert!(report_tasks(&kit).await.is_empty());
    report(&kit, &wf, "cherry", "declined", "").await;

    // Assert
    let thanked = page(&kit, &base).await;
    assert!(
        thanked.contains("Gracias: el consultorio lo confirmará con Cherry."),
        "{thanked}"
    );
    let tasks = report_tasks(&kit).await;
    assert_eq!(
        tasks.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(),
        vec!["Patient reports Cherry declined: check the Cherry portal and confirm"]
    );
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(
        audit.iter().any(|a| a.actor == "patient"
            && a.kind == "patient_report"
            && a.detail == "patient reports cherry declined on the patient page (es)"),
        "{audit:?}"
    );

    // Staff: not confirmed. The task closes, with who; a second click is 409; the page offers
    // the application and the form again.
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let staff = body_text(
        kit.send(with_cookie(
            get(&format!("/staff/workflows/{wf}")),
            &session,
        ))
        .await,
    )
    .await;
    assert!(staff.contains(r#"value="declined" checked"#), "{staff}");
    let task = tasks[0].0;
    let dismissed = staff_action(&kit, &wf, &session, &csrf, "dismiss_patient_report", task).await;
    let again = staff_action(&kit, &wf, &session, &csrf, "dismiss_patient_report", task).await;
    assert_eq!(dismissed.status(), StatusCode::SEE_OTHER);
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(report_tasks(&kit).await.is_empty());
    assert!(kit.inbox(&wf).await.is_empty(), "nothing decided");
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(
        audit.iter().any(|a| a.actor == "staff:alice"
            && a.kind == "staff_action"
            && a.detail == "patient_report_not_confirmed: cherry declined"),
        "{audit:?}"
    );
    let back = page(&kit, &base).await;
    assert!(back.contains(r#"name="outcome""#), "{back}");
    assert!(back.contains("/apply"), "{back}");
}

#[tokio::test]
async fn still_waiting_is_not_confirmable_and_a_forged_or_foreign_click_changes_nothing() {
    let kit = Kit::new().await;
    let wf = kit.seed(at_cherry(&kit, "tx-1", "pat-1")).await;
    report(&kit, &wf, "cherry", "waiting", "").await;
    let tasks = report_tasks(&kit).await;
    assert_eq!(tasks.len(), 1);
    assert!(tasks[0].1.contains("still waiting"), "{}", tasks[0].1);
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let staff = body_text(
        kit.send(with_cookie(
            get(&format!("/staff/workflows/{wf}")),
            &session,
        ))
        .await,
    )
    .await;
    assert!(
        !staff.contains(r#"value="confirm_patient_report""#),
        "{staff}"
    );
    assert!(
        staff.contains(r#"value="dismiss_patient_report""#),
        "{staff}"
    );
    // A hand-made "Confirm" is refused with the reason; no task id is a bad request; another
    // practice's staff do not see the workflow.
    let confirm = staff_action(
        &kit,
        &wf,
        &session,
        &csrf,
        "confirm_patient_report",
        tasks[0].0,
    )
    .await;
    assert_eq!(confirm.status(), StatusCode::CONFLICT);
    let no_task = kit
        .send(post_form(
            &format!("/staff/workflows/{wf}/actions"),
            form(&[("csrf", &csrf), ("action", "dismiss_patient_report")]),
            Some(&session),
        ))
        .await;
    assert_eq!(no_task.status(), StatusCode::BAD_REQUEST);
    let (olga, olga_csrf) = kit.login("olga", "olga's password").await;
    let foreign = staff_action(
        &kit,
        &wf,
        &olga,
        &olga_csrf,
        "dismiss_patient_report",
        tasks[0].0,
    )
    .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(report_tasks(&kit).await.len(), 1, "still open");
    assert!(kit.inbox(&wf).await.is_empty());
}

#[tokio::test]
async fn a_lender_with_an_api_offers_no_report_form_and_a_forged_report_records_nothing() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let shown = page(&kit, &format!("/p/{}", kit.token(&wf))).await;
    assert!(!shown.contains(r#"name="outcome""#), "{shown}");
    for lender in ["sunbit", "cherry"] {
        let res = report(&kit, &wf, lender, "approved", "640").await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert!(!location(&res).contains("report_error"));
    }
    assert!(report_tasks(&kit).await.is_empty());
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(
        !audit.iter().any(|a| a.kind == "patient_report"),
        "{audit:?}"
    );
}

// The same tests on PostgreSQL (when CHAIRSIDE_TEST_POSTGRES_URL is set: scripts/with-postgres.sh).
crate::testkit::also_on_postgres!(
    a_patient_reports_cherrys_approval_on_the_page_and_staff_confirm_it,
    a_spanish_speaking_patient_reports_in_spanish_and_not_confirmed_brings_the_form_back,
    still_waiting_is_not_confirmable_and_a_forged_or_foreign_click_changes_nothing,
);
