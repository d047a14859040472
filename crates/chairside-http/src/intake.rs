//! New-patient intake pages (docs/intake.md).
//!
//! - `/i/{token}`: the patient's own intake page (a link staff give them): they type their details,
//!   see the notice their practice's state requires, and may agree to texts under the exact
//!   wording that is recorded.
//! - `/intake/{practice}/{token}`: the practice's public intake page (the token is the practice's
//!   own, [`chairside_engine::intake::practice_page_token`]); rate-limited per practice and per
//!   client address.
//! - `/staff/intakes`: start an intake, see the practice's intakes and the public link;
//!   `/staff/intakes/{id}`: the record (what staff create in a practice system whose API cannot),
//!   and the proposed amount.
//!
//! Forms without a staff session carry a signed, expiring form token and are refused when the
//! `Origin` header names another site; every page's CSP allows forms to post only to us.

use std::net::SocketAddr;

use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chairside_engine::intake::{IntakeError, Intakes, PatientDetails, verify_practice_page_token};
use chairside_engine::store::{IntakeOrigin, IntakeRow, LinkResend};
use chrono::NaiveDate;
use financing_core::{Language, Money, PracticeId, UsState};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::HttpState;
use crate::pages::see_other;
use crate::patient::root;
use crate::staff::{client_address, forbidden, not_found, same, server_error, session, to_login};

/// A public-page form token is good for this long after the page was shown.
const FORM_LIFETIME_SECS: i64 = 3600;
/// Public intake submissions allowed per practice in [`WINDOW`].
const PER_PRACTICE: u32 = 30;
/// Public intake submissions allowed per client address in [`WINDOW`].
const PER_ADDRESS: u32 = 5;
/// The rate-limit window.
const WINDOW: Duration = Duration::from_secs(600);

fn form_mac(state: &HttpState, scope: &str, issued: i64) -> String {
    let key = state.config.patient_token_key.expose_secret();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("chairside-intake-form:{scope}:{issued}").as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// A form token for `scope` (the intake token, or the practice): `{issued}.{mac}`.
fn form_token(state: &HttpState, scope: &str) -> String {
    let issued = state.now().timestamp();
    format!("{issued}.{}", form_mac(state, scope, issued))
}

fn form_token_ok(state: &HttpState, scope: &str, token: &str) -> bool {
    let Some((issued, mac)) = token.split_once('.') else {
        return false;
    };
    let Ok(issued) = issued.parse::<i64>() else {
        return false;
    };
    let age = state.now().timestamp() - issued;
    (0..=FORM_LIFETIME_SECS).contains(&age) && same(mac, &form_mac(state, scope, issued))
}

/// A request whose `Origin` names another site is refused (browsers send it on cross-site
/// form posts); no `Origin` (older clients, scripts) is judged by the form token alone.
fn same_origin(state: &HttpState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let ours = state.config.public_base_url.origin().ascii_serialization();
    origin == ours
}

#[derive(Serialize)]
struct StateOption {
    code: &'static str,
    selected: bool,
}

const STATES: [&str; 51] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY",
];

/// The intake page's own words in one language (the texts wording is
/// [`messaging::patient_page_wording`]; the problems are
/// [`chairside_workflow::intake::IntakeProblem::describe`]).
#[derive(Serialize)]
struct IntakeWords {
    new_patient: &'static str,
    details: &'static str,
    intro: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    date_of_birth: &'static str,
    mobile_phone: &'static str,
    email: &'static str,
    state: &'static str,
    choose: &'static str,
    submit: &'static str,
    thanks: &'static str,
    done_public: &'static str,
    done_link: &'static str,
    done_link_texts: &'static str,
    done_link_end: &'static str,
    language: &'static str,
}

const WORDS_EN: IntakeWords = IntakeWords {
    new_patient: "new patient",
    details: "Your details",
    intro: "Only what the office and a financing application need. You apply for financing yourself, on the lender's own page; the office never fills it in for you.",
    first_name: "First name",
    last_name: "Last name",
    date_of_birth: "Date of birth",
    mobile_phone: "Mobile phone",
    email: "Email",
    state: "State where you live",
    choose: "Choose",
    submit: "Send my details",
    thanks: "Thank you",
    done_public: "Your details reached the office. The office will contact you about your treatment plan and the ways to pay for it.",
    done_link: "Your details reached the office. You will receive your financing options by email",
    done_link_texts: " and text",
    done_link_end: ", with a link to your page.",
    language: "Language",
};

const WORDS_ES: IntakeWords = IntakeWords {
    new_patient: "paciente nuevo",
    details: "Sus datos",
    intro: "Solo lo que el consultorio y una solicitud de financiamiento necesitan. Usted mismo solicita el financiamiento, en la página del prestamista; el consultorio nunca la completa por usted.",
    first_name: "Nombre",
    last_name: "Apellido",
    date_of_birth: "Fecha de nacimiento",
    mobile_phone: "Teléfono móvil",
    email: "Correo electrónico",
    state: "Estado donde vive",
    choose: "Elija",
    submit: "Enviar mis datos",
    thanks: "Gracias",
    done_public: "Sus datos llegaron al consultorio. El consultorio se comunicará con usted sobre su plan de tratamiento y las formas de pagarlo.",
    done_link: "Sus datos llegaron al consultorio. Recibirá sus opciones de financiamiento por correo electrónico",
    done_link_texts: " y por mensaje de texto",
    done_link_end: ", con un enlace a su página.",
    language: "Idioma",
};

fn words(lang: Language) -> &'static IntakeWords {
    match lang {
        Language::Es => &WORDS_ES,
        _ => &WORDS_EN,
    }
}

/// "Please check your details: {problem}." in `lang`.
fn check_your_details(lang: Language, problem: &str) -> String {
    match lang {
        Language::Es => format!("Revise sus datos: {problem}."),
        _ => format!("Please check your details: {problem}."),
    }
}

/// An opt-in posted against a texts wording that is not the one of the page's language now.
fn wording_changed(lang: Language) -> &'static str {
    match lang {
        Language::Es => {
            "El texto del consentimiento para mensajes cambió. Léalo de nuevo y, si está de acuerdo, vuelva a marcar la casilla."
        }
        _ => {
            "The wording of the texts agreement changed. Please read it again and, if you agree, tick the box again."
        }
    }
}

/// One entry of the page's English/Español switch.
#[derive(Serialize)]
struct LanguageLink {
    label: &'static str,
    tag: &'static str,
    href: String,
    current: bool,
}

fn language_links(page: &str, lang: Language) -> Vec<LanguageLink> {
    [(Language::En, "English"), (Language::Es, "Español")]
        .into_iter()
        .map(|(l, label)| LanguageLink {
            label,
            tag: l.tag(),
            href: format!("{page}?lang={}", l.tag()),
            current: l == lang,
        })
        .collect()
}

/// What the intake form shows (and shows again, with the problem, after a refused post).
#[derive(Serialize)]
struct FormPage {
    lang: &'static str,
    t: &'static IntakeWords,
    languages: Vec<LanguageLink>,
    practice_name: String,
    action: String,
    form: String,
    notice: Option<String>,
    wording: &'static str,
    /// The version of `wording`, posted back: consent is recorded only against the wording shown.
    version: String,
    error: Option<String>,
    first_name: String,
    last_name: String,
    date_of_birth: String,
    mobile_phone: String,
    email: String,
    states: Vec<StateOption>,
    texts: bool,
    done: bool,
    public: bool,
}

/// The intake form's fields.
#[derive(Deserialize, Default, Clone)]
pub(crate) struct IntakeForm {
    #[serde(default)]
    form: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    date_of_birth: String,
    #[serde(default)]
    mobile_phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    state: String,
    texts: Option<String>,
    /// The language the page was shown in (`en`, `es`).
    #[serde(default)]
    lang: String,
    /// The version of the texts wording the page showed.
    #[serde(default)]
    version: String,
}

impl IntakeForm {
    /// The details as typed, in the language of the page they were typed on.
    fn details(&self, lang: Language) -> PatientDetails {
        PatientDetails {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            date_of_birth: NaiveDate::parse_from_str(self.date_of_birth.trim(), "%Y-%m-%d").ok(),
            mobile_phone: self.mobile_phone.clone(),
            email: self.email.clone(),
            state: self.state.trim().parse::<UsState>().ok(),
            language: lang,
        }
    }

    /// The language of the page the form was on; `fallback` when the post does not say.
    fn language(&self, fallback: Language) -> Language {
        crate::lang::parse_tag(&self.lang).unwrap_or(fallback)
    }

    /// The patient agreed to texts under the wording of `lang` shown on the page: `Ok(false)`
    /// when the box is not ticked, `Err` when it is ticked under a wording other than the one
    /// the page shows now (it changed since, or the post is not from our page), so nothing is
    /// recorded against words the patient did not read.
    fn texts_consent(&self, lang: Language) -> Result<bool, ()> {
        if self.texts.as_deref() != Some("yes") {
            return Ok(false);
        }
        if same(&self.version, &crate::consent::wording_version(lang)) {
            Ok(true)
        } else {
            Err(())
        }
    }
}

fn states(selected: &str) -> Vec<StateOption> {
    STATES
        .iter()
        .map(|code| StateOption {
            code,
            selected: *code == selected,
        })
        .collect()
}

/// The language a new patient's pages default to at `practice` (`default_language`; English
/// when unset).
fn practice_language(state: &HttpState, practice: &PracticeId) -> Language {
    state
        .config
        .practices
        .iter()
        .find(|p| &p.id == practice)
        .map_or(Language::En, |p| p.default_language)
}

fn practice_name(state: &HttpState, practice: &PracticeId) -> String {
    state
        .config
        .practices
        .iter()
        .find(|p| &p.id == practice)
        .map_or_else(|| "Your dental office".to_owned(), |p| p.name.clone())
}

/// The notice the practice's state requires before financing is offered (the patient page shows
/// the same before any lender link), when it has one.
fn practice_notice(state: &HttpState, practice: &PracticeId, lang: Language) -> Option<String> {
    let site = state.config.practices.iter().find(|p| &p.id == practice)?;
    // In the page's language, else English (as the patient page does).
    let localized = |texts: &std::collections::HashMap<Language, String>| {
        texts
            .get(&lang)
            .or_else(|| texts.get(&Language::En))
            .cloned()
    };
    localized(&site.lender_notice).or_else(|| {
        site.state
            .and_then(crate::notices::state_notice)
            .and_then(|m| localized(&m))
    })
}

#[allow(clippy::too_many_arguments)]
fn form_page(
    state: &HttpState,
    practice: &PracticeId,
    action: String,
    scope: &str,
    values: &IntakeForm,
    error: Option<String>,
    public: bool,
    lang: Language,
) -> FormPage {
    FormPage {
        lang: lang.tag(),
        t: words(lang),
        languages: language_links(&action, lang),
        practice_name: practice_name(state, practice),
        form: form_token(state, scope),
        notice: practice_notice(state, practice, lang),
        wording: messaging::patient_page_wording(lang),
        version: crate::consent::wording_version(lang),
        action,
        error,
        first_name: values.first_name.clone(),
        last_name: values.last_name.clone(),
        date_of_birth: values.date_of_birth.clone(),
        mobile_phone: values.mobile_phone.clone(),
        email: values.email.clone(),
        states: states(values.state.trim()),
        texts: values.texts.is_some(),
        done: false,
        public,
    }
}

fn intakes(state: &HttpState) -> Intakes {
    Intakes::new(state.store.clone(), state.config.patient_token_key.clone())
}

fn refused(e: &IntakeError, lang: Language) -> Option<String> {
    match e {
        IntakeError::Invalid(problem) => Some(check_your_details(lang, &problem.describe(lang))),
        _ => None,
    }
}

fn failed(state: &HttpState, e: &IntakeError, lang: Language) -> Response {
    match e {
        IntakeError::NotFound => state.pages.error(StatusCode::NOT_FOUND, lang.tag()),
        IntakeError::AlreadyDone => done_page(state, String::new(), false, lang),
        _ => {
            tracing::error!(error = %e, "intake: store failed");
            state
                .pages
                .error(StatusCode::INTERNAL_SERVER_ERROR, lang.tag())
        }
    }
}

fn done_page(state: &HttpState, practice_name: String, public: bool, lang: Language) -> Response {
    state.pages.render(
        StatusCode::OK,
        "intake.html",
        FormPage {
            lang: lang.tag(),
            t: words(lang),
            languages: Vec::new(),
            practice_name,
            action: String::new(),
            form: String::new(),
            notice: None,
            wording: messaging::patient_page_wording(lang),
            version: String::new(),
            error: None,
            first_name: String::new(),
            last_name: String::new(),
            date_of_birth: String::new(),
            mobile_phone: String::new(),
            email: String::new(),
            states: Vec::new(),
            texts: false,
            done: true,
            public,
        },
    )
}

/// `?done=1` after a post; `?lang=es` (or `en`) chooses the page's language.
#[derive(Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
    lang: Option<String>,
}

async fn by_token(
    state: &HttpState,
    token: &str,
    lang: Language,
) -> Result<Option<IntakeRow>, Response> {
    intakes(state)
        .by_token(token)
        .await
        .map_err(|e| failed(state, &e, lang))
}

/// The language `?lang=` asks for, if it names one.
fn asked(q: &DoneQuery) -> Option<Language> {
    q.lang.as_deref().and_then(crate::lang::parse_tag)
}

/// The refused form shown again (422) with `message`, in `lang`.
#[allow(clippy::too_many_arguments)]
fn shown_again(
    state: &HttpState,
    practice: &PracticeId,
    action: String,
    scope: &str,
    form: &IntakeForm,
    message: String,
    public: bool,
    lang: Language,
) -> Response {
    let page = form_page(
        state,
        practice,
        action,
        scope,
        form,
        Some(message),
        public,
        lang,
    );
    state
        .pages
        .render(StatusCode::UNPROCESSABLE_ENTITY, "intake.html", page)
}

/// `GET /i/{token}`: the patient's intake form, with what staff typed of their name and number,
/// in the language staff chose for the patient unless the patient switches (`?lang=`).
pub(crate) async fn patient_form(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let asked = asked(&q);
    let row = match by_token(&state, &token, asked.unwrap_or_default()).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return state
                .pages
                .error(StatusCode::NOT_FOUND, asked.unwrap_or_default().tag());
        }
        Err(res) => return res,
    };
    let prefill = match intakes(&state).prefill(&row).await {
        Ok(c) => c,
        Err(e) => return failed(&state, &e, asked.unwrap_or_default()),
    };
    let lang = asked.unwrap_or_else(|| {
        prefill
            .as_ref()
            .map(|c| c.preferred_language)
            .unwrap_or_default()
    });
    if q.done.is_some() || row.details_at.is_some() {
        return done_page(&state, practice_name(&state, &row.practice_id), false, lang);
    }
    let values = prefill.map_or_else(IntakeForm::default, |c| IntakeForm {
        first_name: c.first_name,
        last_name: c.last_name,
        mobile_phone: c.mobile_phone.unwrap_or_default(),
        email: c.email.unwrap_or_default(),
        ..IntakeForm::default()
    });
    let page = form_page(
        &state,
        &row.practice_id,
        format!("{}i/{token}", root(&state)),
        &token,
        &values,
        None,
        false,
        lang,
    );
    state.pages.render(StatusCode::OK, "intake.html", page)
}

/// `POST /i/{token}`: the patient's details, in the language of the page they typed them on.
/// Starts financing when staff entered the amount.
pub(crate) async fn patient_submit(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<IntakeForm>,
) -> Response {
    let posted = crate::lang::parse_tag(&form.lang);
    if !same_origin(&state, &headers) || !form_token_ok(&state, &token, &form.form) {
        return state
            .pages
            .error(StatusCode::FORBIDDEN, posted.unwrap_or_default().tag());
    }
    let row = match by_token(&state, &token, posted.unwrap_or_default()).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return state
                .pages
                .error(StatusCode::NOT_FOUND, posted.unwrap_or_default().tag());
        }
        Err(res) => return res,
    };
    let lang = match posted {
        Some(lang) => lang,
        // A post that does not say (a page from before the switch existed): the language staff
        // chose, which the page was shown in.
        None => match intakes(&state).prefill(&row).await {
            Ok(c) => c.map(|c| c.preferred_language).unwrap_or_default(),
            Err(e) => return failed(&state, &e, Language::En),
        },
    };
    let action = format!("{}i/{token}", root(&state));
    let Ok(texts) = form.texts_consent(lang) else {
        let mut again = form.clone();
        again.texts = None;
        let message = wording_changed(lang).to_owned();
        return shown_again(
            &state,
            &row.practice_id,
            action,
            &token,
            &again,
            message,
            false,
            lang,
        );
    };
    let now = state.now();
    match intakes(&state)
        .submit(&token, &form.details(lang), texts, now)
        .await
    {
        Ok(started) => {
            if started.is_some() {
                state.poll.notify_one();
            }
            see_other(&format!(
                "{}i/{token}?done=1&lang={}",
                root(&state),
                lang.tag()
            ))
        }
        Err(e) => match refused(&e, lang) {
            Some(message) => shown_again(
                &state,
                &row.practice_id,
                action,
                &token,
                &form,
                message,
                false,
                lang,
            ),
            None => failed(&state, &e, lang),
        },
    }
}

fn known_practice(state: &HttpState, practice: &str, token: &str) -> Option<PracticeId> {
    let id = PracticeId::new(practice);
    (state.config.practices.iter().any(|p| p.id == id)
        && verify_practice_page_token(&id, token, &state.config.patient_token_key))
    .then_some(id)
}

/// `GET /intake/{practice}/{token}`: the practice's public intake page, in the language chosen
/// with `?lang=` (the page's English/Español switch), else the browser's `Accept-Language`.
pub(crate) async fn public_form(
    State(state): State<HttpState>,
    Path((practice, token)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = known_practice(&state, &practice, &token) else {
        let lang = crate::lang::choose(q.lang.as_deref(), &headers, Language::En);
        return state.pages.error(StatusCode::NOT_FOUND, lang.tag());
    };
    // With no choice and nothing from the browser: the practice's default language.
    let lang = crate::lang::choose(q.lang.as_deref(), &headers, practice_language(&state, &id));
    if q.done.is_some() {
        return done_page(&state, practice_name(&state, &id), true, lang);
    }
    let page = form_page(
        &state,
        &id,
        format!("{}intake/{practice}/{token}", root(&state)),
        id.as_str(),
        &IntakeForm::default(),
        None,
        true,
        lang,
    );
    state.pages.render(StatusCode::OK, "intake.html", page)
}

/// `POST /intake/{practice}/{token}`: a new patient's details, in the language of the page they
/// typed them on; staff add the amount.
pub(crate) async fn public_submit(
    State(state): State<HttpState>,
    Path((practice, token)): Path<(String, String)>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<IntakeForm>,
) -> Response {
    let Some(id) = known_practice(&state, &practice, &token) else {
        let lang = form.language(crate::lang::choose(None, &headers, Language::En));
        return state.pages.error(StatusCode::NOT_FOUND, lang.tag());
    };
    let lang = form.language(crate::lang::choose(
        None,
        &headers,
        practice_language(&state, &id),
    ));
    if !same_origin(&state, &headers) || !form_token_ok(&state, id.as_str(), &form.form) {
        return state.pages.error(StatusCode::FORBIDDEN, lang.tag());
    }
    let address = client_address(
        connect.as_ref().map(|Extension(ConnectInfo(a))| a),
        &headers,
        &state.config.trusted_proxies,
    );
    // The limits live in the store, shared by every instance on the database.
    match state
        .store
        .admit_intake_submission(
            &[
                (format!("practice:{id}"), PER_PRACTICE),
                (format!("address:{address}"), PER_ADDRESS),
            ],
            WINDOW,
            state.now(),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(practice = %id, "public intake page: rate limit reached");
            return state.pages.error(StatusCode::TOO_MANY_REQUESTS, lang.tag());
        }
        Err(e) => {
            tracing::error!(practice = %id, error = %e, "public intake page: rate limit store");
            return state
                .pages
                .error(StatusCode::SERVICE_UNAVAILABLE, lang.tag());
        }
    }
    let action = format!("{}intake/{practice}/{token}", root(&state));
    let Ok(texts) = form.texts_consent(lang) else {
        let mut again = form.clone();
        again.texts = None;
        let message = wording_changed(lang).to_owned();
        return shown_again(
            &state,
            &id,
            action,
            id.as_str(),
            &again,
            message,
            true,
            lang,
        );
    };
    match intakes(&state)
        .open_public(&id, &form.details(lang), texts, state.now())
        .await
    {
        Ok(_) => see_other(&format!(
            "{}intake/{practice}/{token}?done=1&lang={}",
            root(&state),
            lang.tag()
        )),
        Err(e) => match refused(&e, lang) {
            Some(message) => {
                shown_again(&state, &id, action, id.as_str(), &form, message, true, lang)
            }
            None => failed(&state, &e, lang),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Staff

#[derive(Serialize)]
struct IntakeLine {
    id: String,
    created: String,
    origin: &'static str,
    status: &'static str,
    amount: String,
    workflow_href: Option<String>,
}

fn status_of(row: &IntakeRow) -> &'static str {
    match (
        row.details_at.is_some(),
        row.amount.is_some(),
        &row.workflow_id,
    ) {
        (_, _, Some(_)) => "financing started",
        (false, _, None) => "waiting for the patient's details",
        (true, false, None) => "waiting for the amount",
        (true, true, None) => "complete",
    }
}

fn line(state: &HttpState, row: &IntakeRow) -> IntakeLine {
    IntakeLine {
        id: row.id.clone(),
        created: row.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        origin: row.origin.label(),
        status: status_of(row),
        amount: row.amount.map_or_else(|| "-".into(), |m| m.to_string()),
        workflow_href: row
            .workflow_id
            .as_ref()
            .map(|w| format!("{}staff/workflows/{w}", root(state))),
    }
}

#[derive(Serialize)]
struct StaffIntakesPage {
    root: String,
    practice_name: String,
    user: String,
    csrf: String,
    public_link: String,
    /// The start form's language choice before staff change it: the practice's default.
    default_language: &'static str,
    lines: Vec<IntakeLine>,
    created_link: Option<String>,
    error: Option<String>,
}

async fn staff_list(
    state: &HttpState,
    s: &crate::staff::Session,
    created_link: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let rows = match state.store.intakes(&s.practice, 200).await {
        Ok(r) => r,
        Err(e) => return server_error(state, &e),
    };
    let token =
        chairside_engine::intake::practice_page_token(&s.practice, &state.config.patient_token_key);
    let page = StaffIntakesPage {
        root: root(state),
        practice_name: practice_name(state, &s.practice),
        user: s.username.clone(),
        csrf: s.csrf.clone(),
        public_link: chairside_engine::links::under(
            &state.config.public_base_url,
            &format!("intake/{}/{token}", s.practice),
        )
        .to_string(),
        default_language: practice_language(state, &s.practice).tag(),
        lines: rows.iter().map(|r| line(state, r)).collect(),
        created_link,
        error,
    };
    state.pages.render(status, "staff_intakes.html", page)
}

/// `GET /staff/intakes`.
pub(crate) async fn staff_intakes(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    staff_list(&state, &s, None, None, StatusCode::OK).await
}

/// The staff form that starts an intake.
#[derive(Deserialize)]
pub(crate) struct StartForm {
    csrf: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    mobile_phone: String,
    #[serde(default)]
    email: String,
    /// Dollars, as typed (`4,800.00`).
    #[serde(default)]
    amount: String,
    #[serde(default)]
    summary: String,
    /// The language of the patient's messages (`en`, `es`).
    #[serde(default)]
    language: String,
}

/// `4,800`, `$4,800.50` -> cents; `None` for anything else.
fn parse_dollars(typed: &str) -> Option<Money> {
    let t: String = typed
        .trim()
        .trim_start_matches('$')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let dollars: i64 = whole.parse().ok()?;
    let cents: i64 = format!("{frac:0<2}").parse().ok()?;
    Some(Money::usd(dollars.checked_mul(100)?.checked_add(cents)?))
}

/// `POST /staff/intakes`: start an intake; the page shows the patient's link once.
pub(crate) async fn staff_start(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    if !same(&form.csrf, &s.csrf) {
        return forbidden(&state);
    }
    let amount = match form.amount.trim() {
        "" => None,
        typed => match parse_dollars(typed) {
            Some(m) => Some(m),
            None => {
                return staff_list(
                    &state,
                    &s,
                    None,
                    Some("The amount does not look right (for example 4,800.00).".into()),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
        },
    };
    let details = PatientDetails {
        first_name: form.first_name.clone(),
        last_name: form.last_name.clone(),
        mobile_phone: form.mobile_phone.clone(),
        email: form.email.clone(),
        language: crate::lang::parse_tag(&form.language)
            .unwrap_or_else(|| practice_language(&state, &s.practice)),
        ..PatientDetails::default()
    };
    match intakes(&state)
        .start_by_staff(
            &s.practice,
            &format!("staff:{}", s.username),
            &details,
            amount,
            Some(form.summary.clone()),
            state.now(),
        )
        .await
    {
        Ok(link) => {
            let url = chairside_engine::links::under(
                &state.config.public_base_url,
                &format!("i/{}", link.token),
            )
            .to_string();
            staff_list(&state, &s, Some(url), None, StatusCode::OK).await
        }
        Err(IntakeError::Invalid(p)) => {
            staff_list(
                &state,
                &s,
                None,
                Some(format!("The intake was not started: {p}.")),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => failed(&state, &e, Language::En),
    }
}

#[derive(Serialize)]
struct StaffIntakePage {
    root: String,
    practice_name: String,
    user: String,
    csrf: String,
    line: IntakeLine,
    summary: Option<String>,
    first_name: String,
    last_name: String,
    date_of_birth: String,
    mobile_phone: String,
    email: String,
    state: String,
    /// The patient's language: staff's choice, then the language of the page the patient typed
    /// their details on. Their messages and patient page follow it.
    language: &'static str,
    editable: bool,
    error: Option<String>,
    /// The sends of the patient's link (the first, each re-send).
    sends: Vec<SendLine>,
    /// The link can be sent again (the patient has not submitted their details).
    resendable: bool,
    /// A re-send was just queued.
    resent: bool,
}

/// One send of the intake link, as staff read it.
#[derive(Serialize)]
struct SendLine {
    seq: u32,
    requested: String,
    requested_by: String,
    status: &'static str,
    channels: String,
    error: Option<String>,
}

fn practice_time(
    state: &HttpState,
    practice: &PracticeId,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let tz = state
        .config
        .practice(practice)
        .map_or(chrono_tz::UTC, |p| p.time_zone);
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn send_line(
    state: &HttpState,
    practice: &PracticeId,
    row: &chairside_engine::store::IntakeLinkSendRow,
) -> SendLine {
    SendLine {
        seq: row.seq,
        requested: practice_time(state, practice, row.requested_at),
        requested_by: row.requested_by.clone(),
        status: match row.status.as_str() {
            "sent" => "sent",
            "failed" => "not sent",
            _ if row.attempts > 0 && row.last_error.is_some() => "waiting to retry",
            _ => "sending",
        },
        channels: row
            .channels
            .as_deref()
            .unwrap_or_default()
            .replace(',', " and "),
        error: row.last_error.clone(),
    }
}

async fn staff_intake_page(
    state: &HttpState,
    s: &crate::staff::Session,
    id: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    staff_intake_page_with(state, s, id, error, status, false).await
}

async fn staff_intake_page_with(
    state: &HttpState,
    s: &crate::staff::Session,
    id: &str,
    error: Option<String>,
    status: StatusCode,
    resent: bool,
) -> Response {
    let row = match state.store.intake(&s.practice, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(state),
        Err(e) => return server_error(state, &e),
    };
    let contact = match intakes(state).prefill(&row).await {
        Ok(c) => c,
        Err(e) => return failed(state, &e, Language::En),
    };
    let sends = match state.store.intake_link_sends(&s.practice, id).await {
        Ok(rows) => rows
            .iter()
            .map(|r| send_line(state, &s.practice, r))
            .collect(),
        Err(e) => return server_error(state, &e),
    };
    let c = contact.as_ref();
    let page = StaffIntakePage {
        root: root(state),
        practice_name: practice_name(state, &s.practice),
        user: s.username.clone(),
        csrf: s.csrf.clone(),
        line: line(state, &row),
        summary: row.summary.clone(),
        first_name: c.map(|c| c.first_name.clone()).unwrap_or_default(),
        last_name: c.map(|c| c.last_name.clone()).unwrap_or_default(),
        date_of_birth: c
            .and_then(|c| c.date_of_birth)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        mobile_phone: c.and_then(|c| c.mobile_phone.clone()).unwrap_or_default(),
        email: c.and_then(|c| c.email.clone()).unwrap_or_default(),
        state: c
            .and_then(financing_core::PatientContact::state)
            .map(|s| s.code().to_owned())
            .unwrap_or_default(),
        language: match c.map(|c| c.preferred_language).unwrap_or_default() {
            Language::Es => "Spanish (Español)",
            _ => "English",
        },
        editable: row.workflow_id.is_none(),
        error,
        sends,
        resendable: row.details_at.is_none() && row.origin == IntakeOrigin::Staff,
        resent,
    };
    state.pages.render(status, "staff_intake.html", page)
}

/// `?resent=1` after a re-send was queued.
#[derive(Deserialize, Default)]
pub(crate) struct IntakeQuery {
    #[serde(default)]
    resent: Option<String>,
}

/// `GET /staff/intakes/{id}`: the record, the link's sends, and the amount while financing has
/// not started.
pub(crate) async fn staff_intake(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<IntakeQuery>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    staff_intake_page_with(&state, &s, &id, None, StatusCode::OK, q.resent.is_some()).await
}

/// The staff form that sends the link again.
#[derive(Deserialize)]
pub(crate) struct ResendForm {
    csrf: String,
}

/// `POST /staff/intakes/{id}/resend`: send the patient their intake link again (a new send with
/// its own message key; audited; at most once per 10 minutes and 5 times a day).
pub(crate) async fn staff_resend(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ResendForm>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    if !same(&form.csrf, &s.csrf) {
        return forbidden(&state);
    }
    let actor = format!("staff:{}", s.username);
    match intakes(&state)
        .resend_link(&s.practice, &id, &actor, state.now())
        .await
    {
        Ok(LinkResend::Queued { .. }) => {
            // The runner sends it (the store rang the runner's due signal).
            see_other(&format!("{}staff/intakes/{id}?resent=1", root(&state)))
        }
        Ok(LinkResend::Refused(why)) => {
            let message = format!(
                "The link was not sent again: it can be sent again from {}.",
                practice_time(&state, &s.practice, why.allowed_from())
            );
            staff_intake_page(
                &state,
                &s,
                &id,
                Some(message),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await
        }
        Ok(LinkResend::Complete) => {
            staff_intake_page(
                &state,
                &s,
                &id,
                Some("The patient already submitted their details; the link is not needed.".into()),
                StatusCode::CONFLICT,
            )
            .await
        }
        Ok(LinkResend::NotFound) => not_found(&state),
        Err(e) => failed(&state, &e, Language::En),
    }
}

/// The staff form that sets the amount.
#[derive(Deserialize)]
pub(crate) struct ProposalForm {
    csrf: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    summary: String,
}

/// `POST /staff/intakes/{id}/proposal`: the amount (and summary); starts financing when the
/// patient's details are in.
pub(crate) async fn staff_proposal(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ProposalForm>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    if !same(&form.csrf, &s.csrf) {
        return forbidden(&state);
    }
    let Some(amount) = parse_dollars(&form.amount) else {
        return staff_intake_page(
            &state,
            &s,
            &id,
            Some("The amount does not look right (for example 4,800.00).".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    match intakes(&state)
        .set_proposal(&s.practice, &id, amount, Some(&form.summary), state.now())
        .await
    {
        Ok(started) => {
            if started.is_some() {
                state.poll.notify_one();
            }
            see_other(&format!("{}staff/intakes/{id}", root(&state)))
        }
        Err(IntakeError::Invalid(p)) => {
            staff_intake_page(
                &state,
                &s,
                &id,
                Some(format!("{p}.")),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(IntakeError::AlreadyDone) => {
            staff_intake_page(
                &state,
                &s,
                &id,
                Some("Financing has started; the amount can no longer change here.".into()),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => failed(&state, &e, Language::En),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_parse_to_cents_and_junk_is_refused() {
        assert_eq!(parse_dollars("4,800.00"), Some(Money::usd(480_000)));
        assert_eq!(parse_dollars("$1000"), Some(Money::usd(100_000)));
        assert_eq!(parse_dollars("12.5"), Some(Money::usd(1_250)));
        assert_eq!(parse_dollars("12.345"), None);
        assert_eq!(parse_dollars("-5"), None);
        assert_eq!(parse_dollars("ten"), None);
        assert_eq!(parse_dollars(""), None);
        assert_eq!(parse_dollars("99999999999999999999"), None);
    }

    use crate::testkit::{
        ALICE_PASSWORD, Kit, PATIENT_KEY, body_text, form, get, post_form, smile, with_cookie,
    };

    /// The value of the hidden `form` field on an intake page.
    fn form_of(page: &str) -> String {
        let marker = r#"name="form" value=""#;
        let start = page.find(marker).expect("a form token") + marker.len();
        page[start..].split('"').next().unwrap().to_owned()
    }

    /// The patient's details as posted from the page in English, texts ticked.
    fn patient_fields(token: &str, dob: &str) -> Vec<(&'static str, String)> {
        patient_fields_in(token, dob, Language::En)
    }

    /// The patient's details as posted from the page in `lang`: the page's language and the
    /// version of the texts wording it showed, texts ticked.
    fn patient_fields_in(token: &str, dob: &str, lang: Language) -> Vec<(&'static str, String)> {
        vec![
            ("form", token.to_owned()),
            ("first_name", "Rosa".into()),
            ("last_name", "Quintero".into()),
            ("date_of_birth", dob.to_owned()),
            ("mobile_phone", "(512) 555-0188".into()),
            ("email", "rosa@example.test".into()),
            ("state", "TX".into()),
            ("texts", "yes".into()),
            ("lang", lang.tag().into()),
            ("version", crate::consent::wording_version(lang)),
        ]
    }

    /// `fields` with `name` set to `value` (or removed when `value` is `None`).
    fn with(
        mut fields: Vec<(&'static str, String)>,
        name: &'static str,
        value: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        fields.retain(|(k, _)| *k != name);
        if let Some(v) = value {
            fields.push((name, v.to_owned()));
        }
        fields
    }

    /// A form body from owned pairs.
    fn fields(pairs: &[(&'static str, String)]) -> String {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        form(&borrowed)
    }

    async fn intake_workflows(kit: &Kit) -> usize {
        kit.store
            .workflows(Some(&smile()), None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.state.intake.is_some())
            .count()
    }

    #[tokio::test]
    async fn staff_start_an_intake_and_the_patient_completes_it_once_with_their_consent() {
        // Arrange: alice starts an intake with the name, the number and the amount.
        let kit = Kit::new().await;
        let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
        let started = kit
            .send(with_cookie(
                post_form(
                    "/staff/intakes",
                    form(&[
                        ("csrf", &csrf),
                        ("first_name", "Rosa"),
                        ("last_name", "Quintero"),
                        ("mobile_phone", "512-555-0188"),
                        ("amount", "4,800.00"),
                        ("summary", "Consultation: implant case presented."),
                    ]),
                    None,
                ),
                &session,
            ))
            .await;
        assert_eq!(started.status(), 200);
        // minijinja escapes '/' in values.
        let page = body_text(started).await.replace("&#x2f;", "/");
        let marker = "https://chairside.test/i/";
        let at = page.find(marker).expect("the patient's link is shown") + marker.len();
        let token: String = page[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let uri = format!("/i/{token}");
        let form_page = body_text(kit.send(get(&uri)).await).await;
        assert!(
            form_page.contains("value=\"Rosa\""),
            "what staff typed is prefilled"
        );
        assert!(form_page.contains(messaging::PATIENT_PAGE_WORDING));
        let good = form_of(&form_page);

        // Act + Assert: a forged or missing form token, and a cross-site post, change nothing.
        let forged = kit
            .send(post_form(
                &uri,
                fields(&patient_fields("1.abc", "1984-05-12")),
                None,
            ))
            .await;
        assert_eq!(forged.status(), 403);
        let mut cross = post_form(&uri, fields(&patient_fields(&good, "1984-05-12")), None);
        cross
            .headers_mut()
            .insert(header::ORIGIN, "https://evil.test".parse().unwrap());
        assert_eq!(kit.send(cross).await.status(), 403);
        // A birth date in the future is named, and nothing starts.
        let bad = kit
            .send(post_form(
                &uri,
                fields(&patient_fields(&good, "2999-01-01")),
                None,
            ))
            .await;
        assert_eq!(bad.status(), 422);
        assert!(
            body_text(bad)
                .await
                .contains("date of birth does not look right")
        );
        assert_eq!(intake_workflows(&kit).await, 0);

        // The patient's details: financing starts, once.
        let ok = kit
            .send(post_form(
                &uri,
                fields(&patient_fields(&good, "1984-05-12")),
                None,
            ))
            .await;
        assert_eq!(ok.status(), 303);
        let again = kit
            .send(post_form(
                &uri,
                fields(&patient_fields(&good, "1984-05-12")),
                None,
            ))
            .await;
        assert_eq!(
            again.status(),
            200,
            "a second post shows the thank-you page"
        );
        assert_eq!(intake_workflows(&kit).await, 1);
        let consent = kit
            .store
            .sms_consent(&smile(), "+15125550188")
            .await
            .unwrap()
            .expect("the patient's consent");
        assert_eq!(consent.source, messaging::sources::INTAKE_PAGE);
        assert_eq!(consent.wording, messaging::PATIENT_PAGE_WORDING);
        assert_eq!(consent.recorded_by, "patient");
        // The amount can no longer change once financing started.
        let intakes = kit.store.intakes(&smile(), 10).await.unwrap();
        let late = kit
            .send(with_cookie(
                post_form(
                    &format!("/staff/intakes/{}/proposal", intakes[0].id),
                    form(&[("csrf", &csrf), ("amount", "10.00")]),
                    None,
                ),
                &session,
            ))
            .await;
        assert_eq!(late.status(), 409);
    }

    /// The intake workflow of the practice, if one started.
    async fn intake_workflow(kit: &Kit) -> Option<chairside_engine::store::WorkflowRow> {
        kit.store
            .workflows(Some(&smile()), None, 100)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.state.intake.is_some())
    }

    /// The language of the patient behind the practice's intake workflow.
    async fn workflow_language(kit: &Kit) -> Language {
        let row = intake_workflow(kit).await.expect("an intake workflow");
        kit.store
            .patient(&smile(), &row.state.patient_id)
            .await
            .unwrap()
            .expect("the workflow's patient")
            .preferred_language
    }

    fn english_words_absent(page: &str) {
        for english in [
            "Your details",
            "First name",
            "Date of birth",
            "State where you live",
            "Send my details",
            "Text me about",
            "NOTICE-EN",
        ] {
            assert!(!page.contains(english), "English `{english}` in: {page}");
        }
    }

    /// Alice starts an intake for Rosa in Spanish (with `amount`, if any): her session, CSRF
    /// token, the intake's id and the patient's link (`/i/{token}`).
    async fn start_in_spanish(kit: &Kit, amount: Option<&str>) -> (String, String, String, String) {
        let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
        let mut fields = vec![
            ("csrf", csrf.as_str()),
            ("first_name", "Rosa"),
            ("last_name", "Quintero"),
            ("email", "rosa@example.test"),
            ("language", "es"),
        ];
        if let Some(amount) = amount {
            fields.push(("amount", amount));
        }
        let started = kit
            .send(with_cookie(
                post_form("/staff/intakes", form(&fields), None),
                &session,
            ))
            .await;
        assert_eq!(started.status(), 200);
        let id = kit.store.intakes(&smile(), 10).await.unwrap()[0].id.clone();
        let key = secrecy::SecretString::from(PATIENT_KEY);
        let uri = format!(
            "/i/{}",
            chairside_engine::intake::intake_link_token(&id, &key)
        );
        (session, csrf, id, uri)
    }

    #[tokio::test]
    async fn a_spanish_speaking_patient_types_their_details_in_spanish_and_financing_follows_in_spanish()
     {
        // Arrange: alice starts an intake in Spanish, with the amount.
        let kit = Kit::new().await;
        let (session, _, id, uri) = start_in_spanish(&kit, Some("4,800.00")).await;

        // Act + Assert: the page opens in Spanish, every string of it, with the Spanish notice
        // and texts wording, and a way back to English.
        let page = body_text(kit.send(get(&uri)).await).await;
        assert!(page.contains(r#"<html lang="es">"#), "{page}");
        for spanish in [
            "Sus datos",
            "Nombre",
            "Apellido",
            "Fecha de nacimiento",
            "Teléfono móvil",
            "Correo electrónico",
            "Estado donde vive",
            "Elija",
            "Enviar mis datos",
            "AVISO-ES",
            messaging::PATIENT_PAGE_WORDING_ES,
            ">English</a>",
            "<b lang=\"es\">Español</b>",
        ] {
            assert!(page.contains(spanish), "`{spanish}` missing: {page}");
        }
        english_words_absent(&page);
        let good = form_of(&page);

        // A birth date in the future is named in Spanish, and nothing starts.
        let bad = kit
            .send(post_form(
                &uri,
                fields(&patient_fields_in(&good, "2999-01-01", Language::Es)),
                None,
            ))
            .await;
        assert_eq!(bad.status(), 422);
        let bad = body_text(bad).await;
        assert!(
            bad.contains("Revise sus datos: la fecha de nacimiento no parece correcta."),
            "{bad}"
        );
        english_words_absent(&bad);
        assert!(
            bad.contains(" checked>"),
            "what was ticked stays ticked: {bad}"
        );
        // The box ticked under a wording the page did not show (the English one) records
        // nothing: the page asks again, in Spanish, with the box unticked.
        let mismatched = with(
            patient_fields_in(&good, "1984-05-12", Language::Es),
            "version",
            Some(&crate::consent::wording_version(Language::En)),
        );
        let refused = kit.send(post_form(&uri, fields(&mismatched), None)).await;
        assert_eq!(refused.status(), 422);
        let refused = body_text(refused).await;
        assert!(refused.contains("El texto del consentimiento"), "{refused}");
        assert!(!refused.contains(" checked>"), "{refused}");
        assert_eq!(intake_workflows(&kit).await, 0);
        assert!(
            kit.store
                .sms_consent(&smile(), "+15125550188")
                .await
                .unwrap()
                .is_none()
        );

        // The patient's details, typed on the Spanish page.
        let ok = kit
            .send(post_form(
                &uri,
                fields(&patient_fields_in(&good, "1984-05-12", Language::Es)),
                None,
            ))
            .await;
        assert_eq!(ok.status(), 303);
        let done_at = ok.headers()[header::LOCATION].to_str().unwrap().to_owned();
        assert!(done_at.ends_with("?done=1&lang=es"), "{done_at}");
        let done = body_text(kit.send(get(&format!("{uri}?done=1&lang=es"))).await).await;
        assert!(done.contains("Gracias"), "{done}");
        assert!(done.contains("Sus datos llegaron al consultorio"), "{done}");

        // The consent record holds the Spanish wording the patient ticked.
        let consent = kit
            .store
            .sms_consent(&smile(), "+15125550188")
            .await
            .unwrap()
            .expect("the patient's consent");
        assert_eq!(consent.source, messaging::sources::INTAKE_PAGE);
        assert_eq!(consent.wording, messaging::PATIENT_PAGE_WORDING_ES);
        assert_eq!(consent.recorded_by, "patient");
        // The workflow started, in Spanish: its patient's language, and its patient page.
        assert_eq!(intake_workflows(&kit).await, 1);
        assert_eq!(workflow_language(&kit).await, Language::Es);
        let wf = intake_workflow(&kit).await.unwrap().state.id;
        let patient_page = body_text(kit.send(get(&format!("/p/{}", kit.token(&wf)))).await).await;
        assert!(
            patient_page.contains(r#"<html lang="es">"#),
            "{patient_page}"
        );
        // Staff see the patient's language on the intake.
        let staff_page = body_text(
            kit.send(with_cookie(get(&format!("/staff/intakes/{id}")), &session))
                .await,
        )
        .await;
        assert!(staff_page.contains("Spanish (Español)"), "{staff_page}");
    }

    #[tokio::test]
    async fn a_patient_who_switches_to_english_on_a_spanish_intake_is_english_from_then_on() {
        // Arrange: an intake staff started in Spanish.
        let kit = Kit::new().await;
        let (_, _, _, uri) = start_in_spanish(&kit, Some("900")).await;

        // Act: the patient follows the page's English link and sends their details from there.
        let page = body_text(kit.send(get(&format!("{uri}?lang=en"))).await).await;
        assert!(page.contains(r#"<html lang="en">"#), "{page}");
        assert!(page.contains("Date of birth"), "{page}");
        assert!(page.contains(messaging::PATIENT_PAGE_WORDING), "{page}");
        assert!(page.contains(">Español</a>"), "{page}");
        let good = form_of(&page);
        let ok = kit
            .send(post_form(
                &uri,
                fields(&patient_fields_in(&good, "1984-05-12", Language::En)),
                None,
            ))
            .await;

        // Assert: English consent wording, English workflow.
        assert_eq!(ok.status(), 303);
        let consent = kit
            .store
            .sms_consent(&smile(), "+15125550188")
            .await
            .unwrap()
            .expect("consent");
        assert_eq!(consent.wording, messaging::PATIENT_PAGE_WORDING);
        assert_eq!(workflow_language(&kit).await, Language::En);
    }

    #[tokio::test]
    async fn a_practice_whose_patients_mostly_speak_spanish_opens_its_pages_and_start_form_in_spanish()
     {
        // Arrange: the practice's default language is Spanish.
        let mut config = crate::testkit::config();
        config.practices[0].default_language = Language::Es;
        let kit = Kit::with_config(config).await;
        let key = secrecy::SecretString::from(PATIENT_KEY);
        let token = chairside_engine::intake::practice_page_token(&smile(), &key);
        let uri = format!("/intake/{}/{token}", smile());

        // Act + Assert: no choice, no browser language: Spanish; the browser still wins.
        let page = body_text(kit.send(get(&uri)).await).await;
        assert!(page.contains(r#"<html lang="es">"#), "{page}");
        let mut english_browser = get(&uri);
        english_browser
            .headers_mut()
            .insert(header::ACCEPT_LANGUAGE, "en-US".parse().unwrap());
        let page = body_text(kit.send(english_browser).await).await;
        assert!(page.contains(r#"<html lang="en">"#), "{page}");
        // The start form preselects Spanish, and an intake started without a choice is Spanish.
        let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
        let list = body_text(kit.send(with_cookie(get("/staff/intakes"), &session)).await).await;
        assert!(
            list.contains(r#"<option value="es" selected>Español</option>"#),
            "{list}"
        );
        let started = kit
            .send(with_cookie(
                post_form(
                    "/staff/intakes",
                    form(&[
                        ("csrf", &csrf),
                        ("first_name", "Rosa"),
                        ("last_name", "Quintero"),
                        ("email", "rosa@example.test"),
                    ]),
                    None,
                ),
                &session,
            ))
            .await;
        assert_eq!(started.status(), 200);
        let id = kit.store.intakes(&smile(), 10).await.unwrap()[0].id.clone();
        let contact = kit
            .store
            .patient(&smile(), &chairside_workflow::intake::patient_id(&id))
            .await
            .unwrap()
            .expect("the intake's patient");
        assert_eq!(contact.preferred_language, Language::Es);
    }

    #[tokio::test]
    async fn the_public_page_speaks_the_browsers_language_offers_a_switch_and_keeps_the_patients_choice()
     {
        // Arrange
        let kit = Kit::new().await;
        let key = secrecy::SecretString::from(PATIENT_KEY);
        let token = chairside_engine::intake::practice_page_token(&smile(), &key);
        let uri = format!("/intake/{}/{token}", smile());
        let with_browser = |uri: &str, accept: &str| {
            let mut req = get(uri);
            req.headers_mut()
                .insert(header::ACCEPT_LANGUAGE, accept.parse().unwrap());
            req
        };

        // Act + Assert: the browser's first supported language by q-value; ?lang= wins.
        let spanish = body_text(
            kit.send(with_browser(&uri, "es-MX,es;q=0.9,en;q=0.8"))
                .await,
        )
        .await;
        assert!(spanish.contains(r#"<html lang="es">"#), "{spanish}");
        assert!(spanish.contains("Fecha de nacimiento"), "{spanish}");
        assert!(spanish.contains(messaging::PATIENT_PAGE_WORDING_ES));
        english_words_absent(&spanish);
        let english = body_text(
            kit.send(with_browser(&uri, "fr;q=1, en-US;q=0.9, es;q=0.4"))
                .await,
        )
        .await;
        assert!(english.contains(r#"<html lang="en">"#), "{english}");
        assert!(english.contains("Date of birth"), "{english}");
        let refused_es = body_text(kit.send(with_browser(&uri, "es;q=0, fr")).await).await;
        assert!(
            refused_es.contains(r#"<html lang="en">"#),
            "q=0 refuses Spanish"
        );
        let switched = body_text(
            kit.send(with_browser(&format!("{uri}?lang=es"), "en-US"))
                .await,
        )
        .await;
        assert!(switched.contains(r#"<html lang="es">"#), "{switched}");
        let back = body_text(
            kit.send(with_browser(&format!("{uri}?lang=en"), "es-MX"))
                .await,
        )
        .await;
        assert!(back.contains(r#"<html lang="en">"#), "{back}");
        assert!(back.contains(">Español</a>"), "the switch is on the page");

        // A missing state is named in Spanish; nothing is stored.
        let good = form_of(&spanish);
        let missing = kit
            .send(post_form(
                &uri,
                fields(&with(
                    patient_fields_in(&good, "1984-05-12", Language::Es),
                    "state",
                    Some(""),
                )),
                None,
            ))
            .await;
        assert_eq!(missing.status(), 422);
        let missing = body_text(missing).await;
        assert!(
            missing.contains("Revise sus datos: falta el estado donde vive."),
            "{missing}"
        );
        assert!(kit.store.intakes(&smile(), 10).await.unwrap().is_empty());

        // The details, sent from the Spanish page.
        let ok = kit
            .send(post_form(
                &uri,
                fields(&patient_fields_in(&good, "1984-05-12", Language::Es)),
                None,
            ))
            .await;
        assert_eq!(ok.status(), 303);
        let done = body_text(kit.send(get(&format!("{uri}?done=1&lang=es"))).await).await;
        assert!(
            done.contains("El consultorio se comunicará con usted"),
            "{done}"
        );
        let consent = kit
            .store
            .sms_consent(&smile(), "+15125550188")
            .await
            .unwrap()
            .expect("consent");
        assert_eq!(consent.wording, messaging::PATIENT_PAGE_WORDING_ES);
        // Staff add the amount: the workflow is the patient's, in Spanish.
        let row = kit.store.intakes(&smile(), 10).await.unwrap()[0].clone();
        let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
        let res = kit
            .send(with_cookie(
                post_form(
                    &format!("/staff/intakes/{}/proposal", row.id),
                    form(&[("csrf", &csrf), ("amount", "1,200")]),
                    None,
                ),
                &session,
            ))
            .await;
        assert_eq!(res.status(), 303);
        assert_eq!(workflow_language(&kit).await, Language::Es);
        // A stale form is refused in the patient's language.
        let stale = kit
            .send(post_form(
                &uri,
                fields(&with(
                    patient_fields_in(&good, "1984-05-12", Language::Es),
                    "form",
                    Some("1.forged"),
                )),
                None,
            ))
            .await;
        assert_eq!(stale.status(), 403);
        assert!(body_text(stale).await.contains("El formulario venció"));
    }

    #[tokio::test]
    async fn the_public_page_needs_the_practice_token_is_rate_limited_and_waits_for_the_amount() {
        // Arrange
        let kit = Kit::new().await;
        let key = secrecy::SecretString::from(PATIENT_KEY);
        let token = chairside_engine::intake::practice_page_token(&smile(), &key);
        let uri = format!("/intake/{}/{token}", smile());
        assert_eq!(
            kit.send(get(&format!("/intake/{}/guess", smile())))
                .await
                .status(),
            404
        );
        let good = form_of(&body_text(kit.send(get(&uri)).await).await);

        // Act: five submissions from one address pass, taking turns between two instances on
        // the same store; the sixth, on the second instance, is refused: the limit is shared.
        let second = kit.another_instance();
        let on_second = |req: axum::http::Request<axum::body::Body>| {
            let mut req = req;
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 50_001))));
            tower::ServiceExt::oneshot(crate::router(second.clone()), req)
        };
        for n in 0..PER_ADDRESS {
            let req = post_form(&uri, fields(&patient_fields(&good, "1984-05-12")), None);
            let res = if n % 2 == 0 {
                kit.send(req).await
            } else {
                on_second(req).await.unwrap()
            };
            assert_eq!(res.status(), 303);
        }
        let sixth = on_second(post_form(
            &uri,
            fields(&patient_fields(&good, "1984-05-12")),
            None,
        ))
        .await
        .unwrap();

        // Assert
        assert_eq!(sixth.status(), 429);
        let rows = kit.store.intakes(&smile(), 10).await.unwrap();
        assert_eq!(rows.len(), PER_ADDRESS as usize);
        assert!(
            rows.iter()
                .all(|r| r.amount.is_none() && r.details_at.is_some())
        );
        assert_eq!(
            intake_workflows(&kit).await,
            0,
            "no amount yet: nothing starts"
        );

        // Staff add the amount: financing starts.
        let (session, csrf) = kit.login("alice", ALICE_PASSWORD).await;
        let res = kit
            .send(with_cookie(
                post_form(
                    &format!("/staff/intakes/{}/proposal", rows[0].id),
                    form(&[("csrf", &csrf), ("amount", "1,200")]),
                    None,
                ),
                &session,
            ))
            .await;
        assert_eq!(res.status(), 303);
        assert_eq!(intake_workflows(&kit).await, 1);
        // Another practice's staff cannot see it.
        let (olga, _) = kit.login("olga", "olga's password").await;
        let res = kit
            .send(with_cookie(
                get(&format!("/staff/intakes/{}", rows[0].id)),
                &olga,
            ))
            .await;
        assert_eq!(res.status(), 404);
    }

    #[tokio::test]
    async fn staff_send_the_link_again_at_most_every_ten_minutes_audited_until_the_patient_submits_in_their_language()
     {
        // Arrange: alice starts an intake with an email; its first send is queued with it.
        let kit = Kit::new().await;
        let (session, csrf, id, _) = start_in_spanish(&kit, None).await;
        let sends = kit.store.intake_link_sends(&smile(), &id).await.unwrap();
        assert_eq!(sends.len(), 1, "the first send is queued with the intake");
        assert_eq!(sends[0].requested_by, "staff:alice");
        let resend = |csrf: &str| {
            with_cookie(
                post_form(
                    &format!("/staff/intakes/{id}/resend"),
                    form(&[("csrf", csrf)]),
                    None,
                ),
                &session,
            )
        };

        // Act + Assert: a forged CSRF token changes nothing.
        assert_eq!(kit.send(resend("forged")).await.status(), 403);
        // Right after the first send: refused, naming when it may go again.
        let soon = kit.send(resend(&csrf)).await;
        assert_eq!(soon.status(), 429);
        assert!(body_text(soon).await.contains("it can be sent again from"));
        assert_eq!(
            kit.store
                .intake_link_sends(&smile(), &id)
                .await
                .unwrap()
                .len(),
            1
        );

        // Eleven minutes later: queued as a new send, audited with who asked.
        kit.advance(chrono::Duration::minutes(11));
        let ok = kit.send(resend(&csrf)).await;
        assert_eq!(ok.status(), 303);
        let sends = kit.store.intake_link_sends(&smile(), &id).await.unwrap();
        assert_eq!(sends.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![0, 1]);
        let audit = kit
            .store
            .audit(&chairside_workflow::WorkflowId::new(id.clone()))
            .await
            .unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.actor == "staff:alice" && a.kind == "intake_link_resend"),
            "{audit:?}"
        );
        let page = body_text(
            kit.send(with_cookie(
                get(&format!("/staff/intakes/{id}?resent=1")),
                &session,
            ))
            .await,
        )
        .await;
        assert!(page.contains("The link is being sent again."), "{page}");
        assert!(page.contains("again #1"), "{page}");
        assert!(page.contains("Send the link again"), "{page}");
        // The re-sent link opens the intake: the stored hash is the derived link's.
        let key = secrecy::SecretString::from(PATIENT_KEY);
        let token = chairside_engine::intake::intake_link_token(&id, &key);
        let form_page = kit.send(get(&format!("/i/{token}"))).await;
        assert_eq!(form_page.status(), 200);
        let good = form_of(&body_text(form_page).await);

        // Once the patient submitted their details, the link is not sent again. (The post does
        // not say its language, as from a page served before the switch existed: the language
        // staff chose, which the page was shown in, is taken.)
        let submitted = kit
            .send(post_form(
                &format!("/i/{token}"),
                fields(&with(
                    patient_fields_in(&good, "1984-05-12", Language::Es),
                    "lang",
                    None,
                )),
                None,
            ))
            .await;
        assert_eq!(submitted.status(), 303);
        let contact = kit
            .store
            .patient(&smile(), &chairside_workflow::intake::patient_id(&id))
            .await
            .unwrap()
            .expect("the patient's details");
        assert_eq!(
            contact.preferred_language,
            Language::Es,
            "a post that does not say its language keeps the one staff chose"
        );
        kit.advance(chrono::Duration::minutes(11));
        assert_eq!(kit.send(resend(&csrf)).await.status(), 409);
        // An intake of no one's is not found.
        let nobody = kit
            .send(with_cookie(
                post_form(
                    "/staff/intakes/in_nobody/resend",
                    form(&[("csrf", &csrf)]),
                    None,
                ),
                &session,
            ))
            .await;
        assert_eq!(nobody.status(), 404);
        assert_eq!(
            kit.store
                .intake_link_sends(&smile(), &id)
                .await
                .unwrap()
                .len(),
            2
        );
    }
}
