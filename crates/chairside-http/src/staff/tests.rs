//! Request-level tests of the staff dashboard.

use axum::http::StatusCode;

use crate::testkit::{
    ALICE_PASSWORD, EMAIL, FIRST, Kit, LAST, PHONE, body_text, csrf_of, form, get, other,
    post_form, set_cookie, smile, with_cookie,
};
use chairside_workflow::{Event, StaffAction, StaffTask, TaskKind};

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_secure_cookie_and_lists_todays_plans_by_initials() {
    // Arrange
    let kit = Kit::new().await;
    let mine = kit.seed_workflow("tx-1").await;
    let theirs = kit
        .seed(kit.financing_state(other(), "tx-9", "pat-9"))
        .await;
    // Act
    let form_page = kit.send(get("/staff/login")).await;
    let login_cookie = set_cookie(&form_page, "chairside_login").unwrap();
    let csrf = csrf_of(&body_text(form_page).await);
    let res = kit
        .send(post_form(
            "/staff/login",
            form(&[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ]),
            Some(login_cookie.split(';').next().unwrap()),
        ))
        .await;
    // Assert: the cookie.
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/staff");
    let cookie = set_cookie(&res, "chairside_staff").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/staff"] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(
            login_cookie.contains(attr),
            "{attr} missing from {login_cookie}"
        );
    }
    // Assert: the dashboard.
    let session = cookie.split(';').next().unwrap();
    let res = kit.send(with_cookie(get("/staff"), session)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = body_text(res).await;
    assert!(page.contains("Smile Dental Test"));
    assert!(page.contains("T.M."));
    // Lenders by the name patients know, never the raw id.
    assert!(
        page.contains("Sunbit: waiting on patient (0 reminders)"),
        "{page}"
    );
    assert!(!page.contains("sunbit: waiting"), "{page}");
    assert!(page.contains(mine.as_str()));
    assert!(
        !page.contains(theirs.as_str()),
        "another practice's plan is listed"
    );
    for phi in [FIRST, LAST, PHONE, EMAIL] {
        assert!(!page.contains(phi), "{phi} leaked onto the dashboard");
    }
}

#[tokio::test]
async fn a_wrong_password_or_unknown_name_gets_401_and_no_session() {
    let kit = Kit::new().await;
    for (user, password) in [
        ("alice", "wrong"),
        ("mallory", ALICE_PASSWORD),
        ("alice", ""),
    ] {
        let form_page = kit.send(get("/staff/login")).await;
        let login_cookie = set_cookie(&form_page, "chairside_login").unwrap();
        let csrf = csrf_of(&body_text(form_page).await);
        let res = kit
            .send(post_form(
                "/staff/login",
                form(&[("csrf", &csrf), ("username", user), ("password", password)]),
                Some(login_cookie.split(';').next().unwrap()),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(set_cookie(&res, "chairside_staff").is_none());
        assert!(body_text(res).await.contains("Wrong username or password."));
    }
}

#[tokio::test]
async fn a_login_post_without_its_csrf_cookie_is_forbidden() {
    let kit = Kit::new().await;
    let res = kit
        .send(post_form(
            "/staff/login",
            form(&[
                ("csrf", "made-up"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ]),
            None,
        ))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&res, "chairside_staff").is_none());
}

#[tokio::test]
async fn the_dashboard_and_workflow_pages_send_strangers_to_the_login_form() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    for path in ["/staff".to_owned(), format!("/staff/workflows/{wf}")] {
        let res = kit.send(get(&path)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()["location"], "/staff/login");
    }
    let forged = kit
        .send(with_cookie(get("/staff"), "chairside_staff=not-a-session"))
        .await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_action_without_the_csrf_token_is_forbidden_and_queues_nothing() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let path = format!("/staff/workflows/{wf}/actions");
    // Act
    let missing = kit
        .send(post_form(
            &path,
            form(&[("action", "retry")]),
            Some(&session),
        ))
        .await;
    let wrong = kit
        .send(post_form(
            &path,
            form(&[("csrf", &format!("{csrf}x")), ("action", "retry")]),
            Some(&session),
        ))
        .await;
    let logout = kit
        .send(post_form("/staff/logout", String::new(), Some(&session)))
        .await;
    // Assert
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(logout.status(), StatusCode::FORBIDDEN);
    assert!(kit.inbox(&wf).await.is_empty());
}

#[tokio::test]
async fn a_staff_action_goes_to_the_workflow_inbox_and_closes_the_task() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    kit.raise_task(
        &wf,
        StaffTask {
            kind: TaskKind::PatientQuiet,
            reason: "the patient did not finish the Sunbit application".into(),
        },
    )
    .await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let page = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    assert!(page.contains("Patient went quiet"));
    assert!(page.contains("the patient did not finish the Sunbit application"));
    assert!(page.contains(r#"value="resend_link""#));
    // Act
    let res = kit
        .send(post_form(
            &format!("/staff/workflows/{wf}/actions"),
            form(&[("csrf", &csrf), ("action", "resend_link")]),
            Some(&session),
        ))
        .await;
    // Assert
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/staff");
    assert_eq!(
        kit.inbox(&wf).await,
        vec![Event::Staff {
            action: StaffAction::ResendLink
        }]
    );
    assert!(
        kit.store
            .tasks(Some(&smile()), false)
            .await
            .unwrap()
            .is_empty()
    );
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "staff_action"
        && a.actor == "staff:alice"
        && a.detail == "resend_link"));
    let page = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    assert!(page.contains("Nothing waiting on staff."));
}

#[tokio::test]
async fn an_unknown_action_is_a_bad_request() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let res = kit
        .send(post_form(
            &format!("/staff/workflows/{wf}/actions"),
            form(&[("csrf", &csrf), ("action", "apply_for_patient")]),
            Some(&session),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(kit.inbox(&wf).await.is_empty());
}

#[tokio::test]
async fn staff_never_see_or_act_on_another_practices_workflow() {
    // Arrange
    let kit = Kit::new().await;
    let theirs = kit
        .seed(kit.financing_state(other(), "tx-9", "pat-9"))
        .await;
    kit.raise_task(
        &theirs,
        StaffTask {
            kind: TaskKind::PaymentFailed,
            reason: "installment 2 failed".into(),
        },
    )
    .await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    // Act
    let view = kit
        .send(with_cookie(
            get(&format!("/staff/workflows/{theirs}")),
            &session,
        ))
        .await;
    let act = kit
        .send(post_form(
            &format!("/staff/workflows/{theirs}/actions"),
            form(&[("csrf", &csrf), ("action", "cancel")]),
            Some(&session),
        ))
        .await;
    let unknown = kit
        .send(with_cookie(
            get("/staff/workflows/wf_ffffffffffffffffffffffff"),
            &session,
        ))
        .await;
    let dashboard = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    // Assert: the same 404 as an unknown workflow, and nothing queued or resolved.
    assert_eq!(view.status(), StatusCode::NOT_FOUND);
    assert_eq!(act.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_text(view).await, body_text(unknown).await);
    assert!(kit.inbox(&theirs).await.is_empty());
    assert_eq!(
        kit.store.tasks(Some(&other()), false).await.unwrap().len(),
        1
    );
    assert!(!dashboard.contains(theirs.as_str()));
    assert!(!dashboard.contains("installment 2 failed"));
}

#[tokio::test]
async fn the_workflow_page_shows_status_and_the_audit_trail_by_initials() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let (session, _) = kit.login("alice", ALICE_PASSWORD).await;
    let res = kit
        .send(with_cookie(
            get(&format!("/staff/workflows/{wf}")),
            &session,
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = body_text(res).await;
    assert!(page.contains("T.M."));
    assert!(
        page.contains("plan accepted (test)"),
        "the poller's audit line"
    );
    assert!(page.contains("$800.00"));
    assert!(!page.contains(FIRST));
}

#[tokio::test]
async fn the_days_figures_count_todays_plans_and_the_median_operatory_to_ledger_time() {
    // Arrange: two of today's plans (one done in 2m 30s) and one from two days ago.
    let kit = Kit::new().await;
    kit.seed_workflow("tx-open").await;
    kit.seed_done_workflow("tx-done").await;
    let mut old = kit.financing_state(smile(), "tx-old", "pat-1");
    old.accepted_at = kit.now() - chrono::Duration::days(2);
    let old = kit.seed(old).await;
    let (session, _) = kit.login("alice", ALICE_PASSWORD).await;
    // Act
    let page = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    // Assert
    assert!(page.contains("<b>2</b>plans accepted"), "{page}");
    assert!(page.contains("<b>1</b>financed"));
    assert!(page.contains("<b>1</b>done"));
    assert!(page.contains("<b>2m 30s</b>median operatory to ledger"));
    assert!(page.contains("Plans accepted today (2)"));
    assert!(!page.contains(old.as_str()));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let kit = Kit::new().await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let res = kit
        .send(post_form(
            "/staff/logout",
            form(&[("csrf", &csrf)]),
            Some(&session),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/staff/login");
    assert!(
        set_cookie(&res, "chairside_staff")
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = kit.send(with_cookie(get("/staff"), &session)).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
}

#[test]
fn durations_under_ten_seconds_show_tenths_so_a_fast_chain_is_not_zero() {
    // Arrange + Act + Assert
    let ms = chrono::Duration::milliseconds;
    assert_eq!(super::duration_text(ms(420)), "0.4s");
    assert_eq!(super::duration_text(ms(9_940)), "9.9s");
    assert_eq!(super::duration_text(ms(12_400)), "12s");
    assert_eq!(super::duration_text(ms(150_000)), "2m 30s");
    assert_eq!(super::duration_text(ms(-5)), "0.0s");
}

#[tokio::test]
async fn a_second_click_on_a_task_already_acted_on_is_refused_and_changes_nothing() {
    // Arrange
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    kit.raise_task(
        &wf,
        StaffTask {
            kind: TaskKind::BadData,
            reason: "procedure 1 has insurance estimates above its fee".into(),
        },
    )
    .await;
    let task = kit.store.tasks(None, false).await.unwrap()[0].id;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let page = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    assert!(page.contains(&format!(r#"name="task" value="{task}""#)));
    let path = format!("/staff/workflows/{wf}/actions");
    let click = || {
        post_form(
            &path,
            form(&[
                ("csrf", &csrf),
                ("action", "retry"),
                ("task", &task.to_string()),
            ]),
            Some(&session),
        )
    };

    // Act
    let first = kit.send(click()).await;
    let second = kit.send(click()).await;

    // Assert
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert_eq!(
        kit.inbox(&wf).await,
        vec![Event::Staff {
            action: StaffAction::Retry
        }]
    );
    let staff_lines = kit
        .store
        .audit(&wf)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "staff_action")
        .count();
    assert_eq!(staff_lines, 1);
}

mod logins {
    //! Attacks on the login form: guessing, spraying, flooding.

    use std::sync::atomic::Ordering;

    use axum::http::{StatusCode, header};
    use axum::response::Response;
    use chairside_engine::store::logins::LoginOutcome;

    use crate::testkit::{ALICE_PASSWORD, Kit, body_text};

    const ATTACKER: &str = "203.0.113.7:40000";
    const COLLEAGUE: &str = "198.51.100.20:50000";

    fn checks(kit: &Kit) -> u64 {
        kit.state.login.gauge.verifications.load(Ordering::SeqCst)
    }

    fn retry_after(res: &Response) -> i64 {
        res.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn a_password_guessing_loop_on_one_account_is_throttled_without_checking_passwords() {
        // Arrange
        let kit = Kit::new().await;
        let mut statuses = Vec::new();
        // Act
        for i in 0..20 {
            let res = kit
                .attempt_login(&kit.state, ATTACKER, "alice", &format!("guess-{i}"))
                .await;
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                assert!(retry_after(&res) >= 1);
            }
            statuses.push(res.status());
        }
        // Assert: three free failures, then every guess waits and no password is checked.
        assert_eq!(&statuses[..3], &[StatusCode::UNAUTHORIZED; 3]);
        assert!(
            statuses[3..]
                .iter()
                .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
            "{statuses:?}"
        );
        assert_eq!(checks(&kit), 3);
    }

    #[tokio::test]
    async fn the_delay_between_guesses_doubles_with_every_failure() {
        // Arrange
        let kit = Kit::new().await;
        let mut waits = Vec::new();
        // Act: guess as soon as allowed, six times past the free failures.
        for i in 0..9 {
            let mut res = kit
                .attempt_login(&kit.state, ATTACKER, "alice", &format!("guess-{i}"))
                .await;
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after(&res);
                waits.push(wait);
                kit.advance(chrono::Duration::seconds(wait));
                res = kit
                    .attempt_login(&kit.state, ATTACKER, "alice", &format!("guess-{i}"))
                    .await;
            }
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {i}");
        }
        // Assert
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32]);
        assert_eq!(checks(&kit), 9);
    }

    #[tokio::test]
    async fn a_locked_account_refuses_even_the_correct_password_until_staff_unlock_it() {
        // Arrange: ten failures, each waiting out its delay, lock the account.
        let kit = Kit::new().await;
        let mut failures = 0;
        while failures < 10 {
            let res = kit
                .attempt_login(&kit.state, ATTACKER, "alice", "not the password")
                .await;
            match res.status() {
                StatusCode::UNAUTHORIZED => failures += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    kit.advance(chrono::Duration::seconds(retry_after(&res)));
                }
                other => panic!("unexpected {other}"),
            }
        }
        kit.advance(chrono::Duration::minutes(20));
        let checked = checks(&kit);

        // Act: the owner, from another address, with the right password.
        let locked = kit
            .attempt_login(&kit.state, COLLEAGUE, "alice", ALICE_PASSWORD)
            .await;

        // Assert
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(retry_after(&locked) > 60);
        assert!(body_text(locked).await.contains("locked"));
        assert_eq!(checks(&kit), checked, "no password checked while locked");

        // Act: a colleague unlocks the account (as `chairside unlock-staff` does).
        let cleared = kit
            .store
            .unlock_staff("alice", "cli", kit.now())
            .await
            .unwrap();
        let after = kit
            .attempt_login(&kit.state, COLLEAGUE, "alice", ALICE_PASSWORD)
            .await;

        // Assert
        assert!(cleared);
        assert_eq!(after.status(), StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn guessing_many_accounts_from_one_address_is_throttled_per_address() {
        // Arrange
        let kit = Kit::new().await;
        let mut statuses = Vec::new();
        // Act: one guess per name, so no account reaches its own limit.
        for i in 0..20 {
            let res = kit
                .attempt_login(&kit.state, ATTACKER, &format!("user{i}"), "password1")
                .await;
            statuses.push(res.status());
        }
        let colleague = kit
            .attempt_login(&kit.state, COLLEAGUE, "alice", ALICE_PASSWORD)
            .await;
        // Assert
        assert_eq!(&statuses[..10], &[StatusCode::UNAUTHORIZED; 10]);
        assert!(
            statuses[10..]
                .iter()
                .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
            "{statuses:?}"
        );
        assert_eq!(checks(&kit), 10 + 1);
        assert_eq!(colleague.status(), StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn the_throttle_survives_a_restart_and_holds_on_every_instance() {
        // Arrange: three failures on this instance.
        let kit = Kit::new().await;
        for _ in 0..3 {
            let res = kit
                .attempt_login(&kit.state, ATTACKER, "alice", "wrong guess")
                .await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        }
        // Act: the next guess goes to a fresh instance over the same database.
        let other = kit.another_instance();
        let res = kit
            .attempt_login(&other, ATTACKER, "alice", "another guess")
            .await;
        // Assert
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(other.login.gauge.verifications.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_flood_of_concurrent_logins_never_checks_more_passwords_at_once_than_permitted() {
        // Arrange: each check holds its permit a while, so unbounded checks would overlap.
        let kit = Kit::new().await;
        let permitted = kit.state.config().login.concurrent_hashes;
        kit.state.login.gauge.hold_ms.store(40, Ordering::SeqCst);
        let (cookie, csrf) = kit.login_form().await;
        let mut flood = tokio::task::JoinSet::new();
        // Act
        for i in 0..20 {
            let state = kit.state.clone();
            let body = crate::testkit::form(&[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ]);
            let req = crate::testkit::from_address(
                crate::testkit::post_form("/staff/login", body, Some(&cookie)),
                &format!("192.0.2.{}:1234", i + 1),
            );
            flood.spawn(async move {
                use tower::ServiceExt as _;
                crate::router(state).oneshot(req).await.unwrap().status()
            });
        }
        let statuses: Vec<StatusCode> = flood.join_all().await;
        // Assert
        let most = kit.state.login.gauge.max_running.load(Ordering::SeqCst);
        assert!(most >= 1 && most <= permitted, "{most} checks at once");
        assert!(
            statuses
                .iter()
                .all(|s| [StatusCode::SEE_OTHER, StatusCode::SERVICE_UNAVAILABLE].contains(s)),
            "{statuses:?}"
        );
        let signed_in = statuses
            .iter()
            .filter(|s| **s == StatusCode::SEE_OTHER)
            .count();
        assert_eq!(checks(&kit), signed_in as u64);
    }

    #[tokio::test]
    async fn a_login_that_finds_no_free_password_check_is_answered_503_without_hashing() {
        // Arrange: every permit is taken.
        let mut config = crate::testkit::config();
        config.login.hash_wait = std::time::Duration::from_millis(20);
        let kit = Kit::with_config(config).await;
        let permits = kit.state.config().login.concurrent_hashes as u32;
        let _held = kit.state.login.hashes.acquire_many(permits).await.unwrap();
        // Act
        let res = kit
            .attempt_login(&kit.state, COLLEAGUE, "alice", ALICE_PASSWORD)
            .await;
        // Assert
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after(&res), 1);
        assert_eq!(checks(&kit), 0);
    }

    #[tokio::test]
    async fn every_login_attempt_is_audited_with_name_address_and_outcome_but_not_the_password() {
        // Arrange
        let kit = Kit::new().await;
        // Act
        for password in [
            "first wrong guess",
            "second wrong guess",
            "third wrong guess",
        ] {
            kit.attempt_login(&kit.state, ATTACKER, "alice", password)
                .await;
        }
        kit.attempt_login(&kit.state, ATTACKER, "alice", "fourth wrong guess")
            .await;
        kit.attempt_login(&kit.state, COLLEAGUE, "olga", "olga's password")
            .await;
        // Assert
        let alice = kit.store.login_attempts("alice", 10).await.unwrap();
        let outcomes: Vec<LoginOutcome> = alice.iter().rev().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                LoginOutcome::WrongPassword,
                LoginOutcome::WrongPassword,
                LoginOutcome::WrongPassword,
                LoginOutcome::Throttled,
            ]
        );
        assert!(alice.iter().all(|a| a.address == "203.0.113.7"));
        let olga = kit.store.login_attempts("olga", 10).await.unwrap();
        assert_eq!(olga.len(), 1);
        assert_eq!(olga[0].outcome, LoginOutcome::Success);
        assert_eq!(olga[0].address, "198.51.100.20");
        let shown = format!("{alice:?}{olga:?}");
        assert!(!shown.contains("guess") && !shown.contains("olga's password"));
    }
}

#[test]
fn a_forwarded_for_header_is_believed_only_from_a_trusted_proxy_and_only_its_rightmost_client() {
    use std::net::{IpAddr, SocketAddr};

    use axum::http::{HeaderMap, HeaderValue};

    let proxy: IpAddr = "10.0.0.2".parse().unwrap();
    let inner_proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let trusted = [proxy, inner_proxy];
    let from = |ip: IpAddr| SocketAddr::new(ip, 40_000);
    let with_xff = |value: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        h
    };
    let attacker: IpAddr = "198.51.100.66".parse().unwrap();

    // A direct client cannot pick its throttle key by sending the header itself.
    assert_eq!(
        super::client_address(Some(&from(attacker)), &with_xff("203.0.113.5"), &trusted),
        "198.51.100.66"
    );
    // Through the proxy: the entry the proxy appended is the client; whatever the client put
    // left of it is ignored.
    assert_eq!(
        super::client_address(
            Some(&from(proxy)),
            &with_xff("203.0.113.5, 198.51.100.66"),
            &trusted
        ),
        "198.51.100.66"
    );
    // Through two trusted proxies: both are skipped.
    assert_eq!(
        super::client_address(
            Some(&from(proxy)),
            &with_xff("198.51.100.66, 10.0.0.1"),
            &trusted
        ),
        "198.51.100.66"
    );
    // A trusted proxy that sent no header, or a malformed one, is the client itself.
    assert_eq!(
        super::client_address(Some(&from(proxy)), &HeaderMap::new(), &trusted),
        "10.0.0.2"
    );
    assert_eq!(
        super::client_address(Some(&from(proxy)), &with_xff("not-an-address"), &trusted),
        "10.0.0.2"
    );
    // With no trusted proxies configured, the header is never read.
    assert_eq!(
        super::client_address(Some(&from(proxy)), &with_xff("198.51.100.66"), &[]),
        "10.0.0.2"
    );
}

#[tokio::test]
async fn a_counteroffer_task_offers_accept_and_next_lender_and_each_reaches_the_workflow() {
    for (value, action) in [
        ("accept_counteroffer", StaffAction::AcceptCounteroffer),
        ("next_lender", StaffAction::NextLender),
    ] {
        // Arrange
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        kit.raise_task(
            &wf,
            StaffTask {
                kind: TaskKind::Counteroffer,
                reason: "sunbit approved $600.00, $200.00 short".into(),
            },
        )
        .await;
        let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
        let page = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
        assert!(page.contains(r#"value="accept_counteroffer""#), "{page}");
        assert!(page.contains(r#"value="next_lender""#), "{page}");
        // Act
        let res = kit
            .send(post_form(
                &format!("/staff/workflows/{wf}/actions"),
                form(&[("csrf", &csrf), ("action", value)]),
                Some(&session),
            ))
            .await;
        // Assert
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(kit.inbox(&wf).await, vec![Event::Staff { action }]);
    }
}
/// Gives up every outbound delivery now due: fans the events out to `subscriber` and records
/// one failed attempt each, as the dispatcher does after its last attempt.
async fn give_up_deliveries(kit: &crate::testkit::Kit, subscriber: &str) {
    use chairside_engine::store::outbox::AttemptOutcome;
    let store = &kit.store;
    // A subscriber seen for the first time starts at the newest event: register it first.
    let events = store
        .events_after_cursor(subscriber, kit.now(), 100)
        .await
        .unwrap();
    let wanted: Vec<_> = events.iter().collect();
    let through = events.last().map_or(0, |e| e.row);
    store
        .enqueue_deliveries(subscriber, &wanted, through, kit.now())
        .await
        .unwrap();
    let jobs = store
        .claim_deliveries("test", kit.now(), std::time::Duration::from_secs(60), 100)
        .await
        .unwrap();
    for job in &jobs {
        let outcome = AttemptOutcome::Failed {
            status: Some(503),
            error: "the endpoint refused the event".into(),
        };
        assert!(
            store
                .finish_delivery(job, "test", &outcome, kit.now())
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn a_given_up_delivery_shows_on_the_dashboard_and_in_the_log_and_can_be_sent_again() {
    // Arrange: the subscriber is registered, then a task opens on a plan of each practice.
    let kit = Kit::new().await;
    give_up_deliveries(&kit, "webhook:billing").await;
    let mine = kit.seed_workflow("tx-1").await;
    let theirs = kit
        .seed(kit.financing_state(other(), "tx-9", "pat-9"))
        .await;
    let task = StaffTask {
        kind: TaskKind::NoFinancing,
        reason: "no lender approved".into(),
    };
    kit.raise_task(&mine, task.clone()).await;
    kit.raise_task(&theirs, task).await;
    give_up_deliveries(&kit, "webhook:billing").await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;

    // Act
    let dashboard = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    let log = body_text(
        kit.send(with_cookie(get("/staff/deliveries"), &session))
            .await,
    )
    .await;

    // Assert: one given up for this practice; the other practice's is not shown.
    assert!(
        dashboard.contains("1 event delivery to other systems gave up"),
        "{dashboard}"
    );
    assert!(log.contains("workflow.needs_staff"), "{log}");
    assert!(log.contains("given up"));
    assert!(log.contains("the endpoint refused the event (HTTP 503)"));
    assert!(log.contains(mine.as_str()));
    assert!(
        !log.contains(theirs.as_str()),
        "another practice's delivery"
    );
    for phi in [FIRST, LAST, PHONE, EMAIL] {
        assert!(!log.contains(phi), "{phi} in the log");
    }
    let all = kit.store.deliveries(None, None, 10).await.unwrap();
    let id_of = |wf: &chairside_workflow::WorkflowId| {
        all.iter()
            .find(|d| d.workflow_id == wf.as_str())
            .unwrap()
            .id
    };

    // Act: send again, without and with the token, mine and theirs.
    let retry = |id: i64, token: &str| {
        post_form(
            &format!("/staff/deliveries/{id}/retry"),
            form(&[("csrf", token)]),
            Some(&session),
        )
    };
    let forged = kit.send(retry(id_of(&mine), "made-up")).await;
    let foreign = kit.send(retry(id_of(&theirs), &csrf)).await;
    let again = kit.send(retry(id_of(&mine), &csrf)).await;

    // Assert
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let after = kit.store.deliveries(None, None, 10).await.unwrap();
    let status = |wf: &chairside_workflow::WorkflowId| {
        after
            .iter()
            .find(|d| d.workflow_id == wf.as_str())
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(status(&mine), "pending");
    assert_eq!(status(&theirs), "failed");
}

/// A workflow waiting for staff to record Cherry's decision (a link-only lender).
fn at_cherry(kit: &Kit) -> chairside_workflow::WorkflowState {
    let mut s = kit.financing_state(smile(), "tx-1", "pat-1");
    if let chairside_workflow::Stage::Financing(c) = &mut s.stage {
        c.lender = financing_core::LenderId::new("cherry");
        if let chairside_workflow::LenderPhase::AwaitingPatient { session, .. } = &mut c.phase {
            session.decide_by = Some(kit.now() + chrono::Duration::days(2));
        }
    }
    s
}

#[tokio::test]
async fn a_link_only_lenders_decision_is_recorded_from_the_workflow_page_and_audited() {
    let kit = Kit::new().await;
    let wf = kit.seed(at_cherry(&kit)).await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let page = body_text(
        kit.send(with_cookie(
            get(&format!("/staff/workflows/{wf}")),
            &session,
        ))
        .await,
    )
    .await;
    assert!(page.contains(r#"value="record_lender_decision""#), "{page}");
    assert!(page.contains("$640.00 asked"), "{page}");

    // A form without an amount for an approval, or a counteroffer at the amount asked: refused,
    // nothing queued.
    for (outcome, amount, status) in [
        ("approved", "", StatusCode::BAD_REQUEST),
        ("approved", "six hundred", StatusCode::BAD_REQUEST),
        ("maybe", "600", StatusCode::BAD_REQUEST),
        ("counteroffer", "640.00", StatusCode::CONFLICT),
    ] {
        let res = kit
            .send(post_form(
                &format!("/staff/workflows/{wf}/actions"),
                form(&[
                    ("csrf", &csrf),
                    ("action", "record_lender_decision"),
                    ("lender", "cherry"),
                    ("outcome", outcome),
                    ("amount", amount),
                ]),
                Some(&session),
            ))
            .await;
        assert_eq!(res.status(), status, "{outcome} {amount}");
    }
    assert!(kit.inbox(&wf).await.is_empty());

    let res = kit
        .send(post_form(
            &format!("/staff/workflows/{wf}/actions"),
            form(&[
                ("csrf", &csrf),
                ("action", "record_lender_decision"),
                ("lender", "cherry"),
                ("outcome", "counteroffer"),
                ("amount", "$500.00"),
            ]),
            Some(&session),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let inbox = kit.inbox(&wf).await;
    assert!(
        matches!(
            inbox.as_slice(),
            [Event::LenderDecided { lender, decision: financing_core::Decision::PartiallyApproved { offer, requested, .. } }]
                if lender.as_str() == "cherry" && offer.amount == financing_core::Money::usd(50_000) && *requested == financing_core::Money::usd(64_000)
        ),
        "{inbox:?}"
    );
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(
        audit.iter().any(|a| a.kind == "staff_action"
            && a.actor == "staff:alice"
            && a.detail == "record_lender_decision: cherry counteroffer $500.00"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_lender_with_an_api_takes_no_staff_recorded_decision() {
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let page = body_text(
        kit.send(with_cookie(
            get(&format!("/staff/workflows/{wf}")),
            &session,
        ))
        .await,
    )
    .await;
    assert!(!page.contains("record_lender_decision"));
    let res = kit
        .send(post_form(
            &format!("/staff/workflows/{wf}/actions"),
            form(&[
                ("csrf", &csrf),
                ("action", "record_lender_decision"),
                ("lender", "sunbit"),
                ("outcome", "approved"),
                ("amount", "640"),
            ]),
            Some(&session),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(kit.inbox(&wf).await.is_empty());
}

/// A financed workflow whose $160.00 deposit payment failed: a payment-failed task beside it.
async fn failed_deposit(kit: &Kit, paid: bool) -> chairside_workflow::WorkflowId {
    let mut state = kit.done_state("tx-1");
    state.stripe.customer_id = Some("cus_test_1".into());
    state.stripe.failures_handled = vec!["pi_failed_1".into()];
    state.stripe.deposit_paid = paid;
    let wf = kit.seed(state).await;
    kit.raise_task_beside(
        &wf,
        StaffTask {
            kind: TaskKind::PaymentFailed,
            reason: "a scheduled payment failed; Stripe retries it, and the patient was told"
                .into(),
        },
    )
    .await;
    wf
}

#[tokio::test]
async fn retry_on_a_failed_payment_is_offered_and_queues_a_fresh_pay_link() {
    // Arrange
    let kit = Kit::new().await;
    let wf = failed_deposit(&kit, false).await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let page = body_text(kit.send(with_cookie(get("/staff"), &session)).await).await;
    assert!(page.contains("Payment failed"), "{page}");
    assert!(
        page.contains(r#"value="retry""#),
        "the Retry button is shown: {page}"
    );
    // Act
    let res = kit
        .send(post_form(
            &format!("/staff/workflows/{wf}/actions"),
            form(&[("csrf", &csrf), ("action", "retry")]),
            Some(&session),
        ))
        .await;
    // Assert: queued for the runner, the task closed, the decision audited.
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        kit.inbox(&wf).await,
        vec![Event::Staff {
            action: StaffAction::Retry
        }]
    );
    assert!(
        kit.store
            .tasks(Some(&smile()), false)
            .await
            .unwrap()
            .is_empty()
    );
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "staff_action" && a.actor == "staff:alice" && a.detail == "retry")
    );
}

#[tokio::test]
async fn retry_on_a_failed_payment_already_paid_is_refused_with_the_reason_on_the_page() {
    // Arrange: the deposit was paid after the failure.
    let kit = Kit::new().await;
    let wf = failed_deposit(&kit, true).await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    // Act
    let res = kit
        .send(post_form(
            &format!("/staff/workflows/{wf}/actions"),
            form(&[("csrf", &csrf), ("action", "retry")]),
            Some(&session),
        ))
        .await;
    // Assert: 409 naming why; nothing queued, the task still open.
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let text = body_text(res).await;
    assert!(text.contains("the deposit is already paid"), "{text}");
    assert!(kit.inbox(&wf).await.is_empty());
    assert_eq!(
        kit.store.tasks(Some(&smile()), false).await.unwrap().len(),
        1
    );
}

/// A workflow waiting on staff because its insurance estimate came in above the fee.
async fn bad_estimate(kit: &Kit) -> chairside_workflow::WorkflowId {
    let mut state = kit.financing_state(smile(), "tx-1", "pat-1");
    state.stage = chairside_workflow::Stage::Settled;
    state.stripe = Default::default();
    state.attempts.clear();
    state.facts = Some(chairside_workflow::PatientFacts {
        reachable: true,
        state: None,
        lookup_allowed: false,
        financing_not_before: kit.now(),
    });
    let wf = kit.seed(state).await;
    kit.raise_task(
        &wf,
        StaffTask {
            kind: TaskKind::BadData,
            reason: "procedure 1 has insurance estimates above its fee".into(),
        },
    )
    .await;
    wf
}

fn correction_form<'a>(csrf: &'a str, total: &'a str, reason: &'a str) -> String {
    form(&[
        ("csrf", csrf),
        ("action", "correct_amounts"),
        ("total", total),
        ("insurance", "100.00"),
        ("deposit", "50"),
        ("reason", reason),
    ])
}

#[tokio::test]
async fn amounts_are_corrected_from_the_workflow_page_and_bad_values_are_named_on_the_form() {
    // Arrange
    let kit = Kit::new().await;
    let wf = bad_estimate(&kit).await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let href = format!("/staff/workflows/{wf}");
    let page = body_text(kit.send(with_cookie(get(&href), &session)).await).await;
    assert!(page.contains("Correct the amounts"), "{page}");
    let post = |body: String| post_form(&format!("{href}/actions"), body, Some(&session));

    // Act
    let words = kit
        .send(post(correction_form(&csrf, "five hundred", "typo")))
        .await;
    let over = kit
        .send(post(correction_form(&csrf, "50.00", "typo")))
        .await;
    let done = kit
        .send(post(correction_form(
            &csrf,
            "500.00",
            "estimate keyed in wrong",
        )))
        .await;

    // Assert: the first two name the problem and queue nothing; the third is queued and audited.
    assert_eq!(words.status(), StatusCode::BAD_REQUEST);
    let text = body_text(words).await;
    assert!(
        text.contains("the plan total: expected an amount in dollars"),
        "{text}"
    );
    assert_eq!(over.status(), StatusCode::BAD_REQUEST);
    let text = body_text(over).await;
    assert!(
        text.contains("the insurance estimate ($100.00) is above the plan total ($50.00)"),
        "{text}"
    );
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let queued = kit.inbox(&wf).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(
        matches!(&queued[0], Event::AmountsCorrected { correction }
            if correction.total == financing_core::Money::usd(50_000)
                && correction.deposit == financing_core::Money::usd(5_000)),
        "{queued:?}"
    );
    let audit = kit.store.audit(&wf).await.unwrap();
    assert!(
        audit.iter().any(|a| a.kind == "staff_action"
            && a.actor == "staff:alice"
            && a.detail.starts_with("correct_amounts: plan total")
            && a.detail.ends_with("reason: estimate keyed in wrong")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn amounts_a_lender_was_asked_for_show_no_form_and_a_correction_is_refused() {
    // Arrange: the financing state has a lender application open.
    let kit = Kit::new().await;
    let wf = kit.seed_workflow("tx-1").await;
    let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
    let href = format!("/staff/workflows/{wf}");
    let page = body_text(kit.send(with_cookie(get(&href), &session)).await).await;
    // Act
    let res = kit
        .send(post_form(
            &format!("{href}/actions"),
            correction_form(&csrf, "500.00", "wrong fee"),
            Some(&session),
        ))
        .await;
    // Assert
    assert!(!page.contains("Correct the amounts"));
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let text = body_text(res).await;
    assert!(text.contains("can no longer be corrected"), "{text}");
    assert!(kit.inbox(&wf).await.is_empty());
}

// The same tests on PostgreSQL (when CHAIRSIDE_TEST_POSTGRES_URL is set: scripts/with-postgres.sh).
crate::testkit::also_on_postgres!(
    signing_in_sets_a_strict_http_only_secure_cookie_and_lists_todays_plans_by_initials,
    a_wrong_password_or_unknown_name_gets_401_and_no_session,
    a_login_post_without_its_csrf_cookie_is_forbidden,
    the_dashboard_and_workflow_pages_send_strangers_to_the_login_form,
    an_action_without_the_csrf_token_is_forbidden_and_queues_nothing,
    a_staff_action_goes_to_the_workflow_inbox_and_closes_the_task,
    an_unknown_action_is_a_bad_request,
    staff_never_see_or_act_on_another_practices_workflow,
    the_workflow_page_shows_status_and_the_audit_trail_by_initials,
    the_days_figures_count_todays_plans_and_the_median_operatory_to_ledger_time,
    signing_out_ends_the_session,
    a_second_click_on_a_task_already_acted_on_is_refused_and_changes_nothing,
    a_counteroffer_task_offers_accept_and_next_lender_and_each_reaches_the_workflow,
    a_given_up_delivery_shows_on_the_dashboard_and_in_the_log_and_can_be_sent_again,
    a_link_only_lenders_decision_is_recorded_from_the_workflow_page_and_audited,
    a_lender_with_an_api_takes_no_staff_recorded_decision,
    retry_on_a_failed_payment_is_offered_and_queues_a_fresh_pay_link,
    retry_on_a_failed_payment_already_paid_is_refused_with_the_reason_on_the_page,
    amounts_are_corrected_from_the_workflow_page_and_bad_values_are_named_on_the_form,
    amounts_a_lender_was_asked_for_show_no_form_and_a_correction_is_refused,
);

#[tokio::test]
async fn a_delivery_of_a_plan_not_started_links_to_the_detection_section_in_the_log() {
    use chairside_engine::store::detection::{DetectionBatch, DetectionKind, NewDetectionTask};

    // Arrange: the subscriber is registered, then a plan of the practice cannot be read and its
    // `plan.needs_staff` delivery gives up.
    let kit = Kit::new().await;
    give_up_deliveries(&kit, "webhook:billing").await;
    let batch = DetectionBatch {
        cursor: "1".into(),
        tasks: vec![NewDetectionTask {
            kind: DetectionKind::UnreadableRecord,
            plan_id: "963".into(),
            marker: "2026-06-02T09:00:00".into(),
            field: "procedures[0].fee".into(),
            problem: "could not be read".into(),
        }],
        ..DetectionBatch::default()
    };
    kit.store
        .record_detection(&smile(), "dentrix", batch, kit.now())
        .await
        .unwrap();
    give_up_deliveries(&kit, "webhook:billing").await;
    let (session, _) = kit.login("alice", ALICE_PASSWORD).await;

    // Act
    let log = body_text(
        kit.send(with_cookie(get("/staff/deliveries"), &session))
            .await,
    )
    .await;

    // Assert: listed, linking to the dashboard's detection section, not to a workflow page.
    assert!(log.contains("plan.needs_staff"), "{log}");
    // (The template escapes `/` as `&#x2f;`.)
    assert!(
        log.contains("staff#detection\">plan.needs_staff</a>"),
        "{log}"
    );
    assert!(
        !log.contains("workflows&#x2f;\""),
        "an empty workflow link: {log}"
    );
}
