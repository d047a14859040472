//! `[practices.lenders.cherry]`, `alphaeon`, `lendingclub`: link-only lenders by name.

use super::*;

fn with_link_lenders(sections: &str, order: &str) -> String {
    MINIMAL
        .replace("order = [\"carecredit\"]", &format!("order = {order}"))
        .replace("[practices.smtp]", &format!("{sections}\n[practices.smtp]"))
}

const ALL_THREE: &str = r#"
[practices.lenders.cherry]
application_link = "https://pay.withcherry.test/smile-dental"
decide_within = "2d"

[practices.lenders.alphaeon]
application_link = "https://apply.alphaeon.test/prequal/smile"
display_name = "Alphaeon"
disclosure_en = "Counsel-approved Alphaeon text."
min = "500.00"

[practices.lenders.lendingclub]
application_link = "https://lcps.test/apply/smile"
"#;

#[test]
fn cherry_alphaeon_and_lendingclub_are_accepted_by_name_with_their_settings() {
    let text = with_link_lenders(
        ALL_THREE,
        r#"["carecredit", "cherry", "alphaeon", "lendingclub"]"#,
    );
    let config = load(&text, &env_with(&[])).expect("valid");
    let lenders = &config.practices[0].lenders;
    assert_eq!(
        lenders.order.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        ["carecredit", "cherry", "alphaeon", "lendingclub"]
    );
    let by_id = |id: &str| {
        lenders
            .link_only
            .iter()
            .find(|l| l.lender.id() == id)
            .unwrap_or_else(|| panic!("{id} configured"))
    };
    let cherry = by_id("cherry");
    assert_eq!(cherry.display_name, "Cherry");
    assert_eq!(
        cherry.application_link.as_str(),
        "https://pay.withcherry.test/smile-dental"
    );
    assert_eq!(cherry.decide_within, Duration::from_secs(2 * 86_400));
    let alphaeon = by_id("alphaeon");
    assert_eq!(alphaeon.display_name, "Alphaeon");
    assert_eq!(
        alphaeon.decide_within,
        Duration::from_secs(3 * 86_400),
        "the default wait"
    );
    assert_eq!(
        lenders
            .limits(&financing_core::LenderId::new("alphaeon"))
            .min,
        Some(financing_core::Money::usd(50_000))
    );
    // The patient page names them and shows their disclosures (configured or shipped).
    let http = config.http_config();
    let copy = |id: &str| &http.lenders[&financing_core::LenderId::new(id)];
    assert_eq!(copy("alphaeon").name, "Alphaeon");
    assert_eq!(
        copy("alphaeon").disclosure[&financing_core::Language::En],
        "Counsel-approved Alphaeon text."
    );
    assert!(
        copy("alphaeon")
            .disclosure
            .contains_key(&financing_core::Language::Es),
        "the shipped Spanish text stays"
    );
    assert_eq!(copy("lendingclub").name, "LendingClub Patient Solutions");
    assert!(copy("cherry").disclosure[&financing_core::Language::En].contains("Cherry"));
}

#[test]
fn a_link_only_lender_without_its_link_or_with_a_bad_setting_is_refused_at_its_path() {
    let sections = r#"
[practices.lenders.cherry]
display_name = ""
decide_within = "soon"
api_key = "invented"

[practices.lenders.alphaeon]
application_link = "http://apply.alphaeon.test/prequal/smile"
"#;
    let text = with_link_lenders(
        sections,
        r#"["cherry", "alphaeon", "lendingclub", "proceed"]"#,
    );
    let report = load(&text, &env_with(&[])).expect_err("problems");
    for path in [
        "practices[0].lenders.cherry.application_link",
        "practices[0].lenders.cherry.display_name",
        "practices[0].lenders.cherry.decide_within",
        "practices[0].lenders.cherry.api_key",
        "practices[0].lenders.alphaeon.application_link",
        "practices[0].lenders.order[2]",
        "practices[0].lenders.order[3]",
    ] {
        problem_for(&report, path);
    }
    assert!(
        problem_for(&report, "practices[0].lenders.cherry.application_link")
            .message
            .starts_with("missing; expected the practice's own application link"),
        "{report}"
    );
    // A known lender without its section: configure it. An unknown one: the supported list.
    assert_eq!(
        problem_for(&report, "practices[0].lenders.order[2]").message,
        "unknown lender 'lendingclub': configure [practices.lenders.lendingclub] or remove it from the order"
    );
    assert!(
        problem_for(&report, "practices[0].lenders.order[3]")
            .message
            .ends_with(
                "(lenders this version supports: carecredit, sunbit, cherry, alphaeon, lendingclub)"
            ),
        "{report}"
    );
}
