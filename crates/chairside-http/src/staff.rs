//! The front-desk dashboard, `/staff`.
//!
//! Logins check argon2 PHC hashes (verified off the async threads). A session is a random
//! 256-bit token in a cookie that is `HttpOnly`, `SameSite=Strict`, scoped to `/staff`, and
//! `Secure` when configured; the sessions themselves live in this process's memory (a mutex over a
//! map), so a restart signs everyone out and several instances need sticky routing. Each session
//! carries its own CSRF token, checked in constant time on every POST; the login form uses a
//! double-submit cookie for the same purpose.
//!
//! A staff member sees only their own practice: every workflow is checked against the session's
//! practice, and another practice's workflow is answered 404, exactly like an unknown one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Form};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use chrono_tz::Tz;
use financing_core::link_only::StaffReport;
use financing_core::{Currency, LenderId, Money, PatientId, PracticeId};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::pages::see_other;
use super::patient::root;
use super::{HttpState, LoginLimits};
use chairside_engine::staff::{Refusal, StaffActions, StaffError, StaffRequest};
use chairside_engine::store::logins::{FailureCount, LockRule, LoginAttempt, LoginOutcome};
use chairside_engine::store::{TaskRow, WorkflowRow};
use chairside_workflow::{StaffAction, Stage, Status, TaskKind};

const SESSION_COOKIE: &str = "chairside_staff";
const LOGIN_COOKIE: &str = "chairside_login";
/// How long a login form stays usable.
const LOGIN_FORM_SECS: i64 = 1800;
/// The most workflows the dashboard reads for one day.
const DAY_LIMIT: u32 = 1000;

/// A signed-in staff member.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) username: String,
    pub(crate) practice: PracticeId,
    pub(crate) csrf: String,
    expires_at: DateTime<Utc>,
}

/// Sessions by token, in memory.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create(
        &self,
        username: &str,
        practice: &PracticeId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> String {
        let token = random_token();
        let mut map = self.lock();
        map.retain(|_, s| s.expires_at > now);
        map.insert(
            token.clone(),
            Session {
                username: username.to_owned(),
                practice: practice.clone(),
                csrf: random_token(),
                expires_at: until,
            },
        );
        token
    }

    fn get(&self, token: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut map = self.lock();
        match map.get(token) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    fn remove(&self, token: &str) {
        self.lock().remove(token);
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

pub(crate) fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(state: &HttpState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn session(state: &HttpState, headers: &HeaderMap) -> Option<(String, Session)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    state
        .sessions
        .get(token, state.now())
        .map(|s| (token.to_owned(), s))
}

pub(crate) fn to_login(state: &HttpState) -> Response {
    see_other(&format!("{}staff/login", root(state)))
}

fn to_dashboard(state: &HttpState) -> Response {
    see_other(&format!("{}staff", root(state)))
}

pub(crate) fn forbidden(state: &HttpState) -> Response {
    state.pages.error(StatusCode::FORBIDDEN, "en")
}

pub(crate) fn not_found(state: &HttpState) -> Response {
    state.pages.error(StatusCode::NOT_FOUND, "en")
}

/// The page of a workflow whose stored data cannot be read: set aside for an operator, when the
/// quarantine lists it for this practice; not found otherwise (another practice's, or unknown).
async fn set_aside(state: &HttpState, s: &Session, id: &str) -> Response {
    match state.store.quarantined_workflows(Some(&s.practice)).await {
        Ok(held) if held.iter().any(|q| q.workflow_id.as_str() == id) => {
            state.pages.error(StatusCode::LOCKED, "en")
        }
        Ok(_) => not_found(state),
        Err(e) => server_error(state, &e),
    }
}

pub(crate) fn server_error(state: &HttpState, e: &chairside_engine::store::StoreError) -> Response {
    tracing::error!(error = %e, "staff dashboard: store failed");
    state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en")
}

#[derive(Serialize)]
struct LoginPage<'a> {
    root: String,
    csrf: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

fn login_page(
    state: &HttpState,
    status: StatusCode,
    csrf: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let mut res = state.pages.render(
        status,
        "staff_login.html",
        LoginPage {
            root: root(state),
            csrf,
            username,
            error,
        },
    );
    let path = format!("{}staff/login", root(state));
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, csrf, &path, LOGIN_FORM_SECS),
    );
    res
}

/// `GET /staff/login`.
pub(crate) async fn login_form(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if session(&state, &headers).is_some() {
        return to_dashboard(&state);
    }
    login_page(&state, StatusCode::OK, &random_token(), "", None)
}

/// The login form.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

fn verify_password(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &h)
            .is_ok()
    })
}

/// What the login handler shares across requests: the cap on concurrent password checks and a
/// gauge of the checks themselves.
#[derive(Debug)]
pub(crate) struct LoginGuard {
    /// One permit per argon2 check allowed at once: a flood of logins waits here briefly and is
    /// then answered 503, instead of taking 19 MiB and a core each.
    pub(crate) hashes: Arc<Semaphore>,
    pub(crate) gauge: Arc<HashGauge>,
}

impl LoginGuard {
    pub(crate) fn new(permits: usize) -> Self {
        Self {
            hashes: Arc::new(Semaphore::new(permits.max(1))),
            gauge: Arc::new(HashGauge::default()),
        }
    }
}

/// Counts of password checks: how many ran, how many run now, and the most at once.
#[derive(Debug, Default)]
pub(crate) struct HashGauge {
    pub(crate) verifications: AtomicU64,
    running: AtomicUsize,
    pub(crate) max_running: AtomicUsize,
    /// Test hook: how long each check holds its permit, so overlapping checks can be observed.
    #[cfg(test)]
    pub(crate) hold_ms: AtomicU64,
}

impl HashGauge {
    fn check(&self, hash: &str, password: &SecretString) -> bool {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let ok = verify_password(hash, password);
        #[cfg(test)]
        std::thread::sleep(std::time::Duration::from_millis(
            self.hold_ms.load(Ordering::SeqCst),
        ));
        self.running.fetch_sub(1, Ordering::SeqCst);
        ok
    }
}

/// The throttle key of a client: its IP address, with IPv6 narrowed to its /64 (one subscriber
/// usually holds a whole /64). Without connection info (an in-process call) every such client
/// shares one key.
///
/// `X-Forwarded-For` is believed only from a configured trusted proxy, and then only as far as
/// the proxies reach: the entries are read from the right (the one the nearest proxy appended),
/// skipping trusted proxies, and the first other address is the client. A client cannot choose
/// its key by sending its own header, since everything left of the untrusted entry is ignored.
pub(crate) fn client_address(
    connect: Option<&SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> String {
    let peer = connect.map(SocketAddr::ip);
    let client = match peer {
        Some(ip) if trusted.contains(&ip) => headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|entry| entry.trim().parse::<IpAddr>())
            .find(|entry| !matches!(entry, Ok(ip) if trusted.contains(ip)))
            // A malformed entry from a trusted proxy's chain: fall back to the proxy itself.
            .and_then(Result::ok)
            .or(peer),
        _ => peer,
    };
    match client {
        Some(IpAddr::V4(ip)) => ip.to_string(),
        Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_owned(),
    }
}

fn lock_rule(limits: &LoginLimits) -> LockRule {
    let chrono =
        |d: std::time::Duration| ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX);
    LockRule {
        forget_after: chrono(limits.forget_after),
        lock_after: limits.lock_after,
        lock_for: chrono(limits.lock_for),
    }
}

/// How long `count` must still wait before its next attempt: the lockout if any, else
/// `first_delay` doubled for every failure past `free`, up to `max_delay`, from the latest.
fn wait_for(
    count: &FailureCount,
    free: u32,
    limits: &LoginLimits,
    now: DateTime<Utc>,
) -> Option<ChronoDuration> {
    if let Some(until) = count.locked_until.filter(|u| *u > now) {
        return Some(until - now);
    }
    if count.failures < free {
        return None;
    }
    let last = count.last_failure_at?;
    let doublings = (count.failures - free).min(30);
    let delay = limits
        .first_delay
        .saturating_mul(1 << doublings)
        .min(limits.max_delay);
    let next = last + ChronoDuration::from_std(delay).unwrap_or(ChronoDuration::MAX);
    (next > now).then(|| next - now)
}

/// A refusal before any password check, with `Retry-After` in whole seconds (at least 1).
fn refuse_for(
    state: &HttpState,
    status: StatusCode,
    nonce: &str,
    username: &str,
    wait: ChronoDuration,
    message: &str,
) -> Response {
    let secs = (wait.num_milliseconds().max(0) + 999) / 1000;
    let secs = secs.max(1);
    let mut res = login_page(state, status, nonce, username, Some(message));
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// `POST /staff/login`. Before any password is checked, the account's and the client address's
/// failures are read from the store: a locked account or one still inside its delay is answered
/// 429 with `Retry-After`, and so is an address that failed too often. Then the check waits
/// briefly for one of [`LoginLimits::concurrent_hashes`] permits (503 when none frees up).
/// Every attempt, with its outcome, the name typed and the client address, is audited in the
/// store; the password never is.
pub(crate) async fn login(
    State(state): State<HttpState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(nonce) = cookie(&headers, LOGIN_COOKIE).filter(|c| same(c, &form.csrf)) else {
        return forbidden(&state);
    };
    let nonce = nonce.to_owned();
    let address = client_address(
        connect.as_ref().map(|Extension(ConnectInfo(a))| a),
        &headers,
        &state.config.trusted_proxies,
    );
    let limits = state.config.login;
    let rule = lock_rule(&limits);
    let now = state.now();
    let attempt = |outcome| LoginAttempt {
        username: form.username.clone(),
        address: address.clone(),
        at: now,
        outcome,
    };
    let standing = match state
        .logins()
        .login_standing(&form.username, &address, &rule, now)
        .await
    {
        Ok(standing) => standing,
        Err(e) => return server_error(&state, &e),
    };

    let locked = standing.account.locked_until.filter(|u| *u > now);
    let throttled = wait_for(
        &standing.account,
        limits.account_free_failures,
        &limits,
        now,
    )
    .into_iter()
    .chain(wait_for(
        &standing.address,
        limits.address_free_failures,
        &limits,
        now,
    ))
    .max();
    if let Some(wait) = throttled {
        let (outcome, message) = if locked.is_some() {
            (
                LoginOutcome::Locked,
                "This account is locked after too many failed sign-ins. Ask a colleague to unlock it, or try again later.",
            )
        } else {
            (
                LoginOutcome::Throttled,
                "Too many failed sign-ins. Wait a moment and try again.",
            )
        };
        tracing::warn!(%address, outcome = outcome.label(), "staff login refused before the password check");
        if let Err(e) = state.logins().record_login(&attempt(outcome), &rule).await {
            return server_error(&state, &e);
        }
        return refuse_for(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &nonce,
            &form.username,
            wait,
            message,
        );
    }

    let guard = state.login.clone();
    let Ok(Ok(permit)) =
        tokio::time::timeout(limits.hash_wait, guard.hashes.clone().acquire_owned()).await
    else {
        tracing::warn!(%address, "staff login refused: too many password checks at once");
        if let Err(e) = state
            .logins()
            .record_login(&attempt(LoginOutcome::Busy), &rule)
            .await
        {
            return server_error(&state, &e);
        }
        return refuse_for(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            &nonce,
            &form.username,
            ChronoDuration::seconds(1),
            "Too many sign-ins at once. Try again in a moment.",
        );
    };
    let account = state
        .config
        .staff
        .iter()
        .find(|a| a.username == form.username)
        .cloned();
    // An unknown name is checked against a real hash too, so timing does not tell names apart.
    let hash = account
        .as_ref()
        .or(state.config.staff.first())
        .map(|a| a.password_hash.clone());
    let password = SecretString::from(form.password.clone());
    let gauge = guard.gauge.clone();
    let verified = match hash {
        Some(hash) => tokio::task::spawn_blocking(move || {
            let ok = gauge.check(&hash, &password);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false),
        None => false,
    };
    let Some(account) = account.filter(|_| verified) else {
        tracing::warn!(%address, "staff login refused");
        if let Err(e) = state
            .logins()
            .record_login(&attempt(LoginOutcome::WrongPassword), &rule)
            .await
        {
            return server_error(&state, &e);
        }
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &nonce,
            &form.username,
            Some("Wrong username or password."),
        );
    };
    if let Err(e) = state
        .logins()
        .record_login(&attempt(LoginOutcome::Success), &rule)
        .await
    {
        return server_error(&state, &e);
    }
    let lifetime = ChronoDuration::from_std(state.config.staff_session_lifetime)
        .unwrap_or(ChronoDuration::hours(12));
    let token = state
        .sessions
        .create(&account.username, &account.practice, now + lifetime, now);
    tracing::info!(practice = %account.practice, "staff signed in");
    let mut res = to_dashboard(&state);
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            SESSION_COOKIE,
            &token,
            &format!("{}staff", root(&state)),
            lifetime.num_seconds(),
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            LOGIN_COOKIE,
            "",
            &format!("{}staff/login", root(&state)),
            0,
        ),
    );
    res
}

/// A form that carries only the CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /staff/logout`.
pub(crate) async fn logout(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some((token, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    if !same(&form.csrf, &s.csrf) {
        return forbidden(&state);
    }
    state.sessions.remove(&token);
    let mut res = to_login(&state);
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            &state,
            SESSION_COOKIE,
            "",
            &format!("{}staff", root(&state)),
            0,
        ),
    );
    res
}

fn time_zone(state: &HttpState, practice: &PracticeId) -> Tz {
    state
        .config
        .practice(practice)
        .map_or(chrono_tz::UTC, |p| p.time_zone)
}

fn local(at: DateTime<Utc>, tz: Tz, fmt: &str) -> String {
    at.with_timezone(&tz).format(fmt).to_string()
}

/// `0.4s`, `12s`, `2m 05s`, `1h 12m`, `3d 4h`.
fn duration_text(d: ChronoDuration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        // Under ten seconds (what the chain takes when nobody waits on a patient), tenths.
        0..10 => {
            let tenths = (d.num_milliseconds().max(0) + 50) / 100;
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
        10..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn median(mut values: Vec<ChronoDuration>) -> Option<ChronoDuration> {
    values.sort();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2),
    }
}

fn task_label(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::BadData => "Plan data to fix",
        TaskKind::Unreachable => "Patient not reached",
        TaskKind::Counteroffer => "Counteroffer to discuss",
        TaskKind::PatientQuiet => "Patient went quiet",
        TaskKind::NoFinancing => "No financing found",
        TaskKind::PaymentFailed => "Payment failed",
        TaskKind::PaymentReversed => "Refund, dispute or ended schedule",
        TaskKind::SystemError => "System error",
        TaskKind::ConsentRefusal => "Refused texts",
        TaskKind::Settlement => "Lender charge to run",
        TaskKind::LenderNeedsStaff => "Lender asks you to call",
        TaskKind::LenderNoDecision => "No lender decision recorded",
        TaskKind::PatientRecord => "Patient record to create",
        TaskKind::PlanRecord => "Treatment plan to enter",
        TaskKind::PatientReport => "Patient reports a lender decision",
    }
}

#[derive(Serialize)]
struct ActionButton {
    value: &'static str,
    label: &'static str,
}

const HANDLED: ActionButton = ActionButton {
    value: "mark_handled",
    label: "Mark handled",
};
const RETRY: ActionButton = ActionButton {
    value: "retry",
    label: "Retry",
};
const CANCEL: ActionButton = ActionButton {
    value: "cancel",
    label: "Cancel",
};
const RESEND: ActionButton = ActionButton {
    value: "resend_link",
    label: "Resend link",
};
const ACCEPT_COUNTEROFFER: ActionButton = ActionButton {
    value: "accept_counteroffer",
    label: "Accept counteroffer (remainder in house)",
};
const NEXT_LENDER: ActionButton = ActionButton {
    value: "next_lender",
    label: "Try the next lender",
};

/// The actions that make sense for a task, the likeliest first.
fn task_actions(kind: TaskKind) -> Vec<ActionButton> {
    match kind {
        TaskKind::BadData | TaskKind::SystemError => vec![RETRY, HANDLED, CANCEL],
        // Retry starts over once the patient has a phone or email; a link that could not be sent
        // while the financing runs on is resent (after staff corrected the contact) or handed
        // over at the desk and marked handled. Which applies, `shown_actions` finds out.
        TaskKind::Unreachable => vec![RETRY, RESEND, HANDLED, CANCEL],
        // Raised beside a financing that is done: Retry sends the patient a fresh pay link for a
        // deposit still owed (refused, with the reason, when nothing is owed or Stripe retries an
        // installment itself); otherwise staff call the patient and mark it handled.
        TaskKind::PaymentFailed => vec![RETRY, HANDLED],
        TaskKind::PatientQuiet => vec![RESEND, HANDLED, CANCEL],
        TaskKind::Counteroffer => vec![ACCEPT_COUNTEROFFER, NEXT_LENDER, HANDLED, CANCEL],
        TaskKind::NoFinancing => vec![HANDLED, CANCEL],
        TaskKind::ConsentRefusal
        | TaskKind::Settlement
        | TaskKind::PaymentReversed
        | TaskKind::PatientRecord
        | TaskKind::PlanRecord => {
            vec![HANDLED]
        }
        // Retry reads the lender again once staff did what it asked; the waterfall holds until then.
        TaskKind::LenderNeedsStaff => vec![RETRY, HANDLED, CANCEL],
        // The waterfall already moved on: staff check the lender's portal and close the task.
        TaskKind::LenderNoDecision => vec![HANDLED, CANCEL],
        // Its own buttons, which depend on the report: `patient_report::buttons`.
        TaskKind::PatientReport => Vec::new(),
    }
}

/// The buttons shown for task `task` (of `kind`) on a workflow in `state`: those of
/// [`task_actions`] that [`chairside_engine::staff::admit`] would take, so that no button is shown
/// that could only be refused (a Retry on a finished workflow with no pay link to re-issue, a
/// Cancel or Resend on a finished one). Pure.
fn shown_actions(
    state: &chairside_workflow::WorkflowState,
    task: i64,
    kind: TaskKind,
) -> Vec<ActionButton> {
    let open = [task];
    let kinds = [kind.label().to_owned()];
    let snapshot = chairside_engine::staff::StaffSnapshot {
        state,
        open_tasks: &open,
        open_kinds: &kinds,
        queued: None,
    };
    task_actions(kind)
        .into_iter()
        .filter(|b| {
            parse_action(b.value).is_some_and(|action| {
                let request =
                    StaffRequest::new(state.id.clone(), action, "dashboard").answering(task);
                chairside_engine::staff::admit(&snapshot, &request).is_ok()
            })
        })
        .collect()
}

fn parse_action(value: &str) -> Option<StaffAction> {
    Some(match value {
        "retry" => StaffAction::Retry,
        "cancel" => StaffAction::Cancel,
        "mark_handled" => StaffAction::MarkHandled,
        "resend_link" => StaffAction::ResendLink,
        "accept_counteroffer" => StaffAction::AcceptCounteroffer,
        "next_lender" => StaffAction::NextLender,
        _ => return None,
    })
}

/// Patient initials by id, read once per page. Never more than initials leave this function.
struct Initials<'a> {
    state: &'a HttpState,
    practice: &'a PracticeId,
    seen: HashMap<PatientId, String>,
}

impl Initials<'_> {
    async fn of(
        &mut self,
        patient: &PatientId,
    ) -> Result<String, chairside_engine::store::StoreError> {
        if let Some(i) = self.seen.get(patient) {
            return Ok(i.clone());
        }
        let initials = self
            .state
            .patients()
            .patient(self.practice, patient)
            .await?
            .map_or_else(|| "?".to_owned(), |c| c.initials());
        self.seen.insert(patient.clone(), initials.clone());
        Ok(initials)
    }
}

/// Where a workflow stands: the stage, or how it ended once settled.
fn stage_text(row: &WorkflowRow) -> String {
    match (&row.state.stage, &row.state.result, &row.state.staff_task) {
        (Stage::Settled, _, Some(task)) if row.state.status == Status::WaitingOnStaff => {
            task_label(task.kind).to_owned()
        }
        (Stage::Settled, Some(result), _) => row
            .state
            .outcome_label()
            .unwrap_or_else(|| result.path.clone()),
        _ => row.state.stage_label(),
    }
}

fn next_step(row: &WorkflowRow, tz: Tz) -> String {
    if matches!(row.state.status, Status::Done | Status::Cancelled) {
        return "none".into();
    }
    match (&row.next_action, row.next_due_at) {
        (Some(a), Some(at)) => format!("{} at {}", a.replace('_', " "), local(at, tz, "%H:%M")),
        (Some(a), None) => a.replace('_', " "),
        (None, Some(at)) => format!("check at {}", local(at, tz, "%H:%M")),
        (None, None) if row.state.status == Status::WaitingOnStaff => "staff decision".into(),
        (None, None) => "waiting".into(),
    }
}

#[derive(Serialize)]
struct PlanLine {
    href: String,
    initials: String,
    accepted: String,
    status: &'static str,
    stage: String,
    next: String,
}

#[derive(Serialize)]
struct TaskLine {
    id: i64,
    href: String,
    initials: String,
    kind: &'static str,
    reason: String,
    opened: String,
    actions: Vec<ActionButton>,
}

#[derive(Serialize)]
struct Figures {
    accepted: usize,
    financed: usize,
    paid: usize,
    done: usize,
    median: String,
}

#[derive(Serialize)]
struct Dashboard {
    root: String,
    csrf: String,
    user: String,
    practice_name: String,
    today: String,
    figures: Figures,
    plans: Vec<PlanLine>,
    tasks: Vec<TaskLine>,
    held: Vec<HeldLine>,
    /// Outbound deliveries given up (the delivery log's banner).
    failed_deliveries: usize,
    /// Plans detection could not start (a record to fix in the practice system).
    detection_tasks: Vec<HeldLine>,
    /// The practice system's detection health, when it is not healthy.
    detection_health: Vec<String>,
}

/// Something set aside because it does not decode (a workflow row, a webhook delivery).
#[derive(Serialize)]
struct HeldLine {
    what: String,
    problem: String,
    since: String,
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Active => "in progress",
        Status::WaitingOnStaff => "needs staff",
        Status::Done => "done",
        Status::Cancelled => "cancelled",
    }
}

fn practice_name(state: &HttpState, practice: &PracticeId) -> String {
    state
        .config
        .practice(practice)
        .map_or_else(|| practice.to_string(), |p| p.name.clone())
}

/// `GET /staff`.
pub(crate) async fn dashboard(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    match render_dashboard(&state, &s).await {
        Ok(res) => res,
        Err(e) => server_error(&state, &e),
    }
}

async fn render_dashboard(
    state: &HttpState,
    s: &Session,
) -> Result<Response, chairside_engine::store::StoreError> {
    let tz = time_zone(state, &s.practice);
    let now = state.now();
    let today = now.with_timezone(&tz).date_naive();
    let start = tz
        .from_local_datetime(&today.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map_or(now - ChronoDuration::hours(24), |t| t.with_timezone(&Utc));
    let base = format!("{}staff/workflows/", root(state));
    let mut initials = Initials {
        state,
        practice: &s.practice,
        seen: HashMap::new(),
    };

    // Newest first: stop at the first plan accepted before today.
    let rows: Vec<WorkflowRow> = state
        .reports()
        .workflows(Some(&s.practice), None, DAY_LIMIT)
        .await?
        .into_iter()
        .filter(|r| r.state.key.practice_id == s.practice)
        .take_while(|r| r.state.accepted_at >= start)
        .collect();
    let figures = Figures {
        accepted: rows.len(),
        financed: rows
            .iter()
            .filter(|r| {
                r.state
                    .result
                    .as_ref()
                    .is_some_and(|x| x.financed.is_some())
            })
            .count(),
        paid: rows
            .iter()
            .filter(|r| !r.state.stripe.payments_noted.is_empty())
            .count(),
        done: rows
            .iter()
            .filter(|r| r.state.status == Status::Done)
            .count(),
        median: median(
            rows.iter()
                .filter_map(|r| r.state.operatory_to_ledger())
                .collect(),
        )
        .map_or_else(|| "–".to_owned(), duration_text),
    };
    let mut plans = Vec::with_capacity(rows.len());
    for row in &rows {
        plans.push(PlanLine {
            href: format!("{base}{}", row.state.id),
            initials: initials.of(&row.state.patient_id).await?,
            accepted: local(row.state.accepted_at, tz, "%H:%M"),
            status: status_text(row.state.status),
            stage: stage_text(row),
            next: next_step(row, tz),
        });
    }
    let mut tasks = Vec::new();
    for task in state.reports().tasks(Some(&s.practice), false).await? {
        if let Some(line) = task_line(state, &mut initials, &task, &base, tz).await? {
            tasks.push(line);
        }
    }
    let mut held: Vec<HeldLine> = state
        .store
        .quarantined_workflows(Some(&s.practice))
        .await?
        .into_iter()
        .map(|q| HeldLine {
            what: format!("workflow {}", q.workflow_id),
            problem: q.problem,
            since: local(q.at, tz, "%b %-d %H:%M"),
        })
        .collect();
    // Deliveries name no practice until they parse: every practice's staff see that one is held
    // (provider and time only), and an operator reads it with the data key.
    held.extend(
        state
            .store
            .quarantined_deliveries()
            .await?
            .into_iter()
            .map(|d| HeldLine {
                what: format!("{} delivery #{}", d.provider, d.id),
                problem: d.problem,
                since: local(d.received_at, tz, "%b %-d %H:%M"),
            }),
    );
    let detection_tasks: Vec<HeldLine> = state
        .store
        .detection_tasks(Some(&s.practice), false)
        .await?
        .into_iter()
        .map(|t| HeldLine {
            what: format!(
                "plan {} ({}, version {})",
                t.task.plan_id, t.source, t.task.marker
            ),
            problem: format!("{}: {}", t.task.field, t.task.problem),
            since: local(t.created_at, tz, "%b %-d %H:%M"),
        })
        .collect();
    let detection_health: Vec<String> = state
        .store
        .detection_health()
        .await?
        .into_iter()
        .filter(|h| h.practice_id == s.practice && h.consecutive_failures > 0)
        .map(|h| {
            format!(
                "{}: the last {} checks for accepted plans failed ({}); last good check {}",
                h.source,
                h.consecutive_failures,
                h.last_failure.as_deref().unwrap_or("unknown"),
                h.last_good_poll_at
                    .map_or_else(|| "never".to_owned(), |t| local(t, tz, "%b %-d %H:%M")),
            )
        })
        .collect();
    let page = Dashboard {
        root: root(state),
        csrf: s.csrf.clone(),
        user: s.username.clone(),
        practice_name: practice_name(state, &s.practice),
        today: today.format("%A %-d %B %Y").to_string(),
        figures,
        plans,
        tasks,
        held,
        failed_deliveries: deliveries::failed_count(state, &s.practice).await?,
        detection_tasks,
        detection_health,
    };
    Ok(state
        .pages
        .render(StatusCode::OK, "staff_dashboard.html", page))
}

async fn task_line(
    state: &HttpState,
    initials: &mut Initials<'_>,
    task: &TaskRow,
    base: &str,
    tz: Tz,
) -> Result<Option<TaskLine>, chairside_engine::store::StoreError> {
    if &task.practice_id != initials.practice {
        return Ok(None);
    }
    let row = match state.reports().workflow(&task.workflow_id).await {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(None),
        // A quarantined workflow: its task (from the row's key columns) still shows, without
        // patient initials or actions, since nothing can act on it until it is repaired.
        Err(e) if e.is_unreadable() => {
            return Ok(Some(TaskLine {
                id: task.id,
                href: format!("{base}{}", task.workflow_id),
                initials: "?".to_owned(),
                kind: task_label(task.task.kind),
                reason: task.task.reason.clone(),
                opened: local(task.created_at, tz, "%b %-d %H:%M"),
                actions: Vec::new(),
            }));
        }
        Err(e) => return Err(e),
    };
    if &row.state.key.practice_id != initials.practice {
        return Ok(None);
    }
    Ok(Some(TaskLine {
        id: task.id,
        href: format!("{base}{}", task.workflow_id),
        initials: initials.of(&row.state.patient_id).await?,
        kind: task_label(task.task.kind),
        reason: task.task.reason.clone(),
        opened: local(task.created_at, tz, "%b %-d %H:%M"),
        actions: task_buttons(state, &row.state, task.id, task.task.kind).await?,
    }))
}

/// The buttons of task `task` (of `kind`): [`shown_actions`], or for a patient's report its own
/// ([`patient_report::buttons`]).
async fn task_buttons(
    state: &HttpState,
    st: &chairside_workflow::WorkflowState,
    task: i64,
    kind: TaskKind,
) -> Result<Vec<ActionButton>, chairside_engine::store::StoreError> {
    if kind != TaskKind::PatientReport {
        return Ok(shown_actions(st, task, kind));
    }
    let pending = patient_report::pending(state, &st.id).await?;
    Ok(patient_report::buttons(
        st,
        pending.as_ref(),
        task,
        state.now(),
    ))
}

/// The workflow if it exists and belongs to the session's practice.
pub(crate) async fn own_workflow(
    state: &HttpState,
    s: &Session,
    id: &str,
) -> Result<Option<WorkflowRow>, chairside_engine::store::StoreError> {
    let Some(id) = super::webhooks::parse_workflow_id(id) else {
        return Ok(None);
    };
    Ok(state
        .reports()
        .workflow(&id)
        .await?
        .filter(|row| row.state.key.practice_id == s.practice))
}

#[derive(Serialize)]
struct WorkflowView {
    href: String,
    initials: String,
    accepted: String,
    status: &'static str,
    stage: String,
    next: String,
    path: Option<String>,
    portion: Option<String>,
    o2l: Option<String>,
}

#[derive(Serialize)]
struct AuditLine {
    at: String,
    actor: String,
    kind: String,
    detail: String,
}

#[derive(Serialize)]
struct TaskView {
    id: i64,
    kind: &'static str,
    reason: String,
    actions: Vec<ActionButton>,
}

#[derive(Serialize)]
struct WorkflowPage {
    root: String,
    csrf: String,
    user: String,
    practice_name: String,
    w: WorkflowView,
    task: Option<TaskView>,
    /// A link-only lender waiting for staff to record its decision.
    decision: Option<DecisionView>,
    /// The amounts as they stand, while they may still be corrected.
    correct: Option<CorrectView>,
    audit: Vec<AuditLine>,
}

/// The form that corrects the plan total, the insurance estimate and the deposit, prefilled
/// with the values as they stand (plain dollars, `1500.00`; empty when not known).
#[derive(Serialize)]
struct CorrectView {
    total: String,
    insurance: String,
    deposit: String,
}

fn plain_dollars(m: Option<Money>) -> String {
    m.map_or_else(String::new, |m| {
        format!("{}.{:02}", m.minor() / 100, m.minor() % 100)
    })
}

/// The form that records a link-only lender's decision (Cherry approved $X, declined,
/// counteroffer $Y), read in the lender's portal.
#[derive(Serialize)]
struct DecisionView {
    lender: String,
    lender_name: String,
    asked: String,
    decide_by: String,
    /// Pre-filled from the patient's pending report: `approved` or `declined`.
    outcome: Option<&'static str>,
    /// Pre-filled from the patient's pending report, plain dollars.
    amount: String,
    /// The patient's pending report, as staff read it (`approved $800.00`).
    reported: Option<String>,
}

/// `GET /staff/workflows/{id}`.
pub(crate) async fn workflow(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    let row = match own_workflow(&state, &s, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&state),
        // Stored data that cannot be read: the page says it was set aside (if the workflow is
        // this practice's), never the error's text, which can quote what is stored.
        Err(e) if e.is_unreadable() => return set_aside(&state, &s, &id).await,
        Err(e) => return server_error(&state, &e),
    };
    match render_workflow(&state, &s, &row).await {
        Ok(res) => res,
        Err(e) => server_error(&state, &e),
    }
}

async fn render_workflow(
    state: &HttpState,
    s: &Session,
    row: &WorkflowRow,
) -> Result<Response, chairside_engine::store::StoreError> {
    let tz = time_zone(state, &s.practice);
    let mut initials = Initials {
        state,
        practice: &s.practice,
        seen: HashMap::new(),
    };
    let st = &row.state;
    let pending_report = patient_report::pending(state, &st.id).await?;
    let open_task = state
        .reports()
        .tasks(Some(&s.practice), false)
        .await?
        .into_iter()
        .find(|t| t.workflow_id == st.id);
    let audit = state
        .reports()
        .audit(&st.id)
        .await?
        .into_iter()
        .map(|a| AuditLine {
            at: local(a.at, tz, "%Y-%m-%d %H:%M:%S"),
            actor: a.actor,
            kind: a.kind,
            detail: a.detail,
        })
        .collect();
    let page = WorkflowPage {
        root: root(state),
        csrf: s.csrf.clone(),
        user: s.username.clone(),
        practice_name: practice_name(state, &s.practice),
        w: WorkflowView {
            href: format!("{}staff/workflows/{}", root(state), st.id),
            initials: initials.of(&st.patient_id).await?,
            accepted: local(st.accepted_at, tz, "%Y-%m-%d %H:%M"),
            status: status_text(st.status),
            stage: stage_text(row),
            next: next_step(row, tz),
            path: st.outcome_label(),
            portion: st.split.map(|x| x.patient_portion.to_string()),
            o2l: st.operatory_to_ledger().map(duration_text),
        },
        decision: match (&st.stage, st.lender_session()) {
            (Stage::Financing(c), Some((lender, _, session))) => {
                let prefill = pending_report
                    .as_ref()
                    .filter(|p| &p.report.lender == lender)
                    .and_then(patient_report::prefill);
                session.decide_by.map(|by| DecisionView {
                    lender: lender.to_string(),
                    lender_name: state
                        .config
                        .lenders
                        .get(lender)
                        .map_or_else(|| lender.to_string(), |l| l.name.clone()),
                    asked: c.amount.to_string(),
                    decide_by: local(by, tz, "%Y-%m-%d %H:%M"),
                    outcome: prefill.as_ref().map(|(o, _)| *o),
                    amount: prefill.map(|(_, a)| a).unwrap_or_default(),
                    reported: pending_report
                        .as_ref()
                        .filter(|p| &p.report.lender == lender)
                        .map(|p| p.report.report.to_string()),
                })
            }
            _ => None,
        },
        correct: chairside_workflow::correction::correctable(st)
            .is_ok()
            .then(|| CorrectView {
                total: plain_dollars(st.split.map(|x| x.total)),
                insurance: plain_dollars(st.split.map(|x| x.insurance)),
                deposit: plain_dollars(st.deposit),
            }),
        task: match open_task {
            Some(t) => Some(TaskView {
                id: t.id,
                kind: task_label(t.task.kind),
                actions: match t.task.kind {
                    TaskKind::PatientReport => {
                        patient_report::buttons(st, pending_report.as_ref(), t.id, state.now())
                    }
                    kind => shown_actions(st, t.id, kind),
                },
                reason: t.task.reason,
            }),
            None => None,
        },
        audit,
    };
    Ok(state
        .pages
        .render(StatusCode::OK, "staff_workflow.html", page))
}

/// A staff action form.
#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    /// The task the page showed: once someone has resolved it, the click is stale.
    #[serde(default)]
    task: Option<i64>,
    /// Why, in staff's words, for the audit trail.
    #[serde(default)]
    reason: Option<String>,
    /// `record_lender_decision`: the lender (its id).
    #[serde(default)]
    lender: Option<String>,
    /// `record_lender_decision`: `approved`, `counteroffer` or `declined`.
    #[serde(default)]
    outcome: Option<String>,
    /// `record_lender_decision`: the amount approved or offered, in dollars (`1200.00`).
    #[serde(default)]
    amount: Option<String>,
    /// `correct_amounts`: the plan total, in dollars.
    #[serde(default)]
    total: String,
    /// `correct_amounts`: the insurance estimate, in dollars.
    #[serde(default)]
    insurance: String,
    /// `correct_amounts`: the deposit, in dollars.
    #[serde(default)]
    deposit: String,
}

/// The decision a `record_lender_decision` form records; `None` when the form is incomplete or
/// the amount is not an amount.
fn lender_report(form: &ActionForm) -> Option<(LenderId, StaffReport)> {
    let lender = LenderId::new(form.lender.as_deref()?.trim());
    let amount = || {
        let text = form.amount.as_deref()?.trim().trim_start_matches('$');
        Money::parse(&text.replace(',', ""), Currency::Usd).ok()
    };
    let report = match form.outcome.as_deref()? {
        "approved" => StaffReport::Approved { amount: amount()? },
        "counteroffer" => StaffReport::Counteroffer { amount: amount()? },
        "declined" => StaffReport::Declined,
        _ => return None,
    };
    Some((lender, report))
}

/// `POST /staff/workflows/{id}/actions`: hands the decision to [`StaffActions`], which checks the
/// workflow and its task, queues the decision for the workflow and closes the open task in one
/// transaction; the workflow raises a new task should the step fail again. A decision that no
/// longer applies (a double click, a colleague was faster) is 409 and changes nothing.
pub(crate) async fn act(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    if !same(&form.csrf, &s.csrf) {
        return forbidden(&state);
    }
    let Some(wf) = super::webhooks::parse_workflow_id(&id) else {
        return not_found(&state);
    };
    let actor = format!("staff:{}", s.username);
    if let Some(res) = patient_report::act(&state, &s, &wf, &form, &actor).await {
        return res;
    }
    let staff = StaffActions::new(&*state.store, &actor);
    let mut request = if form.action == "correct_amounts" {
        let correction = match chairside_workflow::correction::Correction::parse(
            &form.total,
            &form.insurance,
            &form.deposit,
        ) {
            Ok(c) => c,
            // The form's own words: which field, and what was expected.
            Err(e) => return state.pages.form_error(&e.to_string()),
        };
        StaffRequest::correction(
            wf,
            correction,
            actor.clone(),
            form.reason.clone().unwrap_or_default(),
        )
        .within(s.practice.clone())
    } else if form.action == "record_lender_decision" {
        let Some((lender, report)) = lender_report(&form) else {
            return state.pages.error(StatusCode::BAD_REQUEST, "en");
        };
        StaffRequest::lender_decision(wf, lender, report, actor.clone()).within(s.practice.clone())
    } else {
        let Some(action) = parse_action(&form.action) else {
            return state.pages.error(StatusCode::BAD_REQUEST, "en");
        };
        staff.request(&wf, action).within(s.practice.clone())
    };
    if let Some(task) = form.task {
        request = request.answering(task);
    }
    if let Some(reason) = form.reason.filter(|r| !r.trim().is_empty()) {
        request = request.because(reason);
    }
    let outcome = staff.act(request, state.now()).await.map(|_| ());
    answer(&state, outcome)
}

/// The answer to a staff decision: back to the dashboard, or why nothing happened (409 for a
/// stale or double click).
fn answer(state: &HttpState, outcome: Result<(), StaffError>) -> Response {
    match outcome {
        Ok(()) => to_dashboard(state),
        Err(StaffError::Refused(Refusal::UnknownWorkflow(_))) => not_found(state),
        // Why nothing happened, in the refusal's words: "nothing is owed: the deposit is paid".
        Err(StaffError::Refused(
            refusal @ (Refusal::NoPayLink { .. }
            | Refusal::NotCorrectable { .. }
            | Refusal::BadCorrection(_)),
        )) => {
            tracing::info!(%refusal, "staff action refused");
            state.pages.refused(&refusal.to_string())
        }
        Err(StaffError::Refused(refusal)) => {
            tracing::info!(%refusal, "staff action refused");
            state.pages.error(StatusCode::CONFLICT, "en")
        }
        Err(StaffError::Store(e)) => server_error(state, &e),
        Err(e) => {
            tracing::error!(error = %e, "staff action failed");
            state.pages.error(StatusCode::INTERNAL_SERVER_ERROR, "en")
        }
    }
}

pub(crate) mod deliveries;
mod patient_report;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod button_tests {
    use super::*;
    use chairside_workflow::{FinancingResult, WorkflowKey, WorkflowState};
    use financing_core::PlanId;

    fn state(status: Status) -> WorkflowState {
        let mut s = WorkflowState::new(
            WorkflowKey {
                practice_id: PracticeId::new("smile"),
                plan_id: PlanId::new("tx-1"),
                revision: "1".into(),
            },
            PatientId::new("pat-1"),
            DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default(),
        );
        s.status = status;
        s
    }

    fn values(buttons: &[ActionButton]) -> Vec<&'static str> {
        buttons.iter().map(|b| b.value).collect()
    }

    /// A finished financing whose deposit payment failed, `deposit` cents owed.
    fn failed_deposit(deposit: i64) -> WorkflowState {
        let mut s = state(Status::Done);
        s.result = Some(FinancingResult {
            financed: None,
            deposit: Money::usd(deposit),
            in_house: None,
            path: "test".into(),
        });
        s.stripe.customer_id = Some("cus_1".into());
        s.stripe.failures_handled = vec!["pi_1".into()];
        s
    }

    #[test]
    fn retry_shows_on_a_failed_payment_only_while_a_pay_link_can_be_issued() {
        assert_eq!(
            values(&shown_actions(
                &failed_deposit(12_000),
                1,
                TaskKind::PaymentFailed
            )),
            vec!["retry", "mark_handled"]
        );
        // Nothing owed up front (installments only), or a link already on its way: Retry would
        // only be refused.
        assert_eq!(
            values(&shown_actions(
                &failed_deposit(0),
                1,
                TaskKind::PaymentFailed
            )),
            vec!["mark_handled"]
        );
        let mut issuing = failed_deposit(12_000);
        issuing.stripe.staff_pay_link = true;
        assert_eq!(
            values(&shown_actions(&issuing, 1, TaskKind::PaymentFailed)),
            vec!["mark_handled"]
        );
    }

    #[test]
    fn a_task_left_beside_a_finished_workflow_offers_mark_handled_not_retry_or_resend() {
        // A finished workflow may still be cancelled (its effects undone), never resent.
        let done = state(Status::Done);
        assert_eq!(
            values(&shown_actions(&done, 1, TaskKind::PatientQuiet)),
            vec!["mark_handled", "cancel"]
        );
        assert_eq!(
            values(&shown_actions(&done, 1, TaskKind::PaymentReversed)),
            vec!["mark_handled"]
        );
        // Waiting on staff, every button of the task can act.
        assert_eq!(
            values(&shown_actions(
                &state(Status::WaitingOnStaff),
                1,
                TaskKind::BadData
            )),
            vec!["retry", "mark_handled", "cancel"]
        );
    }

    #[test]
    fn an_unreachable_patient_is_retried_but_an_unsent_link_beside_a_running_financing_is_resent() {
        // Waiting on staff (no phone or email at all): Retry starts over; nothing to resend.
        assert_eq!(
            values(&shown_actions(
                &state(Status::WaitingOnStaff),
                1,
                TaskKind::Unreachable
            )),
            vec!["retry", "mark_handled", "cancel"]
        );
        // The financing runs on beside the task: the link is resent, or handed over and the task
        // marked handled; a retry would only be refused.
        assert_eq!(
            values(&shown_actions(
                &state(Status::Active),
                1,
                TaskKind::Unreachable
            )),
            vec!["resend_link", "mark_handled", "cancel"]
        );
    }
}
