//! The compliance texts Chairside ships as defaults (COMPLIANCE.md §1): the notice a state's law
//! requires before a patient is offered credit, and each shipped lender's disclosure, in English
//! and Spanish. `chairside run` loads them for every practice whose state (or whose patient's
//! state) they apply to; a practice's configured `lender_notice` replaces its state's default.
//! They are plain statements of what the law requires of the office, for counsel to review; they
//! state no credit terms (Reg Z: no trigger terms).

use std::collections::HashMap;

use financing_core::{Language, UsState};

fn texts(en: &str, es: &str) -> HashMap<Language, String> {
    HashMap::from([(Language::En, en.to_owned()), (Language::Es, es.to_owned())])
}

/// The notice shown before any lender link where `state`'s law requires one: California
/// Bus. & Prof. Code §654.3, New York Gen. Bus. Law §349-g and §519-a. `None` elsewhere.
pub fn state_notice(state: UsState) -> Option<HashMap<Language, String>> {
    match state {
        UsState::CA => Some(texts(
            "Notice (California Business and Professions Code section 654.3): you are being offered \
             credit from a company other than this office to pay for your treatment. You do not have \
             to apply: you may pay for your treatment in other ways. Before you sign, read the \
             lender's terms carefully; if you do not pay the balance in full, you may have to pay \
             interest. You complete the application yourself: no one at this office may fill in any \
             part of it for you. Your treatment cannot be charged to this credit before the day it \
             is provided.",
            "Aviso (Código de Negocios y Profesiones de California, sección 654.3): se le ofrece \
             crédito de una empresa distinta de este consultorio para pagar su tratamiento. No está \
             obligado a solicitarlo: puede pagar su tratamiento de otras formas. Antes de firmar, lea \
             con atención los términos del prestamista; si no paga el saldo completo, es posible que \
             deba pagar intereses. Usted mismo completa la solicitud: nadie de este consultorio \
             puede llenar ninguna parte por usted. Su tratamiento no se puede cargar a este crédito \
             antes del día en que se realice.",
        )),
        UsState::NY => Some(texts(
            "Notice (New York General Business Law sections 349-g and 519-a): you do not have to \
             apply for this credit, give a credit card, or leave a card on file to receive medically \
             necessary care. You complete the application yourself: no one at this office may fill \
             in any part of it for you. If you pay with a credit card or a medical credit card, you \
             may owe interest or fees on any balance you do not pay in full; other ways to pay may \
             cost you less.",
            "Aviso (Ley General de Negocios de Nueva York, secciones 349-g y 519-a): no está \
             obligado a solicitar este crédito, dar una tarjeta de crédito ni dejar una tarjeta \
             registrada para recibir atención médicamente necesaria. Usted mismo completa la \
             solicitud: nadie de este consultorio puede llenar ninguna parte por usted. Si paga con \
             una tarjeta de crédito o una tarjeta de crédito médica, es posible que deba intereses o \
             cargos sobre el saldo que no pague por completo; otras formas de pago pueden costarle \
             menos.",
        )),
        _ => None,
    }
}

/// The New York warning about paying by card (Gen. Bus. Law §519-a), shown beside any card
/// payment for a New York practice or patient.
pub fn card_payment_warning(state: UsState) -> Option<HashMap<Language, String>> {
    (state == UsState::NY).then(|| {
        texts(
            "You do not have to pay by credit card or leave a card on file to receive medically \
             necessary care. Paying by credit card may cost you interest or fees on any balance you \
             do not pay in full.",
            "No está obligado a pagar con tarjeta de crédito ni a dejar una tarjeta registrada para \
             recibir atención médicamente necesaria. Pagar con tarjeta de crédito puede costarle \
             intereses o cargos sobre el saldo que no pague por completo.",
        )
    })
}

/// The disclosure shown next to a shipped lender's link and approval: who extends the credit and
/// who decides. Empty for a lender Chairside does not ship.
pub fn lender_disclosure(lender: &str) -> HashMap<Language, String> {
    match lender {
        "carecredit" => texts(
            "The CareCredit credit card is issued by Synchrony Bank, subject to credit approval. \
             Synchrony Bank, not this office, decides on your application and gives you its terms \
             and disclosures on its own page.",
            "La tarjeta de crédito CareCredit es emitida por Synchrony Bank, sujeta a aprobación de \
             crédito. Synchrony Bank, no este consultorio, decide sobre su solicitud y le da sus \
             términos y divulgaciones en su propia página.",
        ),
        "sunbit" => texts(
            "Sunbit financing is subject to approval. Sunbit and its lending partners, not this \
             office, decide on your application and give you their terms and disclosures on their \
             own page.",
            "El financiamiento de Sunbit está sujeto a aprobación. Sunbit y sus socios de préstamo, \
             no este consultorio, deciden sobre su solicitud y le dan sus términos y divulgaciones \
             en su propia página.",
        ),
        // Link-only lenders (no API; the practice's own link): the same plain statement. A
        // practice replaces it with the lender's approved text (`disclosure_en`, `disclosure_es`).
        "cherry" => texts(
            "Cherry payment plans are subject to approval. Cherry, not this office, decides on \
             your application and gives you its terms and disclosures on its own page.",
            "Los planes de pago de Cherry están sujetos a aprobación. Cherry, no este consultorio, \
             decide sobre su solicitud y le da sus términos y divulgaciones en su propia página.",
        ),
        "alphaeon" => texts(
            "The Alphaeon Credit card is subject to credit approval. The card's issuer, not this \
             office, decides on your application and gives you its terms and disclosures on its \
             own page.",
            "La tarjeta Alphaeon Credit está sujeta a aprobación de crédito. El emisor de la \
             tarjeta, no este consultorio, decide sobre su solicitud y le da sus términos y \
             divulgaciones en su propia página.",
        ),
        "lendingclub" => texts(
            "LendingClub Patient Solutions financing is subject to approval. The lender, not this \
             office, decides on your application and gives you its terms and disclosures on its \
             own page.",
            "El financiamiento de LendingClub Patient Solutions está sujeto a aprobación. El \
             prestamista, no este consultorio, decide sobre su solicitud y le da sus términos y \
             divulgaciones en su propia página.",
        ),
        _ => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn california_and_new_york_have_notices_in_both_languages_and_texas_none() {
        for state in [UsState::CA, UsState::NY] {
            let n = state_notice(state).expect("a notice");
            assert!(n[&Language::En].contains("Notice"));
            assert!(n[&Language::Es].contains("Aviso"));
        }
        assert!(state_notice(UsState::TX).is_none());
        assert!(card_payment_warning(UsState::NY).is_some());
        assert!(card_payment_warning(UsState::CA).is_none());
    }

    #[test]
    fn the_shipped_texts_state_no_credit_terms() {
        let mut all: Vec<String> = Vec::new();
        for state in [UsState::CA, UsState::NY] {
            all.extend(
                state_notice(state)
                    .into_iter()
                    .flat_map(|m| m.into_values()),
            );
            all.extend(
                card_payment_warning(state)
                    .into_iter()
                    .flat_map(|m| m.into_values()),
            );
        }
        for lender in ["carecredit", "sunbit", "cherry", "alphaeon", "lendingclub"] {
            let texts = lender_disclosure(lender);
            assert_eq!(texts.len(), 2, "{lender}: English and Spanish");
            all.extend(texts.into_values());
        }
        for text in all {
            for trigger in [
                "%",
                "APR",
                "no interest",
                "months",
                "sin intereses",
                "meses",
                "$",
            ] {
                assert!(!text.contains(trigger), "`{trigger}` in: {text}");
            }
        }
    }
}
