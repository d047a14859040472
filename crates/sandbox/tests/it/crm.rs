//! The HubSpot stand-in through the real hubspot-client: upserts are upserts, tasks are found
//! again by subject, a wrong token and an unknown stage are refused as HubSpot refuses them.

use financing_core::ErrorKind;
use hubspot_client::{Client, ContactInput, DealInput, StageId, TaskInput};
use sandbox::CrmStandIn;
use secrecy::SecretString;

const TOKEN: &str = "pat-sandbox-token";

fn client(crm: &CrmStandIn, token: &str) -> Client {
    Client::builder(crm.url().clone(), SecretString::from(token.to_owned()))
        .build()
        .unwrap()
}

fn contact() -> ContactInput {
    ContactInput {
        email: "testa.patient1@example.test".into(),
        first_name: "Testa".into(),
        last_name: "Patient1".into(),
        phone: None,
    }
}

fn deal(stage: &str) -> DealInput {
    DealInput {
        key: "wf_0123".into(),
        name: "Chairside plan tx-1".into(),
        stage: StageId::new(stage),
        pipeline: None,
        amount: None,
    }
}

#[tokio::test]
async fn repeated_upserts_keep_one_contact_and_one_deal_at_its_latest_stage_and_one_task() {
    // Arrange
    let crm = CrmStandIn::start(TOKEN, Some(vec!["applying".into(), "financed".into()]))
        .await
        .unwrap();
    let c = client(&crm, TOKEN);

    // Act
    let contact_id = c.upsert_contact(&contact()).await.unwrap();
    let again = c.upsert_contact(&contact()).await.unwrap();
    let deal_id = c.upsert_deal(&deal("applying")).await.unwrap();
    let same = c.upsert_deal(&deal("financed")).await.unwrap();
    c.associate_deal_with_contact(&deal_id, &contact_id)
        .await
        .unwrap();
    c.associate_deal_with_contact(&deal_id, &contact_id)
        .await
        .unwrap();
    let task = TaskInput {
        subject: "Follow up [chairside evt_1]".into(),
        body: "Call the patient.".into(),
        due: "2026-06-03T15:00:00Z".parse().unwrap(),
        contact: contact_id.clone(),
    };
    let t1 = c.ensure_task(&task).await.unwrap();
    let t2 = c.ensure_task(&task).await.unwrap();

    // Assert
    assert_eq!(contact_id, again);
    assert_eq!(deal_id, same);
    assert_eq!(crm.contacts().len(), 1);
    let deals = crm.deals();
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].properties["dealstage"], "financed");
    assert_eq!(deals[0].properties["chairside_workflow_id"], "wf_0123");
    assert_eq!(crm.associations().len(), 1);
    assert_eq!(t1, t2);
    assert_eq!(crm.tasks().len(), 1);
    assert_eq!(crm.tasks()[0].1, vec![contact_id.as_str().to_owned()]);
    crm.stop().await;
}

#[tokio::test]
async fn a_wrong_token_and_an_unknown_stage_are_refused_for_good() {
    let crm = CrmStandIn::start(TOKEN, Some(vec!["applying".into()]))
        .await
        .unwrap();
    let wrong = client(&crm, "pat-wrong");
    let err = wrong.upsert_contact(&contact()).await.unwrap_err();
    assert_eq!(
        (err.status(), err.kind()),
        (Some(401), ErrorKind::Permanent)
    );
    let err = client(&crm, TOKEN)
        .upsert_deal(&deal("no-such-stage"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.kind()),
        (Some(400), ErrorKind::Permanent)
    );
    assert!(crm.deals().is_empty());
    crm.stop().await;
}
