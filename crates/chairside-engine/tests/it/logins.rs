//! The login role against both databases: failures counted per account and per address, the
//! lockout, its unlock, the audit of every attempt, and two instances counting every failure.

use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::logins::{LockRule, LoginAttempt, LoginOutcome};
use chrono::{DateTime, Duration, Utc};

use crate::backend::{Backend, TestDb, both};
use crate::harness::{KEY_HEX, t0};

both!(
    wrong_passwords_lock_the_account_and_a_success_clears_only_the_account,
    failures_are_forgotten_after_the_rule_and_a_lockout_ends_on_time,
    an_unlock_clears_the_account_and_is_audited_by_who_unlocked,
    two_instances_counting_at_once_count_every_failure,
);

fn rule() -> LockRule {
    LockRule {
        forget_after: Duration::minutes(15),
        lock_after: 3,
        lock_for: Duration::minutes(10),
    }
}

fn mins(n: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(n)
}

fn attempt(user: &str, address: &str, at: DateTime<Utc>, outcome: LoginOutcome) -> LoginAttempt {
    LoginAttempt {
        username: user.into(),
        address: address.into(),
        at,
        outcome,
    }
}

async fn wrong_passwords_lock_the_account_and_a_success_clears_only_the_account(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let rule = rule();

    // Act: two wrong passwords, then the third that locks.
    for n in 0..2 {
        let standing = db
            .store
            .record_login(
                &attempt("alice", "10.0.0.1", mins(n), LoginOutcome::WrongPassword),
                &rule,
            )
            .await
            .unwrap();
        assert_eq!(standing.account.failures, u32::try_from(n + 1).unwrap());
        assert_eq!(standing.account.locked_until, None);
    }
    let locked = db
        .store
        .record_login(
            &attempt("alice", "10.0.0.1", mins(2), LoginOutcome::WrongPassword),
            &rule,
        )
        .await
        .unwrap();

    // Assert: the account locks at the third; the address counts but never locks.
    assert_eq!(locked.account.failures, 3);
    assert_eq!(locked.account.last_failure_at, Some(mins(2)));
    assert_eq!(locked.account.locked_until, Some(mins(12)));
    assert_eq!(locked.address.failures, 3);
    assert_eq!(locked.address.locked_until, None);
    let read = db
        .store
        .login_standing("alice", "10.0.0.1", &rule, mins(3))
        .await
        .unwrap();
    assert_eq!(read, locked);
    // Another account from another address starts clean.
    let other = db
        .store
        .login_standing("bob", "10.0.0.2", &rule, mins(3))
        .await
        .unwrap();
    assert_eq!(other.account.failures, 0);
    assert_eq!(other.address.failures, 0);

    // Act: a success (after the lockout) clears the account, not the address.
    let after = db
        .store
        .record_login(
            &attempt("alice", "10.0.0.1", mins(13), LoginOutcome::Success),
            &rule,
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(after.account.failures, 0);
    assert_eq!(after.account.locked_until, None);
    assert_eq!(after.address.failures, 3);
    // Every attempt is audited, newest first, and the limit is kept.
    let audit = db.store.login_attempts("alice", 10).await.unwrap();
    let outcomes: Vec<LoginOutcome> = audit.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            LoginOutcome::Success,
            LoginOutcome::WrongPassword,
            LoginOutcome::WrongPassword,
            LoginOutcome::WrongPassword,
        ]
    );
    assert_eq!(audit[0].at, mins(13));
    assert_eq!(audit[0].address, "10.0.0.1");
    assert_eq!(db.store.login_attempts("alice", 2).await.unwrap().len(), 2);
    assert!(db.store.login_attempts("bob", 10).await.unwrap().is_empty());
}

async fn failures_are_forgotten_after_the_rule_and_a_lockout_ends_on_time(backend: Backend) {
    // Arrange: locked at minute 2, until minute 12.
    let db = TestDb::new(backend).await;
    let rule = rule();
    for n in 0..3 {
        db.store
            .record_login(
                &attempt("alice", "10.0.0.1", mins(n), LoginOutcome::WrongPassword),
                &rule,
            )
            .await
            .unwrap();
    }

    // Act
    let during = db
        .store
        .login_standing("alice", "10.0.0.1", &rule, mins(11))
        .await
        .unwrap();
    let ended = db
        .store
        .login_standing("alice", "10.0.0.1", &rule, mins(12))
        .await
        .unwrap();
    let forgotten = db
        .store
        .login_standing("alice", "10.0.0.1", &rule, mins(17))
        .await
        .unwrap();
    // A refusal is audited but counts nothing.
    let throttled = db
        .store
        .record_login(
            &attempt("alice", "10.0.0.1", mins(17), LoginOutcome::Throttled),
            &rule,
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(during.account.locked_until, Some(mins(12)));
    assert_eq!(during.account.failures, 3);
    assert_eq!(
        ended.account.locked_until, None,
        "a lockout that ended is none"
    );
    assert_eq!(ended.account.failures, 3);
    assert_eq!(forgotten.account.failures, 0, "15 minutes after the latest");
    assert_eq!(forgotten.account.last_failure_at, None);
    assert_eq!(forgotten.address.failures, 0);
    assert_eq!(throttled, forgotten);
    let audit = db.store.login_attempts("alice", 10).await.unwrap();
    assert_eq!(audit.len(), 4);
    assert_eq!(audit[0].outcome, LoginOutcome::Throttled);
}

async fn an_unlock_clears_the_account_and_is_audited_by_who_unlocked(backend: Backend) {
    // Arrange: a locked account.
    let db = TestDb::new(backend).await;
    let rule = rule();
    for n in 0..3 {
        db.store
            .record_login(
                &attempt("alice", "10.0.0.1", mins(n), LoginOutcome::WrongPassword),
                &rule,
            )
            .await
            .unwrap();
    }

    // Act
    let unlocked = db
        .store
        .unlock_staff("alice", "staff:bob", mins(3))
        .await
        .unwrap();
    let again = db
        .store
        .unlock_staff("alice", "staff:bob", mins(4))
        .await
        .unwrap();

    // Assert: cleared once; nothing left to clear the second time; both audited.
    assert!(unlocked);
    assert!(!again);
    let standing = db
        .store
        .login_standing("alice", "10.0.0.1", &rule, mins(5))
        .await
        .unwrap();
    assert_eq!(standing.account.failures, 0);
    assert_eq!(standing.account.locked_until, None);
    assert_eq!(standing.address.failures, 3, "the address keeps its count");
    let audit = db.store.login_attempts("alice", 10).await.unwrap();
    assert_eq!(
        audit[0],
        attempt("alice", "staff:bob", mins(4), LoginOutcome::Unlocked)
    );
    assert_eq!(audit[1].outcome, LoginOutcome::Unlocked);
    assert_eq!(audit.len(), 5);
}

async fn two_instances_counting_at_once_count_every_failure(backend: Backend) {
    // Arrange: two instances on one database.
    let db = TestDb::new(backend).await;
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;
    let rule = LockRule {
        lock_after: 100,
        ..rule()
    };

    // Act: 2 x 8 wrong passwords at once, on one account from two addresses.
    let mut tries = Vec::new();
    for n in 0..8 {
        let at = t0() + Duration::seconds(n);
        tries.push(attempt(
            "alice",
            "10.0.0.1",
            at,
            LoginOutcome::WrongPassword,
        ));
        tries.push(attempt(
            "alice",
            "10.0.0.2",
            at,
            LoginOutcome::WrongPassword,
        ));
    }
    let (a, b) = tries.split_at(tries.len() / 2);
    let run = |store: std::sync::Arc<dyn chairside_engine::store::Store>,
               tries: Vec<LoginAttempt>| {
        tokio::spawn(async move {
            for t in &tries {
                store.record_login(t, &rule).await.unwrap();
            }
        })
    };
    let (ra, rb) = tokio::join!(
        run(db.store.clone(), a.to_vec()),
        run(other.clone(), b.to_vec())
    );
    ra.unwrap();
    rb.unwrap();

    // Assert: not one failure lost to a race.
    let standing = db
        .store
        .login_standing("alice", "10.0.0.1", &rule, mins(1))
        .await
        .unwrap();
    assert_eq!(standing.account.failures, 16);
    assert_eq!(standing.address.failures, 8);
    assert_eq!(
        db.store.login_attempts("alice", 100).await.unwrap().len(),
        16
    );
}
