//! Runs the third-lender plug-in through the whole trait, as the waterfall would hold it.

use std::sync::Arc;

use chairside_examples::third_lender::AcmeLender;
use financing_core::{
    ApplicationHandle, ApplicationRef, Decision, ErrorKind, FinancingRequest, LenderLocation,
    LenderReference, LocationId, Money, PracticeId, SharedProvider, UsState,
};

fn request(reference: &str, cents: i64) -> FinancingRequest {
    FinancingRequest {
        reference: ApplicationRef::new(reference),
        location: LenderLocation {
            practice_id: PracticeId::new("smile-test-dental"),
            location_id: LocationId::new("main-st"),
            state: UsState::TX,
        },
        amount: Money::usd(cents),
        prefill: None,
        lookup: None,
        return_url: None,
    }
}

fn handle(request: &FinancingRequest, started: &Decision) -> ApplicationHandle {
    let Decision::ApplicationStarted {
        lender_reference, ..
    } = started
    else {
        panic!("expected a started application, got {started:?}");
    };
    ApplicationHandle {
        reference: request.reference.clone(),
        lender_reference: lender_reference.clone(),
        location: request.location.clone(),
        amount: request.amount,
    }
}

#[tokio::test]
async fn the_third_lender_plugs_in_as_a_shared_provider_and_runs_its_lifecycle() {
    // Arrange
    let acme = Arc::new(AcmeLender::new(Money::usd(150_000)));
    let lender: SharedProvider = acme.clone();
    let small = request("wf-1", 120_000);
    let large = request("wf-2", 200_000);

    // Act
    let started = lender.start_application(&small).await.unwrap();
    let again = lender.start_application(&small).await.unwrap();
    let approved = lender
        .application_status(&handle(&small, &started))
        .await
        .unwrap();
    let started_large = lender.start_application(&large).await.unwrap();
    let countered = lender
        .application_status(&handle(&large, &started_large))
        .await
        .unwrap();
    lender
        .cancel_application(&handle(&large, &started_large))
        .await
        .unwrap();
    let withdrawn = lender
        .application_status(&handle(&large, &started_large))
        .await
        .unwrap();

    // Assert
    assert_eq!(lender.id().as_str(), "acme-credit");
    assert_eq!(
        started, again,
        "a retried start returns the same application"
    );
    assert_eq!(acme.applications_opened(), 2);
    assert!(lender.limits().admits(Money::usd(120_000)));
    assert!(!lender.limits().admits(Money::usd(10_000)));
    assert_eq!(lender.lookup_cardholder(&small).await.unwrap(), None);
    assert_eq!(approved.label(), "approved");
    assert!(matches!(
        countered,
        Decision::PartiallyApproved { ref offer, requested, .. }
            if offer.amount == Money::usd(150_000) && requested == Money::usd(200_000)
    ));
    assert_eq!(withdrawn.label(), "expired");
}

#[tokio::test]
async fn an_unknown_application_is_a_permanent_error_not_a_decline() {
    // Arrange
    let lender: SharedProvider = Arc::new(AcmeLender::new(Money::usd(150_000)));
    let req = request("wf-9", 60_000);
    let handle = ApplicationHandle {
        reference: req.reference.clone(),
        lender_reference: LenderReference::new("acme-404"),
        location: req.location.clone(),
        amount: req.amount,
    };

    // Act
    let err = lender.application_status(&handle).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("unknown application"));
}
