//! `[outbound]`: the retry bound of outbound deliveries and `[[outbound.webhooks]]`, each endpoint
//! with a unique name, an https URL, a `whsec_` secret, and the event types and practices it
//! receives, each checked at its path.

use super::super::raw::{RawOutbound, RawWebhook};
use super::super::{OutboundSettings, WebhookSettings};
use super::*;
use chairside_engine::outbound::events::EventType;
use chairside_engine::outbound::sign::WebhookSecret;

impl Validator<'_> {
    pub(super) fn outbound(
        &mut self,
        s: &RawOutbound,
        practices: &[PracticeId],
    ) -> Option<OutboundSettings> {
        self.section::<RawOutbound>("outbound");
        let defaults = OutboundSettings::default();
        let attempts = self
            .int("outbound.max_attempts", s.max_attempts.as_ref(), 1, 100)
            .or(i64::from(defaults.max_attempts));
        let first = self
            .parse(
                "outbound.first_retry",
                s.first_retry.as_ref(),
                positive_duration,
            )
            .or(defaults.first_retry);
        let cap = self
            .parse(
                "outbound.max_retry_delay",
                s.max_retry_delay.as_ref(),
                positive_duration,
            )
            .or(defaults.max_retry_delay);
        if let (Some(first), Some(cap)) = (first, cap)
            && first > cap
        {
            self.problem(
                "outbound.first_retry",
                "longer than outbound.max_retry_delay; expected the first wait to be the shortest",
            );
        }
        let mut webhooks = Some(Vec::new());
        let mut names: Vec<&str> = Vec::new();
        for (i, w) in s.webhooks.iter().flatten().enumerate() {
            let at = format!("outbound.webhooks[{i}]");
            let one = self.webhook(&at, w, practices);
            if let Some(name) = w.name.as_deref().map(str::trim) {
                if names.contains(&name) {
                    self.problem(join(&at, "name"), "the same name as an earlier endpoint");
                    webhooks = None;
                }
                names.push(name);
            }
            match (one, webhooks.as_mut()) {
                (Some(one), Some(list)) => list.push(one),
                _ => webhooks = None,
            }
        }
        Some(OutboundSettings {
            max_attempts: u32::try_from(attempts?).ok()?,
            first_retry: first?,
            max_retry_delay: cap?,
            webhooks: webhooks?,
        })
    }

    fn webhook(
        &mut self,
        at: &str,
        w: &RawWebhook,
        practices: &[PracticeId],
    ) -> Option<WebhookSettings> {
        self.section::<RawWebhook>(at);
        let name = self.required(
            &join(at, "name"),
            w.name.as_ref(),
            "a short name like \"billing\"",
            parse_id,
        );
        let url = self.required(
            &join(at, "url"),
            w.url.as_ref(),
            "the endpoint's https URL",
            |t| parse_url(t, false),
        );
        let secret_spec = Secret::new("secret", &w.secret, &w.secret_env, &w.secret_file);
        let secret = self.required_secret(at, &secret_spec);
        if let Some(s) = &secret
            && let Err(e) = WebhookSecret::parse(s)
        {
            // The error names the rule, never the value.
            self.problem(Self::secret_path(at, &secret_spec), e.to_string());
        }
        let events = match self.list(&join(at, "events"), w.events.as_ref()) {
            Got::Absent => Some(None),
            Got::Bad => None,
            Got::Is(items) => {
                let mut ok = true;
                let mut out = Vec::new();
                for (path, item) in items {
                    match EventType::from_label(&item) {
                        Some(t) => out.push(t),
                        None => {
                            ok = false;
                            self.problem(
                                path,
                                format!(
                                    "{}: expected one of {}",
                                    quoted(&item),
                                    EventType::ALL
                                        .iter()
                                        .map(|t| t.label())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            );
                        }
                    }
                }
                ok.then_some(Some(out))
            }
        };
        let chosen = match self.list(&join(at, "practices"), w.practices.as_ref()) {
            Got::Absent => Some(None),
            Got::Bad => None,
            Got::Is(items) => {
                let mut ok = true;
                let mut out = Vec::new();
                for (path, item) in items {
                    let id = PracticeId::new(item.as_str());
                    if practices.contains(&id) {
                        out.push(id);
                    } else {
                        ok = false;
                        self.problem(
                            path,
                            format!("{}: no [[practices]] entry has this id", quoted(&item)),
                        );
                    }
                }
                ok.then_some(Some(out))
            }
        };
        let secret = secret.filter(|s| WebhookSecret::parse(s).is_ok());
        Some(WebhookSettings {
            name: name?,
            url: url?,
            secret: secret?,
            events: events?,
            practices: chosen?,
        })
    }
}
