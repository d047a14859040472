//! The engine builder: plug-in lenders a waterfall can name, and the checks that practices and
//! lenders fit together.

use std::sync::Arc;

use chairside_engine::{Engine, EngineError};
use financing_core::{AmountLimits, LenderId, LenderSlot, Waterfall, WaterfallPolicy};

use crate::fakes::FakeLender;
use crate::harness::{World, practice_id};

/// The practice's waterfall names only `lender`.
fn waterfall_of(lender: &str) -> Waterfall {
    Waterfall::new(
        vec![LenderSlot {
            lender: LenderId::new(lender),
            limits: AmountLimits::NONE,
        }],
        WaterfallPolicy {
            on_partial: financing_core::PartialApprovalRule::StopForStaff,
            in_house_fallback: true,
        },
    )
}

#[tokio::test]
async fn a_plug_in_lender_named_by_the_waterfall_is_the_one_the_runner_asks() {
    // Arrange: the practice provides CareCredit and Sunbit; its waterfall names a plug-in.
    let mut world = World::new();
    world.config.waterfall = waterfall_of("acme-lending");
    // The same flat cadence as the practice's own lenders, so the run settles quickly.
    let flat = world.config.schedule_for(&LenderId::new("sunbit"));
    world
        .config
        .lender_schedules
        .push((LenderId::new("acme-lending"), flat));
    let acme = Arc::new(FakeLender::new("acme-lending", "Acme Lending"));
    let engine = Engine::builder(world.store().await)
        .clock(world.clock.clone())
        .lender(LenderId::new("acme-lending"), acme.clone())
        .practice(world.runtime())
        .build()
        .expect("the plug-in satisfies the waterfall");
    // The install's first poll (nothing accepted yet), then the patient accepts.
    engine.runner().poll().await.expect("baseline poll");
    world.accept(1, 300_000, 50_000);

    // Act
    engine.runner().poll().await.expect("poll");
    world.settle(engine.runner()).await;

    // Assert
    assert_eq!(acme.applications(), 1, "the plug-in was asked once");
    assert_eq!(
        world.carecredit.applications(),
        0,
        "CareCredit is not named"
    );
    assert_eq!(
        engine.lenders()[&practice_id()]
            .iter()
            .map(LenderId::as_str)
            .collect::<Vec<_>>(),
        ["acme-lending", "carecredit", "sunbit"]
    );
}

#[tokio::test]
async fn a_waterfall_naming_a_lender_nothing_provides_is_refused() {
    // Arrange
    let mut world = World::new();
    world.config.waterfall = waterfall_of("acme-lending");

    // Act
    let built = Engine::builder(world.store().await)
        .practice(world.runtime())
        .build();

    // Assert
    assert_eq!(
        built.err(),
        Some(EngineError::UnknownLender {
            practice: practice_id(),
            lender: LenderId::new("acme-lending"),
        })
    );
}

#[tokio::test]
async fn a_plug_in_with_the_id_of_a_practice_lender_is_refused() {
    // Arrange
    let world = World::new();
    let other = Arc::new(FakeLender::new("sunbit", "Another Sunbit"));

    // Act
    let built = Engine::builder(world.store().await)
        .lender(LenderId::new("sunbit"), other)
        .practice(world.runtime())
        .build();

    // Assert
    assert_eq!(
        built.err(),
        Some(EngineError::LenderTwice {
            practice: practice_id(),
            lender: LenderId::new("sunbit"),
        })
    );
}

#[tokio::test]
async fn the_same_practice_given_twice_is_refused() {
    // Arrange
    let world = World::new();

    // Act
    let built = Engine::builder(world.store().await)
        .practice(world.runtime())
        .practice(world.runtime())
        .build();

    // Assert
    assert_eq!(built.err(), Some(EngineError::PracticeTwice(practice_id())));
}

#[tokio::test]
async fn a_lender_without_a_configured_schedule_gets_its_clients_and_a_configured_one_stays() {
    // Arrange: the waterfall names a plug-in with no schedule in the configuration.
    let mut world = World::new();
    world.config.waterfall = waterfall_of("acme-lending");
    let configured = world.config.schedule_for(&LenderId::new("carecredit"));
    let acme = Arc::new(FakeLender::new("acme-lending", "Acme Lending"));

    // Act
    let engine = Engine::builder(world.store().await)
        .lender(LenderId::new("acme-lending"), acme)
        .practice(world.runtime())
        .build()
        .expect("built");

    // Assert: the plug-in's own (the trait's default), and the harness's flat one untouched.
    let practice = engine.runner().practices().next().expect("one practice");
    assert_eq!(
        practice
            .workflow
            .schedule_for(&LenderId::new("acme-lending")),
        financing_core::PollSchedule::default()
    );
    assert!(
        practice
            .workflow
            .lender_schedules
            .iter()
            .any(|(l, _)| l == &LenderId::new("acme-lending"))
    );
    assert_eq!(
        practice.workflow.schedule_for(&LenderId::new("carecredit")),
        configured
    );
}
