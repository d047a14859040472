//! The Reg Z trigger-term guard, and its use on the default invitation.

use financing_core::{ErrorKind, Language};
use messaging::{
    ApplicationLink, DEFAULT_MAX_SEGMENTS, Error, InhouseOffer, LANGUAGES, TemplateId,
    TemplatePart, Templates, TriggerTerm, check_reg_z, embedded_source, find_trigger_terms,
};

#[test]
fn trigger_terms_are_found_by_kind_in_english_and_spanish() {
    use TriggerTerm::*;
    let rows: [(&str, &[TriggerTerm]); 14] = [
        ("0% APR for 12 months", &[Percentage, Rate, RepaymentPeriod]),
        ("No interest if paid in full", &[Interest]),
        ("Interest-free financing", &[Interest]),
        ("Deferred interest promotion", &[Interest]),
        ("Only $99 per month", &[PaymentAmount]),
        ("as low as $ 45 a month", &[PaymentAmount]),
        ("just 99 dollars", &[PaymentAmount]),
        ("a six-month promotion", &[RepaymentPeriod]),
        ("pay over 2 years", &[RepaymentPeriod]),
        ("split it into 4 payments", &[NumberOfPayments]),
        ("low rates available", &[Rate]),
        ("sin intereses por 12 meses", &[Interest, RepaymentPeriod]),
        ("en doce cuotas", &[NumberOfPayments]),
        ("tasa fija del 9,9 por ciento", &[Percentage, Rate]),
    ];
    for (text, expected) in rows {
        assert_eq!(find_trigger_terms(text), expected.to_vec(), "{text:?}");
    }
}

#[test]
fn plain_invitation_copy_and_links_pass() {
    for text in [
        "Financing options are available for your treatment.",
        "Hay opciones de financiamiento disponibles para su tratamiento.",
        "Apply here: https://lender.example.test/apply?amount=100%25&term=12months",
        "Call (555) 010-0199 with questions.",
        "It takes a few minutes.",
        "Your payment plan is ready.",
    ] {
        assert_eq!(check_reg_z(text), Ok(()), "{text:?}");
    }
}

#[test]
fn the_violation_names_kinds_and_never_the_text() {
    // Act
    let err = check_reg_z("Alex, enjoy 0% APR").unwrap_err();

    // Assert
    assert_eq!(
        err.to_string(),
        "Reg Z trigger terms outside a lender-approved template: percentage, rate"
    );
}

#[test]
fn the_default_invitation_templates_state_no_trigger_terms() {
    let templates = Templates::load().expect("templates");
    for lang in LANGUAGES {
        // The shipped sources, every part.
        for &part in TemplateId::ApplicationLink.parts() {
            let src = embedded_source(lang, TemplateId::ApplicationLink, part).expect("source");
            assert_eq!(check_reg_z(src), Ok(()), "{lang:?} {part:?}");
        }
        // And what a patient receives.
        let email = templates
            .render_email(lang, &ApplicationLink::sample())
            .expect("email");
        let sms = templates
            .render_sms(lang, &ApplicationLink::sample(), DEFAULT_MAX_SEGMENTS)
            .expect("sms");
        for text in [&email.subject, &email.text, &email.html, &sms.text] {
            assert_eq!(check_reg_z(text), Ok(()), "{lang:?}: {text}");
        }
    }
}

#[test]
fn an_invitation_edited_to_promise_terms_fails_at_load() {
    // Arrange
    let builder = Templates::builder().source(
        Language::En,
        TemplateId::ApplicationLink,
        TemplatePart::Sms,
        "{{ practice_name }}: 0% APR for 12 months with {{ lender_name }}! {{ application_link }} \
         Reply STOP to opt out.",
    );

    // Act
    let err = builder.build().unwrap_err();

    // Assert
    match &err {
        Error::RegZ {
            template,
            violation,
        } => {
            assert_eq!(template, "en/application_link.sms.txt");
            assert_eq!(
                violation.terms,
                vec![
                    TriggerTerm::Percentage,
                    TriggerTerm::Rate,
                    TriggerTerm::RepaymentPeriod
                ]
            );
        }
        other => panic!("expected a Reg Z error, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[test]
fn a_value_that_smuggles_terms_into_the_invitation_fails_at_render() {
    // Arrange: a lender display name configured as marketing copy.
    let templates = Templates::load().expect("templates");
    let mut ctx = ApplicationLink::sample();
    ctx.lender_name = "Sample Lender, no interest for 6 months".into();

    // Act
    let email = templates.render_email(Language::En, &ctx);
    let sms = templates.render_sms(Language::En, &ctx, DEFAULT_MAX_SEGMENTS);

    // Assert
    assert!(matches!(email, Err(Error::RegZ { .. })), "{email:?}");
    assert!(matches!(sms, Err(Error::RegZ { .. })), "{sms:?}");
}

#[test]
fn approved_plan_terms_are_exempt_but_only_inside_the_approved_copy() {
    // Arrange: a practice's counsel-approved wording replaces the shipped terms.
    let templates = Templates::builder()
        .source(
            Language::En,
            TemplateId::InhouseOffer,
            TemplatePart::Terms,
            "{{ plan.installments }} monthly payments, the first of {{ plan.first_amount }}, 0% APR.",
        )
        .build()
        .expect("approved copy may state terms");
    let ctx = InhouseOffer::sample();

    // Act
    let email = templates
        .render_email(Language::En, &ctx)
        .expect("approved copy renders");
    let edited = Templates::builder()
        .source(
            Language::En,
            TemplateId::InhouseOffer,
            TemplatePart::EmailText,
            "{{ plan_terms.summary }} Only $1 a day! {{ plan_terms.disclosure }} {{ offer_link }}",
        )
        .build();
    let numbers_outside_the_copy = Templates::builder()
        .source(
            Language::En,
            TemplateId::InhouseOffer,
            TemplatePart::EmailText,
            "Just {{ plan.installments }} payments. {{ offer_link }}",
        )
        .build();

    // Assert
    let expected = "6 monthly payments, the first of $333.34, 0% APR.";
    assert!(email.text.contains(expected), "{}", email.text);
    assert!(email.html.contains(expected), "{}", email.html);
    assert!(matches!(edited, Err(Error::RegZ { .. })), "{edited:?}");
    assert!(
        matches!(numbers_outside_the_copy, Err(Error::RegZ { .. })),
        "{numbers_outside_the_copy:?}"
    );
}
