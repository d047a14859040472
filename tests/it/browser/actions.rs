//! What patients and staff do in a real browser, and what it changes: the texts opt-in on the
//! patient page, the deposit paid through the Stripe stand-in's checkout (and a fresh Checkout
//! Session after one expired), the in-house plan accepted or turned down, and a counteroffer
//! accepted or passed to the next lender from the dashboard (issue #16 item 5).
//!
//! One world for every phase, with the sandbox's patients passive: nobody acts on a message on
//! their own. The test acts as the patient at the lenders (`Sandbox::act_on_link` on the patient
//! page, as the sandbox's patients do) and in the browser for everything the issue is about. The
//! reminders are slow (minutes), so nothing lapses while the browser works, and the practices
//! stop for staff on a counteroffer (`on_partial = "stop_for_staff"`).

use std::time::{Duration, Instant};

use chairside::demo::world::{Case, PRACTICES, World, WorldOptions};
use chairside_engine::links::PatientLinks;
use chairside_workflow::{LenderPhase, Stage, Status, TaskKind, WorkflowState};
use fantoccini::{Client, Locator};
use financing_core::{LenderId, PartialApprovalRule, PracticeId};
use sandbox::{Lender, LinkAction, PatientSimulation, Persona, SandboxConfig, System};
use secrecy::ExposeSecret as _;
use url::Url;

use super::{Chromedriver, LINK_LIFETIME, screenshot, screenshot_page, text_of};

/// How long a step the runner takes (a lender read, a webhook, a queued answer) may take on a
/// busy machine before the test calls it stuck.
const STEP: Duration = Duration::from_secs(60);

/// The workflow of `case` once `done` holds for it; panics naming `what` after [`STEP`].
async fn until(
    world: &World,
    case: &Case,
    what: &str,
    done: impl Fn(&WorkflowState) -> bool,
) -> WorkflowState {
    let started = Instant::now();
    loop {
        let state = world.workflow_of(case).await.expect("reading the workflow");
        if let Some(s) = &state
            && done(s)
        {
            return s.clone();
        }
        if started.elapsed() > STEP {
            let seen = state.map(|s| {
                let stage = match &s.stage {
                    Stage::Financing(c) => format!("financing at {}", c.lender),
                    other => format!("{other:?}"),
                };
                format!(
                    "{}, {stage}, task {:?}",
                    s.status.label(),
                    s.staff_task.map(|t| t.kind)
                )
            });
            panic!("{what}: the workflow did not get there ({seen:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The patient opens their page and acts at `lender` through its "Continue the application"
/// link, as the sandbox's patients do; retried until that lender's page is there to act on.
async fn act_at(world: &World, case: &Case, page: &Url, lender: Lender) {
    let started = Instant::now();
    loop {
        let actions = world
            .sandbox
            .act_on_link(Some(case.seeded.patient.key), page.as_str())
            .await;
        let acted = actions.iter().any(|a| {
            matches!(a, LinkAction::Lender { lender: l, decision: Some(_), .. } if *l == lender)
        });
        if acted {
            return;
        }
        assert!(
            started.elapsed() < STEP,
            "the patient page never led to {lender:?}: {actions:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the current page has an element matching `css`.
async fn has(client: &Client, css: &str) -> bool {
    !client
        .find_all(Locator::Css(css))
        .await
        .expect("looking for an element")
        .is_empty()
}

/// Clicks the button whose visible text is `label`.
async fn click_button(client: &Client, label: &str) {
    client
        .find(Locator::XPath(&format!(
            "//button[normalize-space()='{label}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("the {label:?} button: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {label:?}: {e}"));
}

/// Waits until the browser is on a page whose path satisfies `at`; returns the URL.
async fn wait_for_path(client: &Client, what: &str, at: impl Fn(&Url) -> bool) -> Url {
    let started = Instant::now();
    loop {
        let url = client.current_url().await.expect("url");
        if at(&url) {
            return url;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: the browser stayed at {}",
            url.path()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patients_and_staff_act_in_a_real_browser() {
    let _one = super::ONE_BROWSER.lock().await;
    // Arrange: a world whose patients only act when the test says, slow reminders, texts in the
    // practices' daytime, a counteroffer stopping for staff.
    let dir = tempfile::tempdir().expect("temporary directory");
    let driver = Chromedriver::start(dir.path());
    let options = WorldOptions {
        sandbox: SandboxConfig {
            patients: PatientSimulation {
                enabled: false,
                ..PatientSimulation::default()
            },
            ..SandboxConfig::default()
        },
        reminder_every: Duration::from_secs(300),
        time_zone: Some(chairside::bench::daytime_zone(chrono::Utc::now())),
        on_partial: PartialApprovalRule::StopForStaff,
        ..WorldOptions::default()
    };
    let link_key = options.link_key.clone();
    let mut world = World::start(dir.path(), options)
        .await
        .expect("world starts");
    let texas = &PRACTICES[0];
    for persona in [
        Persona::NoSmsConsent,
        Persona::InstantApproval,
        Persona::DeclineEverywhere,
        Persona::DeclineEverywhere,
        Persona::PartialApproval,
        Persona::PartialApproval,
    ] {
        world.seed(texas, persona).expect("seeding");
    }
    let cases = world.cases.clone();
    let [texter, expiring, accepting, declining, countered, passed] = cases.as_slice() else {
        unreachable!("six cases seeded");
    };
    let running = world.run();
    let base = world.http_base.clone();
    let link_secret = link_key.clone();
    let links = PatientLinks::new(base.clone(), link_key, LINK_LIFETIME);
    // Generation 0: nothing here revokes a link.
    let page_of = |s: &WorkflowState| links.link(&s.id, 0, chrono::Utc::now());
    let at_sunbit = |s: &WorkflowState| {
        matches!(&s.stage, Stage::Financing(c)
            if c.lender.as_str() == "sunbit"
                && matches!(c.phase, LenderPhase::AwaitingPatient { .. }))
    };
    let applying = |s: &WorkflowState| {
        matches!(&s.stage, Stage::Financing(c)
            if matches!(c.phase, LenderPhase::AwaitingPatient { .. }))
    };
    let patient = driver.session(dir.path(), Some((390, 844))).await;

    // Phase 1: the texts opt-in. The patient has a mobile number and no consent to texts.
    let state = until(&world, texter, "the first application", applying).await;
    let practice = PracticeId::new(texas.id);
    let contact = world
        .store
        .patient(&practice, &state.patient_id)
        .await
        .expect("contact")
        .expect("the patient's contact");
    let phone = contact.mobile_phone.clone().expect("a mobile number");
    let email = contact.email.clone().expect("an email address");
    let texts_to = |world: &World| {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        world
            .sandbox
            .twilio()
            .messages()
            .into_iter()
            .filter(|m| {
                m.to.chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
                    == digits
            })
            .collect::<Vec<_>>()
    };
    let consented = async |world: &World| {
        world
            .store
            .sms_consent(&practice, &phone)
            .await
            .expect("consent record")
            .is_some_and(|r| r.consent.is_some() && !r.opted_out)
    };
    assert!(
        !consented(&world).await,
        "no consent to texts before the patient gives it"
    );
    let page = page_of(&state);
    patient.goto(page.as_str()).await.expect("opening the page");
    let offer = patient
        .find(Locator::Css("a[href$='/texts']"))
        .await
        .expect("the page offers texts to a patient without consent");
    assert_eq!(
        offer.text().await.expect("link text"),
        "Get text messages about your financing"
    );
    offer.click().await.expect("following the texts link");
    let form = text_of(&patient, "form").await;
    assert!(
        form.contains(messaging::PATIENT_PAGE_WORDING),
        "the exact wording beside the box:\n{form}"
    );
    let last4: String = phone
        .chars()
        .filter(char::is_ascii_digit)
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        form.contains(&format!("ending in {last4}")) && !form.contains(&phone),
        "the number's last four digits only:\n{form}"
    );
    // Unticked, the form does not send: the browser enforces `required` and nothing is recorded.
    click_button(&patient, "Text me").await;
    assert!(
        !consented(&world).await,
        "no consent without the box ticked"
    );
    // Again from the page's own link (clears the browser's "please tick" bubble for the picture).
    patient.goto(page.as_str()).await.expect("the page again");
    patient
        .find(Locator::Css("a[href$='/texts']"))
        .await
        .expect("the texts link, still offered")
        .click()
        .await
        .expect("following the texts link");
    patient
        .find(Locator::Css("input[name=agree]"))
        .await
        .expect("the consent box")
        .click()
        .await
        .expect("ticking the box");
    screenshot(&patient, "texts-opt-in.png").await;
    click_button(&patient, "Text me").await;
    wait_for_path(&patient, "after opting in", |u| {
        u.query() == Some("done=1") && u.path().ends_with("/texts")
    })
    .await;
    assert!(
        text_of(&patient, "main").await.contains(&format!(
            "We will text you about your financing at the number ending in {last4}"
        )),
        "the patient is told what happens next"
    );
    let record = world
        .store
        .sms_consent(&practice, &phone)
        .await
        .expect("consent record")
        .expect("the opt-in is on record");
    assert_eq!(record.consent, Some(messaging::ConsentKind::Written));
    assert!(!record.opted_out);
    assert_eq!(record.wording, messaging::PATIENT_PAGE_WORDING);
    assert_eq!(record.recorded_by, "patient");
    let audit = world.store.audit(&state.id).await.expect("audit trail");
    assert!(
        audit
            .iter()
            .any(|a| a.kind == "sms_consent" && a.actor == "patient"),
        "the workflow's audit trail records the opt-in"
    );
    patient.goto(page.as_str()).await.expect("the page again");
    assert!(
        !has(&patient, "a[href$='/texts']").await,
        "no texts offer once the patient agreed"
    );
    // The next message goes by text too: the approval with the deposit's pay link. Before, the
    // application link went by email only, in the practice's daytime.
    let started = Instant::now();
    while world.sandbox.smtp().messages_to(&email).is_empty() {
        assert!(started.elapsed() < STEP, "no application email");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(texts_to(&world).is_empty(), "no text before the opt-in");
    let emails_before = world.sandbox.smtp().messages_to(&email).len();
    act_at(&world, texter, &page, Lender::CareCredit).await;
    let approved = until(&world, texter, "the approval", |s| {
        s.stripe.checkout_url.is_some()
    })
    .await;
    let started = Instant::now();
    while texts_to(&world).is_empty() {
        assert!(started.elapsed() < STEP, "no text after the opt-in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let texts = texts_to(&world);
    // A link to this workflow's patient page (a token of its own, issued with the message).
    let linked = texts.iter().any(|m| {
        sandbox::extract_links(&m.body).iter().any(|l| {
            Url::parse(l).ok().is_some_and(|u| {
                u.port() == base.port()
                    && u.path().starts_with("/p/")
                    && chairside_engine::links::verify_patient_token(
                        u.path().trim_start_matches("/p/"),
                        &link_secret,
                        chrono::Utc::now(),
                    )
                    .is_ok_and(|v| v.workflow == state.id)
            })
        })
    });
    assert!(linked, "the text links to the patient's page");
    assert!(
        world.sandbox.smtp().messages_to(&email).len() > emails_before,
        "the email still goes too"
    );

    // Phase 2: the deposit, paid in the stand-in's checkout.
    let deposit = approved.result.as_ref().expect("a result").deposit;
    patient.goto(page.as_str()).await.expect("the page");
    let session = approved
        .stripe
        .checkout_session_id
        .clone()
        .expect("a checkout session");
    patient
        .find(Locator::Css("a[href$='/pay']"))
        .await
        .expect("the pay button before paying")
        .click()
        .await
        .expect("following the pay button");
    let stripe_base = world.sandbox.urls().stripe.clone();
    let checkout = wait_for_path(&patient, "to checkout", |u| u.port() == stripe_base.port()).await;
    assert_eq!(checkout.path(), format!("/checkout/{session}"));
    assert_eq!(
        text_of(&patient, "#amount").await.replace(',', ""),
        deposit.to_string().replace(',', "")
    );
    click_button(&patient, "Pay").await;
    let landed = wait_for_path(&patient, "after paying", |u| u.path() == "/paid").await;
    assert_eq!(landed.port(), base.port(), "back at Chairside, not a 404");
    let thanks = text_of(&patient, "main").await;
    assert!(
        thanks.contains("Your payment went through") && thanks.contains("Su pago se realizó"),
        "the bilingual thank-you:\n{thanks}"
    );
    until(&world, texter, "the deposit recorded as paid", |s| {
        s.stripe.deposit_paid
    })
    .await;
    patient
        .goto(page.as_str())
        .await
        .expect("the page after paying");
    let paid_page = text_of(&patient, "main").await;
    assert!(
        text_of(&patient, "section.status").await.contains("Paid"),
        "the status says paid:\n{paid_page}"
    );
    assert!(
        has(&patient, "section[aria-labelledby=stripe] p.ok").await,
        "a receipt line:\n{paid_page}"
    );
    assert!(
        !has(&patient, "a[href$='/pay']").await,
        "no pay button once paid"
    );
    screenshot_page(&patient, "deposit-receipt.png").await;
    assert_eq!(
        world.sandbox.stripe().checkout_sessions_per_workflow()[approved.id.as_str()],
        1,
        "paying made no other session"
    );

    // Phase 3: an expired Checkout Session; the pay button makes a fresh one.
    until(&world, expiring, "the second application", applying).await;
    let state = world
        .workflow_of(expiring)
        .await
        .expect("store")
        .expect("workflow");
    let page = page_of(&state);
    act_at(&world, expiring, &page, Lender::CareCredit).await;
    let approved = until(&world, expiring, "the second approval", |s| {
        s.stripe.checkout_url.is_some()
    })
    .await;
    let first = approved
        .stripe
        .checkout_session_id
        .clone()
        .expect("a checkout session");
    let secret = world
        .sandbox
        .config()
        .stripe
        .secret_key
        .expose_secret()
        .to_owned();
    let expired = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
        .post(
            stripe_base
                .join(&format!("v1/checkout/sessions/{first}/expire"))
                .expect("url"),
        )
        .bearer_auth(secret)
        .send()
        .await
        .expect("expiring the session at the stand-in");
    assert!(expired.status().is_success(), "{}", expired.status());
    until(&world, expiring, "the expiry recorded", |s| {
        s.stripe.expired_sessions.contains(&first)
    })
    .await;
    patient.goto(page.as_str()).await.expect("the page");
    assert!(
        !has(&patient, "section[aria-labelledby=stripe] p.ok").await,
        "no receipt: nothing was paid"
    );
    patient
        .find(Locator::Css("a[href$='/pay']"))
        .await
        .expect("the pay button stays after the session expired")
        .click()
        .await
        .expect("following the pay button");
    let fresh = wait_for_path(&patient, "to a fresh checkout", |u| {
        u.port() == stripe_base.port()
    })
    .await;
    let second = fresh
        .path()
        .strip_prefix("/checkout/")
        .expect("a checkout page")
        .to_owned();
    assert_ne!(
        second, first,
        "a fresh Checkout Session, not the expired one"
    );
    let stripe = world.sandbox.stripe();
    assert_eq!(
        stripe.object(&second).expect("the fresh session")["status"],
        "open"
    );
    assert_eq!(
        stripe.object(&first).expect("the old session")["status"],
        "expired"
    );
    assert!(
        has(&patient, "form button").await,
        "the fresh checkout page can be paid"
    );
    let after = until(&world, expiring, "the fresh session recorded", |s| {
        s.stripe.checkout_session_id.as_deref() == Some(second.as_str())
    })
    .await;
    assert!(!after.stripe.deposit_paid);

    // Phase 4: every lender declines; the patient sees the in-house plan and accepts it.
    let mut offered = Vec::new();
    for case in [accepting, declining] {
        let state = until(&world, case, "an application", applying).await;
        let page = page_of(&state);
        act_at(&world, case, &page, Lender::CareCredit).await;
        until(&world, case, "on to Sunbit", at_sunbit).await;
        act_at(&world, case, &page, Lender::Sunbit).await;
        let state = until(&world, case, "the in-house offer", |s| {
            s.result.as_ref().is_some_and(|r| r.in_house.is_some())
                && matches!(s.stage, Stage::OfferingInHouse { .. })
        })
        .await;
        offered.push((state, page));
    }
    let [(accepted, page), (declined, decline_page)] = offered.as_slice() else {
        unreachable!("two offers")
    };
    let schedules = |world: &World, s: &WorkflowState| {
        world
            .sandbox
            .stripe()
            .schedules_per_workflow()
            .get(s.id.as_str())
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        schedules(&world, accepted),
        0,
        "no schedule before accepting"
    );
    patient.goto(page.as_str()).await.expect("the offer page");
    let offer = text_of(&patient, "section[aria-labelledby=offer]").await;
    let plan = accepted
        .result
        .as_ref()
        .and_then(|r| r.in_house.clone())
        .expect("the plan");
    for amount in &plan.installments {
        assert!(
            offer.contains(&amount.to_string()),
            "the installment {amount} among the terms:\n{offer}"
        );
    }
    assert!(
        offer.contains(&plan.installments.len().to_string()),
        "how many installments:\n{offer}"
    );
    let terms = text_of(&patient, "section[aria-labelledby=offer] p.terms").await;
    assert!(!terms.is_empty(), "the plan's terms in words");
    assert!(
        !has(&patient, "a[href$='/pay']").await,
        "nothing to pay before the patient accepts"
    );
    screenshot_page(&patient, "in-house-offer.png").await;
    click_button(&patient, "Accept the payment plan").await;
    let done = until(&world, accepting, "the acceptance applied", |s| {
        s.in_house_acceptance.is_some() && schedules(&world, s) == 1
    })
    .await;
    let wording = &done.in_house_acceptance.as_ref().expect("accepted").wording;
    assert!(
        wording.starts_with("Accept the payment plan") && wording.contains(&terms),
        "the exact wording the patient saw is recorded: {wording}"
    );
    assert_eq!(schedules(&world, &done), 1, "one subscription schedule");
    patient
        .goto(page.as_str())
        .await
        .expect("the page after accepting");
    assert!(
        !has(&patient, "section[aria-labelledby=offer]").await,
        "the offer's buttons are gone once accepted"
    );

    // ... and another patient says "No thanks": a staff task, nothing at Stripe.
    patient
        .goto(decline_page.as_str())
        .await
        .expect("the other offer page");
    click_button(&patient, "No thanks").await;
    let turned_down = until(&world, declining, "the decline applied", |s| {
        s.status == Status::WaitingOnStaff
    })
    .await;
    assert_eq!(
        turned_down.staff_task.as_ref().map(|t| t.kind),
        Some(TaskKind::NoFinancing),
        "staff are asked to call the patient"
    );
    assert!(turned_down.in_house_acceptance.is_none());
    assert_eq!(schedules(&world, declined), 0, "nothing created at Stripe");

    // Phase 5: counteroffers, on the dashboard.
    for case in [countered, passed] {
        let state = until(&world, case, "an application", applying).await;
        act_at(&world, case, &page_of(&state), Lender::CareCredit).await;
        until(&world, case, "the counteroffer task", |s| {
            s.staff_task
                .as_ref()
                .is_some_and(|t| t.kind == TaskKind::Counteroffer)
        })
        .await;
    }
    let staff = super::sign_in(&driver, dir.path(), &base, &world, &practice).await;
    let tasks = text_of(&staff, "section[aria-labelledby=tasks]").await;
    assert!(
        tasks.matches("Counteroffer to discuss").count() == 2,
        "both counteroffers wait on staff:\n{tasks}"
    );
    assert!(
        tasks.contains("No financing found"),
        "the declined plan is a task on the dashboard:\n{tasks}"
    );
    super::fit_height(&staff, 1280).await;
    screenshot(&staff, "counteroffer-dashboard.png").await;
    let countered_state = world
        .workflow_of(countered)
        .await
        .expect("store")
        .expect("workflow");
    let sunbit_before = world.sandbox.requests(System::Sunbit).len();
    task_button(
        &staff,
        &countered_state,
        "Accept counteroffer (remainder in house)",
    )
    .await;
    wait_for_path(&staff, "back on the dashboard", |u| u.path() == "/staff").await;
    let taken = until(&world, countered, "the counteroffer taken", |s| {
        s.result
            .as_ref()
            .is_some_and(|r| r.financed.is_some() && r.in_house.is_some())
            && matches!(s.stage, Stage::OfferingInHouse { .. })
    })
    .await;
    let result = taken.result.as_ref().expect("a result");
    let (lender, financed) = result.financed.clone().expect("financed");
    assert_eq!(lender, LenderId::new("carecredit"));
    let remainder = result.in_house.as_ref().expect("the remainder").total;
    let portion = taken.split.expect("split").patient_portion;
    assert!(
        financed.minor() > 0 && remainder.minor() > 0,
        "the lender's amount and a remainder"
    );
    assert!(
        financed.minor() + remainder.minor() <= portion.minor(),
        "the lender's amount and the remainder stay within the patient's portion"
    );
    patient
        .goto(page_of(&taken).as_str())
        .await
        .expect("the countered patient's page");
    let financing = text_of(&patient, "section[aria-labelledby=financing]").await;
    assert!(
        financing.contains("CareCredit") && financing.contains(&financed.to_string()),
        "the lender's part on the page:\n{financing}"
    );
    let offer = text_of(&patient, "section[aria-labelledby=offer]").await;
    let plan = result.in_house.as_ref().expect("plan");
    assert!(
        offer.contains(&plan.installments[0].to_string()),
        "the remainder offered in house:\n{offer}"
    );

    // "Try the next lender": Sunbit's application starts; the counteroffer stays on record.
    let passed_state = world
        .workflow_of(passed)
        .await
        .expect("store")
        .expect("workflow");
    staff
        .goto(base.join("staff").expect("url").as_str())
        .await
        .expect("the dashboard");
    task_button(&staff, &passed_state, "Try the next lender").await;
    wait_for_path(&staff, "back on the dashboard", |u| u.path() == "/staff").await;
    let moved = until(&world, passed, "Sunbit asked", at_sunbit).await;
    assert!(
        moved
            .passed_counteroffers
            .contains(&LenderId::new("carecredit"))
    );
    assert!(
        moved
            .attempts
            .iter()
            .any(|a| a.lender.as_str() == "carecredit"),
        "CareCredit's counteroffer stays in the record"
    );
    assert!(
        world
            .sandbox
            .requests(System::Sunbit)
            .iter()
            .skip(sunbit_before)
            .any(|r| r.path.ends_with("/online-link")),
        "Sunbit's stand-in was asked for an application"
    );
    patient
        .goto(page_of(&moved).as_str())
        .await
        .expect("the passed patient's page");
    let started = Instant::now();
    loop {
        if has(&patient, "section[aria-labelledby=apply]").await {
            break;
        }
        assert!(
            started.elapsed() < STEP,
            "the page never offered Sunbit's application"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        patient.refresh().await.expect("reloading");
    }
    assert!(
        text_of(&patient, "section[aria-labelledby=apply]")
            .await
            .contains("Sunbit"),
        "the next lender, by name"
    );

    staff.close().await.expect("closing the staff session");
    patient.close().await.expect("closing the patient session");
    running.stop().await.expect("the runner's loops");
    drop(driver);
    world.stop().await;
}

/// Clicks `label` in the dashboard's task row of `state`'s workflow.
async fn task_button(staff: &Client, state: &WorkflowState, label: &str) {
    let xpath = format!(
        "//section[@aria-labelledby='tasks']//tr[.//a[contains(@href, '/staff/workflows/{}')]]\
         //button[normalize-space()='{label}']",
        state.id
    );
    staff
        .find(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("{label:?} on the workflow's task row: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {label:?}: {e}"));
}
