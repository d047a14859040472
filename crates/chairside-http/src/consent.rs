//! SMS consent from people: the patient page's opt-in (its own small form, so the page itself can
//! change freely) and the staff dashboard's record of consent given at the desk or withdrawn.
//!
//! Each is one entry in the number's consent history (`PatientStore::record_sms_consent`) with the
//! exact wording shown, when and who; the store folds it with `messaging::supersedes`, so a
//! withdrawal always wins and a staff grant never overrides the patient's STOP.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use financing_core::Language;
use messaging::{
    ConsentEntry, ConsentKind, STAFF_IN_PERSON_WORDING, STAFF_INTAKE_FORM_WORDING,
    patient_page_wording, sources,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::HttpState;
use crate::pages::see_other;
use crate::patient::resolve;
use crate::staff::{forbidden, not_found, own_workflow, same, server_error, session, to_login};

/// The audit kind of a consent change made on the page or the dashboard.
pub(crate) const AUDIT_KIND: &str = "sms_consent";

/// The version of the page's wording (in `lang`) the form carries: an opt-in is recorded only
/// against the wording the patient was shown.
pub(crate) fn wording_version(lang: Language) -> String {
    hex::encode(&Sha256::digest(patient_page_wording(lang).as_bytes())[..8])
}

/// The language whose wording a form's `version` names, if any.
fn shown_language(version: &str) -> Option<Language> {
    [Language::En, Language::Es]
        .into_iter()
        .find(|&lang| wording_version(lang) == version)
}

/// The page's own words, in the patient's language (the consent wording itself is
/// [`patient_page_wording`]).
#[derive(Serialize)]
struct OptInWords {
    title: &'static str,
    thanks: &'static str,
    at_number: &'static str,
    stop: &'static str,
    goes_to: &'static str,
    change: &'static str,
    submit: &'static str,
    no_mobile: &'static str,
    back: &'static str,
}

fn opt_in_words(lang: Language) -> OptInWords {
    match lang {
        Language::Es => OptInWords {
            title: "Mensajes de texto de su consultorio dental",
            thanks: "Gracias. Le enviaremos mensajes de texto sobre su financiamiento",
            at_number: "al número que termina en",
            stop: "Responda STOP en cualquier momento para dejarlos de recibir.",
            goes_to: "Los mensajes van al número móvil que termina en",
            change: "Para cambiarlo, llame a su consultorio dental.",
            submit: "Envíenme mensajes",
            no_mobile: "Su consultorio dental no tiene un número móvil suyo. Llame al consultorio para agregarlo.",
            back: "Volver",
        },
        _ => OptInWords {
            title: "Texts from your dental office",
            thanks: "Thank you. We will text you about your financing",
            at_number: "at the number ending in",
            stop: "Reply STOP at any time to stop.",
            goes_to: "Texts go to the mobile number ending in",
            change: "To change it, call your dental office.",
            submit: "Text me",
            no_mobile: "Your dental office has no mobile number for you. Call the office to add one.",
            back: "Back",
        },
    }
}

#[derive(Serialize)]
struct OptInPage {
    lang: &'static str,
    t: OptInWords,
    action: String,
    back: String,
    wording: &'static str,
    version: String,
    phone_end: Option<String>,
    done: bool,
}

/// `?done=1` after the form.
#[derive(Deserialize)]
pub(crate) struct OptInQuery {
    done: Option<String>,
}

/// The last four digits of the number, all a page shows of it.
fn phone_end(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(4)..].iter().collect()
}

/// `GET /p/{token}/texts`: the opt-in, with the wording that is stored when the patient agrees.
pub(crate) async fn opt_in_form(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    axum::extract::Query(q): axum::extract::Query<OptInQuery>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let phone = match state
        .patients()
        .patient(&r.row.state.key.practice_id, &r.row.state.patient_id)
        .await
    {
        Ok(c) => c.and_then(|c| c.mobile_phone),
        Err(e) => {
            tracing::error!(error = %e, "texts opt-in: contact unreadable");
            return state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en");
        }
    };
    let page = OptInPage {
        lang: r.lang.tag(),
        t: opt_in_words(r.lang),
        action: format!("{}/texts", r.base),
        back: r.base.clone(),
        wording: patient_page_wording(r.lang),
        version: wording_version(r.lang),
        phone_end: phone.as_deref().map(phone_end),
        done: q.done.is_some(),
    };
    state
        .pages
        .render(StatusCode::OK, "texts_opt_in.html", page)
}

/// The opt-in form.
#[derive(Deserialize)]
pub(crate) struct OptInForm {
    agree: Option<String>,
    version: String,
}

/// `POST /p/{token}/texts`: records the patient's opt-in with the wording shown (written
/// consent: the patient ticked the box under it).
pub(crate) async fn opt_in(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    Form(form): Form<OptInForm>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let shown = shown_language(&form.version);
    let (Some("yes"), Some(shown)) = (form.agree.as_deref(), shown) else {
        // Not ticked, or the wording changed since the page was shown: show it again.
        return see_other(&format!("{}/texts", r.base));
    };
    let wording = patient_page_wording(shown);
    let s = &r.row.state;
    let practice = &s.key.practice_id;
    let phone = match state.patients().patient(practice, &s.patient_id).await {
        Ok(Some(c)) => c.mobile_phone,
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "texts opt-in: contact unreadable");
            return state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en");
        }
    };
    let Some(phone) = phone else {
        return state.pages.error(StatusCode::NOT_FOUND, r.lang.tag());
    };
    let now = state.now();
    let entry = ConsentEntry::grant(
        ConsentKind::Written,
        sources::PATIENT_PAGE,
        wording,
        "patient",
        now,
    );
    let recorded = async {
        let record = state
            .patients()
            .record_sms_consent(practice, &phone, &entry, now)
            .await?;
        let detail = format!(
            "patient opted in to texts on the patient page (wording {}, {})",
            form.version,
            shown.tag()
        );
        state
            .reports()
            .append_audit(&s.id, "patient", AUDIT_KIND, &detail, now)
            .await?;
        Ok::<_, chairside_engine::store::StoreError>(record)
    };
    match recorded.await {
        Ok(_) => see_other(&format!("{}/texts?done=1", r.base)),
        Err(e) => {
            tracing::error!(error = %e, "texts opt-in: store failed");
            state
                .pages
                .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag())
        }
    }
}

/// The dashboard's consent form.
#[derive(Deserialize)]
pub(crate) struct StaffConsentForm {
    csrf: String,
    /// `in_person`, `intake_form` or `withdrawn`.
    choice: String,
}

/// The entry a staff choice records, by `actor`, at `now`.
fn staff_entry(
    choice: &str,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<ConsentEntry> {
    Some(match choice {
        "in_person" => ConsentEntry::grant(
            ConsentKind::Informational,
            sources::STAFF_IN_PERSON,
            STAFF_IN_PERSON_WORDING,
            actor,
            now,
        ),
        "intake_form" => ConsentEntry::grant(
            ConsentKind::Written,
            sources::STAFF_INTAKE_FORM,
            STAFF_INTAKE_FORM_WORDING,
            actor,
            now,
        ),
        "withdrawn" => ConsentEntry::withdrawal(
            sources::STAFF_WITHDRAWAL,
            "Staff recorded that the patient asked for no more texts.",
            actor,
            now,
        ),
        _ => return None,
    })
}

/// `POST /staff/workflows/{id}/sms-consent`: staff record consent given at the desk ("agreed in
/// person", "on the intake form") or a withdrawal, for the workflow's patient's mobile number. A
/// staff grant never overrides a withdrawal on record: only the patient's START or page opt-in does.
pub(crate) async fn staff_record(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<StaffConsentForm>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    if !same(&form.csrf, &s.csrf) {
        return forbidden(&state);
    }
    let row = match own_workflow(&state, &s, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&state),
        Err(e) => return server_error(&state, &e),
    };
    let now = state.now();
    let actor = format!("staff:{}", s.username);
    let Some(entry) = staff_entry(&form.choice, &actor, now) else {
        return state.pages.error(StatusCode::BAD_REQUEST, "en");
    };
    let practice = &row.state.key.practice_id;
    let phone = match state
        .patients()
        .patient(practice, &row.state.patient_id)
        .await
    {
        Ok(c) => c.and_then(|c| c.mobile_phone),
        Err(e) => return server_error(&state, &e),
    };
    let Some(phone) = phone else {
        // No mobile number on file: nothing to record consent for.
        return state.pages.error(StatusCode::CONFLICT, "en");
    };
    let recorded = async {
        let record = state
            .patients()
            .record_sms_consent(practice, &phone, &entry, now)
            .await?;
        let detail = format!(
            "{}; texts now {}",
            entry.source,
            if record.opted_out {
                "withdrawn"
            } else if record.consent.is_some() {
                "allowed"
            } else {
                "not consented"
            }
        );
        state
            .reports()
            .append_audit(&row.state.id, &actor, AUDIT_KIND, &detail, now)
            .await
    };
    match recorded.await {
        Ok(()) => see_other(&format!(
            "{}staff/workflows/{}",
            crate::patient::root(&state),
            row.state.id
        )),
        Err(e) => server_error(&state, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_choices_map_to_their_records() {
        let now = chrono::Utc::now();
        let e = staff_entry("in_person", "staff:alice", now).unwrap();
        assert_eq!(e.grant, Some(ConsentKind::Informational));
        assert_eq!(e.source, sources::STAFF_IN_PERSON);
        assert_eq!(e.recorded_by, "staff:alice");
        let e = staff_entry("intake_form", "staff:alice", now).unwrap();
        assert_eq!(e.grant, Some(ConsentKind::Written));
        let e = staff_entry("withdrawn", "staff:alice", now).unwrap();
        assert_eq!(e.grant, None);
        assert!(staff_entry("anything", "staff:alice", now).is_none());
    }

    use crate::testkit::{
        ALICE_PASSWORD, Kit, PHONE, body_text, form, get, post_form, smile, with_cookie,
    };

    #[tokio::test]
    async fn the_page_opt_in_records_the_wording_shown_and_grants_after_a_stop() {
        // Arrange: the patient texted STOP earlier.
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        kit.store
            .set_sms_opt_out(&smile(), PHONE, true, sources::SMS_STOP, kit.now())
            .await
            .unwrap();
        kit.advance(chrono::Duration::minutes(5));
        let base = format!("/p/{}/texts", kit.token(&wf));
        let page = body_text(kit.send(get(&base)).await).await;
        assert!(page.contains("0123"), "the number's end is shown");
        assert!(!page.contains("5555550123"), "never the whole number");

        // Act: a stale wording version is refused, the current one recorded.
        let stale = kit
            .send(post_form(
                &base,
                form(&[("agree", "yes"), ("version", "0000")]),
                None,
            ))
            .await;
        let unticked = kit
            .send(post_form(
                &base,
                form(&[("version", &wording_version(Language::En))]),
                None,
            ))
            .await;
        assert!(kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());
        let res = kit
            .send(post_form(
                &base,
                form(&[
                    ("agree", "yes"),
                    ("version", &wording_version(Language::En)),
                ]),
                None,
            ))
            .await;

        // Assert
        assert_eq!(stale.status(), 303);
        assert_eq!(unticked.status(), 303);
        assert_eq!(res.status(), 303);
        let record = kit
            .store
            .sms_consent(&smile(), PHONE)
            .await
            .unwrap()
            .unwrap();
        assert!(!record.opted_out);
        assert_eq!(record.consent, Some(ConsentKind::Written));
        assert_eq!(record.source, sources::PATIENT_PAGE);
        assert_eq!(record.wording, messaging::PATIENT_PAGE_WORDING);
        assert_eq!(record.recorded_by, "patient");
        let audit = kit.store.audit(&wf).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.kind == AUDIT_KIND && a.actor == "patient")
        );
    }

    #[tokio::test]
    async fn a_spanish_speaking_patient_reads_the_opt_in_in_spanish_and_the_spanish_wording_is_stored()
     {
        // Arrange
        let kit = Kit::new().await;
        let wf = kit
            .seed(kit.financing_state(smile(), "tx-es", "pat-es"))
            .await;
        let base = format!("/p/{}/texts", kit.token(&wf));

        // Act
        let page = body_text(kit.send(get(&base)).await).await;
        let res = kit
            .send(post_form(
                &base,
                form(&[
                    ("agree", "yes"),
                    ("version", &wording_version(Language::Es)),
                ]),
                None,
            ))
            .await;
        let done = body_text(kit.send(get(&format!("{base}?done=1"))).await).await;

        // Assert: the page, its consent wording and its thanks are Spanish; the record holds the
        // Spanish wording the patient ticked.
        assert!(page.contains(r#"<html lang="es">"#), "{page}");
        assert!(
            page.contains("Mensajes de texto de su consultorio dental"),
            "{page}"
        );
        assert!(
            page.contains("Envíenme mensajes de texto sobre el financiamiento"),
            "{page}"
        );
        assert!(
            !page.contains("Text me about"),
            "English on a Spanish page: {page}"
        );
        assert_eq!(res.status(), 303);
        assert!(done.contains("Gracias."), "{done}");
        let record = kit
            .store
            .sms_consent(&smile(), PHONE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.consent, Some(ConsentKind::Written));
        assert_eq!(record.wording, messaging::PATIENT_PAGE_WORDING_ES);
    }

    /// Whether the patient page links to the texts opt-in.
    async fn offers_texts(kit: &Kit, wf: &chairside_workflow::WorkflowId) -> bool {
        let page = body_text(kit.send(get(&format!("/p/{}", kit.token(wf)))).await)
            .await
            .replace("&#x2f;", "/");
        page.contains(&format!("/p/{}/texts\"", kit.token(wf)))
            && page.contains("Get text messages about your financing")
    }

    #[tokio::test]
    async fn the_patient_page_offers_texts_until_the_number_has_consent_and_again_after_a_stop() {
        // Arrange: no consent on record for the patient's mobile number.
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let offered_without = offers_texts(&kit, &wf).await;

        // Act: the patient opts in on the page, then texts STOP.
        let base = format!("/p/{}/texts", kit.token(&wf));
        kit.send(post_form(
            &base,
            form(&[
                ("agree", "yes"),
                ("version", &wording_version(Language::En)),
            ]),
            None,
        ))
        .await;
        let offered_with = offers_texts(&kit, &wf).await;
        let later = kit.now() + chrono::Duration::minutes(10);
        kit.store
            .set_sms_opt_out(&smile(), PHONE, true, sources::SMS_STOP, later)
            .await
            .unwrap();
        let offered_after_stop = offers_texts(&kit, &wf).await;

        // Assert: only the patient can opt in again after a STOP, so the page offers it.
        assert!(offered_without, "no consent: the page offers texts");
        assert!(!offered_with, "consent given: no offer");
        assert!(offered_after_stop, "after a STOP: offered again");
    }

    #[tokio::test]
    async fn the_patient_page_offers_no_texts_without_a_mobile_number_or_a_contact_and_keeps_the_language()
     {
        // Arrange: a Spanish-speaking patient's contact without a mobile number, and a workflow
        // whose patient has no contact at all.
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let contact = financing_core::PatientContact {
            id: financing_core::PatientId::new("pat-1"),
            first_name: crate::testkit::FIRST.into(),
            last_name: crate::testkit::LAST.into(),
            date_of_birth: None,
            mobile_phone: None,
            email: Some(crate::testkit::EMAIL.into()),
            address: None,
            preferred_language: Language::Es,
            time_zone: None,
            sms_consent: financing_core::SmsConsent::None,
        };
        kit.store
            .put_patient(&smile(), &contact, kit.now())
            .await
            .unwrap();
        let unknown = kit
            .seed(kit.financing_state(smile(), "tx-2", "pat-unknown"))
            .await;

        // Act
        let page = body_text(kit.send(get(&format!("/p/{}", kit.token(&wf)))).await).await;
        let texts = format!("/p/{}/texts", kit.token(&wf));
        let other = body_text(kit.send(get(&format!("/p/{}", kit.token(&unknown)))).await).await;
        let other_texts = format!("/p/{}/texts", kit.token(&unknown));

        // Assert: the contact read once for the page gives both its language and its number.
        assert!(page.contains("lang=\"es\""), "{page}");
        assert!(!page.replace("&#x2f;", "/").contains(&texts), "{page}");
        assert!(
            !other.replace("&#x2f;", "/").contains(&other_texts),
            "{other}"
        );
        assert!(other.contains("lang=\"en\""), "{other}");
    }

    #[tokio::test]
    async fn a_staff_grant_never_overrides_a_stop_but_a_staff_withdrawal_wins() {
        // Arrange
        let kit = Kit::new().await;
        let wf = kit.seed_workflow("tx-1").await;
        let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
        let uri = format!("/staff/workflows/{wf}/sms-consent");
        let choose = |choice: &str| {
            with_cookie(
                post_form(&uri, form(&[("csrf", &csrf), ("choice", choice)]), None),
                &session,
            )
        };

        // Act + Assert: agreed at the desk -> allowed, recorded by alice.
        assert_eq!(kit.send(choose("intake_form")).await.status(), 303);
        let r = kit
            .store
            .sms_consent(&smile(), PHONE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.consent, Some(ConsentKind::Written));
        assert_eq!(r.recorded_by, "staff:alice");
        assert_eq!(r.wording, STAFF_INTAKE_FORM_WORDING);

        // The patient texts STOP; a later "agreed in person" does not re-subscribe them.
        kit.advance(chrono::Duration::minutes(1));
        kit.store
            .set_sms_opt_out(&smile(), PHONE, true, sources::SMS_STOP, kit.now())
            .await
            .unwrap();
        kit.advance(chrono::Duration::minutes(1));
        assert_eq!(kit.send(choose("in_person")).await.status(), 303);
        assert!(kit.store.sms_opted_out(&smile(), PHONE).await.unwrap());

        // A bad CSRF token and an unknown choice change nothing.
        let forged = with_cookie(
            post_form(
                &uri,
                form(&[("csrf", "forged"), ("choice", "in_person")]),
                None,
            ),
            &session,
        );
        assert_eq!(kit.send(forged).await.status(), 403);
        assert_eq!(kit.send(choose("sure")).await.status(), 400);
        let history = kit
            .store
            .sms_consent_history(&smile(), PHONE)
            .await
            .unwrap();
        assert_eq!(history.len(), 3, "intake form, STOP, in person");
        assert!(!history[2].effective);
    }

    #[test]
    fn the_page_shows_only_the_last_four_digits() {
        assert_eq!(phone_end("+15555550142"), "0142");
        assert_eq!(phone_end("12"), "12");
    }
}
