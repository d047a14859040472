//! The lender stand-ins through carecredit-client and sunbit-client: each persona's decisions,
//! retried starts, cardholder lookup, signed Sunbit webhooks, and compliance checks.

use financing_core::{
    Applicant, ApplicationHandle, ApplicationRef, Decision, FinancingProvider, FinancingRequest,
    LenderLocation, LocationId, Money, PracticeId, UsState,
};
use sandbox::{LinkAction, Persona, Pms, Sandbox, SandboxConfig, SeededCase};
use secrecy::{ExposeSecret, SecretString};

use crate::support::{Receiver, start_with};

const MERCHANT: &str = "5348120000000001";

fn location(state: UsState) -> LenderLocation {
    LenderLocation {
        practice_id: PracticeId::new("smile"),
        location_id: LocationId::new("main"),
        state,
    }
}

fn request(reference: &str, amount: Money) -> FinancingRequest {
    FinancingRequest {
        reference: ApplicationRef::new(reference),
        location: location(UsState::TX),
        amount,
        prefill: None,
        lookup: None,
        return_url: None,
    }
}

fn applicant(sb: &Sandbox, case: &SeededCase) -> Applicant {
    // The sandbox's own copy of what the practice system holds.
    let seed = sandbox::SeedPatient::example(case.patient.pms, case.patient.persona, 0);
    let _ = sb;
    Applicant {
        first_name: seed.first_name,
        last_name: seed.last_name,
        mobile_phone: seed.mobile_phone,
        email: seed.email,
        address_lines: vec![seed.address.line1],
        city: Some(seed.address.city),
        state: seed.address.state.parse().ok(),
        postal_code: Some(seed.address.postal_code),
        date_of_birth: None,
    }
}

fn handle(req: &FinancingRequest, started: &Decision) -> ApplicationHandle {
    let Decision::ApplicationStarted {
        lender_reference, ..
    } = started
    else {
        panic!("expected a started application, got {started:?}");
    };
    ApplicationHandle {
        reference: req.reference.clone(),
        lender_reference: lender_reference.clone(),
        location: req.location.clone(),
        amount: req.amount,
    }
}

fn link(started: &Decision) -> String {
    match started {
        Decision::ApplicationStarted { link, .. } => link.to_string(),
        other => panic!("expected a started application, got {other:?}"),
    }
}

mod carecredit {
    use super::*;
    use carecredit_client::{Client, Credentials, PartnerCode};

    fn client(sb: &Sandbox) -> Client {
        let cfg = &sb.config().carecredit;
        Client::builder(
            sb.urls().carecredit.clone(),
            Credentials {
                partner_code: PartnerCode::new("CHAIRSIDE"),
                client_id: cfg.client_id.clone(),
                client_secret: SecretString::from(cfg.client_secret.expose_secret().to_owned()),
            },
        )
        .merchant(LocationId::new("main"), MERCHANT)
        .build()
        .unwrap()
    }

    /// Starts an application for a fresh patient with `persona`, has the patient act on the link,
    /// and returns the first pullback's decision.
    async fn decide(persona: Persona) -> (Sandbox, Client, ApplicationHandle, Decision) {
        let sb = start_with(SandboxConfig::default()).await;
        let c = client(&sb);
        let case = sb.seed_persona(Pms::Dentrix, persona).unwrap();
        let req = request("wf-cc", Money::usd(95_000));
        let started = c.start_application(&req).await.unwrap();
        let acted = sb
            .act_on_link(Some(case.patient.key), &link(&started))
            .await;
        assert!(matches!(acted[0], LinkAction::Lender { .. }), "{acted:?}");
        let h = handle(&req, &started);
        let decision = c.application_status(&h).await.unwrap();
        (sb, c, h, decision)
    }

    #[tokio::test]
    async fn instant_approval_is_approved_in_full() {
        let (_sb, _c, _h, d) = decide(Persona::InstantApproval).await;
        let Decision::Approved { offer, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(offer.amount, Money::usd(95_000));
    }

    #[tokio::test]
    async fn partial_approval_is_a_sixty_percent_counteroffer() {
        let (_sb, _c, _h, d) = decide(Persona::PartialApproval).await;
        let Decision::PartiallyApproved {
            offer, requested, ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(offer.amount, Money::usd(57_000));
        assert_eq!(requested, Money::usd(95_000));
    }

    #[tokio::test]
    async fn decline_first_and_decline_everywhere_are_declined_here() {
        for persona in [
            Persona::DeclineFirstApproveSecond,
            Persona::DeclineEverywhere,
            Persona::ReturningCardholderShort,
        ] {
            let (_sb, _c, _h, d) = decide(persona).await;
            assert_eq!(d.label(), "declined", "{persona}");
        }
    }

    #[tokio::test]
    async fn pending_then_approved_answers_under_review_for_its_polls() {
        // Arrange
        let (_sb, c, h, first) = decide(Persona::PendingThenApproved { polls: 2 }).await;

        // Act
        let second = c.application_status(&h).await.unwrap();
        let third = c.application_status(&h).await.unwrap();

        // Assert: the patient submitted, so CareCredit's `Pending` is a review, not an
        // unfinished application.
        assert_eq!(first.label(), "under_review");
        assert_eq!(second.label(), "under_review");
        assert_eq!(third.label(), "approved");
    }

    #[tokio::test]
    async fn a_patient_who_never_completes_leaves_the_application_created() {
        let (sb, c, h, d) = decide(Persona::NeverCompletes).await;
        assert_eq!(d.label(), "pending");
        assert_eq!(c.application_status(&h).await.unwrap().label(), "pending");
        sb.carecredit().expire_open_sessions();
        assert_eq!(c.application_status(&h).await.unwrap().label(), "expired");
    }

    #[tokio::test]
    async fn the_hosted_page_shows_the_application_and_takes_a_manual_decision() {
        // Arrange
        let sb = start_with(SandboxConfig::default()).await;
        let c = client(&sb);
        let req = request("wf-manual", Money::usd(120_000));
        let started = c.start_application(&req).await.unwrap();
        let url = link(&started);

        // Act
        let page = crate::support::http()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let submitted = crate::support::http()
            .post(&url)
            .form(&[("choice", "decline")])
            .send()
            .await
            .unwrap();
        let decision = c.application_status(&handle(&req, &started)).await.unwrap();

        // Assert
        assert!(
            page.contains("$1200.00") && page.contains("Submit application"),
            "{page}"
        );
        assert_eq!(submitted.status(), 200);
        assert_eq!(decision.label(), "declined");
    }

    #[tokio::test]
    async fn a_retried_start_returns_the_existing_session() {
        // Arrange
        let sb = start_with(SandboxConfig::default()).await;
        let c = client(&sb);
        let req = request("wf-retry", Money::usd(50_000));

        // Act
        let a = c.start_application(&req).await.unwrap();
        let b = c.create_session(&req, None).await.unwrap();

        // Assert
        assert_eq!(link(&a), b.page_url.to_string());
        assert_eq!(sb.carecredit().sessions().len(), 1);
    }

    #[tokio::test]
    async fn cardholder_lookup_finds_returning_cardholders_with_their_credit() {
        // Arrange
        let sb = start_with(SandboxConfig::default()).await;
        let c = client(&sb);
        let enough = sb
            .seed_persona(Pms::Dentrix, Persona::ReturningCardholderEnough)
            .unwrap();
        let short = sb
            .seed_persona(Pms::Dentrix, Persona::ReturningCardholderShort)
            .unwrap();
        let new = sb
            .seed_persona(Pms::Dentrix, Persona::InstantApproval)
            .unwrap();
        let lookup = |case: &SeededCase, n: u32| {
            let seed = sandbox::SeedPatient::example(Pms::Dentrix, case.patient.persona, n);
            let mut req = request("wf-lookup", Money::usd(95_000));
            req.lookup = Some(Applicant {
                first_name: seed.first_name,
                last_name: seed.last_name,
                mobile_phone: seed.mobile_phone,
                email: None,
                address_lines: vec![],
                city: None,
                state: None,
                postal_code: Some(seed.address.postal_code),
                date_of_birth: None,
            });
            req
        };

        // Act
        let a = c.lookup_cardholder(&lookup(&enough, 0)).await.unwrap();
        let b = c.lookup_cardholder(&lookup(&short, 1)).await.unwrap();
        let n = c.lookup_cardholder(&lookup(&new, 2)).await.unwrap();

        // Assert
        assert!(
            matches!(a, Some(Decision::Cardholder { available_credit, .. }) if available_credit == Money::usd(1_000_000))
        );
        assert!(
            matches!(b, Some(Decision::Cardholder { available_credit, .. }) if available_credit == Money::usd(30_000))
        );
        assert!(n.is_none());
        assert!(sb.violations().is_empty());
    }

    #[tokio::test]
    async fn prefill_for_a_california_patient_is_recorded_as_a_violation() {
        // Arrange
        let sb = start_with(SandboxConfig::default()).await;
        let c = client(&sb);
        let case = sb
            .seed_persona(Pms::Dentrix, Persona::CaliforniaPractice)
            .unwrap();
        let mut req = request("wf-ca", Money::usd(95_000));
        req.prefill = Some(applicant(&sb, &case));

        // Act
        c.start_application(&req).await.unwrap();

        // Assert
        let v = sb.violations();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "prefill_in_restricted_state");
    }
    // ---- A real day at CareCredit: sessions lapse, people must call, pre-approvals. ----

    async fn opened(config: SandboxConfig) -> (Sandbox, Client, ApplicationHandle) {
        let sb = start_with(config).await;
        let c = client(&sb);
        let req = request("wf-day", Money::usd(95_000));
        let started = c.start_application(&req).await.unwrap();
        let h = handle(&req, &started);
        (sb, c, h)
    }

    #[tokio::test]
    async fn a_session_lives_thirty_minutes_by_default() {
        let (sb, _c, _h) = opened(SandboxConfig::default()).await;
        let s = sb.carecredit().session_for("wf-day").unwrap();
        assert_eq!(s.expires_at - s.created_at, chrono::Duration::minutes(30));
    }

    #[tokio::test]
    async fn an_unfinished_session_lapses_after_its_session_life_and_reads_expired() {
        // Arrange: the demo's compressed session life.
        let mut config = SandboxConfig::default();
        config.carecredit.session_life = std::time::Duration::from_millis(300);
        let (_sb, c, h) = opened(config).await;
        // Act
        let before = c.application_status(&h).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let after = c.application_status(&h).await.unwrap();
        // Assert
        assert_eq!(before.label(), "pending", "{before:?}");
        assert_eq!(after.label(), "expired", "{after:?}");
    }

    #[tokio::test]
    async fn after_a_lapse_the_same_reference_finds_the_dead_session_and_a_new_attempts_opens_a_live_one()
     {
        // Arrange: a session that lapsed, opened under attempt 3's reference.
        let mut config = SandboxConfig::default();
        config.carecredit.session_life = std::time::Duration::from_millis(200);
        let sb = start_with(config).await;
        let c = client(&sb);
        let wf = "wf_0123456789abcdef01234567";
        let first = request(&format!("{wf}-3-carecredit"), Money::usd(95_000));
        let h1 = handle(&first, &c.start_application(&first).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(c.application_status(&h1).await.unwrap().label(), "expired");
        // Act: the same reference again (what `{workflow}-{lender}` did), then attempt 9's.
        let again = c.start_application(&first).await.unwrap();
        let fresh = request(&format!("{wf}-9-carecredit"), Money::usd(95_000));
        let h2 = handle(&fresh, &c.start_application(&fresh).await.unwrap());
        // Assert: the old reference leads back to the lapsed session; the new one is live.
        assert_eq!(handle(&first, &again).lender_reference, h1.lender_reference);
        assert_ne!(h2.lender_reference, h1.lender_reference);
        assert_eq!(c.application_status(&h2).await.unwrap().label(), "pending");
    }

    #[tokio::test]
    async fn call_for_auth_and_a_duplicate_quickscreen_need_staff_then_the_decision_reads() {
        // Arrange
        let (sb, c, h) = opened(SandboxConfig::default()).await;
        let session = h.lender_reference.as_str().to_owned();
        for (state, raw) in [
            (sandbox::CareCreditState::CallForAuth, "CallForAuth"),
            (sandbox::CareCreditState::DuplicateQuickScreen, "DupQS"),
        ] {
            sb.carecredit().set_state(&session, state).unwrap();
            // Act
            let d = c.application_status(&h).await.unwrap();
            // Assert: staff are told whom to call and what to quote.
            let Decision::NeedsStaff {
                instruction,
                raw_status,
            } = d
            else {
                panic!("{d:?}")
            };
            assert_eq!(raw_status, raw);
            assert!(
                instruction.contains("800-859-9975") && instruction.contains(&session),
                "{instruction}"
            );
        }
        // After the call CareCredit approves: the pullback says so.
        sb.carecredit()
            .set_state(
                &session,
                sandbox::CareCreditState::Approved { amount: 95_000 },
            )
            .unwrap();
        assert_eq!(c.application_status(&h).await.unwrap().label(), "approved");
    }

    #[tokio::test]
    async fn a_quickscreen_pre_approval_is_a_prequalification_and_a_lower_line_a_counteroffer() {
        let (sb, c, h) = opened(SandboxConfig::default()).await;
        let session = h.lender_reference.as_str().to_owned();
        sb.carecredit()
            .set_state(
                &session,
                sandbox::CareCreditState::PreApproved { amount: 200_000 },
            )
            .unwrap();
        assert_eq!(
            c.application_status(&h).await.unwrap().label(),
            "prequalified"
        );
        sb.carecredit()
            .set_state(
                &session,
                sandbox::CareCreditState::Approved { amount: 60_000 },
            )
            .unwrap();
        let d = c.application_status(&h).await.unwrap();
        let Decision::PartiallyApproved {
            offer, requested, ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(
            (offer.amount, requested),
            (Money::usd(60_000), Money::usd(95_000))
        );
    }
}

mod sunbit {
    use super::*;
    use sunbit_client::{Client, Credentials, WebhookVerifier};

    fn client(sb: &Sandbox) -> Client {
        let cfg = &sb.config().sunbit;
        Client::builder(
            sb.urls().sunbit.clone(),
            Credentials {
                key: SecretString::from(cfg.api_key.clone()),
                secret: SecretString::from(cfg.api_secret.expose_secret().to_owned()),
            },
        )
        .location(LocationId::new("main"), "smile-main")
        .build()
        .unwrap()
    }

    async fn decide(persona: Persona) -> (Sandbox, Receiver, Client, ApplicationHandle, Decision) {
        let rx = Receiver::start().await;
        let mut config = SandboxConfig::default();
        config.sunbit.webhook_url = Some(rx.url.clone());
        let sb = start_with(config).await;
        let c = client(&sb);
        let case = sb.seed_persona(Pms::OpenDental, persona).unwrap();
        let req = request("wf-sb", Money::usd(95_000));
        let started = c.start_application(&req).await.unwrap();
        sb.act_on_link(Some(case.patient.key), &link(&started))
            .await;
        let h = handle(&req, &started);
        let decision = c.application_status(&h).await.unwrap();
        (sb, rx, c, h, decision)
    }

    fn events(rx: &Receiver, sb: &Sandbox) -> Vec<sunbit_client::WebhookEvent> {
        let verifier = WebhookVerifier::new(SecretString::from(
            sb.config().sunbit.webhook_secret.expose_secret().to_owned(),
        ));
        rx.got()
            .iter()
            .map(|c| {
                let sig = c
                    .headers
                    .get("sunbit-signature")
                    .and_then(|v| v.to_str().ok());
                verifier
                    .verify(sig, &c.body, chrono::Utc::now())
                    .expect("our verifier accepts the sandbox's signature")
                    .event()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn decline_first_approve_second_is_approved_at_sunbit_with_a_signed_webhook() {
        // Arrange, Act
        let (sb, rx, _c, _h, d) = decide(Persona::DeclineFirstApproveSecond).await;

        // Assert
        assert_eq!(d.label(), "approved", "{d:?}");
        let events = events(&rx, &sb);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].event_type,
            sunbit_client::EventType::PrequalApproved
        );
        assert_eq!(
            events[0].referral.as_ref().map(|r| r.as_str()),
            Some("wf-sb")
        );
        // The webhook is the prequalification; the purchase read (`d`) is the financing.
        assert_eq!(
            events[0].decision(Money::usd(95_000)).unwrap().label(),
            "prequalified"
        );
    }

    #[tokio::test]
    async fn decline_everywhere_sends_prequal_failed() {
        let (sb, rx, _c, _h, _d) = decide(Persona::DeclineEverywhere).await;
        let events = events(&rx, &sb);
        assert_eq!(
            events[0].event_type,
            sunbit_client::EventType::PrequalFailed
        );
        assert_eq!(
            events[0].decision(Money::usd(95_000)).unwrap().label(),
            "declined"
        );
    }

    #[tokio::test]
    async fn partial_approval_is_sixty_percent_of_what_the_patient_entered() {
        let (_sb, _rx, _c, _h, d) = decide(Persona::PartialApproval).await;
        let Decision::PartiallyApproved {
            offer, requested, ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!(requested, Money::usd(95_000));
        assert_eq!(offer.amount, Money::usd(57_000));
    }

    #[tokio::test]
    async fn pending_then_approved_answers_pending_for_its_polls_then_approves_once() {
        // Arrange
        let (sb, rx, c, h, first) = decide(Persona::PendingThenApproved { polls: 2 }).await;
        sb.flush_webhooks().await;
        let after_one = rx.got().len();

        // Act
        let second = c.application_status(&h).await.unwrap();
        let third = c.application_status(&h).await.unwrap();
        sb.flush_webhooks().await;

        // Assert
        assert_eq!(first.label(), "pending");
        assert_eq!(second.label(), "pending");
        assert_eq!(third.label(), "approved");
        assert_eq!(after_one, 0, "no decision yet after the first poll");
        let events = events(&rx, &sb);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].event_type,
            sunbit_client::EventType::PrequalApproved
        );
    }

    #[tokio::test]
    async fn a_patient_who_never_completes_leaves_no_purchase() {
        let (sb, rx, _c, _h, d) = decide(Persona::NeverCompletes).await;
        assert_eq!(d.label(), "pending");
        assert!(rx.got().is_empty());
        sb.sunbit().abort("wf-sb").unwrap();
        sb.flush_webhooks().await;
        assert_eq!(
            events(&rx, &sb)[0].event_type,
            sunbit_client::EventType::PrequalAborted
        );
    }

    #[tokio::test]
    async fn a_prequalification_without_a_purchase_is_not_financing_and_a_lower_purchase_is_a_counteroffer()
     {
        // Arrange
        let rx = Receiver::start().await;
        let mut config = SandboxConfig::default();
        config.sunbit.webhook_url = Some(rx.url.clone());
        let sb = start_with(config).await;
        let c = client(&sb);
        let req = request("wf-pq", Money::usd(95_000));
        let started = c.start_application(&req).await.unwrap();
        let h = handle(&req, &started);

        // Act: prequalified for $2,000, no purchase.
        sb.sunbit()
            .prequalify_without_purchase("wf-pq", 200_000)
            .unwrap();
        sb.flush_webhooks().await;
        let prequalified = c.application_status(&h).await.unwrap();
        // Then a purchase of $600 of the $950 asked.
        sb.sunbit().complete_purchase("wf-pq", 60_000).unwrap();
        let bought = c.application_status(&h).await.unwrap();

        // Assert
        assert_eq!(prequalified.label(), "prequalified", "{prequalified:?}");
        let events = events(&rx, &sb);
        assert_eq!(
            events[0].decision(Money::usd(95_000)).unwrap().label(),
            "prequalified"
        );
        let Decision::PartiallyApproved {
            offer, requested, ..
        } = bought
        else {
            panic!("{bought:?}")
        };
        assert_eq!(
            (offer.amount, requested),
            (Money::usd(60_000), Money::usd(95_000))
        );
    }
}
