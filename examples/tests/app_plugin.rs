//! A plug-in lender placed in a running waterfall through `chairside::app::build`: the embedding
//! program hands the made-up "Acme" lender in `Extras`, the practice's waterfall names it first,
//! and the real runner (real clients, the sandbox's stand-ins on loopback) has it decide the plan.

use std::sync::Arc;
use std::time::Duration;

use chairside::app::{Extras, build};
use chairside::demo::world::{WorldOptions, demo_config, demo_extras};
use chairside_examples::third_lender::AcmeLender;
use chairside_http::Metrics;
use chairside_workflow::Status;
use financing_core::{LenderId, Money, PracticeId};
use sandbox::{Persona, Pms, Sandbox, SandboxConfig};

#[tokio::test]
async fn a_plug_in_lender_given_to_app_build_decides_a_plan_inside_the_real_runner() {
    // Arrange: the Open Dental demo practice asks Acme before anyone else.
    let sandbox = Sandbox::start(SandboxConfig::default())
        .await
        .expect("sandbox");
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = "127.0.0.1:9".parse().expect("address");
    let mut config = demo_config(
        dir.path(),
        &WorldOptions::default(),
        listen,
        sandbox.urls(),
        sandbox.config(),
    )
    .expect("config");
    let practice = PracticeId::new("golden-gate-dental");
    let acme_id = LenderId::new("acme-credit");
    for p in &mut config.practices {
        if p.id == practice {
            p.lenders.order.insert(0, acme_id.clone());
        }
    }
    let acme = Arc::new(AcmeLender::new(Money::usd(500_000)));
    let extras = Extras {
        lenders: vec![(acme_id.clone(), acme.clone())],
        ..demo_extras()
    };
    let service = build(&config, extras, Metrics::local())
        .await
        .expect("the plug-in satisfies the waterfall");
    // The install's first poll takes its baseline: a fresh install starts from now.
    service
        .runner
        .poll()
        .await
        .expect("the install's first poll");
    let case = sandbox
        .seed_persona(Pms::OpenDental, Persona::InstantApproval)
        .expect("seed");
    sandbox.accept_plan(case.plan.key).expect("accept");

    // Act: the runner's own loop, until the workflow leaves Active.
    let started = std::time::Instant::now();
    let state = loop {
        service.runner.poll().await.expect("poll");
        service.runner.tick().await.expect("tick");
        let rows = service
            .store
            .workflows(Some(&practice), None, 10)
            .await
            .expect("rows");
        if let Some(row) = rows.into_iter().find(|r| r.state.status != Status::Active) {
            break row.state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the workflow did not settle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Assert: Acme financed it, and no other lender was asked.
    assert_eq!(state.status, Status::Done, "{state:?}");
    let result = state.result.as_ref().expect("a financing result");
    assert_eq!(result.financed.as_ref().map(|(l, _)| l), Some(&acme_id));
    assert_eq!(acme.applications_opened(), 1);
    assert_eq!(state.attempts.len(), 1, "Acme was the first and last asked");
    sandbox.stop().await;
}
