//! The patient's own report of a link-only lender's decision, on the patient page: "I applied
//! with Cherry: I was approved for $___ / I was declined / I'm still waiting"
//! (`POST /p/{token}/report`). The report decides nothing: it raises one staff task and the page
//! says the practice will confirm with the lender (docs/lenders.md, "The patient's report").

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use financing_core::{Language, LenderId};
use serde::{Deserialize, Serialize};

use super::{Resolved, lender_name, resolve};
use crate::HttpState;
use crate::pages::see_other;
use chairside_engine::patient_report::PatientReports;
use chairside_engine::store::patient_report::{NewPatientReport, ReportRefusal};
use chairside_workflow::patient_report::{
    MAX_AMOUNT_TEXT, ReportInputError, accepts, parse_report,
};

/// The report card's words in one language (`{lender}` filled in).
struct ReportWords {
    heading: &'static str,
    intro: &'static str,
    approved: &'static str,
    amount_label: &'static str,
    declined: &'static str,
    waiting: &'static str,
    button: &'static str,
    thanks: &'static str,
    later: &'static str,
}

const REPORT_EN: ReportWords = ReportWords {
    heading: "Already applied with {lender}?",
    intro: "Tell us what {lender} answered. Nothing changes until the practice checks it with {lender}.",
    approved: "I was approved",
    amount_label: "Amount approved ($)",
    declined: "I was declined",
    waiting: "I'm still waiting",
    button: "Send my answer",
    thanks: "Thanks: the practice will confirm with {lender}.",
    later: "We already received several answers. Please try again later or call the office.",
};

const REPORT_ES: ReportWords = ReportWords {
    heading: "¿Ya hizo su solicitud con {lender}?",
    intro: "Díganos qué le respondió {lender}. Nada cambia hasta que el consultorio lo verifique con {lender}.",
    approved: "Me aprobaron",
    amount_label: "Monto aprobado ($)",
    declined: "Me rechazaron",
    waiting: "Todavía estoy esperando",
    button: "Enviar mi respuesta",
    thanks: "Gracias: el consultorio lo confirmará con {lender}.",
    later: "Ya recibimos varias respuestas. Inténtelo más tarde o llame al consultorio.",
};

fn report_words(lang: Language) -> &'static ReportWords {
    match lang {
        Language::Es => &REPORT_ES,
        _ => &REPORT_EN,
    }
}

/// What the form says was wrong, in the patient's language.
fn input_error_text(e: ReportInputError, lang: Language) -> &'static str {
    match (lang, e) {
        (Language::Es, ReportInputError::NoOutcome) => "Elija una de las respuestas.",
        (Language::Es, ReportInputError::MissingAmount) => "Escriba el monto que le aprobaron.",
        (Language::Es, ReportInputError::NotAnAmount) => {
            "Escriba el monto en dólares, por ejemplo 1200.00."
        }
        (Language::Es, ReportInputError::Zero) => "El monto debe ser mayor que $0.00.",
        (Language::Es, ReportInputError::TooLarge) => "Ese monto parece demasiado alto: revíselo.",
        (_, ReportInputError::NoOutcome) => "Choose one of the answers.",
        (_, ReportInputError::MissingAmount) => "Enter the amount you were approved for.",
        (_, ReportInputError::NotAnAmount) => "Enter the amount in dollars, like 1200.00.",
        (_, ReportInputError::Zero) => "The amount must be more than $0.00.",
        (_, ReportInputError::TooLarge) => "That amount looks too large: please check it.",
    }
}

/// The `?report_error=` code of a refusal for too many reports.
const LATER: &str = "later";

/// The report card on the patient page: the form, or the thanks while a report waits for staff.
#[derive(Serialize)]
pub(super) struct ReportCard {
    lender: String,
    heading: String,
    intro: String,
    approved: &'static str,
    amount_label: &'static str,
    declined: &'static str,
    waiting: &'static str,
    button: &'static str,
    max_amount: usize,
    /// A report waits for staff: this instead of the form.
    thanks: Option<String>,
    /// What was wrong with the last submission.
    error: Option<&'static str>,
}

impl ReportCard {
    /// The thanks, while the patient's report waits for staff.
    pub(super) fn thanks(&self) -> Option<&str> {
        self.thanks.as_deref()
    }
}

/// The report card for the page, while a link-only lender's application is the live attempt
/// (`None` otherwise). `error` is the page's `?report_error=` code.
///
/// # Errors
/// The store's, as the page's 500.
pub(super) async fn card(
    state: &HttpState,
    r: &Resolved,
    error: Option<&str>,
) -> Result<Option<ReportCard>, chairside_engine::store::StoreError> {
    let s = &r.row.state;
    let Some((lender, _, _)) = s.lender_session() else {
        return Ok(None);
    };
    if accepts(s, lender, state.now()).is_err() {
        return Ok(None);
    }
    let name = lender_name(state, s, lender);
    let w = report_words(r.lang);
    let fill = |text: &str| text.replace("{lender}", &name);
    let pending = PatientReports::new(&*state.store, &*state.store)
        .pending(&s.id)
        .await?
        .filter(|p| &p.report.lender == lender);
    let error = error.and_then(|code| {
        if code == LATER {
            Some(w.later)
        } else {
            ReportInputError::from_code(code).map(|e| input_error_text(e, r.lang))
        }
    });
    Ok(Some(ReportCard {
        lender: lender.to_string(),
        heading: fill(w.heading),
        intro: fill(w.intro),
        approved: w.approved,
        amount_label: w.amount_label,
        declined: w.declined,
        waiting: w.waiting,
        button: w.button,
        max_amount: MAX_AMOUNT_TEXT,
        thanks: pending.map(|_| fill(w.thanks)),
        error,
    }))
}

/// The report form.
#[derive(Deserialize)]
pub(crate) struct ReportForm {
    #[serde(default)]
    lender: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    amount: String,
}

/// `POST /p/{token}/report`: the patient's report. Bad input goes back to the page with the
/// problem named on the form and writes nothing; a report the workflow no longer takes (a
/// decision came, the waterfall moved on, the workflow was cancelled) goes back to the page,
/// which shows where things stand. A report taken raises one staff task (replacing an earlier
/// report's) and the page then thanks the patient.
pub(crate) async fn report(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    Form(form): Form<ReportForm>,
) -> Response {
    let r = match resolve(&state, &token).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let s = &r.row.state;
    let back_with = |code: &str| see_other(&format!("{}?report_error={code}#report", r.base));
    let lender = LenderId::new(form.lender.trim());
    if accepts(s, &lender, state.now()).is_err() {
        return see_other(&r.base);
    }
    let report = match parse_report(&form.outcome, &form.amount) {
        Ok(report) => report,
        Err(e) => return back_with(e.code()),
    };
    let new = NewPatientReport {
        lender_name: lender_name(&state, s, &lender),
        lender,
        report,
        language: r.lang,
    };
    match PatientReports::new(&*state.store, &*state.store)
        .report(&s.id, &new, state.now())
        .await
    {
        Ok(Ok(_)) => see_other(&format!("{}#report", r.base)),
        Ok(Err(ReportRefusal::RateLimited(_))) => back_with(LATER),
        Ok(Err(_)) => see_other(&r.base),
        Err(e) => {
            tracing::error!(error = %e, "patient page: report not recorded");
            state
                .pages
                .error(StatusCode::INTERNAL_SERVER_ERROR, r.lang.tag())
        }
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
