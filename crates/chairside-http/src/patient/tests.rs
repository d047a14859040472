//! Request-level tests of the patient page.

use axum::http::StatusCode;
use financing_core::{CdtCode, PatientId, PlanId, PlannedProcedure, TreatmentPlan, UsState};
use secrecy::SecretString;

use crate::sign_patient_token;
use crate::testkit::{
    APPLY_LINK, CHECKOUT_URL, EMAIL, FIRST, Kit, LAST, PATIENT_KEY, PHONE, body_text, get,
    post_form, smile,
};
use chairside_workflow::{Event, PatientFacts, Status, WorkflowId};

async fn audit_kinds(kit: &Kit, wf: &WorkflowId) -> Vec<String> {
    kit.store
        .audit(wf)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect()
}

#[tokio::test]
async fn the_patient_page_shows_the_amounts_and_terms_and_not_the_cdt_code() {
    // Arrange: the plan, with its procedure code, is in the store too.
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let plan = TreatmentPlan {
        id: PlanId::new("tx-1"),
        revision: "1".into(),
        patient_id: PatientId::new("pat-1"),
        accepted_at: kit.now(),
        treatment_date: None,
        procedures: vec![PlannedProcedure {
            code: CdtCode::new("D2740"),
            fee: financing_core::Money::usd(130_000),
            primary_estimate: Some(financing_core::Money::usd(50_000)),
            secondary_estimate: None,
        }],
    };
    let facts = PatientFacts {
        reachable: true,
        state: Some(UsState::TX),
        lookup_allowed: false,
        financing_not_before: kit.now(),
    };
    kit.store
        .enqueue(&wf, "test", &Event::PlanLoaded { plan, facts }, kit.now())
        .await
        .unwrap();
    // Act
    let res = kit.send(get(&format!("/p/{}", kit.token(&wf)))).await;
    // Assert
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    assert_eq!(res.headers()["cache-control"], "no-store");
    // minijinja escapes `/` in values; browsers decode it.
    let page = body_text(res).await.replace("&#x2f;", "/");
    for shown in [
        "Smile Dental Test",
        "$1,300.00",
        "$500.00",
        "$800.00",
        "$160.00",
        "Sunbit",
        "NOTICE-EN",
        "DISCLOSURE-EN",
        "Continue the application",
        "Pay the deposit",
        "(555) 010-0100",
        r#"<html lang="en">"#,
    ] {
        assert!(page.contains(shown), "{shown} missing from the page");
    }
    for hidden in [
        "D2740",
        FIRST,
        LAST,
        PHONE,
        EMAIL,
        APPLY_LINK,
        CHECKOUT_URL,
        "<script",
    ] {
        assert!(!page.contains(hidden), "{hidden} leaked onto the page");
    }
    let token = kit.token(&wf);
    assert!(page.contains(&format!(r#"href="/p/{token}/apply""#)));
    assert!(page.contains(&format!(r#"href="/p/{token}/pay""#)));
    assert!(
        audit_kinds(&kit, &wf)
            .await
            .contains(&"lender_notice_shown".to_owned())
    );
}

#[tokio::test]
async fn tampered_expired_and_unknown_tokens_get_the_same_plain_404() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let key = SecretString::from(PATIENT_KEY);
    let good = kit.token(&wf);
    let mut tampered = good.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = sign_patient_token(&wf, 0, kit.now() - chrono::Duration::seconds(1), &key);
    let unknown = sign_patient_token(
        &WorkflowId::new("wf_ffffffffffffffffffffffff"),
        0,
        kit.now() + chrono::Duration::days(1),
        &key,
    );
    let stale_generation = sign_patient_token(&wf, 7, kit.now() + chrono::Duration::days(1), &key);
    let other_key = sign_patient_token(
        &wf,
        0,
        kit.now() + chrono::Duration::days(1),
        &SecretString::from("some-other-key-some-other-key-some-other"),
    );
    // Act
    let mut bodies = Vec::new();
    for token in [
        tampered,
        expired,
        unknown,
        stale_generation,
        other_key,
        "garbage".to_owned(),
    ] {
        for path in ["", "/pay", "/apply"] {
            let res = kit.send(get(&format!("/p/{token}{path}"))).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{token}{path}");
            // The page echoes the URL the patient came from (the renew form posts to it), and
            // nothing else differs.
            bodies.push(body_text(res).await.replace(&token, "TOKEN"));
        }
        let res = kit
            .send(post_form(
                &format!("/p/{token}/accept"),
                String::new(),
                None,
            ))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    // Assert: one page for every failure, naming nothing.
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    for leak in ["Smile Dental", "$800.00", wf.as_str(), "signature", "token"] {
        assert!(!bodies[0].contains(leak), "{leak} leaked");
    }
}

#[tokio::test]
async fn a_patient_who_prefers_spanish_gets_the_page_in_spanish() {
    let kit = Kit::new().await;
    let wf = kit
        .seed(kit.financing_state(smile(), "tx-es", "pat-es"))
        .await;
    let page = body_text(kit.send(get(&format!("/p/{}", kit.token(&wf)))).await).await;
    for shown in [
        r#"<html lang="es">"#,
        "Su parte",
        "AVISO-ES",
        "DIVULGACION-ES",
        "Pagar el depósito",
    ] {
        assert!(page.contains(shown), "{shown} missing");
    }
    assert!(!page.contains("Your portion"));
}

#[tokio::test]
async fn pay_and_apply_redirect_to_stripe_and_the_lender_and_are_audited() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let token = kit.token(&wf);
    // Act
    let pay = kit.send(get(&format!("/p/{token}/pay"))).await;
    let apply = kit.send(get(&format!("/p/{token}/apply"))).await;
    // Assert
    assert_eq!(pay.status(), StatusCode::SEE_OTHER);
    assert_eq!(pay.headers()["location"], CHECKOUT_URL);
    assert_eq!(pay.headers()["referrer-policy"], "no-referrer");
    assert_eq!(apply.status(), StatusCode::SEE_OTHER);
    assert_eq!(apply.headers()["location"], APPLY_LINK);
    // Written behind the answers (`page_marks`): there once the queue is flushed.
    kit.state.flush_page_marks().await;
    let kinds = audit_kinds(&kit, &wf).await;
    assert!(kinds.contains(&"deposit_link_opened".to_owned()));
    assert!(kinds.contains(&"lender_link_opened".to_owned()));
}

async fn pending_answers(kit: &Kit, wf: &WorkflowId) -> usize {
    kit.inbox(wf)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::InHouseAnswered { .. }))
        .count()
}

#[tokio::test]
async fn the_in_house_offer_shows_its_terms_and_an_acceptance_is_queued_once_with_its_wording() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed(kit.in_house_state("tx-ih", "pat-1")).await;
    let token = kit.token(&wf);
    // Act
    let before = body_text(kit.send(get(&format!("/p/{token}"))).await)
        .await
        .replace("&#x2f;", "/");
    let accept = kit
        .send(post_form(
            &format!("/p/{token}/accept"),
            String::new(),
            None,
        ))
        .await;
    let again = kit
        .send(post_form(
            &format!("/p/{token}/accept"),
            String::new(),
            None,
        ))
        .await;
    let after = body_text(kit.send(get(&format!("/p/{token}"))).await)
        .await
        .replace("&#x2f;", "/");
    // Assert: the terms, both answers offered, no pay button before the acceptance.
    assert!(before.contains("6 × $100.00, every month"), "{before}");
    assert!(
        before.contains("Nothing is charged until you accept"),
        "{before}"
    );
    assert!(
        before.contains("pay Smile Dental Test $600.00 in installments"),
        "{before}"
    );
    assert!(before.contains(&format!(r#"action="/p/{token}/accept""#)));
    assert!(before.contains(&format!(r#"action="/p/{token}/decline""#)));
    assert!(
        !before.contains("/pay"),
        "no deposit link before the acceptance"
    );
    assert_eq!(accept.status(), StatusCode::SEE_OTHER);
    assert_eq!(accept.headers()["location"], format!("/p/{token}").as_str());
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_eq!(pending_answers(&kit, &wf).await, 1, "one answer queued");
    let answers: Vec<_> = kit
        .store
        .audit(&wf)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "in_house_answer")
        .collect();
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0].detail.contains("accepted")
            && answers[0].detail.contains("6 × $100.00, every month"),
        "{}",
        answers[0].detail
    );
    assert!(after.contains("we received your answer"), "{after}");
    assert!(!after.contains(r#"action="/p/"#), "no form once answered");
    assert!(!after.contains("/apply"));
}

#[tokio::test]
async fn a_spanish_speaking_patient_reads_and_accepts_the_terms_in_spanish() {
    let kit = Kit::new().await;
    let wf = kit.seed(kit.in_house_state("tx-ih", "pat-es")).await;
    let token = kit.token(&wf);
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await).await;
    assert!(page.contains("6 × $100.00, cada mes"), "{page}");
    assert!(
        page.contains("No se cobra nada hasta que usted acepte"),
        "{page}"
    );
    kit.send(post_form(
        &format!("/p/{token}/decline"),
        String::new(),
        None,
    ))
    .await;
    let detail = kit
        .store
        .audit(&wf)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.kind == "in_house_answer")
        .expect("the answer is recorded")
        .detail;
    assert!(
        detail.contains("declined") && detail.contains("No, gracias"),
        "{detail}"
    );
    assert!(
        detail.contains("pagar a Smile Dental Test $600.00"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_cancelled_workflows_links_get_the_same_page_as_an_expired_one() {
    // Arrange
    let kit = Kit::new().await;
    let mut state = kit.financing_state(smile(), "tx-c", "pat-1");
    state.status = Status::Cancelled;
    let wf = kit.seed(state).await;
    let token = kit.token(&wf);
    let expired = sign_patient_token(
        &wf,
        0,
        kit.now() - chrono::Duration::seconds(1),
        &SecretString::from(PATIENT_KEY),
    );
    let expired_page = body_text(kit.send(get(&format!("/p/{expired}"))).await).await;
    // Act and assert
    for path in ["", "/pay", "/apply"] {
        let res = kit.send(get(&format!("/p/{token}{path}"))).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let page = body_text(res).await;
        assert_eq!(
            page.replace(&token, "TOKEN"),
            expired_page.replace(&expired, "TOKEN")
        );
        assert!(!page.contains("$800.00"));
    }
}

#[tokio::test]
async fn answering_an_in_house_plan_that_is_not_offered_records_nothing() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    for path in ["accept", "decline"] {
        let res = kit
            .send(post_form(
                &format!("/p/{}/{path}", kit.token(&wf)),
                String::new(),
                None,
            ))
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "back to the page");
    }
    assert_eq!(pending_answers(&kit, &wf).await, 0);
    assert!(
        !audit_kinds(&kit, &wf)
            .await
            .contains(&"in_house_answer".to_owned())
    );
}

#[test]
fn phone_numbers_read_as_people_write_them_and_link_to_the_dialer() {
    // Arrange + Act + Assert
    assert_eq!(super::phone_text("+15125550100"), "(512) 555-0100");
    assert_eq!(super::phone_text("(555) 010-0100"), "(555) 010-0100");
    assert_eq!(super::phone_text("+442079460000"), "+442079460000");
    assert_eq!(
        super::phone_href("(555) 010-0100").as_deref(),
        Some("tel:5550100100")
    );
    assert_eq!(
        super::phone_href("+15125550100").as_deref(),
        Some("tel:+15125550100")
    );
    assert_eq!(super::phone_href("call the office"), None);
}

#[tokio::test]
async fn a_link_issued_before_a_staff_cancel_is_refused_after_it_and_another_workflows_link_still_works()
 {
    // Arrange: two workflows, each with a link issued before the cancel.
    let kit = Kit::new().await;
    let cancelled = kit.seed_workflow("tx-1").await;
    let kept = kit.seed_workflow("tx-2").await;
    let (before, other) = (kit.token(&cancelled), kit.token(&kept));
    assert_eq!(
        kit.send(get(&format!("/p/{before}"))).await.status(),
        StatusCode::OK
    );
    // Act: staff cancel; the runner has not applied it yet.
    chairside_engine::staff::StaffActions::new(&*kit.store, "staff:alice")
        .cancel(&cancelled, kit.now())
        .await
        .unwrap();
    // Assert
    for path in ["", "/pay", "/apply"] {
        assert_eq!(
            kit.send(get(&format!("/p/{before}{path}"))).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        kit.send(get(&format!("/p/{other}"))).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_of_a_revoked_generation_is_refused_even_with_a_valid_mac() {
    // Arrange: a genuine, unexpired generation-0 token; then the workflow's links are revoked.
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let old = kit.token(&wf);
    let generation = kit.store.revoke_links(&wf, kit.now()).await.unwrap();
    let key = SecretString::from(PATIENT_KEY);
    assert!(crate::verify_patient_token(&old, &key, kit.now()).is_ok());
    let fresh = sign_patient_token(&wf, generation, kit.now() + chrono::Duration::days(1), &key);
    // Act
    let refused = kit.send(get(&format!("/p/{old}"))).await;
    let accepted = kit.send(get(&format!("/p/{fresh}"))).await;
    // Assert
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert!(body_text(refused).await.contains("Link not valid"));
    assert_eq!(accepted.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_expired_page_offers_a_new_link_and_the_resend_is_rate_limited_to_one_an_hour() {
    // Arrange: an expired but genuine token, a forged one, and another workflow's expired one.
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let key = SecretString::from(PATIENT_KEY);
    let expired = sign_patient_token(&wf, 0, kit.now() - chrono::Duration::days(1), &key);
    let forged = sign_patient_token(
        &wf,
        0,
        kit.now() - chrono::Duration::days(1),
        &SecretString::from("some-other-key-some-other-key-some-other"),
    );
    let page = body_text(kit.send(get(&format!("/p/{expired}"))).await).await;
    // The template escapes `/` as `&#x2f;`, which a browser reads back as `/`.
    let page = page.replace("&#x2f;", "/");
    assert!(page.contains(&format!(r#"action="/p/{expired}/renew""#)));
    let resends = |events: Vec<Event>| {
        events
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Staff {
                        action: chairside_workflow::StaffAction::ResendLink
                    }
                )
            })
            .count()
    };
    let before = resends(kit.inbox(&wf).await);
    // Act: the forged one, then the genuine one three times in a row.
    let mut answers = Vec::new();
    for token in [&forged, &expired, &expired, &expired] {
        let res = kit
            .send(post_form(&format!("/p/{token}/renew"), String::new(), None))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        answers.push(body_text(res).await);
    }
    // Assert: one resend queued, the same answer every time, nothing about the patient.
    assert_eq!(resends(kit.inbox(&wf).await), before + 1);
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
    for leak in ["Smile Dental", FIRST, LAST, EMAIL, PHONE, "$800.00"] {
        assert!(!answers[0].contains(leak), "{leak} leaked");
    }
    // An hour later the store lets one more through.
    let later = kit.now() + chrono::Duration::minutes(61);
    assert_eq!(
        kit.store
            .request_link_resend(&wf, 0, chrono::Duration::hours(1), later)
            .await
            .unwrap(),
        chairside_engine::store::links::ResendOutcome::Queued
    );
}

#[tokio::test]
async fn the_lender_return_reference_lands_on_a_freshly_issued_working_patient_page() {
    // Arrange: the reference the runner hands a lender.
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let reference = kit.store.return_reference(&wf).await.unwrap();
    assert_eq!(kit.store.return_reference(&wf).await.unwrap(), reference);
    // Act
    let res = kit.send(get(&format!("/r/{reference}"))).await;
    // Assert: a redirect to a patient page that works.
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let path = url::Url::parse(&location).unwrap().path().to_owned();
    assert!(path.starts_with("/p/"), "{path}");
    let page = kit.send(get(&path)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(body_text(page).await.contains("$800.00"));
    // An unknown reference, and the reference after a cancel, are refused.
    assert_eq!(
        kit.send(get("/r/not-a-reference")).await.status(),
        StatusCode::NOT_FOUND
    );
    kit.store.revoke_links(&wf, kit.now()).await.unwrap();
    assert_eq!(
        kit.send(get(&format!("/r/{reference}"))).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(kit.send(get(&path)).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn repeated_views_and_clicks_record_the_notice_and_each_link_once() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let token = kit.token(&wf);
    let rows_before = kit.store.audit(&wf).await.unwrap().len();
    // Act: a link scanner and an impatient patient.
    for _ in 0..5 {
        assert_eq!(
            kit.send(get(&format!("/p/{token}"))).await.status(),
            StatusCode::OK
        );
        kit.send(get(&format!("/p/{token}/apply"))).await;
        kit.send(get(&format!("/p/{token}/pay"))).await;
        kit.state.flush_page_marks().await;
    }
    // Assert
    let kinds = audit_kinds(&kit, &wf).await;
    for kind in [
        "lender_notice_shown",
        "lender_link_opened",
        "deposit_link_opened",
    ] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            1,
            "{kind} once: {kinds:?}"
        );
    }
    assert_eq!(kinds.len(), rows_before + 3, "nothing else grew");
}

#[tokio::test]
async fn the_shipped_state_notices_come_before_the_lender_link_for_the_practices_and_the_patients_state()
 {
    let kit = Kit::new().await;
    // A New York practice with no configured notice: the shipped New York notice, and the card
    // warning beside the deposit.
    let ny = kit
        .seed(kit.financing_state(crate::testkit::other(), "tx-ny", "pat-9"))
        .await;
    let page = body_text(kit.send(get(&format!("/p/{}", kit.token(&ny)))).await).await;
    let notice = page
        .find("New York General Business Law")
        .expect("the New York notice");
    let link = page.find("/apply").expect("the lender link");
    assert!(notice < link, "the notice comes first");
    assert!(
        page.contains("You do not have to pay by credit card"),
        "{page}"
    );
    // A Texas practice (its configured notice) and a California patient: both notices.
    let mut ca = kit.financing_state(smile(), "tx-ca", "pat-1");
    ca.facts = Some(PatientFacts {
        reachable: true,
        state: Some(UsState::CA),
        lookup_allowed: false,
        financing_not_before: kit.now(),
    });
    let ca = kit.seed(ca).await;
    let page = body_text(kit.send(get(&format!("/p/{}", kit.token(&ca)))).await).await;
    assert!(page.contains("NOTICE-EN"), "{page}");
    assert!(page.contains("California Business and Professions Code section 654.3"));
    assert!(
        !page.contains("New York"),
        "no New York text for Texas and California"
    );
    // A Texas practice and patient: the configured notice only.
    let tx = kit
        .seed(kit.financing_state(smile(), "tx-tx", "pat-1"))
        .await;
    let page = body_text(kit.send(get(&format!("/p/{}", kit.token(&tx)))).await).await;
    assert!(page.contains("NOTICE-EN"));
    assert!(!page.contains("654.3") && !page.contains("New York"));
}

#[tokio::test]
async fn after_paying_the_patient_lands_on_a_thank_you_page_not_a_404() {
    let kit = Kit::new().await;
    let res = kit.send(get("/paid")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = body_text(res).await;
    assert!(page.contains("Your payment went through"), "{page}");
    assert!(page.contains("Su pago se realizó"), "{page}");
}

#[tokio::test]
async fn a_paid_deposit_shows_its_receipt_and_no_pay_button() {
    let kit = Kit::new().await;
    let mut paid = kit.financing_state(smile(), "tx-paid", "pat-1");
    paid.stripe.customer_id = Some("cus_1".into());
    paid.stripe.deposit_paid = true;
    let wf = kit.seed(paid).await;
    let token = kit.token(&wf);
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await).await;
    assert!(page.contains("your deposit is paid"), "{page}");
    assert!(page.contains("Deposit, paid"), "{page}");
    assert!(!page.contains("Pay the deposit"), "{page}");
    let pay = kit.send(get(&format!("/p/{token}/pay"))).await;
    assert_eq!(pay.status(), StatusCode::SEE_OTHER);
    assert_eq!(pay.headers()["location"], format!("/p/{token}").as_str());
}

#[tokio::test]
async fn an_expired_deposit_link_is_replaced_when_the_patient_clicks_and_asked_for_once() {
    let kit = Kit::new().await;
    let mut expired = kit.financing_state(smile(), "tx-exp", "pat-1");
    expired.stripe.customer_id = Some("cus_1".into());
    expired.stripe.checkout_url = None;
    expired.stripe.checkout_session_id = None;
    expired.stripe.expired_sessions = vec!["cs_test_1".into()];
    let wf = kit.seed(expired).await;
    let token = kit.token(&wf);
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await)
        .await
        .replace("&#x2f;", "/");
    assert!(
        page.contains(&format!(r#"href="/p/{token}/pay""#)),
        "{page}"
    );
    // Act: two clicks.
    let first = kit.send(get(&format!("/p/{token}/pay"))).await;
    let second = kit.send(get(&format!("/p/{token}/pay"))).await;
    // Assert: a page that reloads itself, not a dead Stripe link; one request queued.
    assert_eq!(first.status(), StatusCode::OK);
    let body = body_text(first).await;
    assert!(body.contains(r#"http-equiv="refresh""#), "{body}");
    assert!(body.contains("expired"), "{body}");
    assert!(!body.contains(CHECKOUT_URL));
    assert_eq!(second.status(), StatusCode::OK);
    let requests = kit
        .inbox(&wf)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::DepositLinkRequested))
        .count();
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn the_page_shows_the_live_status_and_the_terms_the_lender_reported() {
    // Arrange: Sunbit approved, with its plan's term and APR; the deposit unpaid.
    let kit = Kit::new().await;
    let mut done = kit.done_state("tx-terms");
    done.offers = vec![financing_core::Offer {
        lender: crate::testkit::sunbit(),
        amount: financing_core::Money::usd(64_000),
        promotion: Some("0% APR for 12 months".into()),
        term_months: Some(12),
        apr_bps: Some(0),
        expires_at: None,
        lender_reference: None,
    }];
    let wf = kit.seed(done).await;
    // Act
    let page = body_text(kit.send(get(&format!("/p/{}", kit.token(&wf)))).await).await;
    // Assert
    assert!(page.contains("status-approved"), "{page}");
    assert!(
        page.contains("Approved: your financing is arranged."),
        "{page}"
    );
    for shown in ["0% APR for 12 months", "12 months", "0.00%", "Term", "APR"] {
        assert!(page.contains(shown), "{shown} missing: {page}");
    }
    assert!(!page.contains("sunbit approved"), "raw id on the page");
}

#[tokio::test]
async fn a_spanish_page_states_the_status_and_terms_in_spanish() {
    let kit = Kit::new().await;
    let mut done = kit.done_state("tx-terms-es");
    done.offers = vec![financing_core::Offer {
        lender: crate::testkit::sunbit(),
        amount: financing_core::Money::usd(64_000),
        promotion: None,
        term_months: Some(24),
        apr_bps: Some(999),
        expires_at: None,
        lender_reference: None,
    }];
    done.stripe.customer_id = Some("cus_1".into());
    done.stripe.deposit_paid = true;
    done.patient_id = PatientId::new("pat-es");
    let wf = kit.seed(done).await;
    let page = body_text(kit.send(get(&format!("/p/{}", kit.token(&wf)))).await).await;
    assert!(
        page.contains("Pagado: gracias, recibimos su pago."),
        "{page}"
    );
    assert!(page.contains("24 meses"), "{page}");
    assert!(page.contains("9.99 %"), "{page}");
    assert!(page.contains("status-paid"), "{page}");
}

#[tokio::test]
async fn a_lapsed_lender_session_offers_start_again_which_is_queued_once_and_never_the_dead_link() {
    // Arrange: the Sunbit session lapsed a minute ago; the lender has not said so yet.
    let kit = Kit::new().await;
    let mut lapsed = kit.financing_state(smile(), "tx-lapse", "pat-1");
    if let chairside_workflow::Stage::Financing(c) = &mut lapsed.stage
        && let chairside_workflow::LenderPhase::AwaitingPatient { session, .. } = &mut c.phase
    {
        session.expires_at = Some(kit.now() - chrono::Duration::minutes(1));
    }
    let wf = kit.seed(lapsed).await;
    let token = kit.token(&wf);
    // Act
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await)
        .await
        .replace("&#x2f;", "/");
    let apply = kit.send(get(&format!("/p/{token}/apply"))).await;
    let first = kit
        .send(post_form(
            &format!("/p/{token}/restart"),
            String::new(),
            None,
        ))
        .await;
    let second = kit
        .send(post_form(
            &format!("/p/{token}/restart"),
            String::new(),
            None,
        ))
        .await;
    // Assert: the page says the session ended and offers a fresh one, not the lapsed link.
    assert!(page.contains("status-session_lapsed"), "{page}");
    assert!(page.contains("Your Sunbit session ended"), "{page}");
    assert!(
        page.contains(&format!(r#"action="/p/{token}/restart""#)),
        "{page}"
    );
    assert!(!page.contains("Continue the application"), "{page}");
    assert_eq!(apply.status(), StatusCode::SEE_OTHER);
    assert_eq!(apply.headers()["location"], format!("/p/{token}").as_str());
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        first.headers()["location"],
        format!("/p/{token}?restarting=1").as_str()
    );
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    let requests = kit
        .inbox(&wf)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::LenderSessionRequested))
        .count();
    assert_eq!(requests, 1, "one request while it waits");
    // While the fresh session opens, the page says so and reloads itself.
    let waiting = body_text(kit.send(get(&format!("/p/{token}?restarting=1"))).await).await;
    assert!(waiting.contains(r#"http-equiv="refresh""#), "{waiting}");
    assert!(waiting.contains("fresh application"), "{waiting}");
}

#[tokio::test]
async fn start_again_on_a_live_session_queues_nothing() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-live").await;
    let token = kit.token(&wf);
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await).await;
    assert!(page.contains("status-applying"), "{page}");
    assert!(!page.contains("/restart"), "{page}");
    let res = kit
        .send(post_form(
            &format!("/p/{token}/restart"),
            String::new(),
            None,
        ))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(kit.inbox(&wf).await.is_empty());
}

/// A card-on-file workflow: its card-saving link made, no pay link, the deposit due.
async fn card_on_file(kit: &Kit, plan: &str) -> WorkflowId {
    kit.seed(card_on_file_state(kit, plan)).await
}

fn card_on_file_state(kit: &Kit, plan: &str) -> chairside_workflow::WorkflowState {
    let mut s = kit.financing_state(smile(), plan, "pat-1");
    s.stripe.customer_id = Some("cus_1".into());
    s.stripe.checkout_url = None;
    s.stripe.checkout_session_id = None;
    s.stripe.card_on_file = true;
    s.stripe.card_setup_session_id = Some("cs_setup_1".into());
    s.stripe.card_setup_url = Some("https://checkout.stripe.test/setup/cs_setup_1".into());
    s
}

#[tokio::test]
async fn a_card_on_file_page_shows_the_authorization_and_records_it_before_stripes_page() {
    // Arrange
    let kit = Kit::new().await;
    let wf = card_on_file(&kit, "tx-card").await;
    let token = kit.token(&wf);
    // Act
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await)
        .await
        .replace("&#x2f;", "/");
    let res = kit
        .send(post_form(&format!("/p/{token}/card"), String::new(), None))
        .await;
    let next = kit.send(get(&format!("/p/{token}/card"))).await;
    // Assert: the wording, the form, and a pay link offered instead (never a precondition).
    assert!(page.contains("I authorize"), "{page}");
    assert!(page.contains("to save my card with Stripe"), "{page}");
    assert!(
        page.contains(&format!(r#"action="/p/{token}/card""#)),
        "{page}"
    );
    assert!(page.contains("Pay once with a link instead"), "{page}");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()["location"],
        format!("/p/{token}/card").as_str()
    );
    assert_eq!(next.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        next.headers()["location"],
        "https://checkout.stripe.test/setup/cs_setup_1"
    );
    let agreed: Vec<Event> = kit
        .inbox(&wf)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::CardAuthorized { .. }))
        .collect();
    assert_eq!(agreed.len(), 1);
    let Event::CardAuthorized { wording, .. } = &agreed[0] else {
        unreachable!()
    };
    assert!(wording.starts_with("I authorize"), "{wording}");
    assert!(
        wording.contains('$'),
        "the amount is in the wording: {wording}"
    );
}

#[tokio::test]
async fn a_saved_card_or_a_paid_deposit_offers_no_card_form() {
    let kit = Kit::new().await;
    let mut s = card_on_file_state(&kit, "tx-card2");
    s.stripe.payment_method = Some("pm_1".into());
    let saved = kit.seed(s).await;
    let token = kit.token(&saved);
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await).await;
    assert!(!page.contains("I authorize"), "{page}");
    assert!(page.contains("Your card is saved"), "{page}");
    let res = kit
        .send(post_form(&format!("/p/{token}/card"), String::new(), None))
        .await;
    assert_eq!(res.headers()["location"], format!("/p/{token}").as_str());
    assert!(
        !kit.inbox(&saved)
            .await
            .iter()
            .any(|e| matches!(e, Event::CardAuthorized { .. }))
    );
}

/// A card-on-file workflow whose lender took $400.00 of the $640.00 asked (staff accepted the
/// counteroffer, no in-house plan): $160.00 deposit now, $240.00 due on the treatment day.
fn copay_state(kit: &Kit, plan: &str) -> chairside_workflow::WorkflowState {
    let mut s = card_on_file_state(kit, plan);
    s.status = chairside_workflow::Status::Done;
    s.stage = chairside_workflow::Stage::Settled;
    s.result = Some(chairside_workflow::FinancingResult {
        financed: Some((
            financing_core::LenderId::new("carecredit"),
            financing_core::Money::usd(40_000),
        )),
        deposit: financing_core::Money::usd(16_000),
        in_house: None,
        path: "carecredit counteroffer accepted".into(),
    });
    s.treatment_date = chrono::NaiveDate::from_ymd_opt(2027, 3, 15);
    s
}

#[tokio::test]
async fn a_co_pay_ahead_is_on_the_page_and_in_the_authorization_the_patient_agrees_to() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed(copay_state(&kit, "tx-copay")).await;
    let token = kit.token(&wf);
    // Act
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await).await;
    kit.send(post_form(&format!("/p/{token}/card"), String::new(), None))
        .await;
    // Assert: the line with its date, and one authorization naming both charges, recorded as
    // shown.
    assert!(
        page.contains("Due on your treatment day (2027-03-15)"),
        "{page}"
    );
    assert!(page.contains("$240.00"), "{page}");
    let expected = "to charge it $160.00 for my treatment deposit and $240.00 on my treatment day (2027-03-15).";
    assert!(page.contains(expected), "{page}");
    let wording = kit
        .inbox(&wf)
        .await
        .into_iter()
        .find_map(|e| match e {
            Event::CardAuthorized { wording, .. } => Some(wording),
            _ => None,
        })
        .expect("the agreement queued");
    assert!(wording.contains(expected), "{wording}");
}

#[tokio::test]
async fn a_paid_deposit_still_offers_the_card_for_the_co_pay_alone_in_spanish_too() {
    // Arrange
    let kit = Kit::new().await;
    let mut s = copay_state(&kit, "tx-copay2");
    s.stripe.deposit_paid = true;
    let wf = kit.seed(s).await;
    let token = kit.token(&wf);
    // Act
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await).await;
    // Assert
    assert!(
        page.contains("to charge it $240.00 on my treatment day (2027-03-15). I can ask"),
        "{page}"
    );
    assert!(!page.contains("for my treatment deposit"), "{page}");
    assert_eq!(
        super::card_wording(
            "Smile",
            None,
            Some((
                financing_core::Money::usd(24_000),
                chrono::NaiveDate::from_ymd_opt(2027, 3, 15)
            )),
            financing_core::Language::Es
        ),
        "Autorizo a Smile a guardar mi tarjeta con Stripe y a cobrarle $240.00 el día de mi tratamiento (2027-03-15). Puedo pedir un enlace de pago en su lugar en cualquier momento."
    );
}

#[tokio::test]
async fn a_co_pay_the_card_could_not_pay_shows_its_pay_link_and_a_paid_one_its_line() {
    use chairside_workflow::due::{Copay, CopayState};
    // Arrange: the saved card was declined on the day; the link exists.
    let kit = Kit::new().await;
    let mut s = copay_state(&kit, "tx-copay3");
    s.stripe.payment_method = Some("pm_1".into());
    s.stripe.deposit_paid = true;
    s.copay = Some(Copay {
        amount: financing_core::Money::usd(24_000),
        day: s.treatment_date,
        state: CopayState::LinkSent {
            session_id: "cs_copay".into(),
            url: "https://checkout.stripe.test/pay/cs_copay".into(),
        },
    });
    let declined = kit.seed(s.clone()).await;
    s.key.plan_id = financing_core::PlanId::new("tx-copay4");
    s.id = chairside_workflow::WorkflowId::derive(&s.key);
    s.copay.as_mut().unwrap().state = CopayState::Paid {
        stripe_id: "cs_copay".into(),
    };
    let paid = kit.seed(s).await;
    // Act
    let with_link = body_text(kit.send(get(&format!("/p/{}", kit.token(&declined)))).await)
        .await
        .replace("&#x2f;", "/");
    let after = body_text(kit.send(get(&format!("/p/{}", kit.token(&paid)))).await).await;
    // Assert
    assert!(
        with_link.contains(r#"href="https://checkout.stripe.test/pay/cs_copay""#),
        "{with_link}"
    );
    assert!(
        with_link.contains("Pay the treatment-day amount ($240.00)"),
        "{with_link}"
    );
    assert!(
        !with_link.contains("I authorize"),
        "a saved card: no second form"
    );
    assert!(after.contains("Treatment-day payment, paid"), "{after}");
    assert!(!after.contains("Pay the treatment-day amount"), "{after}");
}

#[test]
fn the_card_authorization_names_the_installments_the_card_will_pay() {
    let offer = financing_core::InHouseOffer {
        total: financing_core::Money::usd(60_000),
        deposit: financing_core::Money::usd(0),
        installments: vec![financing_core::Money::usd(10_000); 6],
        interval: financing_core::InstallmentInterval::MONTHLY,
    };
    let en = super::card_wording_with(
        "Smile",
        Some(financing_core::Money::usd(20_000)),
        None,
        Some(&offer),
        financing_core::Language::En,
    );
    assert!(
        en.contains(
            "to charge it $200.00 for my treatment deposit, and the installments of my payment plan (6 × $100.00,"
        ),
        "{en}"
    );
    let alone = super::card_wording_with(
        "Smile",
        None,
        None,
        Some(&offer),
        financing_core::Language::Es,
    );
    assert!(
        alone.contains("cobrarle las cuotas de mi plan de pagos (6 × $100.00,"),
        "{alone}"
    );
}
/// Card on file, the in-house plan accepted ($600.00 in 6 monthly installments), the deposit
/// paid, the outcome noted: the schedule waits for the patient's card (or their choice of
/// emailed invoices).
fn installments_waiting_state(kit: &Kit, plan: &str) -> chairside_workflow::WorkflowState {
    let mut s = kit.in_house_state(plan, "pat-1");
    s.in_house_acceptance = Some(chairside_workflow::InHouseAcceptance {
        at: chrono::Utc::now(),
        wording: "I accept the plan".into(),
    });
    s.stage = chairside_workflow::Stage::Settled;
    s.status = Status::Done;
    s.stripe.schedule_awaits_card = true;
    s.stripe.customer_id = Some("cus_1".into());
    s.stripe.card_on_file = true;
    s.stripe.deposit_paid = true;
    s.stripe.card_setup_session_id = Some("cs_setup_1".into());
    s.stripe.card_setup_url = Some("https://checkout.stripe.test/setup/cs_setup_1".into());
    s
}

fn invoice_choices(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::InstallmentInvoicesChosen { wording } => Some(wording.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_accepted_in_house_plan_asks_for_a_card_for_its_installments_or_emailed_invoices_chosen_once()
 {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed(installments_waiting_state(&kit, "tx-inst")).await;
    let token = kit.token(&wf);
    let mut s = installments_waiting_state(&kit, "tx-inst2");
    s.stripe.schedule_id = Some("sub_sched_1".into());
    let scheduled = kit.seed(s).await;

    // Act
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await)
        .await
        .replace("&#x2f;", "/");
    let first = kit
        .send(post_form(
            &format!("/p/{token}/invoices"),
            String::new(),
            None,
        ))
        .await;
    let second = kit
        .send(post_form(
            &format!("/p/{token}/invoices"),
            String::new(),
            None,
        ))
        .await;
    let late_token = kit.token(&scheduled);
    let late_page = body_text(kit.send(get(&format!("/p/{late_token}"))).await).await;
    let late = kit
        .send(post_form(
            &format!("/p/{late_token}/invoices"),
            String::new(),
            None,
        ))
        .await;

    // Assert: the card's wording names the installments; the other way is offered beside it.
    assert!(
        page.contains("the installments of my payment plan (6 × $100.00"),
        "{page}"
    );
    assert!(
        page.contains(&format!(r#"action="/p/{token}/invoices""#)),
        "{page}"
    );
    assert!(
        page.contains("Pay each installment by emailed invoice instead"),
        "{page}"
    );
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(first.headers()["location"], format!("/p/{token}").as_str());
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    let chosen = invoice_choices(&kit.inbox(&wf).await);
    assert_eq!(
        chosen.len(),
        1,
        "a double click queues one choice: {chosen:?}"
    );
    assert!(
        chosen[0].contains("(6 × $100.00, every month) by the invoice Stripe emails me"),
        "{}",
        chosen[0]
    );
    // The schedule exists already: no choice offered, none recorded.
    assert!(
        !late_page.contains("emailed invoice instead"),
        "{late_page}"
    );
    assert_eq!(late.status(), StatusCode::SEE_OTHER);
    assert!(invoice_choices(&kit.inbox(&scheduled).await).is_empty());
}

#[tokio::test]
async fn a_card_saved_for_the_deposit_is_confirmed_for_the_installments_in_one_click() {
    // Arrange: the card saved under the deposit's agreement, before the plan was accepted.
    let kit = Kit::new().await;
    let mut s = installments_waiting_state(&kit, "tx-inst3");
    s.stripe.card_setup_session_id = None;
    s.stripe.card_setup_url = None;
    s.stripe.payment_method = Some("pm_1".into());
    s.stripe.card_authorization = Some(chairside_workflow::InHouseAcceptance {
        at: chrono::Utc::now(),
        wording: "I authorize Smile to save my card with Stripe and to charge it $160.00".into(),
    });
    let wf = kit.seed(s).await;
    let token = kit.token(&wf);

    // Act
    let page = body_text(kit.send(get(&format!("/p/{token}"))).await).await;
    let res = kit
        .send(post_form(&format!("/p/{token}/card"), String::new(), None))
        .await;

    // Assert: no second card asked for; the confirmation names the installments and is queued
    // as an agreement for them; the patient stays on the page (nothing to enter at Stripe).
    assert!(page.contains("Agree and use my saved card"), "{page}");
    assert!(
        page.contains(
            "charge the card I saved with Stripe the installments of my payment plan (6 × $100.00"
        ),
        "{page}"
    );
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], format!("/p/{token}").as_str());
    let agreed: Vec<(String, bool)> = kit
        .inbox(&wf)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::CardAuthorized {
                wording,
                installments,
            } => Some((wording, installments)),
            _ => None,
        })
        .collect();
    assert_eq!(agreed.len(), 1, "{agreed:?}");
    assert!(agreed[0].1, "an agreement for the installments");
    assert!(agreed[0].0.contains("card I saved"), "{}", agreed[0].0);
}

#[test]
fn the_saved_card_confirmation_and_the_invoice_choice_read_in_spanish() {
    let offer = financing_core::InHouseOffer {
        total: financing_core::Money::usd(60_000),
        deposit: financing_core::Money::usd(0),
        installments: vec![financing_core::Money::usd(10_000); 6],
        interval: financing_core::InstallmentInterval::MONTHLY,
    };
    let es = financing_core::Language::Es;
    let confirm = super::saved_card_wording("Smile", &offer, es);
    assert!(
        confirm.contains(
            "cobrar a la tarjeta que guardé con Stripe las cuotas de mi plan de pagos (6 × $100.00,"
        ),
        "{confirm}"
    );
    let invoices = super::invoices_wording("Smile", &offer, es);
    assert!(invoices.contains("(6 × $100.00,"), "{invoices}");
    assert!(
        invoices.contains("factura que Stripe me envía"),
        "{invoices}"
    );
}
// The same tests on PostgreSQL (when CHAIRSIDE_TEST_POSTGRES_URL is set: scripts/with-postgres.sh).
crate::testkit::also_on_postgres!(
    the_patient_page_shows_the_amounts_and_terms_and_not_the_cdt_code,
    tampered_expired_and_unknown_tokens_get_the_same_plain_404,
    a_patient_who_prefers_spanish_gets_the_page_in_spanish,
    pay_and_apply_redirect_to_stripe_and_the_lender_and_are_audited,
    the_in_house_offer_shows_its_terms_and_an_acceptance_is_queued_once_with_its_wording,
    a_spanish_speaking_patient_reads_and_accepts_the_terms_in_spanish,
    a_cancelled_workflows_links_get_the_same_page_as_an_expired_one,
    answering_an_in_house_plan_that_is_not_offered_records_nothing,
    a_link_issued_before_a_staff_cancel_is_refused_after_it_and_another_workflows_link_still_works,
    a_token_of_a_revoked_generation_is_refused_even_with_a_valid_mac,
    the_expired_page_offers_a_new_link_and_the_resend_is_rate_limited_to_one_an_hour,
    the_lender_return_reference_lands_on_a_freshly_issued_working_patient_page,
    repeated_views_and_clicks_record_the_notice_and_each_link_once,
    the_shipped_state_notices_come_before_the_lender_link_for_the_practices_and_the_patients_state,
    after_paying_the_patient_lands_on_a_thank_you_page_not_a_404,
    a_paid_deposit_shows_its_receipt_and_no_pay_button,
    an_expired_deposit_link_is_replaced_when_the_patient_clicks_and_asked_for_once,
    the_page_shows_the_live_status_and_the_terms_the_lender_reported,
    a_spanish_page_states_the_status_and_terms_in_spanish,
    a_lapsed_lender_session_offers_start_again_which_is_queued_once_and_never_the_dead_link,
    start_again_on_a_live_session_queues_nothing,
    a_card_on_file_page_shows_the_authorization_and_records_it_before_stripes_page,
    a_saved_card_or_a_paid_deposit_offers_no_card_form,
    a_co_pay_ahead_is_on_the_page_and_in_the_authorization_the_patient_agrees_to,
    a_paid_deposit_still_offers_the_card_for_the_co_pay_alone_in_spanish_too,
    a_co_pay_the_card_could_not_pay_shows_its_pay_link_and_a_paid_one_its_line,
    an_accepted_in_house_plan_asks_for_a_card_for_its_installments_or_emailed_invoices_chosen_once,
    a_card_saved_for_the_deposit_is_confirmed_for_the_installments_in_one_click,
);
