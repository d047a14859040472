//! Tests of the configuration: the example parses, every problem is reported with its path, and
//! secrets never show.

use std::path::Path;
use std::time::Duration;

use financing_core::{
    DepositRule, IntervalUnit, LenderId, Money, PartialApprovalRule, PracticeId, UsState,
};
use secrecy::ExposeSecret;

use super::duration::parse_duration;
use super::values::parse_deposit;
use super::*;

const EXAMPLE: &str = include_str!("../../../../docs/chairside.example.toml");

const DATA_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const LINK_KEY: &str = "link-key-SECRET-0123456789abcdef0123456789";

/// Every variable the example refers to, with values that are easy to spot if they leak.
fn example_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CHAIRSIDE_DATA_KEY", DATA_KEY),
        ("CHAIRSIDE_PATIENT_LINK_KEY", LINK_KEY),
        ("STRIPE_API_KEY", "sk_test_SECRET_stripe"),
        (
            "STRIPE_WEBHOOK_SECRETS",
            "whsec_SECRET_one, whsec_SECRET_two",
        ),
        ("TWILIO_AUTH_TOKEN", "SECRET_twilio_token"),
        ("DENTRIX_CLIENT_SECRET", "SECRET_dentrix"),
        ("CARECREDIT_CLIENT_SECRET", "SECRET_carecredit"),
        ("SUNBIT_API_KEY", "SECRET_sunbit_key"),
        ("SUNBIT_API_SECRET", "SECRET_sunbit_secret"),
        ("SUNBIT_WEBHOOK_SECRET", "SECRET_sunbit_hook"),
        ("SMTP_PASSWORD", "SECRET_smtp"),
        (
            "CHAIRSIDE_WEBHOOK_BILLING_SECRET",
            "whsec_U0VDUkVULXdlYmhvb2stMDEyMzQ1Njc4OWFiY2RlZg==",
        ),
        ("HUBSPOT_PRIVATE_APP_TOKEN", "SECRET_hubspot_token"),
    ]
}

fn env_with(extra: &[(&'static str, &'static str)]) -> Environment {
    let mut vars = example_env();
    vars.extend_from_slice(extra);
    Environment::from_pairs(vars)
}

fn load(text: &str, env: &Environment) -> Result<Config, ConfigReport> {
    Config::from_toml(text, Path::new("/etc/chairside"), env)
}

/// A small valid configuration: one Open Dental practice in Texas, CareCredit only, email only.
const MINIMAL: &str = r#"
[store]
data_key_env = "CHAIRSIDE_DATA_KEY"

[http]
public_base_url = "https://pay.example.test/"
patient_link_key_env = "CHAIRSIDE_PATIENT_LINK_KEY"

[stripe]
api_key_env = "STRIPE_API_KEY"
webhook_secrets_env = "STRIPE_WEBHOOK_SECRETS"

[[practices]]
id = "smile"
name = "Smile Dental"
state = "TX"
time_zone = "America/Chicago"
location_id = "smile-main"
phone = "+1 512 555 0100"
email = "frontdesk@smile.example"

[practices.pms]
kind = "opendental"
developer_key_env = "DENTRIX_CLIENT_SECRET"
customer_key_env = "SMTP_PASSWORD"

[practices.lenders]
order = ["carecredit"]

[practices.lenders.carecredit]
base_url = "https://cc.example.test/"
client_id = "chairside"
client_secret_env = "CARECREDIT_CLIENT_SECRET"
partner_code = "CHAIRSIDE"
merchant_number = "5348120000000001"

[practices.smtp]
host = "smtp.smile.example"
from = "frontdesk@smile.example"
"#;

mod link_lenders;
mod outbound;

fn problem_for<'r>(report: &'r ConfigReport, path: &str) -> &'r Problem {
    report
        .problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path}; got:\n{report}"))
}

#[test]
fn the_documented_example_parses_into_typed_sections() {
    // Arrange
    let env = env_with(&[]);

    // Act
    let config = load(EXAMPLE, &env).unwrap_or_else(|r| panic!("example refused:\n{r}"));

    // Assert
    assert_eq!(
        config.store.path,
        Path::new("/var/lib/chairside/chairside.sqlite")
    );
    assert!(config.store.data_key().is_ok());
    assert_eq!(config.runner.owner, "chairside-1");
    assert_eq!(config.runner.poll_interval, Duration::from_secs(30));
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.http.staff.len(), 1);
    assert_eq!(config.stripe.webhook_secrets.len(), 2);
    assert_eq!(
        config.stripe.webhook_secrets[1].expose_secret(),
        "whsec_SECRET_two"
    );
    let twilio = config.twilio.as_ref().expect("twilio configured");
    assert!(matches!(
        twilio.sender,
        messaging::SmsFrom::MessagingService(_)
    ));

    let practice = &config.practices[0];
    assert_eq!(practice.id, PracticeId::new("lone-star-dental"));
    assert_eq!(practice.state, UsState::TX);
    assert_eq!(practice.time_zone, chrono_tz::America::Chicago);
    assert_eq!(practice.pms.kind(), "dentrix");
    let PmsSettings::Dentrix(dentrix) = &practice.pms else {
        panic!("dentrix expected")
    };
    assert_eq!(dentrix.client_secret.expose_secret(), "SECRET_dentrix");
    assert_eq!(
        practice.lenders.order,
        vec![
            LenderId::new("carecredit"),
            LenderId::new("sunbit"),
            LenderId::new("cherry")
        ]
    );
    let cherry = &practice.lenders.link_only[0];
    assert_eq!(cherry.lender.id(), "cherry");
    assert_eq!(cherry.decide_within, Duration::from_secs(3 * 86_400));
    let cc = practice.lenders.carecredit.as_ref().expect("carecredit");
    assert_eq!(cc.merchant_number.as_str(), "5348120000000001");
    assert_eq!(cc.limits.min, Some(Money::usd(20_000)));
    let smtp = practice.smtp.as_ref().expect("smtp");
    assert_eq!(smtp.port, 587);
    assert!(smtp.smtp_config().credentials.is_some());

    let workflow = config.workflow_config(practice);
    assert_eq!(workflow.deposit, DepositRule::BasisPoints(1_000));
    assert_eq!(workflow.waterfall.slots().len(), 3);
    assert_eq!(
        workflow.waterfall.policy().on_partial,
        PartialApprovalRule::ContinueForFullCoverage
    );
    let in_house = workflow.in_house.expect("in-house plan offered");
    assert_eq!(in_house.installments, 6);
    assert_eq!(in_house.interval.unit, IntervalUnit::Month);
    assert_eq!(in_house.deposit, DepositRule::None);
    assert_eq!(
        workflow.reminder_delays,
        vec![Duration::from_secs(86_400), Duration::from_secs(3 * 86_400)]
    );
    assert_eq!(workflow.poll_interval, Duration::from_secs(15 * 60));

    let profile = config.practice_profile(practice);
    assert_eq!(profile.time_zone, "America/Chicago");
    assert_eq!(profile.location_id.as_str(), "lone-star-main");
    assert!(!config.policy_settings(practice).prefill_approved_by_counsel);

    let http = config.http_config();
    assert_eq!(http.validate(), Ok(()));
    assert_eq!(http.webhook_secrets.stripe.len(), 2);
    assert_eq!(
        http.webhook_secrets.sunbit[&PracticeId::new("lone-star-dental")].len(),
        1
    );
    assert_eq!(http.webhook_secrets.twilio.len(), 1);
    assert_eq!(config.runner_config().concurrency, 16);
}

#[test]
fn a_minimal_configuration_takes_the_documented_defaults() {
    // Act
    let config = load(MINIMAL, &env_with(&[])).unwrap_or_else(|r| panic!("{r}"));

    // Assert
    assert_eq!(
        config.store.path,
        Path::new("/etc/chairside/chairside.sqlite")
    );
    assert_eq!(config.runner.lease, Duration::from_secs(60));
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        config.http.patient_link_lifetime,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(config.stripe.base_url.as_str(), "https://api.stripe.com/");
    assert!(config.twilio.is_none());
    let p = &config.practices[0];
    let PmsSettings::OpenDental(od) = &p.pms else {
        panic!("opendental expected")
    };
    assert_eq!(
        od.acceptance,
        opendental_client::AcceptanceRule::SignedSaved
    );
    assert!(
        od.base_url
            .as_str()
            .starts_with("https://api.opendental.com/")
    );
    assert_eq!(p.payments.deposit, DepositRule::None);
    assert_eq!(p.payments.installments, 6);
    assert_eq!(p.lenders.on_partial, PartialApprovalRule::StopForStaff);
    assert!(p.lenders.in_house_fallback);
    assert_eq!(p.reminders.give_up_after, Duration::from_secs(2 * 86_400));
    assert!(p.sms_sender(config.twilio.as_ref()).is_none());
    assert!(!p.policy.prefill_approved_by_counsel);
}

#[test]
fn five_distinct_problems_are_all_reported_with_their_paths() {
    // Arrange: a second practice with five mistakes, and a variable that is not set.
    let text = format!(
        "{MINIMAL}{}",
        r#"
[[practices]]
id = "mars"
name = "Mars Dental"
state = "TX"
time_zone = "Mars/Base"
location_id = "mars-main"
phone = "+1 512 555 0199"
email = "frontdesk@mars.example"

[practices.pms]
kind = "nexhealth"
api_key_env = "NEXHEALTH_API_KEY"
subdomain = "mars"
location_id = "1"

[practices.lenders]
order = ["carecredit", "sunbit", "affirm"]

[practices.lenders.carecredit]
base_url = "https://cc.example.test/"
client_id = "chairside"
client_secret_env = "CARECREDIT_CLIENT_SECRET"
partner_code = "CHAIRSIDE"
merchant_number = "12345"

[practices.lenders.sunbit]
base_url = "https://sunbit.example.test/"
key_env = "SUNBIT_API_KEY"
secret_env = "SUNBIT_API_SECRET"
location = "mars"

[practices.payments]
deposit = "twenty percent"

[practices.smtp]
host = "smtp.mars.example"
from = "frontdesk@mars.example"
"#
    );

    // Act
    let report = load(&text, &env_with(&[])).expect_err("five problems");

    // Assert
    let mut paths = report.paths();
    paths.sort_unstable();
    assert_eq!(
        paths,
        vec![
            "practices[1].lenders.carecredit.merchant_number",
            "practices[1].lenders.order[2]",
            "practices[1].payments.deposit",
            "practices[1].pms.api_key_env",
            "practices[1].time_zone",
        ],
        "{report}"
    );
    assert_eq!(
        problem_for(&report, "practices[1].time_zone").message,
        "'Mars/Base': expected an IANA zone like America/Chicago"
    );
    assert!(
        problem_for(&report, "practices[1].lenders.order[2]")
            .message
            .starts_with(
                "unknown lender 'affirm': configure [practices.lenders.affirm] or remove it from the order"
            )
    );
    assert_eq!(
        problem_for(&report, "practices[1].pms.api_key_env").message,
        "env var NEXHEALTH_API_KEY is not set"
    );
    assert!(
        problem_for(&report, "practices[1].lenders.carecredit.merchant_number")
            .message
            .contains("16 digits")
    );
    assert!(
        problem_for(&report, "practices[1].payments.deposit")
            .message
            .contains("\"20%\"")
    );
    assert_eq!(report.to_string().lines().count(), 5);
}

#[test]
fn secrets_never_appear_in_debug_output_or_in_problem_reports() {
    // Arrange
    let env = env_with(&[]);
    let config = load(EXAMPLE, &env).unwrap_or_else(|r| panic!("{r}"));
    let leaky = MINIMAL
        .replace(
            "api_key_env = \"STRIPE_API_KEY\"",
            "api_key = \"sk_live_PASTED_BY_MISTAKE\"",
        )
        .replace(
            "data_key_env = \"CHAIRSIDE_DATA_KEY\"",
            "data_key_env = \"SHORT_KEY\"",
        );
    let short = env_with(&[("SHORT_KEY", "SECRET_too_short_for_a_key")]);

    // Act
    let shown = format!("{config:?}");
    let report = load(&leaky, &short).expect_err("two problems");
    let reported = format!("{report}\n{report:?}");

    // Assert
    for (name, value) in example_env() {
        for part in value.split(", ") {
            assert!(!shown.contains(part), "{name} leaked into Debug");
        }
    }
    assert!(!shown.contains("$argon2id$"), "password hash leaked");
    assert!(shown.contains("<redacted>"));
    assert!(shown.contains("lone-star-dental"), "non-secrets still show");
    assert!(!reported.contains("PASTED_BY_MISTAKE"));
    assert!(!reported.contains("SECRET_too_short"));
    assert_eq!(report.paths(), vec!["store.data_key_env", "stripe.api_key"]);
    assert!(
        problem_for(&report, "stripe.api_key")
            .message
            .contains("api_key_env")
    );
    assert!(format!("{env:?}").contains("vars"));
    assert!(!format!("{env:?}").contains("SECRET"));
}

#[test]
fn environment_overrides_replace_values_and_name_their_variable_in_problems() {
    // Arrange
    let env = env_with(&[
        ("CHAIRSIDE_STORE__PATH", "/data/override.sqlite"),
        ("CHAIRSIDE_HTTP__LISTEN", "0.0.0.0:9090"),
        ("CHAIRSIDE_RUNNER__CONCURRENCY", "4"),
        (
            "CHAIRSIDE_PRACTICES__0__LENDERS__IN_HOUSE_FALLBACK",
            "false",
        ),
        ("CHAIRSIDE_PRACTICES__0__PAYMENTS__DEPOSIT", "150.00"),
        ("CHAIRSIDE_STRIPE__API_KEY", "sk_test_FROM_ENVIRONMENT"),
        ("CHAIRSIDE_CONFIG", "/not/an/override.toml"),
    ]);

    // Act
    let config = load(MINIMAL, &env).unwrap_or_else(|r| panic!("{r}"));

    // Assert
    assert_eq!(config.store.path, Path::new("/data/override.sqlite"));
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9090");
    assert_eq!(config.runner.concurrency, 4);
    let p = &config.practices[0];
    assert!(!p.lenders.in_house_fallback);
    assert!(p.in_house_terms().is_none());
    assert_eq!(p.payments.deposit, DepositRule::Fixed(Money::usd(15_000)));
    assert_eq!(
        config.stripe.api_key.expose_secret(),
        "sk_test_FROM_ENVIRONMENT",
        "a secret set by an override comes from the environment, so it is accepted"
    );
}

#[test]
fn bad_environment_overrides_are_reported_against_the_variable() {
    // Arrange
    let env = env_with(&[
        ("CHAIRSIDE_HTTP__LISTEN", "everywhere"),
        (
            "CHAIRSIDE_PRACTICES__0__LENDERS__ORDER",
            "sunbit,carecredit",
        ),
        ("CHAIRSIDE_PRACTICES__3__PHONE", "+15125550100"),
        ("CHAIRSIDE_STORE__COLOUR", "blue"),
    ]);

    // Act
    let report = load(MINIMAL, &env).expect_err("problems");

    // Assert
    assert!(
        problem_for(&report, "http.listen")
            .message
            .ends_with("(set by env var CHAIRSIDE_HTTP__LISTEN)"),
        "{report}"
    );
    assert!(
        problem_for(&report, "practices[0].lenders.order[0]")
            .message
            .contains("unknown lender 'sunbit'")
    );
    assert!(
        problem_for(&report, "CHAIRSIDE_PRACTICES__3__PHONE")
            .message
            .contains("no entry 3")
    );
    assert!(
        problem_for(&report, "store.colour")
            .message
            .contains("CHAIRSIDE_STORE__COLOUR")
    );
}

#[test]
fn secrets_are_read_from_files_relative_to_the_configuration() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/data_key"), format!("{DATA_KEY}\n")).expect("write");
    let text = MINIMAL.replace(
        "data_key_env = \"CHAIRSIDE_DATA_KEY\"",
        "data_key_file = \"secrets/data_key\"",
    );
    let path = dir.path().join("chairside.toml");
    std::fs::write(&path, &text).expect("write config");
    let missing = MINIMAL.replace(
        "data_key_env = \"CHAIRSIDE_DATA_KEY\"",
        "data_key_file = \"secrets/nowhere\"",
    );

    // Act
    let config = Config::load_with(&path, &env_with(&[])).unwrap_or_else(|r| panic!("{r}"));
    let report = Config::from_toml(&missing, dir.path(), &env_with(&[])).expect_err("missing");

    // Assert
    assert_eq!(config.store.data_key.expose_secret(), DATA_KEY);
    assert_eq!(config.store.path, dir.path().join("chairside.sqlite"));
    let p = problem_for(&report, "store.data_key_file");
    assert!(p.message.contains("no such file"), "{}", p.message);
}

#[test]
fn a_secret_given_both_ways_or_not_at_all_is_reported() {
    // Arrange
    let both = MINIMAL.replace(
        "data_key_env = \"CHAIRSIDE_DATA_KEY\"",
        "data_key_env = \"CHAIRSIDE_DATA_KEY\"\ndata_key_file = \"key\"",
    );
    let none = MINIMAL.replace("data_key_env = \"CHAIRSIDE_DATA_KEY\"", "");
    let empty = env_with(&[("EMPTY", "  ")]);
    let blank = MINIMAL.replace(
        "api_key_env = \"STRIPE_API_KEY\"",
        "api_key_env = \"EMPTY\"",
    );

    // Act
    let both = load(&both, &env_with(&[])).expect_err("both");
    let none = load(&none, &env_with(&[])).expect_err("none");
    let blank = load(&blank, &empty).expect_err("blank");

    // Assert
    assert!(
        problem_for(&both, "store.data_key_env")
            .message
            .contains("not both")
    );
    assert!(
        problem_for(&none, "store.data_key_env")
            .message
            .starts_with("missing")
    );
    assert_eq!(
        problem_for(&blank, "stripe.api_key_env").message,
        "env var EMPTY is empty"
    );
}

#[test]
fn unknown_keys_are_reported_with_a_suggestion() {
    // Arrange
    let text = MINIMAL.replace("time_zone = ", "time_zon = ") + "\n[runner]\nfrobnicate = 1\n";

    // Act
    let report = load(&text, &env_with(&[])).expect_err("problems");

    // Assert
    assert_eq!(
        problem_for(&report, "practices[0].time_zon").message,
        "unknown key; did you mean 'time_zone'?"
    );
    assert!(
        problem_for(&report, "practices[0].time_zone")
            .message
            .starts_with("missing")
    );
    assert!(
        problem_for(&report, "runner.frobnicate")
            .message
            .contains("lease_secs")
    );
}

#[test]
fn lender_order_mistakes_each_get_their_own_explanation() {
    // Arrange
    let text = MINIMAL.replace(
        "order = [\"carecredit\"]",
        "order = [\"carecredit\", \"inhouse\", \"carecredit\", \"sunbit\", 7]",
    );

    // Act
    let report = load(&text, &env_with(&[])).expect_err("problems");

    // Assert: order[4] is not a string, so the list is refused before its entries are judged.
    assert_eq!(report.paths(), vec!["practices[0].lenders.order[4]"]);

    let text = MINIMAL.replace(
        "order = [\"carecredit\"]",
        "order = [\"carecredit\", \"inhouse\", \"carecredit\", \"sunbit\"]",
    );
    let report = load(&text, &env_with(&[])).expect_err("problems");
    assert!(
        problem_for(&report, "practices[0].lenders.order[1]")
            .message
            .contains("in_house_fallback = true")
    );
    assert!(
        problem_for(&report, "practices[0].lenders.order[2]")
            .message
            .contains("twice")
    );
    assert_eq!(
        problem_for(&report, "practices[0].lenders.order[3]").message,
        "unknown lender 'sunbit': configure [practices.lenders.sunbit] or remove it from the order"
    );
}

#[test]
fn field_checks_cover_urls_keys_accounts_and_mail_security() {
    // Arrange
    let text = MINIMAL
        .replace("https://pay.example.test/", "http://pay.example.test/")
        .replace(
            "host = \"smtp.smile.example\"",
            "host = \"smtp.smile.example\"\nsecurity = \"none\"",
        )
        .replace("state = \"TX\"", "state = \"ZZ\"")
        .replace("\nid = \"smile\"", "\nid = \"smile dental\"")
        + r#"
[[http.staff]]
username = "maria"
practice = "nowhere"
password_hash = "hunter2"

[[http.staff]]
username = "maria"
practice = "smile"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
"#;
    let env = env_with(&[("STRIPE_API_KEY", "pk_test_publishable")]);

    // Act
    let report = load(&text, &env).expect_err("problems");

    // Assert
    let expect = [
        ("http.public_base_url", "expected https"),
        ("practices[0].smtp.security", "127.0.0.1"),
        ("practices[0].state", "two-letter"),
        ("practices[0].id", "letters, digits"),
        ("http.staff[0].password_hash", "chairside hash-password"),
        ("http.staff[1].username", "already used by http.staff[0]"),
        ("stripe.api_key_env", "sk_"),
    ];
    for (path, words) in expect {
        let p = problem_for(&report, path);
        assert!(p.message.contains(words), "{path}: {}", p.message);
    }
}

#[test]
fn a_staff_hash_below_the_owasp_argon2id_floor_is_a_problem_naming_the_account_not_the_hash() {
    // Arrange
    let text = MINIMAL.to_owned()
        + r#"
[[http.staff]]
username = "maria"
practice = "smile"
password_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
"#;
    let env = env_with(&[]);

    // Act
    let report = load(&text, &env).expect_err("problems");

    // Assert
    let p = problem_for(&report, "http.staff[0].password_hash");
    assert!(p.message.contains("OWASP"), "{}", p.message);
    assert!(p.message.contains("maria"), "{}", p.message);
    assert!(!p.message.contains("c2FsdHNhbHQ"), "{}", p.message);
}

#[test]
fn a_practice_without_email_or_texts_cannot_reach_patients() {
    // Arrange
    let text = MINIMAL.replace(
        "[practices.smtp]\nhost = \"smtp.smile.example\"\nfrom = \"frontdesk@smile.example\"\n",
        "",
    );

    // Act
    let report = load(&text, &env_with(&[])).expect_err("unreachable");

    // Assert
    assert_eq!(report.paths(), vec!["practices[0]"]);
    assert!(report.problems[0].message.contains("[twilio]"));
}

#[test]
fn twilio_needs_one_sender_and_well_formed_ids() {
    // Arrange
    let both = format!(
        "{MINIMAL}\n[twilio]\naccount_sid = \"AC123\"\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\nfrom = \"+15125550100\"\nmessaging_service_sid = \"MG00000000000000000000000000000000\"\n"
    );
    let number = format!(
        "{MINIMAL}\n[twilio]\naccount_sid = \"AC00000000000000000000000000000000\"\nauth_token_env = \"TWILIO_AUTH_TOKEN\"\nfrom = \"+15125550100\"\n"
    );

    // Act
    let report = load(&both, &env_with(&[])).expect_err("problems");
    let config = load(&number, &env_with(&[])).unwrap_or_else(|r| panic!("{r}"));

    // Assert
    assert!(
        problem_for(&report, "twilio.account_sid")
            .message
            .contains("AC followed by 32")
    );
    assert!(
        problem_for(&report, "twilio.from")
            .message
            .contains("not both")
    );
    let sender = config.practices[0].sms_sender(config.twilio.as_ref());
    assert!(matches!(sender, Some(messaging::SmsFrom::Number(_))));
    assert_eq!(
        config.http_config().practices[0].sms_numbers,
        vec!["+15125550100".to_owned()]
    );
}

#[test]
fn toml_syntax_errors_give_a_position_without_quoting_the_line() {
    // Arrange
    let text = "[stripe]\napi_key = \"sk_live_SECRET\" oops\n";

    // Act
    let report = load(text, &env_with(&[])).expect_err("syntax");

    // Assert
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].path.starts_with("line 2"), "{report}");
    assert!(report.problems[0].message.starts_with("not valid TOML"));
    assert!(!report.to_string().contains("SECRET"));
}

#[test]
fn a_missing_file_is_one_problem_naming_the_file() {
    // Act
    let report = Config::load_with(Path::new("/nonexistent/chairside.toml"), &env_with(&[]))
        .expect_err("missing");

    // Assert
    assert_eq!(report.paths(), vec!["/nonexistent/chairside.toml"]);
    assert!(report.problems[0].message.contains("no such file"));
}

#[test]
fn the_operations_view_needs_only_the_store_section() {
    // Arrange: only the data key is set; every other secret is missing.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chairside.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    let env = Environment::from_pairs([("CHAIRSIDE_DATA_KEY", DATA_KEY)]);

    // Act
    let view = Config::load_store(&path, &env).unwrap_or_else(|r| panic!("{r}"));
    let full = Config::load_with(&path, &env).expect_err("other secrets missing");

    // Assert
    assert_eq!(view.store.path, dir.path().join("chairside.sqlite"));
    assert_eq!(
        view.time_zones.get(&PracticeId::new("smile")),
        Some(&chrono_tz::America::Chicago)
    );
    assert!(full.problems.len() >= 3);
}

#[test]
fn limits_installments_and_reminders_are_checked() {
    // Arrange
    let text = MINIMAL.replace(
        "merchant_number = \"5348120000000001\"",
        "merchant_number = \"5348120000000001\"\nmin = \"500.00\"\nmax = \"100.00\"",
    ) + "\n[practices.payments]\ninstallments = 200\ninterval = \"fortnight\"\n\n[practices.reminders]\ndelays = [\"1d\", \"soon\"]\npoll_interval = \"0s\"\n";

    // Act
    let report = load(&text, &env_with(&[])).expect_err("problems");

    // Assert
    let mut paths = report.paths();
    paths.sort_unstable();
    assert_eq!(
        paths,
        vec![
            "practices[0].lenders.carecredit.min",
            "practices[0].payments.interval",
            "practices[0].reminders.delays[1]",
            "practices[0].reminders.poll_interval",
        ],
        "{report}"
    );

    let too_many = MINIMAL.to_owned() + "\n[practices.payments]\ninstallments = 200\n";
    let report = load(&too_many, &env_with(&[])).expect_err("ten years");
    assert!(
        problem_for(&report, "practices[0].payments.installments")
            .message
            .contains("at most 120")
    );
}

#[test]
fn durations_and_deposits_parse_as_documented() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
    assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14_400)));
    assert_eq!(parse_duration(" 3d "), Ok(Duration::from_secs(259_200)));
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
    assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
    assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    for bad in ["", "d", "3", "0", "-1d", "soon", "366d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(parse_deposit("20%"), Ok(DepositRule::BasisPoints(2_000)));
    assert_eq!(parse_deposit("12.5%"), Ok(DepositRule::BasisPoints(1_250)));
    assert_eq!(parse_deposit("100%"), Ok(DepositRule::BasisPoints(10_000)));
    assert_eq!(
        parse_deposit("150.00"),
        Ok(DepositRule::Fixed(Money::usd(15_000)))
    );
    assert_eq!(parse_deposit("none"), Ok(DepositRule::None));
    assert_eq!(parse_deposit("0%"), Ok(DepositRule::None));
    for bad in ["101%", "$150", "-5", "20 percent", "1.234%"] {
        assert!(parse_deposit(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn a_huge_duration_is_a_reported_problem_not_a_panic() {
    // Arrange: values far past what a timer's date can hold.
    let text = MINIMAL.replace(
        "[http]\n",
        "[http]\npatient_link_lifetime = \"18446744073709551615s\"\n",
    ) + "\n[practices.reminders]\ndelays = [\"1d\", \"100000000d\"]\ngive_up_after = \"400d\"\npoll_interval = \"99999999999999999999d\"\n";

    // Act
    let report = load(&text, &env_with(&[])).expect_err("durations over the cap");

    // Assert
    assert_eq!(
        report.paths(),
        vec![
            "http.patient_link_lifetime",
            "practices[0].reminders.delays[1]",
            "practices[0].reminders.give_up_after",
            "practices[0].reminders.poll_interval",
        ],
        "{report}"
    );
    for path in [
        "http.patient_link_lifetime",
        "practices[0].reminders.delays[1]",
        "practices[0].reminders.give_up_after",
    ] {
        let p = problem_for(&report, path);
        assert!(p.message.contains("at most 365d"), "{path}: {}", p.message);
    }
    assert!(
        problem_for(&report, "practices[0].reminders.poll_interval")
            .message
            .contains("expected a duration")
    );
}

#[test]
fn a_value_of_the_wrong_type_names_its_path_without_quoting_it() {
    // Arrange: a secret pasted into a list where a phone number belongs.
    let text = MINIMAL.replace(
        "phone = \"+1 512 555 0100\"",
        "phone = [\"SECRET_pasted_here\"]",
    );

    // Act
    let report = load(&text, &env_with(&[])).expect_err("wrong type");

    // Assert
    assert_eq!(report.paths(), vec!["practices[0].phone"]);
    assert_eq!(
        report.problems[0].message,
        "expected a string in quotes, found a list"
    );
    assert!(!format!("{report:?}").contains("SECRET"));
}

#[test]
fn unknown_keys_of_a_practice_system_are_judged_by_its_kind() {
    // Arrange: a Dentrix key under an Open Dental practice system, and a near miss.
    let text = MINIMAL.replace(
        "kind = \"opendental\"",
        "kind = \"opendental\"\norganization_id = \"org-1\"\nacceptanse = \"any_saved\"",
    );

    // Act
    let report = load(&text, &env_with(&[])).expect_err("unknown keys");

    // Assert
    assert_eq!(
        problem_for(&report, "practices[0].pms.acceptanse").message,
        "unknown key; did you mean 'acceptance'?"
    );
    assert!(
        problem_for(&report, "practices[0].pms.organization_id")
            .message
            .starts_with("unknown key; expected one of: base_url")
    );
    assert_eq!(report.problems.len(), 2, "{report}");
}

#[test]
fn problems_are_listed_in_the_order_of_the_file() {
    // Arrange: one problem in each of four sections, and one environment variable.
    let text = MINIMAL
        .replace("https://pay.example.test/", "http://pay.example.test/")
        .replace("state = \"TX\"", "state = \"ZZ\"")
        .replace("host = \"smtp.smile.example\"", "host = \"\"")
        + "\n[runner]\nconcurrency = 0\n";
    let env = env_with(&[("CHAIRSIDE_STORE__PATH", "")]);

    // Act
    let report = load(&text, &env).expect_err("problems");

    // Assert
    assert_eq!(
        report.paths(),
        vec![
            "store.path",
            "runner.concurrency",
            "http.public_base_url",
            "practices[0].state",
            "practices[0].smtp.host",
        ],
        "{report}"
    );
}

#[test]
fn zero_timeouts_and_limits_of_the_server_are_problems_at_their_paths() {
    // Arrange
    let text = MINIMAL.replace(
        "[http]\n",
        "[http]\nheader_read_timeout = \"0s\"\nrequest_timeout = \"0s\"\nmax_connections = 0\nform_body_limit = 0\nwebhook_body_limit = 0\n",
    );

    // Act
    let report = load(&text, &env_with(&[])).expect_err("zero timeouts and limits");

    // Assert
    assert_eq!(
        report.paths(),
        vec![
            "http.header_read_timeout",
            "http.request_timeout",
            "http.max_connections",
            "http.webhook_body_limit",
            "http.form_body_limit",
        ],
        "{report}"
    );
    assert!(
        problem_for(&report, "http.header_read_timeout")
            .message
            .contains("more than zero")
    );
}

#[test]
fn the_server_limits_and_the_metrics_token_reach_the_http_surface() {
    // Arrange
    let text = MINIMAL.replace(
        "[http]\n",
        "[http]\nmetrics_token_env = \"CHAIRSIDE_METRICS_TOKEN\"\nheader_read_timeout = \"5s\"\nrequest_timeout = \"20s\"\nmax_connections = 64\nform_body_limit = 8192\nwebhook_body_limit = 131072\n",
    );
    let env = env_with(&[("CHAIRSIDE_METRICS_TOKEN", "SECRET_metrics_token")]);

    // Act
    let config = load(&text, &env).expect("valid");
    let http = config.http_config();

    // Assert
    assert_eq!(
        http.metrics_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        Some("SECRET_metrics_token".to_owned())
    );
    assert_eq!(http.header_read_timeout, Duration::from_secs(5));
    assert_eq!(http.request_timeout, Duration::from_secs(20));
    assert_eq!(http.max_connections, 64);
    assert_eq!(http.form_body_limit, 8192);
    assert_eq!(http.body_limit, 131_072);
    assert!(!format!("{config:?}").contains("SECRET_metrics_token"));
    assert!(!format!("{http:?}").contains("SECRET_metrics_token"));
}

#[test]
fn without_server_settings_the_defaults_apply_and_no_metrics_token_is_set() {
    // Act
    let http = load(MINIMAL, &env_with(&[])).expect("valid").http_config();

    // Assert
    assert!(http.metrics_token.is_none());
    assert_eq!(http.header_read_timeout, Duration::from_secs(10));
    assert_eq!(http.request_timeout, Duration::from_secs(30));
    assert_eq!(http.max_connections, 1024);
    assert_eq!(http.form_body_limit, 16 * 1024);
    assert_eq!(http.body_limit, 256 * 1024);
}

#[test]
fn each_practice_webhook_secrets_are_kept_apart_in_the_built_settings() {
    // Arrange: the example's practice, and a second one with its own Sunbit secret.
    let second = EXAMPLE
        .split("\n[[practices]]\n")
        .nth(1)
        .expect("the example has a practice")
        .replace("lone-star-dental", "hill-country-dental")
        .replace("lone-star-main", "hill-country-main")
        .replace("SUNBIT_WEBHOOK_SECRET", "HILL_SUNBIT_WEBHOOK_SECRET");
    let text = format!("{EXAMPLE}\n[[practices]]\n{second}");
    let env = env_with(&[("HILL_SUNBIT_WEBHOOK_SECRET", "SECRET_hill_hook")]);
    // Act
    let config = load(&text, &env).unwrap_or_else(|r| panic!("refused:\n{r}"));
    let http = config.http_config();
    // Assert: each practice's list holds its own secret and nothing else.
    assert_eq!(http.validate(), Ok(()));
    let own = |practice: &str| -> Vec<String> {
        http.webhook_secrets.sunbit[&PracticeId::new(practice)]
            .iter()
            .map(|s| s.expose_secret().to_owned())
            .collect()
    };
    assert_eq!(own("lone-star-dental"), vec!["SECRET_sunbit_hook"]);
    assert_eq!(own("hill-country-dental"), vec!["SECRET_hill_hook"]);
    assert!(http.webhook_secrets.nexhealth.is_empty());
    assert!(!format!("{http:?}").contains("SECRET_hill_hook"));
}

#[test]
fn the_example_documents_the_per_practice_webhook_urls() {
    assert!(EXAMPLE.contains("webhooks/sunbit/{practice id}"));
    assert!(EXAMPLE.contains("webhooks/nexhealth/{practice id}"));
    assert!(EXAMPLE.contains("/webhooks/sunbit/lone-star-dental"));
}

#[test]
fn trusted_proxies_reach_the_http_surface_and_a_bad_address_is_a_problem_at_its_path() {
    // Arrange
    let good = MINIMAL.replace(
        "[http]\n",
        "[http]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n",
    );
    let bad = MINIMAL.replace(
        "[http]\n",
        "[http]\ntrusted_proxies = [\"127.0.0.1\", \"proxy.internal\"]\n",
    );

    // Act
    let config = load(&good, &env_with(&[])).expect("valid");
    let report = load(&bad, &env_with(&[])).expect_err("a host name is not an address");

    // Assert
    let expected: Vec<std::net::IpAddr> =
        vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(config.http_config().trusted_proxies, expected);
    assert!(
        load(MINIMAL, &env_with(&[]))
            .expect("valid")
            .http_config()
            .trusted_proxies
            .is_empty()
    );
    assert_eq!(report.paths(), vec!["http.trusted_proxies[1]"], "{report}");
}

#[test]
fn login_limits_come_from_the_http_login_section_and_a_bad_one_is_a_problem_at_its_path() {
    // Arrange
    let tuned = MINIMAL.replace(
        "[http]\n",
        "[http.login]\nlock_after = 5\nlock_for = \"30m\"\nconcurrent_hashes = 4\n\n[http]\n",
    );
    let broken = MINIMAL.replace(
        "[http]\n",
        "[http.login]\nlock_after = 0\nfirst_delay = \"0s\"\nlockout = 3\n\n[http]\n",
    );

    // Act
    let limits = load(&tuned, &env_with(&[]))
        .expect("valid")
        .http_config()
        .login;
    let report = load(&broken, &env_with(&[])).expect_err("zero lockout and delay");

    // Assert: what was set is taken, the rest keep their defaults.
    let defaults = chairside_http::LoginLimits::default();
    assert_eq!(limits.lock_after, 5);
    assert_eq!(limits.lock_for, Duration::from_secs(30 * 60));
    assert_eq!(limits.concurrent_hashes, 4);
    assert_eq!(limits.first_delay, defaults.first_delay);
    assert_eq!(limits.account_free_failures, defaults.account_free_failures);
    let mut paths = report.paths();
    paths.sort_unstable();
    assert_eq!(
        paths,
        vec![
            "http.login.first_delay",
            "http.login.lock_after",
            "http.login.lockout"
        ],
        "{report}"
    );
}

#[test]
fn the_plan_amount_ceiling_is_read_and_checked_at_its_path() {
    // Absent: the default ceiling.
    let config = load(MINIMAL, &env_with(&[])).expect("valid");
    assert_eq!(
        config.detection.max_plan_amount,
        financing_core::Money::usd(10_000_000)
    );
    assert_eq!(
        config.detection.detect_config().limits.max_plan_cents,
        10_000_000
    );

    // Given.
    let text = MINIMAL.to_owned() + "\n[detection]\nmax_plan_amount = \"25000.00\"\n";
    let config = load(&text, &env_with(&[])).expect("valid");
    assert_eq!(
        config.detection.detect_config().limits.max_plan_cents,
        2_500_000
    );

    // Wrong: each problem at its path, never a crash.
    for bad in ["\"0.00\"", "\"abc\"", "\"99999999999.00\""] {
        let text = MINIMAL.to_owned() + &format!("\n[detection]\nmax_plan_amount = {bad}\n");
        let report = load(&text, &env_with(&[])).expect_err("refused");
        assert_eq!(
            report.paths(),
            vec!["detection.max_plan_amount"],
            "{report}"
        );
    }
    let text = MINIMAL.to_owned() + "\n[detection]\nmax_plan = \"1.00\"\n";
    let report = load(&text, &env_with(&[])).expect_err("unknown key");
    assert_eq!(report.paths(), vec!["detection.max_plan"], "{report}");
}

#[test]
fn the_shipped_notices_and_lender_disclosures_are_loaded_by_the_built_settings() {
    // Arrange: the minimal configuration, its practice moved to California.
    let text = MINIMAL.replacen("state = \"TX\"", "state = \"CA\"", 1);
    // Act
    let http = load(&text, &env_with(&[])).expect("valid").http_config();
    // Assert: what `chairside run` serves, not only what tests configure.
    assert_eq!(http.practices[0].state, Some(financing_core::UsState::CA));
    for lender in ["carecredit", "sunbit"] {
        let copy = &http.lenders[&financing_core::LenderId::new(lender)];
        assert!(
            copy.disclosure.contains_key(&financing_core::Language::En)
                && copy.disclosure.contains_key(&financing_core::Language::Es),
            "{lender}"
        );
    }
    assert!(chairside_http::notices::state_notice(financing_core::UsState::CA).is_some());
}

#[test]
fn a_practice_notice_overrides_its_states_default_and_an_empty_one_is_refused() {
    let text = format!(
        "{MINIMAL}\n[practices.notice]\nen = \"Counsel's notice.\"\nes = \"Aviso del abogado.\"\n"
    );
    let http = load(&text, &env_with(&[])).expect("valid").http_config();
    assert_eq!(
        http.practices[0].lender_notice[&financing_core::Language::En],
        "Counsel's notice."
    );
    let empty = format!("{MINIMAL}\n[practices.notice]\nen = \" \"\n");
    let report = load(&empty, &env_with(&[])).expect_err("an empty notice");
    assert!(
        report.to_string().contains("practices[0].notice.en"),
        "{report}"
    );
}

#[test]
fn the_payment_preference_defaults_to_a_pay_link_and_takes_card_on_file() {
    // Arrange
    let default = load(MINIMAL, &env_with(&[])).unwrap_or_else(|r| panic!("{r}"));
    let card = MINIMAL.to_owned() + "\n[practices.payments]\npreference = \"card_on_file\"\n";
    let wrong = MINIMAL.to_owned() + "\n[practices.payments]\npreference = \"cash\"\n";
    // Act
    let card = load(&card, &env_with(&[])).unwrap_or_else(|r| panic!("{r}"));
    let report = load(&wrong, &env_with(&[])).expect_err("an unknown preference");
    // Assert
    let p = &default.practices[0];
    assert_eq!(
        p.payments.preference,
        chairside_workflow::PaymentPreference::PayLink
    );
    let c = &card.practices[0];
    assert_eq!(
        c.workflow_config().payment_preference,
        chairside_workflow::PaymentPreference::CardOnFile
    );
    assert_eq!(
        c.workflow_config().time_zone.as_deref(),
        Some(c.time_zone.name()),
        "settlement days are the practice's days"
    );
    assert!(
        problem_for(&report, "practices[0].payments.preference")
            .message
            .contains("card_on_file"),
        "{report}"
    );
}

#[test]
fn staff_alerts_go_to_the_practices_staff_mailbox_and_bad_values_are_named_by_path() {
    // A mailbox and some task kinds, a detection task's (a plan not started) among them.
    let text = format!(
        "{MINIMAL}\n[practices.staff_alerts]\nto = \"frontdesk@smile.example\"\ntasks = [\"counteroffer\", \"patient_quiet\", \"unreadable_record\"]\n"
    );
    let config = load(&text, &env_with(&[])).expect("valid");
    let alerts = config.practices[0]
        .staff_alerts
        .as_ref()
        .expect("staff alerts");
    assert_eq!(alerts.to.as_str(), "frontdesk@smile.example");
    assert_eq!(
        alerts.tasks.as_deref(),
        Some(
            &[
                "counteroffer".to_owned(),
                "patient_quiet".to_owned(),
                "unreadable_record".to_owned()
            ][..]
        )
    );
    assert_eq!(
        alerts.digest_window,
        std::time::Duration::from_secs(120),
        "the default digest window"
    );
    let windowed = format!(
        "{MINIMAL}\n[practices.staff_alerts]\nto = \"frontdesk@smile.example\"\ndigest_window = \"5m\"\n"
    );
    let config = load(&windowed, &env_with(&[])).expect("valid");
    assert_eq!(
        config.practices[0]
            .staff_alerts
            .as_ref()
            .map(|a| a.digest_window),
        Some(std::time::Duration::from_secs(300))
    );
    // Left out: none.
    assert!(
        load(MINIMAL, &env_with(&[])).expect("valid").practices[0]
            .staff_alerts
            .is_none()
    );
    // Not an address, not a task kind: both named.
    let bad = format!(
        "{MINIMAL}\n[practices.staff_alerts]\nto = \"front desk\"\ntasks = [\"urgent\"]\ndigest_window = \"soon\"\n"
    );
    let report = load(&bad, &env_with(&[]))
        .expect_err("bad alerts")
        .to_string();
    assert!(report.contains("practices[0].staff_alerts.to"), "{report}");
    assert!(
        report.contains("practices[0].staff_alerts.tasks"),
        "{report}"
    );
    assert!(report.contains("'urgent': not a task kind"), "{report}");
    assert!(
        report.contains("plan_check"),
        "detection kinds listed: {report}"
    );
    assert!(
        report.contains("practices[0].staff_alerts.digest_window"),
        "{report}"
    );
}

#[test]
fn staff_alerts_are_written_in_the_staffs_language_english_unless_set_and_others_are_named_by_path()
{
    // Left out: English.
    let text = format!("{MINIMAL}\n[practices.staff_alerts]\nto = \"frontdesk@smile.example\"\n");
    let config = load(&text, &env_with(&[])).expect("valid");
    assert_eq!(
        config.practices[0]
            .staff_alerts
            .as_ref()
            .map(|a| a.language),
        Some(financing_core::Language::En)
    );
    // Spanish.
    let spanish = format!(
        "{MINIMAL}\n[practices.staff_alerts]\nto = \"frontdesk@smile.example\"\nlanguage = \"es\"\n"
    );
    let config = load(&spanish, &env_with(&[])).expect("valid");
    assert_eq!(
        config.practices[0]
            .staff_alerts
            .as_ref()
            .map(|a| a.language),
        Some(financing_core::Language::Es)
    );
    // A language alerts are not written in: named with its path, not silently English.
    let french = format!(
        "{MINIMAL}\n[practices.staff_alerts]\nto = \"frontdesk@smile.example\"\nlanguage = \"fr\"\n"
    );
    let report = load(&french, &env_with(&[]))
        .expect_err("not a language alerts are written in")
        .to_string();
    assert!(
        report.contains("practices[0].staff_alerts.language"),
        "{report}"
    );
    assert!(report.contains("'fr'"), "{report}");
    assert!(report.contains("expected \"en\" or \"es\""), "{report}");
}

#[test]
fn a_practices_default_language_is_english_unless_set_and_reaches_its_pages() {
    // Left out: English.
    let config = load(MINIMAL, &env_with(&[])).expect("valid");
    assert_eq!(
        config.practices[0].default_language,
        financing_core::Language::En
    );
    // Spanish, on the HTTP surface's practice too.
    let spanish = MINIMAL.replacen(
        "[[practices]]\n",
        "[[practices]]\ndefault_language = \"es\"\n",
        1,
    );
    assert_ne!(spanish, MINIMAL, "the key went into the practice");
    let config = load(&spanish, &env_with(&[])).expect("valid");
    assert_eq!(
        config.practices[0].default_language,
        financing_core::Language::Es
    );
    let http = config.http_config();
    assert_eq!(
        http.practices[0].default_language,
        financing_core::Language::Es
    );
    // Anything else is named with its path.
    let french = MINIMAL.replacen(
        "[[practices]]\n",
        "[[practices]]\ndefault_language = \"fr\"\n",
        1,
    );
    let report = load(&french, &env_with(&[]))
        .expect_err("not a language")
        .to_string();
    assert!(report.contains("practices[0].default_language"), "{report}");
    assert!(report.contains("'fr'"), "{report}");
}

#[test]
fn a_postgres_url_chooses_postgresql_and_a_password_never_comes_from_the_file() {
    // Arrange
    let with =
        |store_lines: &str| MINIMAL.replacen("[store]\n", &format!("[store]\n{store_lines}\n"), 1);
    let env = env_with(&[(
        "CHAIRSIDE_DATABASE_URL",
        "postgres://chairside:SECRET_pg_password@db.internal:5432/chairside",
    )]);

    // Act
    let plain = load(
        &with(r#"url = "postgres://chairside@db.internal/chairside""#),
        &env,
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let from_env = load(&with(r#"url_env = "CHAIRSIDE_DATABASE_URL""#), &env)
        .unwrap_or_else(|r| panic!("{r}"));
    let sqlite = load(&with(r#"url = "sqlite:/data/chairside.sqlite""#), &env)
        .unwrap_or_else(|r| panic!("{r}"));
    let password = load(
        &with(r#"url = "postgresql://chairside:SECRET_in_file@db.internal/chairside""#),
        &env,
    )
    .expect_err("a password in the file");
    let both = load(
        &with("path = \"x.sqlite\"\nurl = \"postgres://chairside@db.internal/chairside\""),
        &env,
    )
    .expect_err("path and url");
    let other = load(
        &with(r#"url = "mysql://chairside@db.internal/chairside""#),
        &env,
    )
    .expect_err("not a database Chairside speaks");

    // Assert
    assert_eq!(
        plain
            .store
            .postgres
            .as_ref()
            .map(|u| u.expose_secret().to_owned()),
        Some("postgres://chairside@db.internal/chairside".to_owned())
    );
    assert_eq!(plain.store.describe(), "PostgreSQL db.internal/chairside");
    assert!(
        from_env
            .store
            .postgres
            .as_ref()
            .is_some_and(|u| u.expose_secret().contains("SECRET_pg_password"))
    );
    assert_eq!(
        from_env.store.describe(),
        "PostgreSQL db.internal:5432/chairside"
    );
    assert!(!format!("{:?}", from_env.store).contains("SECRET"));
    assert!(sqlite.store.postgres.is_none());
    assert_eq!(sqlite.store.path, Path::new("/data/chairside.sqlite"));
    let p = problem_for(&password, "store.url");
    assert!(p.message.contains("url_env"), "{}", p.message);
    assert!(!password.to_string().contains("SECRET"), "{password}");
    assert!(problem_for(&both, "store.url").message.contains("not both"));
    assert!(
        problem_for(&other, "store.url")
            .message
            .contains("postgres://")
    );
}

/// MINIMAL's practice on NexHealth, with `provider` as the `provider_id` line (or none).
fn nexhealth_practice(provider: &str) -> String {
    MINIMAL.replace(
        "kind = \"opendental\"\ndeveloper_key_env = \"DENTRIX_CLIENT_SECRET\"\ncustomer_key_env = \"SMTP_PASSWORD\"\n",
        &format!(
            "kind = \"nexhealth\"\napi_key_env = \"SUNBIT_API_KEY\"\nsubdomain = \"smile\"\nlocation_id = \"12\"\n{provider}\n"
        ),
    )
}

#[test]
fn a_nexhealth_provider_id_is_read_and_a_bad_one_is_named_at_its_path() {
    // Arrange
    let good = nexhealth_practice("provider_id = \"104\"");
    let absent = nexhealth_practice("");
    let bad = nexhealth_practice("provider_id = \"dr-smith\"");
    let zero = nexhealth_practice("provider_id = \"000\"");

    // Act
    let good = load(&good, &env_with(&[])).unwrap_or_else(|r| panic!("refused:\n{r}"));
    let absent = load(&absent, &env_with(&[])).unwrap_or_else(|r| panic!("refused:\n{r}"));
    let bad = load(&bad, &env_with(&[])).expect_err("a name is no provider id");
    let zero = load(&zero, &env_with(&[])).expect_err("zero is no provider id");

    // Assert
    let provider = |c: &Config| match &c.practices[0].pms {
        PmsSettings::NexHealth(n) => n.provider_id.clone(),
        other => panic!("not NexHealth: {other:?}"),
    };
    assert_eq!(provider(&good).as_deref(), Some("104"));
    assert_eq!(provider(&absent), None);
    for report in [&bad, &zero] {
        let p = problem_for(report, "practices[0].pms.provider_id");
        assert!(p.message.contains("NexHealth provider id"), "{}", p.message);
    }
}
