//! The patient page, `/p/{token}`: the financing summary behind a signed, expiring link.
//!
//! It shows the practice, the treatment total, the insurance estimate, the patient's portion, the
//! approved financing with the lender's disclosure, and what Stripe collects; with links to
//! continue the lender's application (after the counsel-supplied notice), pay the deposit (a
//! redirect to the Stripe Checkout Session) and a form to accept the in-house plan. No procedure
//! codes: the workflow state the page reads has none. No JavaScript. Spanish when the patient
//! prefers it.
//!
//! The token in the URL is the page's only credential, so it also guards the accept form against
//! cross-site posts: a forger would need the token. The page sends `Referrer-Policy: no-referrer`,
//! so the token never reaches Stripe or the lender.
//!
//! A token is refused unless its MAC holds, it has not expired, its link generation is the
//! workflow's current one and the workflow is not cancelled (cancel and withdraw revoke every
//! link). Every refusal gets the same "link not valid" page, which offers to send a fresh link
//! (`POST /p/{token}/renew`: rate-limited per workflow, same answer whatever happened). Lenders
//! send the patient back to `/r/{reference}`, which is exchanged here for a fresh link.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use financing_core::{InHouseOffer, InstallmentInterval, IntervalUnit, Language, LenderId, Money};
use serde::{Deserialize, Serialize};

use super::pages::see_other;
use super::{HttpState, PracticeSite, read_patient_token, verify_patient_token};
use chairside_engine::store::WorkflowRow;
use chairside_engine::store::links::ResendOutcome;
use chairside_workflow::{LenderPhase, Stage, Status, WorkflowId};

/// At most one patient-requested resend per workflow in this interval.
const RENEW_INTERVAL: chrono::Duration = chrono::Duration::hours(1);

/// The audit kind of an accepted in-house plan.
const IN_HOUSE_ACCEPTED: &str = "in_house_accepted";

/// The page's words in one language.
#[derive(Serialize)]
struct Words {
    heading: &'static str,
    cost_heading: &'static str,
    total: &'static str,
    insurance: &'static str,
    portion: &'static str,
    financing_heading: &'static str,
    lender: &'static str,
    amount_financed: &'static str,
    apply_heading: &'static str,
    apply_text: &'static str,
    apply_button: &'static str,
    payments_heading: &'static str,
    stripe_note: &'static str,
    pay_button: &'static str,
    accept_button: &'static str,
    accepted: &'static str,
    questions: &'static str,
    preparing: &'static str,
    deposit_now: &'static str,
    plan_deposit: &'static str,
    installments: &'static str,
}

const EN: Words = Words {
    heading: "Your treatment and how to pay for it",
    cost_heading: "Cost",
    total: "Treatment total",
    insurance: "Insurance estimate",
    portion: "Your portion",
    financing_heading: "Approved financing",
    lender: "Lender",
    amount_financed: "Amount financed",
    apply_heading: "Finish your financing application",
    apply_text: "Continue your application on the lender's secure page:",
    apply_button: "Continue the application",
    payments_heading: "What you pay through Stripe",
    stripe_note: "Payments are processed securely by Stripe. We never see your card number.",
    pay_button: "Pay the deposit",
    accept_button: "Accept the payment plan",
    accepted: "You accepted the payment plan. Thank you!",
    questions: "Questions? Call",
    preparing: "We are still preparing your financing details. Please check back soon.",
    deposit_now: "Deposit, due now",
    plan_deposit: "Payment plan deposit",
    installments: "Installments",
};

const ES: Words = Words {
    heading: "Su tratamiento y cómo pagarlo",
    cost_heading: "Costo",
    total: "Total del tratamiento",
    insurance: "Estimado del seguro",
    portion: "Su parte",
    financing_heading: "Financiamiento aprobado",
    lender: "Prestamista",
    amount_financed: "Monto financiado",
    apply_heading: "Complete su solicitud de financiamiento",
    apply_text: "Continúe su solicitud en la página segura del prestamista:",
    apply_button: "Continuar la solicitud",
    payments_heading: "Lo que paga a través de Stripe",
    stripe_note: "Stripe procesa los pagos de forma segura. Nunca vemos el número de su tarjeta.",
    pay_button: "Pagar el depósito",
    accept_button: "Aceptar el plan de pagos",
    accepted: "Usted aceptó el plan de pagos. ¡Gracias!",
    questions: "¿Preguntas? Llame a",
    preparing: "Todavía estamos preparando los detalles de su financiamiento. Vuelva a consultar pronto.",
    deposit_now: "Depósito, a pagar ahora",
    plan_deposit: "Depósito del plan de pagos",
    installments: "Cuotas",
};

fn words(lang: Language) -> &'static Words {
    match lang {
        Language::Es => &ES,
        _ => &EN,
    }
}

/// The text in `lang`, else English, else nothing.
fn localized(texts: &std::collections::HashMap<Language, String>, lang: Language) -> Option<&str> {
    texts
        .get(&lang)
        .or_else(|| texts.get(&Language::En))
        .map(String::as_str)
        .filter(|t| !t.trim().is_empty())
}

fn interval_text(interval: InstallmentInterval, lang: Language) -> String {
    let es = lang == Language::Es;
    let (one, many) = match (interval.unit, es) {
        (IntervalUnit::Day, false) => ("every day", "days"),
        (IntervalUnit::Week, false) => ("every week", "weeks"),
        (IntervalUnit::Month, false) => ("every month", "months"),
        (IntervalUnit::Day, true) => ("cada día", "días"),
        (IntervalUnit::Week, true) => ("cada semana", "semanas"),
        (IntervalUnit::Month, true) => ("cada mes", "meses"),
    };
    match (interval.count, es) {
        (0 | 1, _) => one.to_owned(),
        (n, false) => format!("every {n} {many}"),
        (n, true) => format!("cada {n} {many}"),
    }
}

/// `6 × $100.00, every month`, or `$100.05, then 5 × $100.00, every month` when the first
/// carries the remainder.
fn installments_text(offer: &InHouseOffer, lang: Language) -> String {
    let every = interval_text(offer.interval, lang);
    let then = if lang == Language::Es {
        "luego"
    } else {
        "then"
    };
    match offer.installments.as_slice() {
        [] => String::new(),
        [first, rest @ ..] if rest.iter().all(|m| m == first) => {
            format!("{} × {first}, {every}", offer.installments.len())
        }
        [first, rest @ ..] => {
            format!("{first}, {then} {} × {}, {every}", rest.len(), rest[0])
        }
    }
}

#[derive(Serialize)]
struct Amounts {
    total: String,
    insurance: String,
    portion: String,
}

#[derive(Serialize)]
struct Financed {
    lender: String,
    amount: String,
    disclosure: Option<String>,
}

#[derive(Serialize)]
struct Application {
    lender: String,
    amount: Option<String>,
    notice: Option<String>,
    disclosure: Option<String>,
}

#[derive(Serialize)]
struct Line {
    what: String,
    amount: String,
}

#[derive(Serialize)]
struct Site {
    name: String,
    phone: String,
    phone_href: Option<String>,
    email: Option<String>,
}

#[derive(Serialize)]
struct PageContext {
    lang: &'static str,
    t: &'static Words,
    base: String,
    practice: Site,
    notice: Option<&'static str>,
    accepted_now: bool,
    amounts: Option<Amounts>,
    financed: Option<Financed>,
    application: Option<Application>,
    payments: Vec<Line>,
    pay_deposit: Option<String>,
    in_house_offer: bool,
    in_house_accepted: bool,
}

/// A verified token's workflow, its practice and the patient's language.
pub(crate) struct Resolved {
    pub(crate) row: WorkflowRow,
    site: Option<PracticeSite>,
    pub(crate) lang: Language,
    pub(crate) base: String,
}

/// The application's root path, with a trailing `/`.
pub(crate) fn root(state: &HttpState) -> String {
    let path = state.config.public_base_url.path().trim_end_matches('/');
    format!("{path}/")
}

/// The one page every refused token gets (forged, expired, revoked, unknown, cancelled): the
/// same words, offering a fresh link. It echoes only the URL the patient already has.
fn link_invalid(state: &HttpState, token: &str) -> Response {
    let token: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let renew = format!("{}p/{token}/renew", root(state));
    let ctx = minijinja::context! { lang => "en", renew };
    state
        .pages
        .render(StatusCode::NOT_FOUND, "link_invalid.html", ctx)
}

/// The workflow's row, if the link `generation` is its current one and it is not cancelled.
async fn current(
    state: &HttpState,
    id: &WorkflowId,
    generation: u64,
) -> Result<Option<WorkflowRow>, Response> {
    let lookup = async {
        let current = state.links().link_generation(id).await?;
        if current != generation {
            return Ok(None);
        }
        let row = state.reports().workflow(id).await?;
        Ok(row.filter(|r| r.state.status != Status::Cancelled))
    };
    lookup
        .await
        .map_err(|e: chairside_engine::store::StoreError| {
            tracing::error!(error = %e, "patient page: workflow lookup failed");
            state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en")
        })
}

pub(crate) async fn resolve(state: &HttpState, token: &str) -> Result<Resolved, Response> {
    let Ok(verified) = verify_patient_token(token, &state.config.patient_token_key, state.now())
    else {
        return Err(link_invalid(state, token));
    };
    let Some(row) = current(state, &verified.workflow, verified.generation).await? else {
        return Err(link_invalid(state, token));
    };
    let practice = &row.state.key.practice_id;
    let lang = match state
        .patients()
        .patient(practice, &row.state.patient_id)
        .await
    {
        Ok(Some(contact)) => contact.preferred_language,
        Ok(None) => Language::En,
        Err(e) => {
            // The page still works in English; the data key problem shows up elsewhere.
            tracing::warn!(error = %e, "patient page: contact unreadable");
            Language::En
        }
    };
    Ok(Resolved {
        site: state.config.practice(practice).cloned(),
        base: format!("{}p/{token}", root(state)),
        row,
        lang,
    })
}

/// The lender's name as patients know it: the configured copy, else the usual spelling of the
/// lenders Chairside ships with, else the id.
fn lender_name(state: &HttpState, lender: &LenderId) -> String {
    if let Some(copy) = state.config.lenders.get(lender) {
        return copy.name.clone();
    }
    match lender.as_str() {
        "carecredit" => "CareCredit".to_owned(),
        "sunbit" => "Sunbit".to_owned(),
        other => other.to_owned(),
    }
}

/// A North American E.164 number as people write it (`+15125550100` → `(512) 555-0100`);
/// anything else unchanged.
fn phone_text(phone: &str) -> String {
    match phone.strip_prefix("+1") {
        Some(d) if d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()) => {
            format!("({}) {}-{}", &d[..3], &d[3..6], &d[6..])
        }
        _ => phone.to_owned(),
    }
}

/// The `tel:` link of a phone number (digits and a leading `+` only), if it has digits.
fn phone_href(phone: &str) -> Option<String> {
    let digits: String = phone
        .chars()
        .enumerate()
        .filter(|&(i, c)| c.is_ascii_digit() || (i == 0 && c == '+'))
        .map(|(_, c)| c)
        .collect();
    digits
        .bytes()
        .any(|b| b.is_ascii_digit())
        .then(|| format!("tel:{digits}"))
}

fn lender_disclosure(state: &HttpState, lender: &LenderId, lang: Language) -> Option<String> {
    state
        .config
        .lenders
        .get(lender)
        .and_then(|c| localized(&c.disclosure, lang))
        .map(str::to_owned)
}

/// The lender's hosted application link, while the patient is expected to use it.
fn application_link(row: &WorkflowRow) -> Option<(&LenderId, Money, &str)> {
    match (&row.state.status, &row.state.stage) {
        (Status::Active, Stage::Financing(c)) => match &c.phase {
            LenderPhase::AwaitingPatient { link, .. } => Some((&c.lender, c.amount, link.as_str())),
            _ => None,
        },
        _ => None,
    }
}

fn deposit(row: &WorkflowRow) -> Option<Money> {
    row.state
        .result
        .as_ref()
        .map(|r| r.deposit)
        .or(row.state.deposit)
        .filter(|d| d.minor() > 0)
}

async fn in_house_accepted(state: &HttpState, row: &WorkflowRow) -> Result<bool, Response> {
    match state.reports().audit(&row.state.id).await {
        Ok(lines) => Ok(lines.iter().any(|l| l.kind == IN_HOUSE_ACCEPTED)),
        Err(e) => {
            tracing::error!(error = %e, "patient page: audit read failed");
            Err(state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en"))
        }
    }
}

/// Query of the page: `?accepted=1` after the accept form.
#[derive(Deserialize)]
pub(crate) struct PageQuery {
    accepted: Option<String>,
}

/// `GET /p/{token}`.
pub(crate) async fn page(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let (lang, t) = (r.lang, words(r.lang));
    let s = &r.row.state;
    let practice = match &r.site {
        Some(site) => Site {
            name: site.name.clone(),
            phone: phone_text(&site.phone),
            phone_href: phone_href(&site.phone),
            email: site.email.clone(),
        },
        None => Site {
            name: s.key.practice_id.to_string(),
            phone: String::new(),
            phone_href: None,
            email: None,
        },
    };
    let mut ctx = PageContext {
        lang: lang.tag(),
        t,
        base: r.base.clone(),
        practice,
        notice: None,
        accepted_now: query.accepted.as_deref() == Some("1"),
        amounts: None,
        financed: None,
        application: None,
        payments: Vec::new(),
        pay_deposit: None,
        in_house_offer: false,
        in_house_accepted: false,
    };
    match &s.split {
        Some(split) => {
            ctx.amounts = Some(Amounts {
                total: split.total.to_string(),
                insurance: split.insurance.to_string(),
                portion: split.patient_portion.to_string(),
            });
        }
        None => ctx.notice = Some(t.preparing),
    }
    if let Some((lender, amount)) = s.result.as_ref().and_then(|r| r.financed.as_ref()) {
        ctx.financed = Some(Financed {
            lender: lender_name(&state, lender),
            amount: amount.to_string(),
            disclosure: lender_disclosure(&state, lender, lang),
        });
    }
    if let Some((lender, amount, _)) = application_link(&r.row) {
        ctx.application = Some(Application {
            lender: lender_name(&state, lender),
            amount: Some(amount.to_string()),
            notice: r
                .site
                .as_ref()
                .and_then(|site| localized(&site.lender_notice, lang))
                .map(str::to_owned),
            disclosure: lender_disclosure(&state, lender, lang),
        });
        // The notice comes before any lender link, and the workflow records it was shown.
        let detail = format!("page shown with the notice before the {lender} link");
        if let Err(e) = state
            .reports()
            .append_audit(
                &s.id,
                "patient",
                "lender_notice_shown",
                &detail,
                state.now(),
            )
            .await
        {
            tracing::error!(error = %e, "patient page: audit write failed");
            return state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en");
        }
    }
    if let Some(d) = deposit(&r.row) {
        ctx.payments.push(Line {
            what: t.deposit_now.to_owned(),
            amount: d.to_string(),
        });
        if s.stripe.checkout_url.is_some() {
            ctx.pay_deposit = Some(d.to_string());
        }
    }
    if let Some(offer) = s.result.as_ref().and_then(|r| r.in_house.as_ref()) {
        if offer.deposit.minor() > 0 {
            ctx.payments.push(Line {
                what: t.plan_deposit.to_owned(),
                amount: offer.deposit.to_string(),
            });
        }
        ctx.payments.push(Line {
            what: t.installments.to_owned(),
            amount: installments_text(offer, lang),
        });
        ctx.in_house_offer = true;
        ctx.in_house_accepted = match in_house_accepted(&state, &r.row).await {
            Ok(a) => a,
            Err(res) => return res,
        };
    }
    state.pages.render(StatusCode::OK, "patient.html", ctx)
}

/// `GET /p/{token}/pay`: to the Stripe Checkout Session of the deposit.
pub(crate) async fn pay(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let s = &r.row.state;
    let url = match (&s.stripe.checkout_url, s.status) {
        (Some(url), Status::Active | Status::WaitingOnStaff | Status::Done) => url.clone(),
        _ => return state.pages.error(StatusCode::NOT_FOUND, r.lang.tag()),
    };
    if let Err(e) = state
        .reports()
        .append_audit(
            &s.id,
            "patient",
            "deposit_link_opened",
            "patient followed the deposit link",
            state.now(),
        )
        .await
    {
        tracing::error!(error = %e, "patient page: audit write failed");
    }
    see_other(&url)
}

/// `GET /p/{token}/apply`: to the lender's hosted application, while one is open.
pub(crate) async fn apply(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some((lender, _, link)) = application_link(&r.row) else {
        return state.pages.error(StatusCode::NOT_FOUND, r.lang.tag());
    };
    let detail = format!("patient followed the {lender} application link");
    if let Err(e) = state
        .reports()
        .append_audit(
            &r.row.state.id,
            "patient",
            "lender_link_opened",
            &detail,
            state.now(),
        )
        .await
    {
        tracing::error!(error = %e, "patient page: audit write failed");
    }
    see_other(link)
}

/// `POST /p/{token}/accept`: the patient accepts the in-house plan (recorded once).
pub(crate) async fn accept_in_house(
    State(state): State<HttpState>,
    Path(token): Path<String>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let s = &r.row.state;
    let offer = match (
        s.status,
        s.result.as_ref().and_then(|r| r.in_house.as_ref()),
    ) {
        (Status::Cancelled, _) | (_, None) => {
            return state.pages.error(StatusCode::NOT_FOUND, r.lang.tag());
        }
        (_, Some(offer)) => offer,
    };
    match in_house_accepted(&state, &r.row).await {
        Ok(true) => {}
        Ok(false) => {
            let detail = format!(
                "patient accepted the in-house plan: {} installments totalling {}",
                offer.installments.len(),
                offer.total
            );
            if let Err(e) = state
                .reports()
                .append_audit(&s.id, "patient", IN_HOUSE_ACCEPTED, &detail, state.now())
                .await
            {
                tracing::error!(error = %e, "patient page: audit write failed");
                return state
                    .pages
                    .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag());
            }
        }
        Err(res) => return res,
    }
    see_other(&format!("{}?accepted=1", r.base))
}

/// `POST /p/{token}/renew`: from the "link not valid" page, ask the office for a fresh link. A
/// genuine token (expired or not) of a workflow still in progress at its generation queues one
/// resend, at most one per hour per workflow; whatever happened, the answer is the same page.
pub(crate) async fn renew(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    if let Ok(read) = read_patient_token(&token, &state.config.patient_token_key) {
        match state
            .links()
            .request_link_resend(&read.workflow, read.generation, RENEW_INTERVAL, state.now())
            .await
        {
            Ok(ResendOutcome::Queued) => {
                tracing::info!(workflow = %read.workflow, "patient asked for a new link");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "patient page: resend request failed"),
        }
    }
    state.pages.render(
        StatusCode::OK,
        "link_renewed.html",
        minijinja::context! { lang => "en" },
    )
}

/// `GET /r/{reference}`: where a lender sends the patient back. The reference is opaque and
/// carries no token; it is exchanged here for a freshly issued patient page link.
pub(crate) async fn lender_return(
    State(state): State<HttpState>,
    Path(reference): Path<String>,
) -> Response {
    let not_found = || state.pages.error(StatusCode::NOT_FOUND, "en");
    if reference.len() > 64 {
        return not_found();
    }
    let (id, generation) = match state.links().resolve_return_reference(&reference).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "lender return: lookup failed");
            return state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en");
        }
    };
    match current(&state, &id, generation).await {
        Ok(Some(_)) => see_other(
            state
                .config
                .patient_link(&id, generation, state.now())
                .as_str(),
        ),
        Ok(None) => not_found(),
        Err(res) => res,
    }
}

#[cfg(test)]
mod tests;
