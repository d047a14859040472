//! Server-rendered HTML: the embedded minijinja templates and the headers every page carries.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

/// Pages carry no script, frame nothing and are framed by nothing; forms post only to us; and
/// no page leaks its URL (a patient token) to the Stripe or lender page it links to.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("patient.html", include_str!("templates/patient.html")),
    (
        "link_invalid.html",
        include_str!("templates/link_invalid.html"),
    ),
    (
        "link_renewed.html",
        include_str!("templates/link_renewed.html"),
    ),
    ("paid.html", include_str!("templates/paid.html")),
    ("preparing.html", include_str!("templates/preparing.html")),
    (
        "staff_login.html",
        include_str!("templates/staff_login.html"),
    ),
    (
        "staff_dashboard.html",
        include_str!("templates/staff_dashboard.html"),
    ),
    (
        "staff_deliveries.html",
        include_str!("templates/staff_deliveries.html"),
    ),
    (
        "staff_workflow.html",
        include_str!("templates/staff_workflow.html"),
    ),
    (
        "texts_opt_in.html",
        include_str!("templates/texts_opt_in.html"),
    ),
    ("intake.html", include_str!("templates/intake.html")),
    (
        "staff_intakes.html",
        include_str!("templates/staff_intakes.html"),
    ),
    (
        "staff_intake.html",
        include_str!("templates/staff_intake.html"),
    ),
];

/// The template environment. Names end in `.html`, so every value is HTML-escaped.
pub(crate) struct Pages {
    env: Environment<'static>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish_non_exhaustive()
    }
}

impl Pages {
    pub(crate) fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and covered by tests: a syntax error is a bug
            // caught before release, not a runtime condition.
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not compile: {e}"));
        }
        Self { env }
    }

    /// Renders a page, or the plain server-error page should rendering fail.
    pub(crate) fn render<S: Serialize>(&self, status: StatusCode, name: &str, ctx: S) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(body) => html(status, body),
            Err(e) => {
                tracing::error!(template = name, error = %e, "page failed to render");
                self.error(StatusCode::INTERNAL_SERVER_ERROR, "en")
            }
        }
    }

    /// A staff decision refused: 409 with the refusal's own words (a workflow id and why, never
    /// patient data), so staff see why nothing happened.
    pub(crate) fn refused(&self, text: &str) -> Response {
        let ctx = minijinja::context! { lang => "en", title => "Not done", text };
        self.render(StatusCode::CONFLICT, "error.html", ctx)
    }

    /// A staff form with a value that does not read: 400 naming the field and what was expected.
    pub(crate) fn form_error(&self, text: &str) -> Response {
        let ctx = minijinja::context! { lang => "en", title => "Not accepted", text };
        self.render(StatusCode::BAD_REQUEST, "error.html", ctx)
    }

    /// The plain error page: a status and a sentence, nothing about the request.
    pub(crate) fn error(&self, status: StatusCode, lang: &str) -> Response {
        let (title, text) = match (status, lang) {
            (StatusCode::NOT_FOUND, "es") => (
                "Enlace no válido",
                "Este enlace no es válido o ha caducado. Llame a su consultorio para pedir uno nuevo.",
            ),
            (StatusCode::NOT_FOUND, _) => (
                "Link not valid",
                "This link is not valid or has expired. Please call your dental office for a new one.",
            ),
            (StatusCode::FORBIDDEN, "es") => (
                "No permitido",
                "El formulario venció o estaba incompleto. Vuelva atrás, recargue la página e inténtelo de nuevo.",
            ),
            (StatusCode::FORBIDDEN, _) => (
                "Forbidden",
                "The form was stale or incomplete. Go back, reload the page and try again.",
            ),
            (StatusCode::BAD_REQUEST, _) => ("Bad request", "The request could not be used."),
            (StatusCode::LOCKED, _) => (
                "Set aside",
                "This workflow's stored data cannot be read, so it was set aside for an operator to repair. Nothing runs for it until then; it is listed under Set aside on the dashboard.",
            ),
            (StatusCode::CONFLICT, _) => (
                "Already handled",
                "Someone already acted on this, or it no longer applies. Go back and reload the page to see where it stands.",
            ),
            (StatusCode::TOO_MANY_REQUESTS, "es") => (
                "Demasiados intentos",
                "Se enviaron demasiados formularios desde aquí. Inténtelo de nuevo en unos minutos.",
            ),
            (StatusCode::TOO_MANY_REQUESTS, _) => (
                "Too many tries",
                "Too many forms were sent from here. Please try again in a few minutes.",
            ),
            (_, "es") => ("Algo salió mal", "Inténtelo de nuevo en unos minutos."),
            _ => ("Something went wrong", "Please try again in a few minutes."),
        };
        let ctx = minijinja::context! { lang, title, text };
        match self
            .env
            .get_template("error.html")
            .and_then(|t| t.render(ctx))
        {
            Ok(body) => html(status, body),
            Err(_) => (status, title).into_response(),
        }
    }
}

/// An HTML response with the security headers every page carries. Pages are never cached: they
/// show patient amounts or staff data.
pub(crate) fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    res
}

/// The headers of [`html`], for redirects too.
pub(crate) fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A `303 See Other` to `location`, with the page headers (no Referer leaks on the way).
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    secure_headers(h);
    res
}

/// Unknown routes: the plain not-found page.
pub(crate) async fn not_found(
    axum::extract::State(state): axum::extract::State<super::HttpState>,
) -> Response {
    state.pages.error(StatusCode::NOT_FOUND, "en")
}
