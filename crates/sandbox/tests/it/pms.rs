//! The practice-system stand-ins, through our own clients: seeding, acceptance, change feeds with
//! paging and cursors, and notes written back.

use std::time::Duration;

use financing_core::{CoverageSplit, Money};
use sandbox::{Persona, Pms, Sandbox};
use secrecy::{ExposeSecret, SecretString};

use crate::support::{Receiver, start};

fn seed(sb: &Sandbox, pms: Pms, n: usize) -> Vec<sandbox::SeededCase> {
    (0..n)
        .map(|_| sb.seed_persona(pms, Persona::InstantApproval).unwrap())
        .collect()
}

mod dentrix {
    use super::*;
    use dentrix_client::{
        CaseStatus, Client, Credentials, NoteMarker, NoteWrite, OrganizationId, PatientId,
        SyncCursor, TxCaseId,
    };

    fn client(sb: &Sandbox, page: u32) -> Client {
        let cfg = &sb.config().dentrix;
        Client::builder(
            sb.urls().dentrix.clone(),
            Credentials::new(
                cfg.client_id.clone(),
                SecretString::from(cfg.client_secret.expose_secret().to_owned()),
                OrganizationId::new(cfg.organization_id.clone()),
            ),
        )
        .page_size(page)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn the_txcase_feed_pages_by_last_id_and_the_cursor_finds_the_accepted_case() {
        // Arrange
        let sb = start().await;
        let cases = seed(&sb, Pms::Dentrix, 5);
        let c = client(&sb, 2);
        let first = c
            .list_changed_txcases(&SyncCursor::beginning())
            .await
            .unwrap();
        let pages = sb
            .requests(sandbox::System::Dentrix)
            .iter()
            .filter(|r| r.path.ends_with("/txcases"))
            .count();

        // Act
        sb.accept_plan(cases[3].plan.key).unwrap();
        let next = c.list_changed_txcases(&first.next_cursor).await.unwrap();

        // Assert
        assert_eq!(first.cases.len(), 5, "three pages of two, two, one");
        assert!(first.cases.iter().all(|c| c.status == CaseStatus::New));
        let accepted: Vec<_> = next
            .cases
            .iter()
            .filter(|c| c.status.is_accepted())
            .collect();
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].id.as_str(), cases[3].plan.pms_id);
        assert_eq!(pages, 3, "pages of two, two and one");
    }

    #[tokio::test]
    async fn a_case_detail_prices_to_the_seeded_patient_portion() {
        // Arrange
        let sb = start().await;
        let case = &seed(&sb, Pms::Dentrix, 1)[0];
        sb.accept_plan(case.plan.key).unwrap();
        let c = client(&sb, 50);

        // Act
        let detail = c
            .get_txcase(&TxCaseId::new(case.plan.pms_id.clone()))
            .await
            .unwrap();
        let split =
            CoverageSplit::from_plan(&detail.to_treatment_plan(chrono::Utc::now())).unwrap();
        let contact = c
            .get_patient_contact(&PatientId::new(case.patient.pms_id.clone()))
            .await
            .unwrap();

        // Assert
        assert_eq!(split.patient_portion, Money::usd(95_000));
        assert!(detail.treatment_date.is_some());
        assert!(contact.mobile_phone.is_some());
    }

    #[tokio::test]
    async fn a_marked_note_is_written_once() {
        // Arrange
        let sb = start().await;
        let case = &seed(&sb, Pms::Dentrix, 1)[0];
        let c = client(&sb, 50);
        let patient = PatientId::new(case.patient.pms_id.clone());
        let marker = NoteMarker::new("wf-1").unwrap();

        // Act
        let first = c
            .ensure_patient_note(&patient, &marker, "Financing arranged.")
            .await
            .unwrap();
        let second = c
            .ensure_patient_note(&patient, &marker, "Financing arranged.")
            .await
            .unwrap();

        // Assert
        assert!(matches!(first, NoteWrite::Written(_)));
        assert!(matches!(second, NoteWrite::AlreadyWritten(_)));
        assert_eq!(sb.notes_containing(&marker.tag()).len(), 1);
        let by_marker = sb.notes_by_marker("[chairside:");
        assert_eq!(by_marker.get("[chairside:wf-1]"), Some(&1));
    }

    #[tokio::test]
    async fn a_revoked_token_is_refreshed_by_the_client() {
        // Arrange
        let sb = start().await;
        seed(&sb, Pms::Dentrix, 1);
        let c = client(&sb, 50);
        c.list_changed_txcases(&SyncCursor::beginning())
            .await
            .unwrap();

        // Act
        sb.revoke_tokens(sandbox::System::Dentrix);
        let again = c.list_changed_txcases(&SyncCursor::beginning()).await;

        // Assert
        assert_eq!(again.unwrap().cases.len(), 1);
        let token_calls = sb
            .requests(sandbox::System::Dentrix)
            .iter()
            .filter(|r| r.path.contains("accesstoken"))
            .count();
        assert_eq!(token_calls, 2);
    }
}

mod nexhealth {
    use super::*;
    use nexhealth_client::{
        Client, Credentials, LocationId, NoteMarker, PatientId, PlanStatus, SyncCursor, WriteState,
        verify_webhook,
    };

    fn client(sb: &Sandbox, page: u32) -> Client {
        let cfg = &sb.config().nexhealth;
        Client::builder(
            sb.urls().nexhealth.clone(),
            Credentials::new(
                SecretString::from(cfg.api_key.expose_secret().to_owned()),
                cfg.subdomain.clone(),
                LocationId::new(cfg.location_id.to_string()),
            ),
        )
        .page_size(page)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn the_plan_feed_pages_by_cursor_and_filters_by_updated_since_and_status() {
        // Arrange
        let sb = start().await;
        let cases = seed(&sb, Pms::NexHealth, 7);
        let c = client(&sb, 3);
        let first = c
            .list_changed_treatment_plans(&SyncCursor::beginning(), None)
            .await
            .unwrap();

        // Act
        sb.accept_plan(cases[5].plan.key).unwrap();
        let accepted = c
            .list_changed_treatment_plans(&first.next_cursor, Some(&PlanStatus::Accepted))
            .await
            .unwrap();

        // Assert
        assert_eq!(first.plans.len(), 7);
        assert_eq!(accepted.plans.len(), 1);
        assert_eq!(accepted.plans[0].id.as_str(), cases[5].plan.pms_id);
        assert_eq!(accepted.plans[0].status, PlanStatus::Accepted);
    }

    #[tokio::test]
    async fn a_subscribed_endpoint_gets_signed_plan_updates() {
        // Arrange
        let sb = start().await;
        let case = &seed(&sb, Pms::NexHealth, 1)[0];
        let c = client(&sb, 10);
        let rx = Receiver::start().await;
        let endpoint = c.ensure_webhook_endpoint(&rx.url).await.unwrap();
        c.subscribe_to_treatment_plan_updates(&endpoint.id)
            .await
            .unwrap();

        // Act
        sb.accept_plan(case.plan.key).unwrap();
        let got = rx.wait_for(1).await;

        // Assert
        let sig = got[0]
            .headers
            .get(nexhealth_client::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        let secret = endpoint.secret_key.clone().unwrap();
        verify_webhook(&secret, sig, &got[0].body).expect("our verifier accepts it");
        let event = nexhealth_client::parse_webhook_event(&got[0].body).unwrap();
        assert_eq!(
            event.treatment_plan_id().map(|r| r.as_str().to_owned()),
            Some(case.plan.pms_id.clone())
        );
    }

    #[tokio::test]
    async fn a_ledger_note_is_accepted_then_confirmed_once_written() {
        // Arrange
        let sb = start().await;
        let case = &seed(&sb, Pms::NexHealth, 1)[0];
        let c = client(&sb, 10);
        let patient = PatientId::new(case.patient.pms_id.clone());
        let marker = NoteMarker::new("wf-9").unwrap();

        // Act
        let written = c
            .ensure_ledger_note(&patient, &marker, "Financing arranged.")
            .await
            .unwrap();
        let id = written.note().id.clone().unwrap();
        let pending = c.get_ledger_note(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let read = c.get_ledger_note(&id).await.unwrap();
        let again = c
            .ensure_ledger_note(&patient, &marker, "Financing arranged.")
            .await
            .unwrap();

        // Assert
        assert_eq!(pending.state, WriteState::Requested);
        assert_eq!(read.state, WriteState::Confirmed);
        assert!(matches!(
            again,
            nexhealth_client::NoteWrite::AlreadyRequested(_)
        ));
        assert_eq!(sb.notes_containing(&marker.tag()).len(), 1);
    }
}

mod opendental {
    use super::*;
    use opendental_client::{AcceptanceRule, Client, NewCommlog, PatNum, PlanCursor};

    fn client(sb: &Sandbox, page: u32) -> Client {
        let cfg = &sb.config().opendental;
        Client::builder(
            sb.urls().opendental.clone(),
            SecretString::from(cfg.developer_key.expose_secret().to_owned()),
            SecretString::from(cfg.customer_key.expose_secret().to_owned()),
        )
        .page_size(page)
        .build()
        .unwrap()
    }

    #[tokio::test]
    async fn saved_plans_page_by_offset_and_a_signed_one_is_accepted() {
        // Arrange
        let sb = start().await;
        let cases = seed(&sb, Pms::OpenDental, 5);
        let c = client(&sb, 2);
        let first = c
            .changed_treat_plans(&PlanCursor::beginning())
            .await
            .unwrap();

        // Act
        tokio::time::sleep(Duration::from_millis(1100)).await;
        sb.accept_plan(cases[2].plan.key).unwrap();
        let next = c.changed_treat_plans(&first.next).await.unwrap();

        // Assert
        assert_eq!(first.plans.len(), 5);
        assert_eq!(first.accepted(AcceptanceRule::SignedSaved).count(), 0);
        let accepted: Vec<_> = next.accepted(AcceptanceRule::SignedSaved).collect();
        assert_eq!(accepted.len(), 1);
        assert_eq!(
            accepted[0].treat_plan_num.get().to_string(),
            cases[2].plan.pms_id
        );
        let detail = c.plan_detail(accepted[0].clone()).await.unwrap();
        let plan = detail
            .to_treatment_plan(AcceptanceRule::SignedSaved, financing_core::Tz::UTC)
            .unwrap();
        assert_eq!(
            CoverageSplit::from_plan(&plan).unwrap().patient_portion,
            Money::usd(95_000)
        );
    }

    #[tokio::test]
    async fn a_marked_commlog_is_written_once() {
        // Arrange
        let sb = start().await;
        let case = &seed(&sb, Pms::OpenDental, 1)[0];
        let c = client(&sb, 100);
        let pat = PatNum::new(case.patient.pms_id.parse().unwrap());
        let note = NewCommlog::new(pat, "Financing arranged. [chairside:wf-3]");

        // Act
        let first = c
            .write_commlog_once(&note, "[chairside:wf-3]")
            .await
            .unwrap();
        let second = c
            .write_commlog_once(&note, "[chairside:wf-3]")
            .await
            .unwrap();

        // Assert
        assert!(matches!(first, opendental_client::WriteOutcome::Created(_)));
        assert!(matches!(
            second,
            opendental_client::WriteOutcome::AlreadyWritten(_)
        ));
        assert_eq!(sb.notes_containing("[chairside:wf-3]").len(), 1);
    }
}
