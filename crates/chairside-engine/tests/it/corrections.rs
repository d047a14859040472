//! Staff corrections of amounts through `StaffActions` and the runner over the fakes: the
//! workflow is priced again from the corrected values and the lender is asked for them; the
//! audit trail records each value before and after, who, why and when; refused, writing
//! nothing, once a lender was asked for the old amount or for values that make no sense.

use chairside_engine::staff::{Refusal, StaffActions, StaffError};
use chairside_workflow::correction::{Correction, NotCorrectable};
use chairside_workflow::{Status, TaskKind};
use financing_core::Money;

use crate::fakes::Answer;
use crate::harness::World;

fn corrected() -> Correction {
    // $500.00 plan, $100.00 insurance, $50.00 deposit: $350.00 to finance.
    Correction {
        total: Money::usd(50_000),
        insurance: Money::usd(10_000),
        deposit: Money::usd(5_000),
    }
}

#[tokio::test]
async fn a_plan_with_a_wrong_estimate_is_corrected_priced_again_and_financed() {
    // Arrange: insurance above the fee: a bad-data task, no lender asked.
    let w = World::new();
    let id = w.accept(1, 50_000, 60_000);
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    assert_eq!(w.tasks(&runner).await[0].task.kind, TaskKind::BadData);
    let store = runner.store();
    let at = w.clock.now_utc();

    // Act
    let receipt = StaffActions::new(&**store, "staff:alice")
        .correct_amounts(&id, corrected(), "estimate keyed in wrong", at)
        .await
        .expect("correction admitted");
    w.settle(&runner).await;

    // Assert: the lender was asked for the corrected amount, the deposit link is staff's deposit.
    assert_eq!(receipt.tasks_resolved, 1);
    let requests = w.carecredit.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].amount, Money::usd(35_000));
    let state = w.row(&runner, &id).await.state;
    assert_eq!(state.status, Status::Done);
    assert_eq!(
        state.split.map(|s| s.patient_portion),
        Some(Money::usd(40_000))
    );
    assert_eq!(w.stripe.sessions_for(&id)[0].amount, Money::usd(5_000));
    // Who, when, why, before and after: one staff row.
    let audit = store.audit(&id).await.unwrap();
    let row = audit
        .iter()
        .find(|a| a.kind == "staff_action")
        .expect("the correction is audited");
    assert_eq!(row.actor, "staff:alice");
    assert_eq!(row.at, at);
    assert_eq!(
        row.detail,
        "correct_amounts: plan total none -> $500.00, insurance estimate none -> $100.00, \
         deposit none -> $50.00; reason: estimate keyed in wrong"
    );
}

#[tokio::test]
async fn a_correction_after_the_lender_was_asked_or_with_bad_values_is_refused_and_writes_nothing()
{
    // Arrange: financed at the old amounts.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Approve);
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
    let store = runner.store();
    let staff = StaffActions::new(&**store, "staff:alice");
    let before = store.audit(&id).await.unwrap().len();
    let now = w.clock.now_utc();

    // Act
    let late = staff
        .correct_amounts(&id, corrected(), "wrong fee", now)
        .await;
    let no_reason = staff.correct_amounts(&id, corrected(), " ", now).await;

    // Assert
    let err = late.expect_err("a lender was asked for the old amount");
    assert!(
        matches!(
            err,
            StaffError::Refused(Refusal::NotCorrectable {
                why: NotCorrectable::LenderAsked,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("a lender application was already submitted for the old amount"),
        "{err}"
    );
    assert!(
        matches!(
            no_reason,
            Err(StaffError::Refused(Refusal::BadCorrection(_)))
        ),
        "{no_reason:?}"
    );
    assert_eq!(store.audit(&id).await.unwrap().len(), before);
    assert_eq!(w.carecredit.requests().len(), 1);
}
