//! Message templates: data files under `templates/{en,es}/`, embedded in the binary and rendered
//! with minijinja.
//!
//! Every template is checked when [`Templates`] is built, not when a message is sent:
//! - it uses only the variables its [`TemplateId`] declares;
//! - it renders under strict undefined behaviour with every sample of its typed context (all
//!   optional values present, then all absent), so a missing value fails loudly;
//! - the declared variables and the typed context agree exactly;
//! - an SMS template prints its link exactly once, so composition can shorten the free text
//!   around it and never the link;
//! - templates that may not state credit terms pass the Reg Z guard (approved copy excepted).
//!
//! File names are `{template}.{part}`: `financing_summary.subject.txt`, `.email.txt`,
//! `.email.html`, `.sms.txt`. HTML parts are auto-escaped; text parts are not.

mod context;

use std::fmt;

use financing_core::Language;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use context::Vars;
pub use context::{
    ApplicationLink, ApprovedTerms, EmailContext, FinancingSummary, HelpReply, InhouseOffer,
    InhousePlan, IntakeLink, MessageContext, PayLinkReissued, PaymentFailed, Reminder, SmsContext,
    StaffAlert, StaffDigest, StaffDigestTask,
};

use crate::error::{Error, Result};
use crate::regz::check_reg_z;
use crate::segments::{ComposedSms, compose_sms};

/// The segment budget most callers want: 3 segments (459 GSM-7 or 201 UCS-2 characters).
pub const DEFAULT_MAX_SEGMENTS: u32 = 3;

/// Stands in for the link while an SMS is rendered, so composition knows where the link is.
/// A private-use character: it cannot occur in real text.
const LINK_SENTINEL: &str = "\u{E000}";

/// Which message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TemplateId {
    /// The financing summary ([`FinancingSummary`]).
    FinancingSummary,
    /// The default invitation with the lender's link ([`ApplicationLink`]).
    ApplicationLink,
    /// The application reminder ([`Reminder`]).
    Reminder,
    /// A failed payment ([`PaymentFailed`]).
    PaymentFailed,
    /// A fresh link to pay the deposit, after a failed payment ([`PayLinkReissued`]).
    PayLinkReissued,
    /// The in-house plan offer ([`InhouseOffer`]).
    InhouseOffer,
    /// An alert to staff ([`StaffAlert`]).
    StaffAlert,
    /// One alert to staff for several new tasks ([`StaffDigest`]).
    StaffDigest,
    /// The answer to HELP ([`HelpReply`]).
    HelpReply,
    /// A new patient's intake link ([`IntakeLink`]).
    IntakeLink,
}

/// A part of a template, one file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TemplatePart {
    /// The email subject (`.subject.txt`).
    Subject,
    /// The email's plain-text body (`.email.txt`).
    EmailText,
    /// The email's HTML body (`.email.html`).
    EmailHtml,
    /// The SMS (`.sms.txt`).
    Sms,
    /// Approved copy: the terms statement, rendered from the context's numbers and carried
    /// verbatim into the email (`.terms.txt`). Exempt from the Reg Z guard, so it changes only
    /// with counsel's approval.
    Terms,
    /// Approved copy: the disclosure printed next to the terms (`.disclosure.txt`).
    Disclosure,
}

impl TemplatePart {
    /// The file suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Subject => "subject.txt",
            Self::EmailText => "email.txt",
            Self::EmailHtml => "email.html",
            Self::Sms => "sms.txt",
            Self::Terms => "terms.txt",
            Self::Disclosure => "disclosure.txt",
        }
    }
}

/// The TCPA consent a template's SMS needs. The caller checks it against the patient's record
/// (`financing_core::SmsConsent`) before asking for a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequiredConsent {
    /// Prior express consent: informational texts.
    Informational,
    /// Prior express written consent: texts that promote financing.
    Written,
}

impl RequiredConsent {
    /// True when `consent` allows texts of this kind.
    pub fn is_satisfied_by(self, consent: &financing_core::SmsConsent) -> bool {
        match self {
            Self::Informational => consent.allows_informational(),
            Self::Written => consent.allows_marketing(),
        }
    }
}

/// How a template stands under Reg Z advertising rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegZClass {
    /// May not state trigger terms, except inside approved copy it carries verbatim. Checked at
    /// load and at every render.
    NoTriggerTerms,
    /// Tells an applicant or borrower about their own approved credit or payment (not an
    /// advertisement); promotional terms still come only as approved copy.
    Transactional,
}

const EMAIL_AND_SMS: &[TemplatePart] = &[
    TemplatePart::Subject,
    TemplatePart::EmailText,
    TemplatePart::EmailHtml,
    TemplatePart::Sms,
];
const EMAIL_ONLY: &[TemplatePart] = &[
    TemplatePart::Subject,
    TemplatePart::EmailText,
    TemplatePart::EmailHtml,
];
const SMS_ONLY: &[TemplatePart] = &[TemplatePart::Sms];

impl TemplateId {
    /// Every template.
    pub const ALL: [Self; 10] = [
        Self::FinancingSummary,
        Self::ApplicationLink,
        Self::Reminder,
        Self::PaymentFailed,
        Self::PayLinkReissued,
        Self::InhouseOffer,
        Self::StaffAlert,
        Self::StaffDigest,
        Self::HelpReply,
        Self::IntakeLink,
    ];

    /// The file stem (`financing_summary`).
    pub fn name(self) -> &'static str {
        match self {
            Self::FinancingSummary => "financing_summary",
            Self::ApplicationLink => "application_link",
            Self::Reminder => "reminder",
            Self::PaymentFailed => "payment_failed",
            Self::PayLinkReissued => "pay_link_reissued",
            Self::InhouseOffer => "inhouse_offer",
            Self::StaffAlert => "staff_alert",
            Self::StaffDigest => "staff_digest",
            Self::HelpReply => "help_reply",
            Self::IntakeLink => "intake_link",
        }
    }

    /// The parts it has.
    pub fn parts(self) -> &'static [TemplatePart] {
        match self {
            Self::StaffAlert | Self::StaffDigest => EMAIL_ONLY,
            Self::HelpReply => SMS_ONLY,
            _ => EMAIL_AND_SMS,
        }
    }

    /// The variables its templates may use: exactly the fields of its typed context.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Self::FinancingSummary => &[
                "approved_amount",
                "first_payment",
                "first_payment_amount",
                "first_payment_due",
                "lender_name",
                "patient_first_name",
                "patient_page_link",
                "practice_name",
                "promotional_terms",
            ],
            Self::ApplicationLink | Self::Reminder => &[
                "application_link",
                "lender_name",
                "patient_first_name",
                "practice_name",
            ],
            Self::PaymentFailed => &[
                "amount_due",
                "patient_first_name",
                "practice_name",
                "update_payment_link",
            ],
            Self::PayLinkReissued => {
                &["deposit", "patient_first_name", "pay_link", "practice_name"]
            }
            Self::InhouseOffer => &[
                "offer_link",
                "patient_first_name",
                "plan",
                "plan_terms",
                "practice_name",
            ],
            Self::StaffAlert => &[
                "dashboard_link",
                "patient_initials",
                "practice_name",
                "reason",
            ],
            Self::StaffDigest => &["practice_name", "task_count", "tasks"],
            Self::HelpReply => &["practice_email", "practice_name", "practice_phone"],
            Self::IntakeLink => &["intake_link", "patient_first_name", "practice_name"],
        }
    }

    /// Its approved-copy parts ([`TemplatePart::Terms`], [`TemplatePart::Disclosure`]), rendered
    /// first and handed to the message parts as [`TemplateId::approved_copy_variable`].
    pub fn approved_parts(self) -> &'static [TemplatePart] {
        match self {
            Self::InhouseOffer => &[TemplatePart::Terms, TemplatePart::Disclosure],
            _ => &[],
        }
    }

    /// The variable the rendered approved copy is given to the message parts as
    /// (`{{ plan_terms.summary }}`, `{{ plan_terms.disclosure }}`).
    pub fn approved_copy_variable(self) -> Option<&'static str> {
        match self {
            Self::InhouseOffer => Some("plan_terms"),
            _ => None,
        }
    }

    /// The variable holding the link an SMS must carry whole, for templates with an SMS link.
    pub fn sms_link_variable(self) -> Option<&'static str> {
        match self {
            Self::FinancingSummary => Some("patient_page_link"),
            Self::ApplicationLink | Self::Reminder => Some("application_link"),
            Self::PaymentFailed => Some("update_payment_link"),
            Self::PayLinkReissued => Some("pay_link"),
            Self::InhouseOffer => Some("offer_link"),
            Self::IntakeLink => Some("intake_link"),
            Self::StaffAlert | Self::StaffDigest | Self::HelpReply => None,
        }
    }

    /// The consent its SMS needs (`None`: not a text to a patient, or a reply the patient asked
    /// for).
    pub fn required_consent(self) -> Option<RequiredConsent> {
        match self {
            // Invitations, reminders and plan offers promote financing; so does the intake link,
            // which invites a new patient to apply (COMPLIANCE.md section 5: written consent).
            Self::ApplicationLink | Self::Reminder | Self::InhouseOffer | Self::IntakeLink => {
                Some(RequiredConsent::Written)
            }
            Self::FinancingSummary | Self::PaymentFailed | Self::PayLinkReissued => {
                Some(RequiredConsent::Informational)
            }
            Self::StaffAlert | Self::StaffDigest | Self::HelpReply => None,
        }
    }

    /// Its Reg Z standing.
    pub fn reg_z(self) -> RegZClass {
        match self {
            Self::ApplicationLink
            | Self::Reminder
            | Self::InhouseOffer
            | Self::HelpReply
            | Self::IntakeLink => RegZClass::NoTriggerTerms,
            Self::FinancingSummary
            | Self::PaymentFailed
            | Self::PayLinkReissued
            | Self::StaffAlert
            | Self::StaffDigest => RegZClass::Transactional,
        }
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn lang_dir(lang: Language) -> &'static str {
    match lang {
        Language::Es => "es",
        // English is the fallback for any language without templates.
        _ => "en",
    }
}

/// The languages templates exist for.
pub const LANGUAGES: [Language; 2] = [Language::En, Language::Es];

fn template_name(lang: Language, id: TemplateId, part: TemplatePart) -> String {
    format!("{}/{}.{}", lang_dir(lang), id.name(), part.suffix())
}

macro_rules! embedded {
    ($($lang:literal / $file:literal),* $(,)?) => {
        &[$(
            (concat!($lang, "/", $file), include_str!(concat!("../../templates/", $lang, "/", $file))),
        )*]
    };
}

/// Every template file, by name (`en/reminder.sms.txt`).
const EMBEDDED: &[(&str, &str)] = embedded![
    "en" / "financing_summary.subject.txt",
    "en" / "financing_summary.email.txt",
    "en" / "financing_summary.email.html",
    "en" / "financing_summary.sms.txt",
    "en" / "application_link.subject.txt",
    "en" / "application_link.email.txt",
    "en" / "application_link.email.html",
    "en" / "application_link.sms.txt",
    "en" / "reminder.subject.txt",
    "en" / "reminder.email.txt",
    "en" / "reminder.email.html",
    "en" / "reminder.sms.txt",
    "en" / "payment_failed.subject.txt",
    "en" / "payment_failed.email.txt",
    "en" / "payment_failed.email.html",
    "en" / "payment_failed.sms.txt",
    "en" / "pay_link_reissued.subject.txt",
    "en" / "pay_link_reissued.email.txt",
    "en" / "pay_link_reissued.email.html",
    "en" / "pay_link_reissued.sms.txt",
    "en" / "inhouse_offer.subject.txt",
    "en" / "inhouse_offer.email.txt",
    "en" / "inhouse_offer.email.html",
    "en" / "inhouse_offer.sms.txt",
    "en" / "inhouse_offer.terms.txt",
    "en" / "inhouse_offer.disclosure.txt",
    "en" / "staff_alert.subject.txt",
    "en" / "staff_alert.email.txt",
    "en" / "staff_alert.email.html",
    "en" / "staff_digest.subject.txt",
    "en" / "staff_digest.email.txt",
    "en" / "staff_digest.email.html",
    "en" / "help_reply.sms.txt",
    "en" / "intake_link.subject.txt",
    "en" / "intake_link.email.txt",
    "en" / "intake_link.email.html",
    "en" / "intake_link.sms.txt",
    "es" / "financing_summary.subject.txt",
    "es" / "financing_summary.email.txt",
    "es" / "financing_summary.email.html",
    "es" / "financing_summary.sms.txt",
    "es" / "application_link.subject.txt",
    "es" / "application_link.email.txt",
    "es" / "application_link.email.html",
    "es" / "application_link.sms.txt",
    "es" / "reminder.subject.txt",
    "es" / "reminder.email.txt",
    "es" / "reminder.email.html",
    "es" / "reminder.sms.txt",
    "es" / "payment_failed.subject.txt",
    "es" / "payment_failed.email.txt",
    "es" / "payment_failed.email.html",
    "es" / "payment_failed.sms.txt",
    "es" / "pay_link_reissued.subject.txt",
    "es" / "pay_link_reissued.email.txt",
    "es" / "pay_link_reissued.email.html",
    "es" / "pay_link_reissued.sms.txt",
    "es" / "inhouse_offer.subject.txt",
    "es" / "inhouse_offer.email.txt",
    "es" / "inhouse_offer.email.html",
    "es" / "inhouse_offer.sms.txt",
    "es" / "inhouse_offer.terms.txt",
    "es" / "inhouse_offer.disclosure.txt",
    "es" / "staff_alert.subject.txt",
    "es" / "staff_alert.email.txt",
    "es" / "staff_alert.email.html",
    "es" / "staff_digest.subject.txt",
    "es" / "staff_digest.email.txt",
    "es" / "staff_digest.email.html",
    "es" / "help_reply.sms.txt",
    "es" / "intake_link.subject.txt",
    "es" / "intake_link.email.txt",
    "es" / "intake_link.email.html",
    "es" / "intake_link.sms.txt",
];

/// The embedded source of a template part, as shipped (before any override).
pub fn embedded_source(lang: Language, id: TemplateId, part: TemplatePart) -> Option<&'static str> {
    let name = template_name(lang, id, part);
    EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
}

/// A rendered email. PHI: `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// The subject, one line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
}

impl fmt::Debug for RenderedEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedEmail").finish_non_exhaustive()
    }
}

/// The loaded, validated templates. Build once at start-up and share.
pub struct Templates {
    env: Environment<'static>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("count", &self.env.templates().count())
            .finish()
    }
}

/// Builds [`Templates`], optionally replacing embedded files (a practice's own wording, or a
/// test's broken template).
#[derive(Default)]
pub struct TemplatesBuilder {
    overrides: Vec<(String, String)>,
}

impl fmt::Debug for TemplatesBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.overrides.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TemplatesBuilder")
            .field("overrides", &names)
            .finish()
    }
}

impl TemplatesBuilder {
    /// Replaces one template file. The replacement passes the same checks as the shipped file.
    pub fn source(
        mut self,
        lang: Language,
        id: TemplateId,
        part: TemplatePart,
        source: impl Into<String>,
    ) -> Self {
        self.overrides
            .push((template_name(lang, id, part), source.into()));
        self
    }

    /// Loads and validates every template.
    ///
    /// # Errors
    /// Permanent, naming the template file: [`Error::Template`] for a syntax error or a failed
    /// sample render (a missing value under strict undefined), [`Error::TemplateContract`] for an
    /// undeclared variable, a missing file or an SMS that does not print its link exactly once,
    /// [`Error::RegZ`] for trigger terms where none are allowed.
    pub fn build(self) -> Result<Templates> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Block tags on their own line leave no blank line behind.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(text) if state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
                Ok(out.write_str(&escape_html(text))?)
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        for (name, src) in EMBEDDED {
            if !self.overrides.iter().any(|(n, _)| n == name) {
                env.add_template(name, src).map_err(|e| Error::Template {
                    template: (*name).to_owned(),
                    source: e,
                })?;
            }
        }
        for (name, src) in self.overrides {
            env.add_template_owned(name.clone(), src)
                .map_err(|e| Error::Template {
                    template: name,
                    source: e,
                })?;
        }
        let templates = Templates { env };
        templates.validate::<FinancingSummary>()?;
        templates.validate::<ApplicationLink>()?;
        templates.validate::<Reminder>()?;
        templates.validate::<PaymentFailed>()?;
        templates.validate::<PayLinkReissued>()?;
        templates.validate::<InhouseOffer>()?;
        templates.validate::<StaffAlert>()?;
        templates.validate::<StaffDigest>()?;
        templates.validate::<HelpReply>()?;
        Ok(templates)
    }
}

/// HTML escaping for text and attribute values. Unlike minijinja's default it leaves `/` alone,
/// so links in `href` stay readable to people and to mail filters that distrust obfuscated URLs.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            other => out.push(other),
        }
    }
    out
}

/// HTML to the text a reader sees: tags dropped, [`escape_html`] undone.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

impl Templates {
    /// Loads the embedded templates.
    ///
    /// # Errors
    /// As [`TemplatesBuilder::build`]; the shipped files pass (a test proves it).
    pub fn load() -> Result<Self> {
        Self::builder().build()
    }

    /// A builder, to replace some files before loading.
    pub fn builder() -> TemplatesBuilder {
        TemplatesBuilder::default()
    }

    fn validate<C: MessageContext>(&self) -> Result<()> {
        let id = C::TEMPLATE;
        let declared = id.variables();
        for sample in C::samples() {
            for lang in LANGUAGES {
                let (vars, _) = self.message_vars(lang, &sample)?;
                let provided: Vec<&str> = vars.keys().copied().collect();
                if provided != declared {
                    return Err(Error::TemplateContract {
                        template: id.name().to_owned(),
                        reason: format!(
                            "context provides {provided:?} but the template declares {declared:?}"
                        ),
                    });
                }
            }
        }
        for lang in LANGUAGES {
            for &part in id.approved_parts().iter().chain(id.parts()) {
                let name = template_name(lang, id, part);
                let tmpl = self
                    .env
                    .get_template(&name)
                    .map_err(|_| Error::TemplateContract {
                        template: name.clone(),
                        reason: "file missing".into(),
                    })?;
                let mut used: Vec<String> = tmpl.undeclared_variables(false).into_iter().collect();
                used.sort();
                if let Some(extra) = used.iter().find(|v| !declared.contains(&v.as_str())) {
                    return Err(Error::TemplateContract {
                        template: name,
                        reason: format!("uses undeclared variable `{extra}`"),
                    });
                }
                for sample in C::samples() {
                    match part {
                        TemplatePart::Sms => {
                            self.sms_parts(lang, &sample)?;
                        }
                        // Rendered (and so checked) by `message_vars`.
                        TemplatePart::Terms | TemplatePart::Disclosure => {}
                        _ => {
                            let (vars, approved) = self.message_vars(lang, &sample)?;
                            let out = self.render_named(&name, &vars)?;
                            self.guard::<C>(&name, part, &out, &approved)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn render_named(&self, name: &str, vars: &Vars) -> Result<String> {
        let tmpl = self.env.get_template(name).map_err(|e| Error::Template {
            template: name.to_owned(),
            source: e,
        })?;
        tmpl.render(vars).map_err(|e| Error::Template {
            template: name.to_owned(),
            source: e,
        })
    }

    /// A context's variables in `lang`, with its approved copy rendered from the approved-copy
    /// parts and added as [`TemplateId::approved_copy_variable`]; and every approved text the
    /// guard exempts (the context's verbatim copy and the rendered copy).
    fn message_vars<C: MessageContext>(
        &self,
        lang: Language,
        ctx: &C,
    ) -> Result<(Vars, Vec<String>)> {
        let id = C::TEMPLATE;
        let mut vars = ctx.vars(lang);
        let mut approved: Vec<String> = ctx
            .approved_texts()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(var) = id.approved_copy_variable() {
            let mut copy = std::collections::BTreeMap::new();
            for &part in id.approved_parts() {
                let name = template_name(lang, id, part);
                let text = self.render_named(&name, &vars)?.trim().to_owned();
                let key = match part {
                    TemplatePart::Terms => "summary",
                    _ => "disclosure",
                };
                copy.insert(key, Value::from(text.clone()));
                approved.push(text);
            }
            vars.insert(var, Value::from(copy));
        }
        Ok((vars, approved))
    }

    /// The Reg Z guard on rendered output, approved copy and links excepted.
    fn guard<C: MessageContext>(
        &self,
        name: &str,
        part: TemplatePart,
        out: &str,
        approved: &[String],
    ) -> Result<()> {
        if C::TEMPLATE.reg_z() != RegZClass::NoTriggerTerms {
            return Ok(());
        }
        let mut text = if part == TemplatePart::EmailHtml {
            html_to_text(out)
        } else {
            out.to_owned()
        };
        for approved in approved {
            if !approved.is_empty() {
                text = text.replace(approved.as_str(), " ");
            }
        }
        check_reg_z(&text).map_err(|violation| Error::RegZ {
            template: name.to_owned(),
            violation,
        })
    }

    /// Renders an SMS with the link replaced by the sentinel and splits around it:
    /// `(free text, link, tail)`.
    fn sms_parts<C: MessageContext>(
        &self,
        lang: Language,
        ctx: &C,
    ) -> Result<(String, String, String)> {
        let id = C::TEMPLATE;
        let name = template_name(lang, id, TemplatePart::Sms);
        let (mut vars, approved) = self.message_vars(lang, ctx)?;
        let link = match id.sms_link_variable() {
            Some(var) => {
                let real = vars
                    .insert(var, Value::from(LINK_SENTINEL))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                Some(real)
            }
            None => None,
        };
        let out = self.render_named(&name, &vars)?;
        // The guard sees the text with the real link, which it ignores anyway.
        let full = out.replace(LINK_SENTINEL, link.as_deref().unwrap_or(""));
        self.guard::<C>(&name, TemplatePart::Sms, &full, &approved)?;
        match link {
            Some(link) => {
                let pieces: Vec<&str> = out.split(LINK_SENTINEL).collect();
                if pieces.len() != 2 {
                    return Err(Error::TemplateContract {
                        template: name,
                        reason: "an SMS must print its link exactly once".into(),
                    });
                }
                Ok((pieces[0].to_owned(), link, pieces[1].to_owned()))
            }
            None => Ok((out, String::new(), String::new())),
        }
    }

    /// Renders a template's email in `lang` (English when `lang` has no templates).
    ///
    /// # Errors
    /// Permanent: [`Error::Template`] should a render fail (validated templates do not), or
    /// [`Error::RegZ`] when a value (a lender display name, say) brings trigger terms into a
    /// template that may not state them.
    pub fn render_email<C: EmailContext>(&self, lang: Language, ctx: &C) -> Result<RenderedEmail> {
        let id = C::TEMPLATE;
        let (vars, approved) = self.message_vars(lang, ctx)?;
        let mut rendered = [String::new(), String::new(), String::new()];
        for (slot, part) in rendered.iter_mut().zip([
            TemplatePart::Subject,
            TemplatePart::EmailText,
            TemplatePart::EmailHtml,
        ]) {
            let name = template_name(lang, id, part);
            let out = self.render_named(&name, &vars)?;
            self.guard::<C>(&name, part, &out, &approved)?;
            *slot = out;
        }
        let [subject, text, html] = rendered;
        Ok(RenderedEmail {
            // One line: a value with a line break must not reach the header.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text,
            html,
        })
    }

    /// Renders a template's SMS in `lang` and composes it within `max_segments`
    /// ([`DEFAULT_MAX_SEGMENTS`] suits most): the free text before the link is shortened if it
    /// must be; the link and the opt-out instruction after it never are.
    ///
    /// # Errors
    /// Permanent: [`Error::Compose`] when the link and tail alone exceed the budget,
    /// [`Error::RegZ`] as for [`Templates::render_email`], [`Error::Template`] should a render
    /// fail.
    pub fn render_sms<C: SmsContext>(
        &self,
        lang: Language,
        ctx: &C,
        max_segments: u32,
    ) -> Result<ComposedSms> {
        let (free, link, tail) = self.sms_parts(lang, ctx)?;
        Ok(compose_sms(&free, &link, &tail, max_segments)?)
    }
}
