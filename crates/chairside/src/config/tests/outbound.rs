//! `[outbound]` and `[[outbound.webhooks]]`: the example's endpoint, the defaults, and every
//! mistake at its path without the secret.

use super::*;
use chairside_engine::outbound::events::EventType;

fn with_outbound(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}")
}

#[test]
fn the_examples_webhook_endpoint_is_read_with_its_events_and_retry_bound() {
    let config = load(EXAMPLE, &env_with(&[])).expect("the example is valid");
    let o = &config.outbound;
    assert_eq!(o.max_attempts, 12);
    assert_eq!(o.first_retry, Duration::from_secs(5));
    assert_eq!(o.max_retry_delay, Duration::from_secs(3600));
    assert_eq!(o.webhooks.len(), 1);
    let hook = &o.webhooks[0];
    assert_eq!(hook.name, "billing");
    assert_eq!(hook.url.as_str(), "https://hooks.billing.example/chairside");
    assert_eq!(
        hook.events.as_deref(),
        Some(
            &[
                EventType::FinancingDecided,
                EventType::NeedsStaff,
                EventType::PaymentReceived
            ][..]
        )
    );
    assert_eq!(hook.practices, None);
    assert!(
        !format!("{config:?}").contains("U0VDUkVU"),
        "the secret never shows"
    );
}

#[test]
fn without_an_outbound_section_there_are_no_endpoints() {
    let config = load(MINIMAL, &env_with(&[])).expect("valid");
    assert!(config.outbound.webhooks.is_empty());
    assert_eq!(config.outbound.max_attempts, 12);
}

#[test]
fn each_webhook_mistake_is_reported_at_its_path_without_the_secret() {
    let text = with_outbound(
        r#"
[outbound]
max_attempts = 0
first_retry = "2h"
max_retry_delay = "1h"

[[outbound.webhooks]]
name = "billing"
url = "http://hooks.example/"
secret_env = "SHORT_SECRET"
events = ["financing.decided", "plan.approved"]
practices = ["smile", "nowhere"]

[[outbound.webhooks]]
name = "billing"
url = "https://hooks.example/"
secret_env = "GOOD_SECRET"
colour = "blue"
"#,
    );
    let env = env_with(&[
        ("SHORT_SECRET", "whsec_c2hvcnQtU0VDUkVU"),
        (
            "GOOD_SECRET",
            "whsec_U0VDUkVULXdlYmhvb2stMDEyMzQ1Njc4OWFiY2RlZg==",
        ),
    ]);
    let report = load(&text, &env).expect_err("invalid");
    for path in [
        "outbound.max_attempts",
        "outbound.first_retry",
        "outbound.webhooks[0].url",
        "outbound.webhooks[0].secret_env",
        "outbound.webhooks[0].events[1]",
        "outbound.webhooks[0].practices[1]",
        "outbound.webhooks[1].name",
        "outbound.webhooks[1].colour",
    ] {
        problem_for(&report, path);
    }
    assert!(
        problem_for(&report, "outbound.webhooks[0].events[1]")
            .message
            .contains("financing.decided")
    );
    assert!(
        problem_for(&report, "outbound.webhooks[0].secret_env")
            .message
            .contains("24 to 64")
    );
    let all = report.to_string();
    assert!(!all.contains("c2hvcnQ"), "no secret in {all}");
}

#[test]
fn a_webhook_without_a_secret_is_reported() {
    let text = with_outbound(
        r#"
[[outbound.webhooks]]
name = "crm"
url = "https://hooks.example/"
"#,
    );
    let report = load(&text, &env_with(&[])).expect_err("invalid");
    problem_for(&report, "outbound.webhooks[0].secret_env");
}

#[test]
fn the_examples_hubspot_section_is_read_with_its_stages_and_amounts_off() {
    let config = load(EXAMPLE, &env_with(&[])).expect("the example is valid");
    let h = config.outbound.hubspot.as_ref().expect("the example's CRM");
    assert_eq!(h.base_url.as_str(), "https://api.hubapi.com/");
    assert_eq!(h.deal_id_property, "chairside_workflow_id");
    assert!(!h.amounts);
    assert_eq!(h.stages.declined.as_str(), "decisionmakerboughtin");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&h.token),
        "SECRET_hubspot_token"
    );
    assert!(!format!("{config:?}").contains("SECRET_hubspot_token"));
}

#[test]
fn hubspot_mistakes_are_reported_at_their_paths() {
    let text = with_outbound(
        r#"
[outbound.hubspot]
amounts = "maybe"
practices = ["elsewhere"]

[outbound.hubspot.stages]
applying = "appointmentscheduled"
financed = ""
"#,
    );
    let report = load(&text, &env_with(&[])).expect_err("invalid");
    for path in [
        "outbound.hubspot.token_env",
        "outbound.hubspot.amounts",
        "outbound.hubspot.practices[0]",
        "outbound.hubspot.stages.not_converted",
        "outbound.hubspot.stages.financed",
        "outbound.hubspot.stages.declined",
        "outbound.hubspot.stages.paid",
    ] {
        problem_for(&report, path);
    }
}

#[test]
fn a_waterfall_may_name_a_plug_in_lender_only_when_the_embedding_program_provides_it() {
    let text = MINIMAL.replace(
        r#"order = ["carecredit"]"#,
        r#"order = ["acme-credit", "carecredit"]"#,
    );
    let refused = load(&text, &env_with(&[])).expect_err("no plug-in given");
    assert!(
        problem_for(&refused, "practices[0].lenders.order[0]")
            .message
            .contains("unknown lender")
    );
    let config = Config::from_toml_with_plugins(
        &text,
        Path::new("/etc/chairside"),
        &env_with(&[]),
        &[LenderId::new("acme-credit")],
    )
    .expect("the plug-in is provided");
    assert_eq!(
        config.practices[0].lenders.order,
        [LenderId::new("acme-credit"), LenderId::new("carecredit")]
    );
}
