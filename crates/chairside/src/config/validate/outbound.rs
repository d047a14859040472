//! `[outbound]`: the retry bound of outbound deliveries and `[[outbound.webhooks]]`, each endpoint
//! with a unique name, an https URL, a `whsec_` secret, and the event types and practices it
//! receives, each checked at its path.

use super::super::raw::{RawHubSpot, RawOutbound, RawStages, RawWebhook};
use super::super::{HubSpotSettings, OutboundSettings, WebhookSettings};
use super::*;
use chairside_engine::outbound::crm::CrmStages;
use chairside_engine::outbound::events::EventType;
use chairside_engine::outbound::sign::WebhookSecret;
use hubspot_client::StageId;

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
        let hubspot = match &s.hubspot {
            None => Some(None),
            Some(h) => self.hubspot(h, practices).map(Some),
        };
        Some(OutboundSettings {
            max_attempts: u32::try_from(attempts?).ok()?,
            first_retry: first?,
            max_retry_delay: cap?,
            webhooks: webhooks?,
            hubspot: hubspot?,
        })
    }

    fn hubspot(&mut self, h: &RawHubSpot, practices: &[PracticeId]) -> Option<HubSpotSettings> {
        let at = "outbound.hubspot";
        self.section::<RawHubSpot>(at);
        let base = self.url_or(
            "outbound.hubspot.base_url",
            h.base_url.as_ref(),
            false,
            hubspot_client::DEFAULT_BASE_URL,
        );
        let token = self.required_secret(
            at,
            &Secret::new("token", &h.token, &h.token_env, &h.token_file),
        );
        let property = self
            .parse(
                "outbound.hubspot.deal_id_property",
                h.deal_id_property.as_ref(),
                |t| non_blank(t, "the name of a unique deal property"),
            )
            .or(hubspot_client::DEFAULT_DEAL_ID_PROPERTY.to_owned());
        let pipeline = match self.parse("outbound.hubspot.pipeline", h.pipeline.as_ref(), |t| {
            non_blank(t, "the pipeline's internal id")
        }) {
            Got::Absent => Some(None),
            Got::Bad => None,
            Got::Is(p) => Some(Some(p)),
        };
        let amounts = self
            .flag("outbound.hubspot.amounts", h.amounts.as_ref())
            .or(false);
        let chosen = self.practice_list(
            "outbound.hubspot.practices",
            h.practices.as_ref(),
            practices,
        );
        let stages = match &h.stages {
            None => {
                self.problem(
                    "outbound.hubspot.stages",
                    "missing; expected an [outbound.hubspot.stages] section with the internal \
                     stage id of not_converted, applying, financed, declined and paid",
                );
                None
            }
            Some(st) => self.stages(st),
        };
        Some(HubSpotSettings {
            base_url: base?,
            token: token?,
            deal_id_property: property?,
            pipeline: pipeline?,
            amounts: amounts?,
            practices: chosen?,
            stages: stages?,
        })
    }

    fn stages(&mut self, st: &RawStages) -> Option<CrmStages> {
        let at = "outbound.hubspot.stages";
        self.section::<RawStages>(at);
        let mut one = |key: &str, raw: Option<&String>| {
            self.required(&join(at, key), raw, "the stage's internal id", |t| {
                non_blank(t, "the stage's internal id").map(StageId::new)
            })
        };
        let not_converted = one("not_converted", st.not_converted.as_ref());
        let applying = one("applying", st.applying.as_ref());
        let financed = one("financed", st.financed.as_ref());
        let declined = one("declined", st.declined.as_ref());
        let paid = one("paid", st.paid.as_ref());
        Some(CrmStages {
            not_converted: not_converted?,
            applying: applying?,
            financed: financed?,
            declined: declined?,
            paid: paid?,
        })
    }

    fn practice_list(
        &mut self,
        path: &str,
        raw: Option<&List>,
        practices: &[PracticeId],
    ) -> Option<Option<Vec<PracticeId>>> {
        match self.list(path, raw) {
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
        }
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
        let chosen = self.practice_list(&join(at, "practices"), w.practices.as_ref(), practices);
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

fn non_blank(t: &str, expected: &str) -> Result<String, String> {
    if t.is_empty() {
        Err(format!("empty; expected {expected}"))
    } else {
        Ok(t.to_owned())
    }
}
