//! Template loading, load-time failures, snapshots of every rendered part, and the SMS rules
//! (no procedures, link never cut, opt-out instruction present).
//!
//! Snapshots live in `tests/snapshots/{lang}/{template}.{part}`. A missing or different snapshot
//! fails the test; after reviewing a deliberate change, `UPDATE_SNAPSHOTS=1 cargo test -p
//! messaging` rewrites them.

use std::path::PathBuf;

use financing_core::{Language, SmsConsent};
use messaging::{
    ApplicationLink, DEFAULT_MAX_SEGMENTS, Error, FinancingSummary, HelpReply, InhouseOffer,
    IntakeLink, LANGUAGES, PayLinkReissued, PaymentFailed, Reminder, RequiredConsent, SmsEncoding,
    StaffAlert, StaffDigest, TemplateId, TemplatePart, Templates, embedded_source,
};

fn templates() -> Templates {
    Templates::load().expect("the shipped templates load")
}

fn snapshot_path(lang: Language, id: TemplateId, part: TemplatePart) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(lang.tag())
        .join(format!("{}.{}", id.name(), part.suffix()))
}

/// Compares with the stored snapshot; returns a description of the mismatch, if any.
fn check_snapshot(
    lang: Language,
    id: TemplateId,
    part: TemplatePart,
    actual: &str,
) -> Option<String> {
    let path = snapshot_path(lang, id, part);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write snapshot");
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => Some(format!(
            "{}: snapshot differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => Some(format!("{}: snapshot missing", path.display())),
    }
}

fn render_all(t: &Templates, lang: Language) -> Vec<(TemplateId, TemplatePart, String)> {
    let mut out = Vec::new();
    let mut email = |id, e: messaging::RenderedEmail| {
        out.push((id, TemplatePart::Subject, e.subject));
        out.push((id, TemplatePart::EmailText, e.text));
        out.push((id, TemplatePart::EmailHtml, e.html));
    };
    email(
        TemplateId::FinancingSummary,
        t.render_email(lang, &FinancingSummary::sample())
            .expect("render"),
    );
    email(
        TemplateId::ApplicationLink,
        t.render_email(lang, &ApplicationLink::sample())
            .expect("render"),
    );
    email(
        TemplateId::Reminder,
        t.render_email(lang, &Reminder::sample()).expect("render"),
    );
    email(
        TemplateId::PaymentFailed,
        t.render_email(lang, &PaymentFailed::sample())
            .expect("render"),
    );
    email(
        TemplateId::InhouseOffer,
        t.render_email(lang, &InhouseOffer::sample())
            .expect("render"),
    );
    email(
        TemplateId::StaffAlert,
        t.render_email(lang, &StaffAlert::sample()).expect("render"),
    );
    email(
        TemplateId::IntakeLink,
        t.render_email(lang, &IntakeLink::sample()).expect("render"),
    );
    email(
        TemplateId::PayLinkReissued,
        t.render_email(lang, &PayLinkReissued::sample())
            .expect("render"),
    );
    email(
        TemplateId::StaffDigest,
        t.render_email(lang, &StaffDigest::sample())
            .expect("render"),
    );
    let max = DEFAULT_MAX_SEGMENTS;
    let sms = [
        (
            TemplateId::FinancingSummary,
            t.render_sms(lang, &FinancingSummary::sample(), max),
        ),
        (
            TemplateId::ApplicationLink,
            t.render_sms(lang, &ApplicationLink::sample(), max),
        ),
        (
            TemplateId::Reminder,
            t.render_sms(lang, &Reminder::sample(), max),
        ),
        (
            TemplateId::PaymentFailed,
            t.render_sms(lang, &PaymentFailed::sample(), max),
        ),
        (
            TemplateId::PayLinkReissued,
            t.render_sms(lang, &PayLinkReissued::sample(), max),
        ),
        (
            TemplateId::InhouseOffer,
            t.render_sms(lang, &InhouseOffer::sample(), max),
        ),
        (
            TemplateId::HelpReply,
            t.render_sms(lang, &HelpReply::sample(), max),
        ),
        (
            TemplateId::IntakeLink,
            t.render_sms(lang, &IntakeLink::sample(), max),
        ),
    ];
    for (id, composed) in sms {
        out.push((id, TemplatePart::Sms, composed.expect("render sms").text));
    }
    out
}

#[test]
fn every_rendered_part_matches_its_snapshot_in_both_languages() {
    // Arrange
    let t = templates();

    // Act
    let mut failures = Vec::new();
    let mut checked = 0;
    for lang in LANGUAGES {
        for (id, part, text) in render_all(&t, lang) {
            checked += 1;
            failures.extend(check_snapshot(lang, id, part, &text));
        }
    }

    // Assert: 9 emails x 3 parts + 8 texts, per language.
    assert_eq!(checked, 70);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_summary_without_promotional_terms_renders_no_empty_terms_block() {
    // Arrange
    let mut ctx = FinancingSummary::sample();
    ctx.promotional_terms = None;

    // Act
    let email = templates()
        .render_email(Language::En, &ctx)
        .expect("render");

    // Assert
    assert_eq!(
        email.text,
        "Hi Alex,\n\
         \n\
         Good news: Sample Lender approved financing of $2,400.00 for your treatment at Bright \
         Smiles Dental.\n\
         \n\
         Your first payment of $100.00 is due on March 5, 2026.\n\
         \n\
         See your plan, terms and payment schedule on your secure page:\n\
         https://pay.example.test/p/SAMPLE-TOKEN\n\
         \n\
         Questions? Reply to this email or call us.\n\
         \n\
         Bright Smiles Dental"
    );
    assert!(!email.html.contains("font-size: 0.9em"), "{}", email.html);
}

#[test]
fn the_summary_sms_is_exactly_the_practice_amount_and_link() {
    // Act
    let sms = templates()
        .render_sms(
            Language::En,
            &FinancingSummary::sample(),
            DEFAULT_MAX_SEGMENTS,
        )
        .expect("render");

    // Assert
    assert_eq!(
        sms.text,
        "Bright Smiles Dental: your financing with Sample Lender is approved for $2,400.00. \
         Details and first payment: https://pay.example.test/p/SAMPLE-TOKEN Reply STOP to opt \
         out."
    );
    // 172 GSM-7 characters: two segments, well within the default budget of three.
    assert_eq!(sms.segments.encoding, SmsEncoding::Gsm7);
    assert_eq!(sms.segments.units, 172);
    assert_eq!(sms.segments.segments, 2);
    assert!(!sms.shortened);
}

#[test]
fn spanish_texts_stay_in_gsm7_with_the_sample_context() {
    // The Spanish SMS copy avoids á, í, ó and ú, so a text costs 153-character segments, not 67.
    let t = templates();
    for (id, sms) in [
        (
            TemplateId::FinancingSummary,
            t.render_sms(Language::Es, &FinancingSummary::sample(), 3),
        ),
        (
            TemplateId::ApplicationLink,
            t.render_sms(Language::Es, &ApplicationLink::sample(), 3),
        ),
        (
            TemplateId::Reminder,
            t.render_sms(Language::Es, &Reminder::sample(), 3),
        ),
        (
            TemplateId::PaymentFailed,
            t.render_sms(Language::Es, &PaymentFailed::sample(), 3),
        ),
        (
            TemplateId::InhouseOffer,
            t.render_sms(Language::Es, &InhouseOffer::sample(), 3),
        ),
        (
            TemplateId::HelpReply,
            t.render_sms(Language::Es, &HelpReply::sample(), 3),
        ),
    ] {
        let sms = sms.expect("render");
        assert_eq!(
            sms.segments.encoding,
            SmsEncoding::Gsm7,
            "{id}: {}",
            sms.text
        );
    }
}

#[test]
fn the_spanish_summary_formats_the_date_in_spanish() {
    // Act
    let email = templates()
        .render_email(Language::Es, &FinancingSummary::sample())
        .expect("render");

    // Assert
    assert!(
        email.text.contains("vence el 5 de marzo de 2026."),
        "{}",
        email.text
    );
}

const PROCEDURE_WORDS: &[&str] = &[
    "procedure",
    "crown",
    "implant",
    "root canal",
    "extraction",
    "filling",
    "denture",
    "bridge",
    "veneer",
    "braces",
    "orthodont",
    "cleaning",
    "whitening",
    "scaling",
    "periodont",
    "sedation",
    "anesthesia",
    "nitrous",
    "x-ray",
    "cdt",
    "procedimiento",
    "corona",
    "implante",
    "endodoncia",
    "extracción",
    "empaste",
    "dentadura",
    "puente",
    "carilla",
    "ortodoncia",
    "limpieza",
    "blanqueamiento",
    "sedación",
    "anestesia",
];

/// `D` followed by four digits: a CDT code.
fn has_cdt_code(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(5)
        .any(|w| (w[0] == b'D' || w[0] == b'd') && w[1..].iter().all(u8::is_ascii_digit))
}

#[test]
fn no_sms_template_names_a_procedure_or_a_code() {
    let t = templates();
    for lang in LANGUAGES {
        for id in TemplateId::ALL {
            if !id.parts().contains(&TemplatePart::Sms) {
                continue;
            }
            // The source, and the variables it may use.
            let src = embedded_source(lang, id, TemplatePart::Sms).expect("sms source");
            let lower = src.to_lowercase();
            for word in PROCEDURE_WORDS {
                assert!(!lower.contains(word), "{lang:?} {id}: {word}");
            }
            assert!(!has_cdt_code(src), "{lang:?} {id}");
            for var in id.variables() {
                assert!(
                    !var.contains("procedure") && !var.contains("code"),
                    "{id} declares {var}"
                );
            }
        }
        // What is actually sent.
        for (id, part, text) in render_all(&t, lang) {
            if part == TemplatePart::Sms {
                let lower = text.to_lowercase();
                assert!(
                    PROCEDURE_WORDS.iter().all(|w| !lower.contains(w)),
                    "{lang:?} {id}: {text}"
                );
                assert!(!has_cdt_code(&text), "{lang:?} {id}: {text}");
            }
        }
    }
}

#[test]
fn every_patient_sms_carries_the_practice_name_and_the_stop_instruction() {
    let t = templates();
    for lang in LANGUAGES {
        for (id, part, text) in render_all(&t, lang) {
            if part == TemplatePart::Sms {
                assert!(text.starts_with("Bright Smiles Dental: "), "{id}: {text}");
                assert!(text.contains("STOP"), "{lang:?} {id}: {text}");
            }
        }
    }
}

#[test]
fn a_template_using_an_undeclared_variable_fails_at_load_not_at_send() {
    // Arrange
    let builder = Templates::builder().source(
        Language::En,
        TemplateId::FinancingSummary,
        TemplatePart::Sms,
        "{{ practice_name }}: your {{ procedure_name }} is financed. {{ patient_page_link }}",
    );

    // Act
    let err = builder.build().unwrap_err();

    // Assert
    match &err {
        Error::TemplateContract { template, reason } => {
            assert_eq!(template, "en/financing_summary.sms.txt");
            assert!(reason.contains("procedure_name"), "{reason}");
        }
        other => panic!("expected a contract error, got {other:?}"),
    }
}

#[test]
fn a_missing_nested_value_fails_at_load_under_strict_undefined() {
    // Arrange: `promotional_terms` is declared, its `headline` field does not exist.
    let builder = Templates::builder().source(
        Language::Es,
        TemplateId::FinancingSummary,
        TemplatePart::EmailText,
        "{% if promotional_terms %}{{ promotional_terms.headline }}{% endif %}",
    );

    // Act
    let err = builder.build().unwrap_err();

    // Assert
    assert!(
        matches!(&err, Error::Template { template, .. } if template == "es/financing_summary.email.txt"),
        "{err:?}"
    );
}

#[test]
fn an_optional_value_used_unguarded_fails_at_load_with_the_bare_sample() {
    // Arrange: fine while terms exist, broken for a plan without any.
    let builder = Templates::builder().source(
        Language::En,
        TemplateId::FinancingSummary,
        TemplatePart::EmailHtml,
        "<p>{{ promotional_terms.summary }}</p>",
    );

    // Act
    let err = builder.build().unwrap_err();

    // Assert
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
}

#[test]
fn an_sms_template_must_print_its_link_exactly_once() {
    for source in [
        "{{ practice_name }}: approved. Reply STOP to opt out.",
        "{{ practice_name }}: {{ patient_page_link }} {{ patient_page_link }}",
    ] {
        // Arrange
        let builder = Templates::builder().source(
            Language::En,
            TemplateId::FinancingSummary,
            TemplatePart::Sms,
            source,
        );

        // Act
        let err = builder.build().unwrap_err();

        // Assert
        assert!(
            matches!(err, Error::TemplateContract { .. }),
            "{source}: {err:?}"
        );
    }
}

#[test]
fn a_syntax_error_fails_at_load_with_the_file_name() {
    // Arrange
    let builder = Templates::builder().source(
        Language::En,
        TemplateId::Reminder,
        TemplatePart::Subject,
        "{{ practice_name ",
    );

    // Act
    let err = builder.build().unwrap_err();

    // Assert
    assert!(
        matches!(&err, Error::Template { template, .. } if template == "en/reminder.subject.txt"),
        "{err:?}"
    );
}

#[test]
fn a_valid_override_replaces_the_shipped_wording() {
    // Arrange
    let t = Templates::builder()
        .source(
            Language::En,
            TemplateId::Reminder,
            TemplatePart::Subject,
            "A note from {{ practice_name }}",
        )
        .build()
        .expect("valid override");

    // Act
    let email = t
        .render_email(Language::En, &Reminder::sample())
        .expect("render");

    // Assert
    assert_eq!(email.subject, "A note from Bright Smiles Dental");
}

#[test]
fn a_very_long_practice_name_shortens_the_free_text_but_never_the_link_or_stop() {
    // Arrange
    let mut ctx = ApplicationLink::sample();
    ctx.practice_name = "The Extraordinarily Long Named Family and Cosmetic Dental Group".into();

    // Act
    let sms = templates()
        .render_sms(Language::En, &ctx, 1)
        .expect("fits in one segment once shortened");

    // Assert
    assert!(sms.shortened);
    assert_eq!(sms.segments.segments, 1);
    assert!(
        sms.text
            .ends_with("... https://pay.example.test/apply/SAMPLE Reply STOP to opt out."),
        "{}",
        sms.text
    );
}

#[test]
fn html_parts_escape_values_and_text_parts_do_not() {
    // Arrange
    let mut ctx = Reminder::sample();
    ctx.practice_name = "Smith & Jones <Dental>".into();

    // Act
    let email = templates()
        .render_email(Language::En, &ctx)
        .expect("render");

    // Assert
    assert!(
        email.html.contains("Smith &amp; Jones &lt;Dental&gt;"),
        "{}",
        email.html
    );
    assert!(email.text.contains("Smith & Jones <Dental>"));
}

#[test]
fn a_line_break_in_a_value_cannot_reach_the_subject_header() {
    // Arrange
    let mut ctx = Reminder::sample();
    ctx.practice_name = "Bright\r\nBcc: someone@example.test".into();

    // Act
    let email = templates()
        .render_email(Language::En, &ctx)
        .expect("render");

    // Assert
    assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));
}

#[test]
fn the_help_reply_renders_with_and_without_an_email_address() {
    // Arrange
    let t = templates();
    let mut bare = HelpReply::sample();
    bare.practice_email = None;

    // Act
    let full = t
        .render_sms(Language::En, &HelpReply::sample(), 1)
        .expect("full");
    let without = t.render_sms(Language::En, &bare, 1).expect("bare");

    // Assert
    assert_eq!(
        full.text,
        "Bright Smiles Dental: for help call (555) 010-0199 or email frontdesk@example.test. \
         Reply STOP to opt out."
    );
    assert_eq!(
        without.text,
        "Bright Smiles Dental: for help call (555) 010-0199. Reply STOP to opt out."
    );
}

#[test]
fn templates_declare_the_consent_their_texts_need() {
    // Arrange
    let informational = SmsConsent::Informational {
        at: chrono::Utc::now(),
        source: "pms".into(),
    };
    let written = SmsConsent::Written {
        at: chrono::Utc::now(),
        source: "patient_page".into(),
    };

    // Act
    let invitation = TemplateId::ApplicationLink.required_consent();
    let summary = TemplateId::FinancingSummary.required_consent();

    // Assert
    assert_eq!(invitation, Some(RequiredConsent::Written));
    assert_eq!(summary, Some(RequiredConsent::Informational));
    assert_eq!(
        TemplateId::InhouseOffer.required_consent(),
        Some(RequiredConsent::Written)
    );
    assert_eq!(TemplateId::StaffAlert.required_consent(), None);
    assert!(!RequiredConsent::Written.is_satisfied_by(&informational));
    assert!(RequiredConsent::Written.is_satisfied_by(&written));
    assert!(RequiredConsent::Informational.is_satisfied_by(&informational));
    assert!(!RequiredConsent::Informational.is_satisfied_by(&SmsConsent::None));
}

#[test]
fn debug_of_contexts_and_rendered_messages_hides_patient_data() {
    // Arrange
    let ctx = FinancingSummary::sample();
    let email = templates()
        .render_email(Language::En, &ctx)
        .expect("render");

    // Act
    let shown = format!("{ctx:?} {email:?}");

    // Assert
    for leak in ["Alex", "2,400", "SAMPLE-TOKEN"] {
        assert!(!shown.contains(leak), "{leak} leaked into {shown}");
    }
}

/// English plan-term words a Spanish reader must not see.
const ENGLISH_PLAN_WORDS: [&str; 6] = [
    "payments",
    "the first of",
    "billed by",
    "payment plan",
    "Questions",
    "terms",
];

#[test]
fn a_spanish_in_house_offer_states_the_plan_in_spanish_with_its_numbers() {
    // Arrange
    let ctx = InhouseOffer::sample();

    // Act
    let email = templates()
        .render_email(Language::Es, &ctx)
        .expect("render");

    // Assert
    for body in [&email.text, &email.html] {
        assert!(
            body.contains("6 pagos, el primero de $333.34, cobrados por Bright Smiles Dental."),
            "{body}"
        );
        assert!(
            body.contains("Plan de pagos de Bright Smiles Dental. Preguntas: (555) 010-0199."),
            "{body}"
        );
        for word in ENGLISH_PLAN_WORDS {
            assert!(
                !body.contains(word),
                "English `{word}` in a Spanish email: {body}"
            );
        }
    }
}

#[test]
fn an_english_in_house_offer_keeps_its_wording() {
    // Arrange
    let ctx = InhouseOffer::sample();

    // Act
    let email = templates()
        .render_email(Language::En, &ctx)
        .expect("render");

    // Assert
    for body in [&email.text, &email.html] {
        assert!(
            body.contains("6 payments, the first of $333.34, billed by Bright Smiles Dental."),
            "{body}"
        );
        assert!(
            body.contains("Bright Smiles Dental payment plan. Questions: (555) 010-0199."),
            "{body}"
        );
    }
}

#[test]
fn a_failed_payment_without_an_amount_names_none_in_either_language() {
    // Arrange
    let ctx = PaymentFailed {
        amount_due: None,
        ..PaymentFailed::sample()
    };
    let t = templates();

    for lang in LANGUAGES {
        // Act
        let email = t.render_email(lang, &ctx).expect("render email");
        let sms = t
            .render_sms(lang, &ctx, DEFAULT_MAX_SEGMENTS)
            .expect("render sms");

        // Assert
        for body in [&email.text, &email.html, &sms.text] {
            assert!(!body.contains('$'), "{lang:?}: {body}");
            assert!(
                !body.contains(" of  ") && !body.contains(" de  "),
                "{lang:?}: {body}"
            );
        }
        assert!(email.text.contains(&ctx.update_payment_link.to_string()));
    }
}

#[test]
fn a_summary_without_a_first_payment_states_none_in_either_language() {
    // An approval without a deposit: nothing is due now, so no "$0.00 due today".
    let mut ctx = FinancingSummary::sample();
    ctx.first_payment_amount = financing_core::Money::usd(0);
    for lang in [Language::En, Language::Es] {
        let email = templates().render_email(lang, &ctx).expect("render");
        for body in [&email.text, &email.html] {
            assert!(!body.contains("$0.00"), "{lang:?}: {body}");
            assert!(!body.contains("first payment"), "{lang:?}: {body}");
            assert!(!body.contains("primer pago"), "{lang:?}: {body}");
            assert!(body.contains("$2,400.00"), "{lang:?}: {body}");
        }
    }
}

#[test]
fn the_intake_link_goes_out_in_the_patients_language_with_the_link_and_no_terms() {
    // Arrange
    let t = templates();
    let ctx = IntakeLink {
        practice_name: "Smile Dental".into(),
        patient_first_name: "Testa".into(),
        intake_link: "https://chairside.example.test/i/TOKEN123".parse().unwrap(),
    };
    for (lang, greeting, ask, stop, foreign) in [
        (
            Language::En,
            "Hi Testa",
            "your details",
            "Reply STOP to opt out.",
            "Hola",
        ),
        (
            Language::Es,
            "Hola Testa",
            "sus datos",
            "Responda STOP para cancelar los mensajes.",
            "Hi ",
        ),
    ] {
        // Act
        let email = t.render_email(lang, &ctx).expect("render email");
        let sms = t
            .render_sms(lang, &ctx, DEFAULT_MAX_SEGMENTS)
            .expect("render sms")
            .text;

        // Assert
        assert!(
            email.subject.starts_with("Smile Dental: "),
            "{lang:?}: {}",
            email.subject
        );
        for body in [&email.text, &email.html, &sms] {
            assert!(
                body.contains("https://chairside.example.test/i/TOKEN123"),
                "{lang:?}: {body}"
            );
            assert!(body.contains(greeting), "{lang:?}: {body}");
            assert!(body.to_lowercase().contains(ask), "{lang:?}: {body}");
            assert!(!body.contains(foreign), "{lang:?} mixes languages: {body}");
            assert!(
                messaging::find_trigger_terms(body).is_empty(),
                "{lang:?}: {body}"
            );
        }
        assert!(sms.starts_with("Smile Dental: "), "{lang:?}: {sms}");
        assert!(sms.ends_with(stop), "{lang:?}: {sms}");
    }
    assert_eq!(
        TemplateId::IntakeLink.required_consent(),
        Some(RequiredConsent::Written),
        "the intake link invites the patient to apply: a text needs written consent"
    );
}

#[test]
fn a_fresh_pay_link_names_the_deposit_and_the_patient_page_in_the_patients_language() {
    // Arrange
    let t = templates();
    let ctx = PayLinkReissued::sample();

    // Act
    let en = t.render_email(Language::En, &ctx).expect("render");
    let es = t.render_email(Language::Es, &ctx).expect("render");
    let sms = t
        .render_sms(Language::Es, &ctx, DEFAULT_MAX_SEGMENTS)
        .expect("render sms");

    // Assert: its own words, not a failed payment's; the deposit; the page's link.
    assert!(
        en.text
            .contains("Here is a fresh link to pay your deposit of $120.00"),
        "{}",
        en.text
    );
    assert!(en.text.contains("https://pay.example.test/p/SAMPLE-TOKEN"));
    assert!(!en.subject.contains("did not go through"), "{}", en.subject);
    assert!(
        es.text
            .contains("enlace nuevo para pagar su depósito de $120.00"),
        "{}",
        es.text
    );
    assert!(
        !es.text.contains("deposit"),
        "English in Spanish: {}",
        es.text
    );
    assert!(sms.text.contains("depósito de $120.00"), "{}", sms.text);
}
