//! Patient links: what the runner hands lenders and patients, and revocation by cancel and
//! withdrawal.

use chairside_engine::links::{read_patient_token, verify_patient_token};
use chairside_engine::ports::MessageContent;
use chairside_workflow::Status;
use financing_core::PlanId;
use secrecy::SecretString;

use crate::fakes::Answer;
use crate::harness::{World, patient};

/// The key the harness signs links with.
fn link_key() -> SecretString {
    SecretString::from("test-link-key-0123456789abcdef0123".to_owned())
}

/// The patient page link of the financing summary the patient received.
fn summary_link(w: &World) -> String {
    w.messenger
        .sent_to(&patient(1).id)
        .into_iter()
        .find_map(|s| match s.content {
            MessageContent::FinancingSummary(summary) => Some(summary.page_link),
            _ => None,
        })
        .expect("a financing summary was sent")
}

fn token_of(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_carecredit_return_url_is_an_opaque_reference_and_carries_no_patient_token() {
    // Arrange
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;

    // Act
    w.settle(&runner).await;

    // Assert: the value the runner passed CareCredit.
    let requests = w.carecredit.requests();
    let url = requests[0].return_url.clone().expect("a return URL");
    assert_eq!(url.host_str(), Some("pay.smile.example.test"));
    let reference = url
        .path()
        .strip_prefix("/r/")
        .unwrap_or_else(|| panic!("not a return reference: {url}"))
        .to_owned();
    assert!(url.query().is_none() && url.fragment().is_none());
    assert!(!url.as_str().contains("/p/"));
    assert!(read_patient_token(&reference, &link_key()).is_err());
    let page_token = token_of(&summary_link(&w));
    assert!(!url.as_str().contains(&page_token));
    // It maps to the workflow server-side, and stays the same for the workflow.
    let store = runner.store();
    assert_eq!(
        store.resolve_return_reference(&reference).await.unwrap(),
        Some((id.clone(), 0))
    );
    assert_eq!(store.return_reference(&id).await.unwrap(), reference);
}

#[tokio::test]
async fn a_withdrawn_plan_revokes_every_link_issued_for_the_workflow() {
    // Arrange: the workflow ran to its end and the patient holds its summary link.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let token = token_of(&summary_link(&w));
    let held = verify_patient_token(&token, &link_key(), w.clock.now_utc()).unwrap();
    let store = runner.store();
    assert_eq!(held.generation, store.link_generation(&id).await.unwrap());
    let reference = store.return_reference(&id).await.unwrap();

    // Act: the practice system reports the plan rejected.
    w.pms.reject(&PlanId::new("tx-1"), "1", &patient(1).id);
    w.settle(&runner).await;

    // Assert: still a genuine token, but of a revoked generation; the return reference is gone.
    assert_eq!(w.row(&runner, &id).await.state.status, Status::Cancelled);
    assert!(store.link_generation(&id).await.unwrap() > held.generation);
    assert_eq!(
        store.resolve_return_reference(&reference).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_message_sent_after_a_revocation_carries_a_link_of_the_current_generation() {
    // Arrange: the workflow's links were revoked before any message went out.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_status(Answer::Approve);
    let runner = w.runner("runner-1").await;
    runner.poll().await.unwrap();
    let generation = runner
        .store()
        .revoke_links(&id, w.clock.now_utc())
        .await
        .unwrap();

    // Act
    w.settle(&runner).await;

    // Assert
    let token = token_of(&summary_link(&w));
    let issued = verify_patient_token(&token, &link_key(), w.clock.now_utc()).unwrap();
    assert_eq!((issued.workflow, issued.generation), (id, generation));
}
