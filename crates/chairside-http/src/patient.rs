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

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use financing_core::{InHouseOffer, InstallmentInterval, IntervalUnit, Language, LenderId, Money};
use serde::Serialize;

use super::pages::see_other;
use super::{HttpState, PracticeSite, read_patient_token, verify_patient_token};
use chairside_engine::store::links::ResendOutcome;
use chairside_engine::store::{PageMark, WorkflowRow};
use chairside_workflow::{LenderPhase, Stage, Status, WorkflowId};

/// At most one patient-requested resend per workflow in this interval.
const RENEW_INTERVAL: chrono::Duration = chrono::Duration::hours(1);

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
    decline_button: &'static str,
    accepted: &'static str,
    declined: &'static str,
    answer_received: &'static str,
    offer_heading: &'static str,
    offer_text: &'static str,
    deposit_paid: &'static str,
    receipt: &'static str,
    preparing_payment: &'static str,
    preparing_payment_text: &'static str,
    questions: &'static str,
    preparing: &'static str,
    deposit_now: &'static str,
    plan_deposit: &'static str,
    installments: &'static str,
    save_card_button: &'static str,
    use_saved_card_button: &'static str,
    invoices_button: &'static str,
    card_saved: &'static str,
    card_failed: &'static str,
    pay_instead: &'static str,
    copay_due: &'static str,
    copay_paid: &'static str,
    pay_copay: &'static str,
    pay_installment: &'static str,
    status_heading: &'static str,
    promotion: &'static str,
    term: &'static str,
    apr: &'static str,
    terms_note: &'static str,
    start_again_button: &'static str,
    restarting: &'static str,
    texts_link: &'static str,
}

/// The live status line in one language (`{lender}` and `{amount}` filled in).
struct StatusWords {
    preparing: &'static str,
    applying: &'static str,
    prequalified: &'static str,
    lapsed: &'static str,
    in_review: &'static str,
    plan_offered: &'static str,
    approved: &'static str,
    paid: &'static str,
    nothing_due: &'static str,
    declined: &'static str,
    with_the_office: &'static str,
}

const STATUS_EN: StatusWords = StatusWords {
    preparing: "Preparing: we are getting your financing options ready.",
    applying: "Applying: finish your application on {lender}'s secure page.",
    prequalified: "Prequalified: {lender} prequalified you for up to {amount}. Finish on {lender}'s page to complete your financing.",
    lapsed: "Your {lender} session ended. If you finished your application, {lender} is reviewing it and we will let you know. If you did not, you can start again.",
    in_review: "Pending: {lender} is reviewing your application. We will let you know as soon as it decides.",
    plan_offered: "Our office offers you a payment plan: see it below.",
    approved: "Approved: your financing is arranged.",
    paid: "Paid: thank you, we received your payment.",
    nothing_due: "Nothing to pay: your insurance estimate covers your treatment.",
    declined: "Not approved: the lenders could not approve financing this time. Our office will call you to talk about other ways to pay.",
    with_the_office: "Our office is reviewing your plan and will contact you.",
};

const STATUS_ES: StatusWords = StatusWords {
    preparing: "En preparación: estamos preparando sus opciones de financiamiento.",
    applying: "Solicitud en curso: complete su solicitud en la página segura de {lender}.",
    prequalified: "Precalificado: {lender} lo precalificó por hasta {amount}. Termine en la página de {lender} para completar su financiamiento.",
    lapsed: "Su sesión con {lender} terminó. Si completó su solicitud, {lender} la está revisando y le avisaremos. Si no, puede empezar de nuevo.",
    in_review: "Pendiente: {lender} está revisando su solicitud. Le avisaremos en cuanto decida.",
    plan_offered: "Nuestro consultorio le ofrece un plan de pagos: véalo abajo.",
    approved: "Aprobado: su financiamiento está listo.",
    paid: "Pagado: gracias, recibimos su pago.",
    nothing_due: "Nada que pagar: el estimado de su seguro cubre su tratamiento.",
    declined: "No aprobado: los prestamistas no pudieron aprobar el financiamiento esta vez. Nuestro consultorio lo llamará para hablar de otras formas de pago.",
    with_the_office: "Nuestro consultorio está revisando su plan y se comunicará con usted.",
};

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
    decline_button: "No thanks",
    accepted: "You accepted the payment plan. Thank you!",
    declined: "You declined the payment plan. Our office will call you to talk about other ways to pay.",
    answer_received: "Thank you: we received your answer and are setting up your plan.",
    offer_heading: "A payment plan from our office",
    offer_text: "Nothing is charged until you accept. By accepting, you agree to:",
    deposit_paid: "Deposit, paid",
    receipt: "Thank you: your deposit is paid. Stripe emailed you a receipt.",
    preparing_payment: "Preparing your payment page",
    preparing_payment_text: "Your earlier payment link expired, so we are making a new one. This page opens it in a few seconds.",
    questions: "Questions? Call",
    preparing: "We are still preparing your financing details. Please check back soon.",
    deposit_now: "Deposit, due now",
    plan_deposit: "Payment plan deposit",
    installments: "Installments",
    save_card_button: "Agree and save a card",
    use_saved_card_button: "Agree and use my saved card",
    invoices_button: "Pay each installment by emailed invoice instead",
    card_saved: "Your card is saved with Stripe; the deposit is charged to it.",
    card_failed: "Your saved card could not be charged. Please pay with the button below.",
    pay_instead: "Pay once with a link instead",
    copay_due: "Due on your treatment day",
    copay_paid: "Treatment-day payment, paid",
    pay_copay: "Pay the treatment-day amount",
    pay_installment: "Pay the installment",
    status_heading: "Where things stand",
    promotion: "Promotion",
    term: "Term",
    apr: "APR",
    terms_note: "Terms as the lender reported them; your agreement with the lender governs.",
    start_again_button: "Start the application again",
    restarting: "We are opening a fresh application for you. This page refreshes in a few seconds.",
    texts_link: "Get text messages about your financing",
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
    decline_button: "No, gracias",
    accepted: "Usted aceptó el plan de pagos. ¡Gracias!",
    declined: "Usted rechazó el plan de pagos. Nuestro consultorio lo llamará para hablar de otras formas de pago.",
    answer_received: "Gracias: recibimos su respuesta y estamos preparando su plan.",
    offer_heading: "Un plan de pagos de nuestro consultorio",
    offer_text: "No se cobra nada hasta que usted acepte. Al aceptar, usted se compromete a:",
    deposit_paid: "Depósito, pagado",
    receipt: "Gracias: su depósito está pagado. Stripe le envió un recibo por correo electrónico.",
    preparing_payment: "Preparando su página de pago",
    preparing_payment_text: "Su enlace de pago anterior venció, así que estamos creando uno nuevo. Esta página lo abrirá en unos segundos.",
    questions: "¿Preguntas? Llame a",
    preparing: "Todavía estamos preparando los detalles de su financiamiento. Vuelva a consultar pronto.",
    deposit_now: "Depósito, a pagar ahora",
    plan_deposit: "Depósito del plan de pagos",
    installments: "Cuotas",
    save_card_button: "Aceptar y guardar una tarjeta",
    use_saved_card_button: "Aceptar y usar mi tarjeta guardada",
    invoices_button: "Pagar cada cuota con la factura por correo electrónico",
    card_saved: "Su tarjeta está guardada con Stripe; el depósito se cobra a ella.",
    card_failed: "No se pudo cobrar a su tarjeta guardada. Pague con el botón de abajo.",
    pay_instead: "Pagar una vez con un enlace",
    copay_due: "A pagar el día de su tratamiento",
    copay_paid: "Pago del día del tratamiento, pagado",
    pay_copay: "Pagar el monto del día del tratamiento",
    pay_installment: "Pagar la cuota",
    status_heading: "Dónde está su trámite",
    promotion: "Promoción",
    term: "Plazo",
    apr: "Tasa de porcentaje anual (APR)",
    terms_note: "Condiciones según las informó el prestamista; rige su contrato con el prestamista.",
    start_again_button: "Empezar la solicitud de nuevo",
    restarting: "Estamos abriendo una nueva solicitud para usted. Esta página se actualiza en unos segundos.",
    texts_link: "Recibir mensajes de texto sobre su financiamiento",
};

fn status_words(lang: Language) -> &'static StatusWords {
    match lang {
        Language::Es => &STATUS_ES,
        _ => &STATUS_EN,
    }
}

/// The live status line for the patient, from the workflow state: lenders by name, the amount
/// only where the page shows amounts anyway.
fn status_text(
    state: &HttpState,
    wf: &chairside_workflow::WorkflowState,
    status: &chairside_workflow::PatientStatus,
    lang: Language,
) -> String {
    use chairside_workflow::PatientStatus as P;
    let w = status_words(lang);
    let (text, lender, amount) = match status {
        P::Preparing => (w.preparing, None, None),
        P::Applying { lender } => (w.applying, Some(lender), None),
        P::Prequalified { lender, amount } => (w.prequalified, Some(lender), Some(*amount)),
        P::SessionLapsed { lender } => (w.lapsed, Some(lender), None),
        P::InReview { lender } => (w.in_review, Some(lender), None),
        P::PlanOffered => (w.plan_offered, None, None),
        P::Approved => (w.approved, None, None),
        P::Paid => (w.paid, None, None),
        P::NothingDue => (w.nothing_due, None, None),
        P::Declined => (w.declined, None, None),
        P::WithTheOffice => (w.with_the_office, None, None),
    };
    let mut out = text.to_owned();
    if let Some(lender) = lender {
        out = out.replace("{lender}", &lender_name(state, wf, lender));
    }
    if let Some(amount) = amount {
        out = out.replace("{amount}", &amount.to_string());
    }
    out
}

/// The terms the financed lender reported, as page lines (`Term: 12 months`); empty when it
/// reported none.
fn terms_lines(offer: Option<&financing_core::Offer>, t: &Words, lang: Language) -> Vec<Line> {
    let Some(offer) = offer else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    if let Some(p) = offer.promotion.as_deref().filter(|p| !p.trim().is_empty()) {
        lines.push(Line {
            what: t.promotion.to_owned(),
            amount: p.trim().to_owned(),
        });
    }
    if let Some(m) = offer.term_months {
        lines.push(Line {
            what: t.term.to_owned(),
            amount: match lang {
                Language::Es => format!("{m} meses"),
                _ => format!("{m} months"),
            },
        });
    }
    if let Some(bps) = offer.apr_bps {
        lines.push(Line {
            what: t.apr.to_owned(),
            amount: format!("{}.{:02} %", bps / 100, bps % 100).replace(
                " %",
                match lang {
                    Language::Es => " %",
                    _ => "%",
                },
            ),
        });
    }
    lines
}

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
    /// The terms as the lender reported them (promotion, term, APR).
    terms: Vec<Line>,
}

#[derive(Serialize)]
struct Application {
    lender: String,
    amount: Option<String>,
    /// Every notice the practice's and the patient's states require, before the lender link.
    notices: Vec<String>,
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
    amounts: Option<Amounts>,
    financed: Option<Financed>,
    application: Option<Application>,
    payments: Vec<Line>,
    pay_deposit: Option<String>,
    /// The New York card-payment warning, beside any card payment.
    card_warning: Option<String>,
    /// The deposit is paid: the receipt line.
    receipt: Option<&'static str>,
    /// Card on file: the authorization the patient agrees to before saving a card.
    save_card: Option<String>,
    /// Its button: save a card, or use the card already saved (for the installments).
    save_card_label: &'static str,
    /// Card on file, the installment schedule waiting: the patient may choose emailed invoices.
    installment_invoices: bool,
    /// Card on file: where the saved card stands.
    card_status: Option<&'static str>,
    /// The pay button's label (card on file: a pay link instead).
    pay_label: &'static str,
    /// The treatment-day co-pay's pay link (Stripe's page) and its amount, after the saved card
    /// could not be charged.
    pay_copay: Option<(String, String)>,
    /// An installment the saved card did not pay: its invoice's page (Stripe's) and amount.
    pay_installment: Option<(String, String)>,
    /// The in-house plan offered and not yet answered: its terms and the accept/decline forms.
    offer: Option<Offer>,
    /// Where the patient's answer to the in-house offer stands, once given.
    in_house_status: Option<&'static str>,
    /// The live status line (applying, pending, approved, paid, declined, ...).
    status: Option<String>,
    /// The status's stable label, for the page's markup (and tests).
    status_label: &'static str,
    /// The lender's session lapsed: a "start again" form for a fresh one.
    start_again: bool,
    /// A fresh session was just asked for: a short notice, and the page refreshes.
    restarting: bool,
    /// `<meta http-equiv="refresh">` content while a fresh session opens.
    refresh: Option<String>,
    /// The texts opt-in page (`/p/{token}/texts`), offered while the patient's mobile number
    /// has no consent to texts on record (or withdrew it: only the patient can opt in again).
    texts: Option<String>,
    /// A link-only lender's application is live: the patient's report form (or, once a report
    /// waits for staff, the thanks).
    report: Option<report::ReportCard>,
}

#[derive(Serialize)]
struct Offer {
    lines: Vec<Line>,
    terms: String,
}

/// A verified token's workflow, its practice and the patient's language.
pub(crate) struct Resolved {
    pub(crate) row: WorkflowRow,
    site: Option<PracticeSite>,
    pub(crate) lang: Language,
    pub(crate) base: String,
    /// The patient's mobile number from the contact read for the language (`None` when there is
    /// none, no contact, or the contact did not open): the page's texts offer uses this read
    /// instead of opening the contact a second time.
    mobile_phone: Option<String>,
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
    state
        .reports()
        .workflow_at_generation(id, generation)
        .await
        .map(|row| row.filter(|r| r.state.status != Status::Cancelled))
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
    let (lang, mobile_phone) = match state
        .patients()
        .patient(practice, &row.state.patient_id)
        .await
    {
        Ok(Some(contact)) => (contact.preferred_language, contact.mobile_phone),
        Ok(None) => (Language::En, None),
        Err(e) => {
            // The page still works in English, without the texts offer; the data key problem
            // shows up elsewhere.
            tracing::warn!(error = %e, "patient page: contact unreadable");
            (Language::En, None)
        }
    };
    Ok(Resolved {
        site: state.config.practice(practice).cloned(),
        base: format!("{}p/{token}", root(state)),
        row,
        lang,
        mobile_phone,
    })
}

/// The lender's name as patients know it: the configured copy, else the name the workflow
/// recorded from the lender's client when it asked (a plug-in's own), else the usual spelling of
/// the lenders Chairside ships with, else the id.
fn lender_name(
    state: &HttpState,
    wf: &chairside_workflow::WorkflowState,
    lender: &LenderId,
) -> String {
    match state.config.lenders.get(lender) {
        Some(copy) => copy.name.clone(),
        None => wf.lender_name(lender),
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

/// The states whose rules apply to this patient: the practice's and the patient's own (the
/// stricter rule wins, so both sets of notices are shown).
fn states(r: &Resolved) -> Vec<financing_core::UsState> {
    let mut out: Vec<financing_core::UsState> = Vec::new();
    let practice = r.site.as_ref().and_then(|s| s.state);
    let patient = r.row.state.facts.as_ref().and_then(|f| f.state);
    for s in [practice, patient].into_iter().flatten() {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The notices shown before any lender link: the practice's configured notice (else its state's
/// shipped default), then the patient's state's default when it differs.
fn notices(r: &Resolved, lang: Language) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let practice_state = r.site.as_ref().and_then(|s| s.state);
    if let Some(text) = r
        .site
        .as_ref()
        .and_then(|site| localized(&site.lender_notice, lang))
    {
        out.push(text.to_owned());
    }
    for state in states(r) {
        if Some(state) == practice_state && !out.is_empty() {
            continue; // the practice's own notice replaces its state's default
        }
        if let Some(texts) = crate::notices::state_notice(state)
            && let Some(text) = localized(&texts, lang)
            && !out.iter().any(|t| t == text)
        {
            out.push(text.to_owned());
        }
    }
    out
}

/// The New York card-payment warning, when a New York rule applies.
fn card_warning(r: &Resolved, lang: Language) -> Option<String> {
    states(r).into_iter().find_map(|s| {
        crate::notices::card_payment_warning(s).and_then(|t| localized(&t, lang).map(str::to_owned))
    })
}

/// The lender's hosted application link, while the patient is expected to use it: never a
/// session that lapsed at `now` (the page offers to start again instead), nor one the patient
/// already submitted (the lender is reviewing it).
fn application_link(
    row: &WorkflowRow,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(&LenderId, Money, &str)> {
    match (&row.state.status, &row.state.stage) {
        (Status::Active, Stage::Financing(c)) => match &c.phase {
            LenderPhase::AwaitingPatient { link, session, .. }
                if !session.expired(now) && session.submitted_at.is_none() =>
            {
                Some((&c.lender, c.amount, link.as_str()))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The deposit can be paid from the page: unpaid, the workflow live, and its Checkout Session
/// open or expired (a fresh one is made on the click).
fn deposit_payable(row: &WorkflowRow) -> bool {
    let s = &row.state;
    let live = matches!(
        s.status,
        Status::Active | Status::WaitingOnStaff | Status::Done
    );
    let card_charging = matches!(
        s.stripe
            .card_charge(chairside_workflow::machine::DEPOSIT)
            .map(|c| &c.state),
        Some(chairside_workflow::CardChargeState::Charging)
    );
    live && !s.stripe.deposit_paid
        && !card_charging
        && (s.stripe.checkout_url.is_some()
            // Card on file: a pay link on request, whatever the card's state.
            || (s.stripe.card_on_file && s.stripe.customer_id.is_some())
            || s.stripe.reissuing_deposit_link
            || (!s.stripe.expired_sessions.is_empty() && s.stripe.customer_id.is_some()))
}

/// Card on file: the patient may save a card (and agree to its charge) while the deposit is
/// unpaid, no card is saved yet, and no pay link is open (never both).
fn card_savable(row: &WorkflowRow) -> bool {
    let s = &row.state;
    matches!(
        s.status,
        Status::Active | Status::WaitingOnStaff | Status::Done
    ) && s.stripe.card_on_file
        && (!s.stripe.deposit_paid
            || s.copay_ahead().is_some()
            || s.installments_for_card().is_some())
        && s.stripe.payment_method.is_none()
        && s.stripe.checkout_session_id.is_none()
        && !s.stripe.reissuing_deposit_link
}

/// The authorization a patient agrees to before saving a card, in their language; recorded with
/// the agreement (DESIGN.md: offers are offered). It names every charge the card will carry: the
/// deposit (unpaid), and the treatment-day co-pay with its date when one is ahead.
#[cfg(test)]
fn card_wording(
    practice: &str,
    deposit: Option<Money>,
    copay: Option<(Money, Option<chrono::NaiveDate>)>,
    lang: Language,
) -> String {
    card_wording_with(practice, deposit, copay, None, lang)
}

/// [`card_wording`], also naming the in-house plan's installments when the card will pay them.
fn card_wording_with(
    practice: &str,
    deposit: Option<Money>,
    copay: Option<(Money, Option<chrono::NaiveDate>)>,
    installments: Option<&InHouseOffer>,
    lang: Language,
) -> String {
    let es = lang == Language::Es;
    let on_day = |(amount, day): (Money, Option<chrono::NaiveDate>)| match (es, day) {
        (true, Some(d)) => format!("{amount} el día de mi tratamiento ({d})"),
        (true, None) => format!("{amount} el día de mi tratamiento"),
        (false, Some(d)) => format!("{amount} on my treatment day ({d})"),
        (false, None) => format!("{amount} on my treatment day"),
    };
    let charges = match (deposit, copay) {
        (Some(d), Some(c)) if es => {
            format!("{d} por el depósito de mi tratamiento y {}", on_day(c))
        }
        (Some(d), Some(c)) => format!("{d} for my treatment deposit and {}", on_day(c)),
        (None, Some(c)) => on_day(c),
        (Some(d), None) if es => format!("{d} por el depósito de mi tratamiento"),
        (Some(d), None) => format!("{d} for my treatment deposit"),
        (None, None) => String::new(),
    };
    let charges = match installments {
        None => charges,
        Some(offer) => {
            let plan = installments_text(offer, lang);
            match (es, charges.is_empty()) {
                (true, true) => format!("las cuotas de mi plan de pagos ({plan})"),
                (true, false) => format!("{charges}, y las cuotas de mi plan de pagos ({plan})"),
                (false, true) => format!("the installments of my payment plan ({plan})"),
                (false, false) => {
                    format!("{charges}, and the installments of my payment plan ({plan})")
                }
            }
        }
    };
    if es {
        format!(
            "Autorizo a {practice} a guardar mi tarjeta con Stripe y a cobrarle {charges}. Puedo pedir un enlace de pago en su lugar en cualquier momento."
        )
    } else {
        format!(
            "I authorize {practice} to save my card with Stripe and to charge it {charges}. I can ask for a pay link instead at any time."
        )
    }
}

/// Card on file, a card saved under an agreement that did not name the in-house plan's
/// installments, the plan accepted since: the patient is asked to confirm the saved card for
/// them (one click, the wording recorded) rather than to enter a card again.
fn card_confirmable(row: &WorkflowRow) -> bool {
    let s = &row.state;
    matches!(
        s.status,
        Status::Active | Status::WaitingOnStaff | Status::Done
    ) && s.stripe.card_on_file
        && !s.stripe.schedule_creating
        && s.stripe.payment_method.is_some()
        && s.stripe.card_authorization.is_some()
        && !s.stripe.card_covers_installments
        && s.stripe.schedule_id.is_none()
        && s.installments_for_card().is_some()
}

/// The confirmation of the saved card for the installments, in the patient's language: what
/// [`card_confirmable`] shows and records.
fn saved_card_confirmation(r: &Resolved) -> Option<String> {
    if !card_confirmable(&r.row) {
        return None;
    }
    let offer = r.row.state.installments_for_card()?;
    Some(saved_card_wording(&practice_name(r), offer, r.lang))
}

fn saved_card_wording(practice: &str, offer: &InHouseOffer, lang: Language) -> String {
    let plan = installments_text(offer, lang);
    if lang == Language::Es {
        format!(
            "Autorizo a {practice} a cobrar a la tarjeta que guardé con Stripe las cuotas de mi plan de pagos ({plan}). Puedo pedir facturas por correo electrónico en su lugar en cualquier momento."
        )
    } else {
        format!(
            "I authorize {practice} to charge the card I saved with Stripe the installments of my payment plan ({plan}). I can ask for invoices by email instead at any time."
        )
    }
}

/// Card on file, the in-house plan accepted, its schedule not created yet and no card agreed
/// for it: the patient may choose the invoices Stripe emails instead of a saved card.
fn invoices_choosable(row: &WorkflowRow) -> bool {
    let s = &row.state;
    matches!(
        s.status,
        Status::Active | Status::WaitingOnStaff | Status::Done
    ) && s.stripe.card_on_file
        && s.stripe.schedule_id.is_none()
        && !s.stripe.schedule_creating
        && !s.stripe.card_covers_installments
        && s.installments_for_card().is_some()
}

/// The wording of the choice of emailed invoices, recorded with it.
fn invoices_wording(practice: &str, offer: &InHouseOffer, lang: Language) -> String {
    let plan = installments_text(offer, lang);
    if lang == Language::Es {
        format!(
            "Prefiero pagar cada cuota de mi plan de pagos con {practice} ({plan}) con la factura que Stripe me envía por correo electrónico, sin guardar una tarjeta."
        )
    } else {
        format!(
            "I prefer to pay each installment of my payment plan with {practice} ({plan}) by the invoice Stripe emails me, without saving a card."
        )
    }
}

/// The authorization shown on the page, and recorded when the patient agrees: `None` when no
/// card can be saved (nothing left to charge, a card already saved, a pay link open). A card
/// saved already, asked for the installments: the confirmation ([`card_confirmable`]).
fn card_authorization(r: &Resolved) -> Option<String> {
    let s = &r.row.state;
    if let Some(wording) = saved_card_confirmation(r) {
        return Some(wording);
    }
    if !card_savable(&r.row) {
        return None;
    }
    let deposit = deposit(&r.row).filter(|_| !s.stripe.deposit_paid);
    let copay = s.copay_ahead();
    let installments = s.installments_for_card();
    (deposit.is_some() || copay.is_some() || installments.is_some())
        .then(|| card_wording_with(&practice_name(r), deposit, copay, installments, r.lang))
}

fn deposit(row: &WorkflowRow) -> Option<Money> {
    row.state
        .result
        .as_ref()
        .map(|r| r.deposit)
        .or(row.state.deposit)
        .filter(|d| d.minor() > 0)
}

/// The in-house plan while it is offered and the patient has not answered.
fn standing_offer(row: &WorkflowRow) -> Option<&InHouseOffer> {
    let s = &row.state;
    match (&s.stage, s.status) {
        (Stage::OfferingInHouse { .. }, Status::Active) if s.in_house_acceptance.is_none() => {
            s.result.as_ref()?.in_house.as_ref()
        }
        _ => None,
    }
}

/// The exact terms the patient agrees to by accepting the in-house plan: shown on the page above
/// the buttons and recorded, word for word, with the answer. No PHI: the practice, the amounts
/// and the schedule.
fn offer_terms(
    offer: &InHouseOffer,
    deposit: Option<Money>,
    practice: &str,
    lang: Language,
) -> String {
    let installments = installments_text(offer, lang);
    let mut terms = match lang {
        Language::Es => format!(
            "pagar a {practice} {} en cuotas: {installments}, la primera cobrada al aceptar.",
            offer.total
        ),
        _ => format!(
            "pay {practice} {} in installments: {installments}, the first charged when I accept.",
            offer.total
        ),
    };
    if let Some(d) = deposit {
        terms.push_str(&match lang {
            Language::Es => format!(" Además, un depósito de {d}, a pagar ahora."),
            _ => format!(" In addition, a deposit of {d}, due now."),
        });
    }
    terms
}

/// The treatment-day co-pay on the page: its line (due, with the date, or paid), the card
/// authorization when no deposit block showed one, and its pay link once the saved card could
/// not be charged.
fn copay_lines(r: &Resolved, t: &'static Words, ctx: &mut PageContext) {
    use chairside_workflow::due::CopayState;
    let s = &r.row.state;
    let line = |what: String, amount: Money| Line {
        what,
        amount: amount.to_string(),
    };
    match &s.copay {
        Some(c) => match &c.state {
            CopayState::Paid { .. } => ctx.payments.push(line(t.copay_paid.to_owned(), c.amount)),
            CopayState::LinkSent { url, .. } => {
                ctx.payments
                    .push(line(day_text(t.copay_due, c.day), c.amount));
                ctx.pay_copay = Some((url.clone(), c.amount.to_string()));
            }
            _ => ctx
                .payments
                .push(line(day_text(t.copay_due, c.day), c.amount)),
        },
        None if s.stripe.card_on_file => {
            if let Some((amount, day)) = s.copay_ahead() {
                ctx.payments.push(line(day_text(t.copay_due, day), amount));
            }
        }
        None => {}
    }
    if ctx.save_card.is_none()
        && s.stripe.card_on_file
        && (s.stripe.deposit_paid || deposit(&r.row).is_none())
        && let Some(wording) = card_authorization(r)
    {
        ctx.save_card = Some(wording);
    }
}

fn day_text(what: &str, day: Option<chrono::NaiveDate>) -> String {
    match day {
        Some(d) => format!("{what} ({d})"),
        None => what.to_owned(),
    }
}

fn practice_name(r: &Resolved) -> String {
    r.site.as_ref().map_or_else(
        || r.row.state.key.practice_id.to_string(),
        |s| s.name.clone(),
    )
}

/// `GET /p/{token}` (`?restarting=1` after "start again": a notice, and the page refreshes).
pub(crate) async fn page(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let now = state.now();
    let live = r.row.state.patient_status(now);
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
        amounts: None,
        financed: None,
        application: None,
        payments: Vec::new(),
        pay_deposit: None,
        card_warning: card_warning(&r, lang),
        receipt: None,
        save_card: None,
        save_card_label: t.save_card_button,
        installment_invoices: false,
        card_status: None,
        pay_label: t.pay_button,
        pay_copay: None,
        pay_installment: None,
        offer: None,
        in_house_status: None,
        status: Some(status_text(&state, s, &live, lang)),
        status_label: live.label(),
        start_again: matches!(
            live,
            chairside_workflow::PatientStatus::SessionLapsed { .. }
        ),
        restarting: false,
        refresh: None,
        texts: None,
        report: None,
    };
    if texts_offered(&state, s, r.mobile_phone.as_deref()).await {
        ctx.texts = Some(format!("{}/texts", r.base));
    }
    if query.contains_key("restarting")
        && matches!(
            live,
            chairside_workflow::PatientStatus::SessionLapsed { .. }
                | chairside_workflow::PatientStatus::Applying { .. }
        )
        && application_link(&r.row, now).is_none()
    {
        // Until the fresh session's link is there: a notice, and the page reloads itself.
        ctx.restarting = true;
        ctx.start_again = false;
        ctx.refresh = Some(format!("3;url={}", r.base));
    }
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
            lender: lender_name(&state, s, lender),
            amount: amount.to_string(),
            disclosure: lender_disclosure(&state, lender, lang),
            terms: terms_lines(s.financed_offer(), t, lang),
        });
    }
    if let Some((lender, amount, _)) = application_link(&r.row, now) {
        ctx.application = Some(Application {
            lender: lender_name(&state, s, lender),
            amount: Some(amount.to_string()),
            notices: notices(&r, lang),
            disclosure: lender_disclosure(&state, lender, lang),
        });
        // The notice comes before any lender link, and the workflow records it was shown: once
        // per workflow and lender, however often the page is viewed (or scanned).
        let detail = format!("page shown with the notice before the {lender} link");
        if let Err(e) = state
            .links()
            .audit_once(
                &s.id,
                &format!("notice:{lender}"),
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
    match report::card(&state, &r, query.get("report_error").map(String::as_str)).await {
        Ok(card) => {
            // A report waits for staff: the page thanks the patient instead of offering the
            // application again; "Not confirmed" brings the application back.
            if let Some(thanks) = card.as_ref().and_then(report::ReportCard::thanks) {
                ctx.application = None;
                ctx.status = Some(thanks.to_owned());
            }
            ctx.report = card;
        }
        Err(e) => {
            tracing::error!(error = %e, "patient page: report lookup failed");
            return state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en");
        }
    }
    if let Some(d) = deposit(&r.row) {
        if s.stripe.deposit_paid {
            ctx.payments.push(Line {
                what: t.deposit_paid.to_owned(),
                amount: d.to_string(),
            });
            ctx.receipt = Some(t.receipt);
        } else {
            ctx.payments.push(Line {
                what: t.deposit_now.to_owned(),
                amount: d.to_string(),
            });
            // An open link, or an expired one the page replaces when the patient clicks.
            if deposit_payable(&r.row) {
                ctx.pay_deposit = Some(d.to_string());
            }
            if s.stripe.card_on_file {
                if let Some(wording) = card_authorization(&r) {
                    ctx.save_card = Some(wording);
                    ctx.pay_label = t.pay_instead;
                } else if let Some(c) = s.stripe.card_charge(chairside_workflow::machine::DEPOSIT) {
                    if matches!(c.state, chairside_workflow::CardChargeState::Failed { .. }) {
                        ctx.card_status = Some(t.card_failed);
                    }
                } else if s.stripe.payment_method.is_some() {
                    ctx.card_status = Some(t.card_saved);
                }
            }
        }
    }
    copay_lines(&r, t, &mut ctx);
    if let Some(wording) = saved_card_confirmation(&r) {
        // The card saved for the deposit, asked for the installments too: one click.
        ctx.save_card = Some(wording);
        ctx.save_card_label = t.use_saved_card_button;
    }
    ctx.installment_invoices = invoices_choosable(&r.row);
    if s.status != Status::Cancelled
        && let Some(link) = &s.stripe.installment_pay_link
    {
        ctx.pay_installment = Some((link.url.clone(), link.amount.to_string()));
    }
    if let Some(offer) = s.result.as_ref().and_then(|r| r.in_house.as_ref()) {
        let mut lines = Vec::new();
        if offer.deposit.minor() > 0 {
            lines.push(Line {
                what: t.plan_deposit.to_owned(),
                amount: offer.deposit.to_string(),
            });
        }
        lines.push(Line {
            what: t.installments.to_owned(),
            amount: installments_text(offer, lang),
        });
        if standing_offer(&r.row).is_some() {
            let pending = match state.links().patient_answer_pending(&s.id).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "patient page: answer lookup failed");
                    return state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en");
                }
            };
            if pending {
                ctx.in_house_status = Some(t.answer_received);
            } else {
                // The deposit line is in the terms; the pay button waits for the acceptance.
                ctx.payments.clear();
                ctx.offer = Some(Offer {
                    lines,
                    terms: offer_terms(offer, deposit(&r.row), &practice_name(&r), lang),
                });
            }
        } else {
            ctx.payments.extend(lines);
            if s.in_house_acceptance.is_some() {
                ctx.in_house_status = Some(t.accepted);
            } else if s.status == Status::WaitingOnStaff
                && s.staff_task
                    .as_ref()
                    .is_some_and(|k| k.kind == chairside_workflow::TaskKind::NoFinancing)
            {
                ctx.in_house_status = Some(t.declined);
            }
        }
    }
    state.pages.render(StatusCode::OK, "patient.html", ctx)
}

/// Whether the page offers the texts opt-in: the patient has a mobile number (`phone`, from the
/// contact [`resolve`] read: none when it did not open) and no consent to texts stands for it.
/// A store that does not answer hides the offer (the page still works).
async fn texts_offered(
    state: &HttpState,
    s: &chairside_workflow::WorkflowState,
    phone: Option<&str>,
) -> bool {
    let Some(phone) = phone else {
        return false;
    };
    match state
        .patients()
        .sms_consent(&s.key.practice_id, phone)
        .await
    {
        Ok(record) => record.is_none_or(|r| r.opted_out || r.consent.is_none()),
        Err(e) => {
            tracing::warn!(error = %e, "patient page: sms consent unreadable");
            false
        }
    }
}

/// `GET /p/{token}/pay`: to the Stripe Checkout Session of the deposit. A paid deposit goes back
/// to the page (its receipt); an expired session is replaced: the request is queued for the
/// runner and the patient sees a short "preparing" page that reloads this address until the
/// fresh session exists.
pub(crate) async fn pay(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let s = &r.row.state;
    if s.stripe.deposit_paid {
        return see_other(&r.base);
    }
    if !deposit_payable(&r.row) {
        return state.pages.error(StatusCode::NOT_FOUND, r.lang.tag());
    }
    if let Some(url) = &s.stripe.checkout_url {
        // Not a legal record: written behind, in a group (`page_marks`).
        let mark = PageMark {
            workflow: s.id.clone(),
            mark: format!(
                "pay:{}",
                s.stripe.checkout_session_id.as_deref().unwrap_or("")
            ),
            kind: "deposit_link_opened".into(),
            detail: "patient followed the deposit link".into(),
            at: state.now(),
        };
        if let Err(e) = state.marks.record(mark).await {
            tracing::error!(error = %e, "patient page: audit write failed");
        }
        return see_other(url);
    }
    if !s.stripe.reissuing_deposit_link
        && let Err(e) = state
            .links()
            .queue_patient_request(
                &s.id,
                &chairside_workflow::Event::DepositLinkRequested,
                "patient asked for a fresh deposit link after the last one expired",
                state.now(),
            )
            .await
    {
        tracing::error!(error = %e, "patient page: deposit link request not recorded");
        return state
            .pages
            .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag());
    }
    let t = words(r.lang);
    state.pages.render(
        StatusCode::OK,
        "preparing.html",
        minijinja::context! {
            lang => r.lang.tag(),
            refresh => 2,
            heading => t.preparing_payment,
            text => t.preparing_payment_text,
        },
    )
}

/// `POST /p/{token}/card`: the patient agrees to the card's charge (the wording the page shows,
/// recorded by the runner) and goes to Stripe's hosted page to save it. When the card-saving
/// link lapsed, the agreement also asks for a fresh one, and `GET /p/{token}/card` waits for it.
pub(crate) async fn save_card(
    State(state): State<HttpState>,
    Path(token): Path<String>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let s = &r.row.state;
    let Some(wording) = card_authorization(&r) else {
        return see_other(&r.base);
    };
    // The wording names the installments exactly when the card will pay them.
    let installments = s.installments_for_card().is_some();
    let detail = format!(
        "patient agreed to save a card on the patient page ({}): {wording}",
        r.lang.tag()
    );
    if let Err(e) = state
        .links()
        .queue_patient_request(
            &s.id,
            &chairside_workflow::Event::CardAuthorized {
                wording,
                installments,
            },
            &detail,
            state.now(),
        )
        .await
    {
        tracing::error!(error = %e, "patient page: card agreement not recorded");
        return state
            .pages
            .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag());
    }
    if s.stripe.payment_method.is_some() {
        // The saved card confirmed: nothing to enter at Stripe; the page shows where it stands.
        return see_other(&r.base);
    }
    see_other(&format!("{}/card", r.base))
}

/// `POST /p/{token}/invoices`: the patient chooses the invoices Stripe emails for the in-house
/// plan's installments instead of a saved card (the wording recorded with the choice).
pub(crate) async fn choose_invoices(
    State(state): State<HttpState>,
    Path(token): Path<String>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let s = &r.row.state;
    let offer = match s.installments_for_card() {
        Some(offer) if invoices_choosable(&r.row) => offer,
        _ => return see_other(&r.base),
    };
    let wording = invoices_wording(&practice_name(&r), offer, r.lang);
    let detail = format!(
        "patient chose emailed invoices for the installments on the patient page ({}): {wording}",
        r.lang.tag()
    );
    if let Err(e) = state
        .links()
        .queue_patient_request(
            &s.id,
            &chairside_workflow::Event::InstallmentInvoicesChosen { wording },
            &detail,
            state.now(),
        )
        .await
    {
        tracing::error!(error = %e, "patient page: invoice choice not recorded");
        return state
            .pages
            .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag());
    }
    see_other(&r.base)
}

/// `GET /p/{token}/card`: to Stripe's card-saving page once the link exists; meanwhile (a lapsed
/// link being made again) a short "preparing" page that reloads this address.
pub(crate) async fn card(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let s = &r.row.state;
    if !card_savable(&r.row) {
        return see_other(&r.base);
    }
    // The agreement was queued by the POST (in the inbox before the card can be saved, so the
    // runner applies it first); a card saved without it is never charged.
    if let Some(url) = &s.stripe.card_setup_url {
        return see_other(url);
    }
    let t = words(r.lang);
    state.pages.render(
        StatusCode::OK,
        "preparing.html",
        minijinja::context! {
            lang => r.lang.tag(),
            refresh => 2,
            heading => t.preparing_payment,
            text => t.preparing_payment_text,
        },
    )
}

/// `GET /p/{token}/apply`: to the lender's hosted application, while one is open.
pub(crate) async fn apply(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some((lender, _, link)) = application_link(&r.row, state.now()) else {
        // No live session (it lapsed, or the application is over): the page says where it
        // stands and offers to start again when it can.
        return see_other(&r.base);
    };
    // Not a legal record (the notice shown before this link is, and was written before the page
    // showed the link): written behind, in a group (`page_marks`).
    let mark = PageMark {
        workflow: r.row.state.id.clone(),
        mark: format!("apply:{lender}"),
        kind: "lender_link_opened".into(),
        detail: format!("patient followed the {lender} application link"),
        at: state.now(),
    };
    if let Err(e) = state.marks.record(mark).await {
        tracing::error!(error = %e, "patient page: audit write failed");
    }
    see_other(link)
}

/// `POST /p/{token}/restart`: the patient's "start again" after the lender's session lapsed.
/// Queues the request for the runner (once while one waits), which opens a fresh session at the
/// lender under a new reference; the patient goes back to the page, which refreshes until the new
/// session's link is there. A request when nothing lapsed writes nothing.
pub(crate) async fn restart(State(state): State<HttpState>, Path(token): Path<String>) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some(lender) = r.row.state.restartable_lender(state.now()).cloned() else {
        return see_other(&r.base);
    };
    let detail = format!("patient asked to start the {lender} application again");
    if let Err(e) = state
        .links()
        .queue_patient_request(
            &r.row.state.id,
            &chairside_workflow::Event::LenderSessionRequested,
            &detail,
            state.now(),
        )
        .await
    {
        tracing::error!(error = %e, "patient page: start-again request not recorded");
        return state
            .pages
            .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag());
    }
    see_other(&format!("{}?restarting=1", r.base))
}

/// `POST /p/{token}/accept`: the patient accepts the in-house plan.
pub(crate) async fn accept_in_house(
    State(state): State<HttpState>,
    Path(token): Path<String>,
) -> Response {
    answer_in_house(&state, &token, true).await
}

/// `POST /p/{token}/decline`: the patient declines the in-house plan.
pub(crate) async fn decline_in_house(
    State(state): State<HttpState>,
    Path(token): Path<String>,
) -> Response {
    answer_in_house(&state, &token, false).await
}

/// Queues the patient's answer for the runner, which applies it through the machine: an
/// acceptance sets up Stripe (nothing is billed before it), a decline becomes a staff task. The
/// terms recorded are the ones the page shows, in the patient's language. An answer to an offer
/// that no longer stands, or a second one while the first waits, writes nothing; either way the
/// patient goes back to the page, which says where the answer stands.
async fn answer_in_house(state: &HttpState, token: &str, accepted: bool) -> Response {
    let r = match resolve(state, token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some(offer) = standing_offer(&r.row) else {
        return see_other(&r.base);
    };
    let terms = offer_terms(offer, deposit(&r.row), &practice_name(&r), r.lang);
    let wording = format!(
        "{} {terms}",
        if accepted {
            words(r.lang).accept_button
        } else {
            words(r.lang).decline_button
        }
    );
    let detail = format!(
        "patient {} the in-house plan on the patient page ({}): {wording}",
        if accepted { "accepted" } else { "declined" },
        r.lang.tag()
    );
    let event = chairside_workflow::Event::InHouseAnswered { accepted, wording };
    if let Err(e) = state
        .links()
        .queue_patient_answer(&r.row.state.id, &event, &detail, state.now())
        .await
    {
        tracing::error!(error = %e, "patient page: answer not recorded");
        return state
            .pages
            .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag());
    }
    see_other(&r.base)
}

/// `GET /paid`: where Stripe Checkout sends the patient after paying. It carries no token (the
/// patient's link never goes to Stripe) and shows no patient data: a thank-you in English and
/// Spanish, pointing back to the patient's own page.
pub(crate) async fn paid(State(state): State<HttpState>) -> Response {
    state.pages.render(
        StatusCode::OK,
        "paid.html",
        minijinja::context! { lang => "en" },
    )
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

pub(crate) mod report;

#[cfg(test)]
mod tests;
