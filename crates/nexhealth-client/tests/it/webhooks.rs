//! Webhook endpoints: registration, subscription, reconciliation, and verifying a delivery with the
//! secret NexHealth handed out.

use financing_core::ErrorKind;
use hmac::{Hmac, Mac};
use nexhealth_client::{WebhookEndpointId, WebhookEventKind, parse_webhook_event, verify_webhook};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;
use url::Url;
use wiremock::ResponseTemplate;
use wiremock::matchers::{body_json, header};

use crate::helpers::{bearer, client, envelope, fixture, scoped, server, token};

fn target() -> Url {
    Url::parse("https://chairside.example.test/webhooks/nexhealth").unwrap()
}

#[tokio::test]
async fn register_webhook_endpoint_posts_the_target_url_and_keeps_the_secret_hidden() {
    // Arrange
    let server = server().await;
    scoped("POST", "/webhook_endpoints")
        .and(header("authorization", bearer(&token()).as_str()))
        .and(header("nex-api-version", "v3.0.0"))
        .and(body_json(
            json!({ "target_url": target().as_str(), "active": true }),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("webhook_endpoint.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let endpoint = client(&server)
        .register_webhook_endpoint(&target())
        .await
        .unwrap();

    // Assert
    assert_eq!(endpoint.id, WebhookEndpointId::new("31"));
    assert!(endpoint.active);
    let secret = endpoint.secret_key.as_ref().unwrap();
    assert_eq!(secret.expose_secret(), "fake-endpoint-secret");
    assert!(!format!("{endpoint:?}").contains("fake-endpoint-secret"));
}

#[tokio::test]
async fn subscribe_to_treatment_plan_updates_posts_the_resource_and_event() {
    // Arrange
    let server = server().await;
    scoped("POST", "/webhook_endpoints/31/webhook_subscriptions")
        .and(body_json(json!({
            "resource_type": "TreatmentPlan",
            "event": "treatment_plan_updated",
            "active": true
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(envelope(json!({
            "id": 77, "resource_type": "TreatmentPlan", "event": "treatment_plan_updated", "active": true
        }))))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let sub = client(&server)
        .subscribe_to_treatment_plan_updates(&WebhookEndpointId::new("31"))
        .await
        .unwrap();

    // Assert
    assert_eq!(sub.id.as_str(), "77");
    assert_eq!(sub.endpoint_id.as_str(), "31");
}

#[tokio::test]
async fn ensure_webhook_endpoint_reuses_an_endpoint_already_registered_for_the_url() {
    // Arrange
    let server = server().await;
    let listed = envelope(json!([fixture("webhook_endpoint.json")["data"].clone()]));
    scoped("GET", "/webhook_endpoints")
        .respond_with(ResponseTemplate::new(200).set_body_json(listed))
        .expect(1)
        .mount(&server)
        .await;
    scoped("POST", "/webhook_endpoints")
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let endpoint = client(&server)
        .ensure_webhook_endpoint(&target())
        .await
        .unwrap();

    // Assert
    assert_eq!(endpoint.id.as_str(), "31");
}

#[tokio::test]
async fn a_failed_registration_is_indeterminate_and_not_retried() {
    // Arrange
    let server = server().await;
    scoped("POST", "/webhook_endpoints")
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .register_webhook_endpoint(&target())
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn a_delivery_signed_with_the_registered_secret_verifies_and_reads_as_a_plan_update() {
    // Arrange: the secret as NexHealth handed it out at registration.
    let server = server().await;
    scoped("POST", "/webhook_endpoints")
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("webhook_endpoint.json")))
        .mount(&server)
        .await;
    let endpoint = client(&server)
        .register_webhook_endpoint(&target())
        .await
        .unwrap();
    let secret = endpoint.secret_key.unwrap();
    let body = br#"{"resource_type":"TreatmentPlan","event":"treatment_plan_updated","delivery_id":"d-1","data":{"id":423}}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(b"fake-endpoint-secret").unwrap();
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());

    // Act
    let verified = verify_webhook(&secret, Some(&signature), body);
    let event = parse_webhook_event(body).unwrap();

    // Assert
    assert!(verified.is_ok());
    assert_eq!(event.kind, WebhookEventKind::TreatmentPlanUpdated);
    assert_eq!(event.treatment_plan_id().unwrap().as_str(), "423");
    assert!(verify_webhook(&secret, Some(&signature), b"{}").is_err());
}
