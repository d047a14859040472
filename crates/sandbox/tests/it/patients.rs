//! Seeded patients acting on the links they receive by text and email (see the crate docs).

use std::sync::Arc;
use std::time::Duration;

use carecredit_client::{Client, Credentials, PartnerCode};
use financing_core::{
    ApplicationRef, Decision, FinancingProvider, FinancingRequest, LenderLocation, LocationId,
    Money, PracticeId, UsState,
};
use messaging::{AccountSid, InMemoryConsentLedger, OutgoingSms, PhoneNumber, SmsClient, SmsFrom};
use sandbox::{CareCreditState, Persona, Pms, Sandbox, SandboxConfig, SunbitState};
use secrecy::{ExposeSecret, SecretString};

use crate::support::{eventually, start_with};

fn carecredit(sb: &Sandbox) -> Client {
    let cfg = &sb.config().carecredit;
    Client::builder(
        sb.urls().carecredit.clone(),
        Credentials {
            partner_code: PartnerCode::new("CHAIRSIDE"),
            client_id: cfg.client_id.clone(),
            client_secret: SecretString::from(cfg.client_secret.expose_secret().to_owned()),
        },
    )
    .merchant(LocationId::new("main"), "5348120000000001")
    .build()
    .unwrap()
}

async fn start_carecredit(sb: &Sandbox, reference: &str) -> String {
    let req = FinancingRequest {
        reference: ApplicationRef::new(reference),
        location: LenderLocation {
            practice_id: PracticeId::new("smile"),
            location_id: LocationId::new("main"),
            state: UsState::CA,
        },
        amount: Money::usd(95_000),
        prefill: None,
        lookup: None,
        return_url: None,
    };
    match carecredit(sb).start_application(&req).await.unwrap() {
        Decision::ApplicationStarted { link, .. } => link.to_string(),
        other => panic!("{other:?}"),
    }
}

async fn text(sb: &Sandbox, to: &str, body: String) {
    let client = SmsClient::builder(
        AccountSid::new(sb.config().twilio.account_sid.clone()),
        SecretString::from(sb.config().twilio.auth_token.expose_secret().to_owned()),
        Arc::new(InMemoryConsentLedger::new()),
    )
    .base_url(sb.urls().twilio.clone())
    .build()
    .unwrap();
    let outcome = client
        .send(&OutgoingSms {
            practice: PracticeId::new("smile"),
            to: PhoneNumber::parse(to).unwrap(),
            from: SmsFrom::Number(PhoneNumber::parse("+15125550199").unwrap()),
            body,
            status_callback: None,
        })
        .await
        .unwrap();
    assert!(matches!(outcome, messaging::SmsOutcome::Sent(_)));
}

fn session_state(sb: &Sandbox, reference: &str) -> Option<CareCreditState> {
    sb.carecredit().session_for(reference).map(|s| s.state)
}

#[tokio::test]
async fn a_california_patient_who_gets_the_link_by_text_completes_the_application() {
    // Arrange
    let sb = start_with(SandboxConfig::default()).await;
    let case = sb
        .seed_persona(Pms::Dentrix, Persona::CaliforniaPractice)
        .unwrap();
    let link = start_carecredit(&sb, "wf-ca").await;
    let mobile = sandbox::SeedPatient::example(Pms::Dentrix, Persona::CaliforniaPractice, 0)
        .mobile_phone
        .unwrap();

    // Act
    text(
        &sb,
        &mobile,
        format!("Smile Dental: apply for financing at {link}"),
    )
    .await;

    // Assert
    assert!(
        eventually(|| matches!(
            session_state(&sb, "wf-ca"),
            Some(CareCreditState::Approved { .. })
        ))
        .await
    );
    let session = sb.carecredit().session_for("wf-ca").unwrap();
    assert_eq!(session.patient, Some(case.patient.key));
    assert!(!session.prefilled);
    assert!(sb.violations().is_empty());
}

#[tokio::test]
async fn a_patient_without_a_mobile_phone_never_reads_a_text() {
    // Arrange
    let sb = start_with(SandboxConfig::default()).await;
    sb.seed_persona(Pms::Dentrix, Persona::NoMobilePhone)
        .unwrap();
    let link = start_carecredit(&sb, "wf-landline").await;
    let home = sandbox::SeedPatient::example(Pms::Dentrix, Persona::NoMobilePhone, 0)
        .home_phone
        .unwrap();

    // Act
    text(&sb, &home, format!("apply at {link}")).await;

    // Assert
    assert!(eventually(|| sb.twilio().messages_to(&home)[0].status == "undelivered").await);
    assert_eq!(sb.twilio().messages_to(&home)[0].error_code, Some(30006));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        session_state(&sb, "wf-landline"),
        Some(CareCreditState::Created)
    );
}

#[tokio::test]
async fn a_patient_follows_a_loopback_patient_page_to_the_lender_link_in_an_email() {
    // Arrange
    let sb = start_with(SandboxConfig::default()).await;
    sb.seed_persona(Pms::OpenDental, Persona::InstantApproval)
        .unwrap();
    let lender = start_carecredit(&sb, "wf-page").await;
    let page = format!("<html><body><a href=\"{lender}\">Apply with CareCredit</a></body></html>");
    let app = axum::Router::new().route(
        "/p/{token}",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let email = sandbox::SeedPatient::example(Pms::OpenDental, Persona::InstantApproval, 0)
        .email
        .unwrap();

    // Act
    let transport =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sb.urls().smtp.port())
            .build();
    let message = lettre::Message::builder()
        .from("frontdesk@smile.example.test".parse().unwrap())
        .to(email.parse().unwrap())
        .subject("Your financing options")
        .body(format!("See your options: http://{addr}/p/signed-token"))
        .unwrap();
    lettre::AsyncTransport::send(&transport, message)
        .await
        .unwrap();

    // Assert
    assert!(
        eventually(|| matches!(
            session_state(&sb, "wf-page"),
            Some(CareCreditState::Approved { .. })
        ))
        .await
    );
}

#[tokio::test]
async fn a_patient_who_never_completes_ignores_a_checkout_link_and_others_pay_it() {
    // Arrange
    let sb = start_with(SandboxConfig::default()).await;
    let quitter = sb
        .seed_persona(Pms::Dentrix, Persona::NeverCompletes)
        .unwrap();
    let payer = sb
        .seed_persona(Pms::Dentrix, Persona::InstantApproval)
        .unwrap();
    let session = |key: &str| {
        let sb = &sb;
        let key = key.to_owned();
        async move {
            let cus: serde_json::Value =
                crate::support::stripe_post(sb, "v1/customers", "email=x%40example.test", None)
                    .await
                    .json()
                    .await
                    .unwrap();
            let form = format!(
                "mode=payment&customer={}&line_items[0][price_data][currency]=usd&line_items[0][price_data][product_data][name]=Deposit&line_items[0][price_data][unit_amount]=5000&line_items[0][quantity]=1",
                cus["id"].as_str().unwrap()
            );
            let s: serde_json::Value =
                crate::support::stripe_post(sb, "v1/checkout/sessions", &form, Some(&key))
                    .await
                    .json()
                    .await
                    .unwrap();
            (
                s["id"].as_str().unwrap().to_owned(),
                s["url"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (quit_id, quit_url) = session("a").await;
    let (pay_id, pay_url) = session("b").await;

    // Act
    let q = sb.act_on_link(Some(quitter.patient.key), &quit_url).await;
    let p = sb.act_on_link(Some(payer.patient.key), &pay_url).await;

    // Assert
    assert!(
        matches!(&q[0], sandbox::LinkAction::Checkout { result: None, .. }),
        "{q:?}"
    );
    assert!(
        matches!(
            &p[0],
            sandbox::LinkAction::Checkout {
                result: Some(sandbox::CheckoutResultKind::Paid),
                ..
            }
        ),
        "{p:?}"
    );
    assert_eq!(sb.stripe().object(&quit_id).unwrap()["status"], "open");
    assert_eq!(
        sb.stripe().object(&pay_id).unwrap()["payment_status"],
        "paid"
    );
}

#[tokio::test]
async fn sunbit_texts_its_own_link_and_the_patient_acts_on_it() {
    // Arrange
    let sb = start_with(SandboxConfig::default()).await;
    let case = sb
        .seed_persona(Pms::NexHealth, Persona::InstantApproval)
        .unwrap();
    let phone = sandbox::SeedPatient::example(Pms::NexHealth, Persona::InstantApproval, 0)
        .mobile_phone
        .unwrap();
    let body = serde_json::json!([{
        "location": "smile-main",
        "referral": "wf-sms",
        "customerPhoneNumber": phone,
        "sendSMS": true,
    }]);

    // Act
    let resp = crate::support::http()
        .put(
            sb.urls()
                .sunbit
                .join("purchase/api/v1/online-link")
                .unwrap(),
        )
        .header("sunbit-key", sb.config().sunbit.api_key.clone())
        .json(&body)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), 200);
    assert!(
        eventually(|| matches!(
            sb.sunbit().application("wf-sms").map(|a| a.state),
            Some(SunbitState::Completed { .. })
        ))
        .await
    );
    assert_eq!(
        sb.sunbit().application("wf-sms").unwrap().patient,
        Some(case.patient.key)
    );
}
