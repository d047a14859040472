//! The partners' sections of a practice: `[practices.pms]` by its `kind`, and the lender waterfall
//! `[practices.lenders]` with each lender's section.

use super::*;

impl Validator<'_> {
    pub(super) fn pms(&mut self, at: &str, table: &Table) -> Option<PmsSettings> {
        let kind_path = join(at, "kind");
        let kind = match table.get("kind") {
            Some(Value::String(k)) => Some(k.trim().to_owned()),
            Some(_) => {
                self.problem(&kind_path, "expected a string in quotes");
                return None;
            }
            None => None,
        };
        let kind = self.required(
            &kind_path,
            kind.as_ref(),
            "\"dentrix\", \"opendental\" or \"nexhealth\"",
            |t| match t {
                "dentrix" | "opendental" | "nexhealth" => Ok(t.to_owned()),
                _ => Err(format!(
                    "{}: expected \"dentrix\" (Dentrix Ascend), \"opendental\" or \"nexhealth\" \
                     (Dentrix G-series and Enterprise, Eaglesoft and others connect through NexHealth)",
                    quoted(t)
                )),
            },
        )?;
        let mut rest = table.clone();
        rest.remove("kind");
        let value = Value::Table(rest);
        match kind.as_str() {
            "dentrix" => {
                let s: RawDentrix = self.read(value, at)?;
                self.section::<RawDentrix>(at);
                self.dentrix(at, &s).map(PmsSettings::Dentrix)
            }
            "opendental" => {
                let s: RawOpenDental = self.read(value, at)?;
                self.section::<RawOpenDental>(at);
                self.opendental(at, &s).map(PmsSettings::OpenDental)
            }
            _ => {
                let s: RawNexHealth = self.read(value, at)?;
                self.section::<RawNexHealth>(at);
                self.nexhealth(at, &s).map(PmsSettings::NexHealth)
            }
        }
    }

    fn dentrix(&mut self, at: &str, s: &RawDentrix) -> Option<DentrixSettings> {
        let p = |key: &str| join(at, key);
        let base = self.required(
            &p("base_url"),
            s.base_url.as_ref(),
            "the Ascend API address, like https://prod.hs1api.com/ascend-gateway/api/v1/",
            |t| parse_url(t, false),
        );
        let token = self
            .parse(&p("token_url"), s.token_url.as_ref(), |t| {
                parse_url(t, false)
            })
            .optional();
        let client_id = self.text(
            &p("client_id"),
            s.client_id.as_ref(),
            "the OAuth2 client id",
        );
        let secret = self.required_secret(
            at,
            &Secret::new(
                "client_secret",
                &s.client_secret,
                &s.client_secret_env,
                &s.client_secret_file,
            ),
        );
        let org = self.text(
            &p("organization_id"),
            s.organization_id.as_ref(),
            "the Ascend organization id",
        );
        Some(DentrixSettings {
            base_url: base?,
            token_url: token?,
            client_id: client_id?,
            client_secret: secret?,
            organization_id: org?,
        })
    }

    fn opendental(&mut self, at: &str, s: &RawOpenDental) -> Option<OpenDentalSettings> {
        // The Local API and the API Service run on the office network, often without TLS.
        let base = self.url_or(
            &join(at, "base_url"),
            s.base_url.as_ref(),
            true,
            opendental_client::REMOTE_BASE_URL,
        );
        let developer = self.required_secret(
            at,
            &Secret::new(
                "developer_key",
                &s.developer_key,
                &s.developer_key_env,
                &s.developer_key_file,
            ),
        );
        let customer = self.required_secret(
            at,
            &Secret::new(
                "customer_key",
                &s.customer_key,
                &s.customer_key_env,
                &s.customer_key_file,
            ),
        );
        let acceptance = self
            .parse(&join(at, "acceptance"), s.acceptance.as_ref(), |t| {
                use opendental_client::AcceptanceRule as A;
                match t {
                    "signed_saved" => Ok(A::SignedSaved),
                    "any_saved" => Ok(A::AnySaved),
                    "signed_any" => Ok(A::SignedAny),
                    _ => Err(format!(
                        "{}: expected \"signed_saved\", \"any_saved\" or \"signed_any\"",
                        quoted(t)
                    )),
                }
            })
            .or(opendental_client::AcceptanceRule::default());
        Some(OpenDentalSettings {
            base_url: base?,
            developer_key: developer?,
            customer_key: customer?,
            acceptance: acceptance?,
        })
    }

    fn nexhealth(&mut self, at: &str, s: &RawNexHealth) -> Option<NexHealthSettings> {
        let p = |key: &str| join(at, key);
        let base = self.url_or(
            &p("base_url"),
            s.base_url.as_ref(),
            false,
            "https://nexhealth.info",
        );
        let key = self.required_secret(
            at,
            &Secret::new("api_key", &s.api_key, &s.api_key_env, &s.api_key_file),
        );
        let subdomain = self.text(
            &p("subdomain"),
            s.subdomain.as_ref(),
            "the institution's NexHealth subdomain",
        );
        let location = self.text(
            &p("location_id"),
            s.location_id.as_ref(),
            "the NexHealth location id",
        );
        let provider = self
            .parse(&p("provider_id"), s.provider_id.as_ref(), parse_provider_id)
            .optional();
        let hook = self
            .secret(
                at,
                &Secret::new(
                    "webhook_secret",
                    &s.webhook_secret,
                    &s.webhook_secret_env,
                    &s.webhook_secret_file,
                ),
            )
            .optional();
        Some(NexHealthSettings {
            base_url: base?,
            api_key: key?,
            subdomain: subdomain?,
            location_id: location?,
            provider_id: provider?,
            webhook_secret: hook?,
        })
    }

    fn limits(
        &mut self,
        at: &str,
        min: Option<&String>,
        max: Option<&String>,
        default: AmountLimits,
    ) -> Option<AmountLimits> {
        let lo = self.parse(&join(at, "min"), min, parse_money);
        let hi = self.parse(&join(at, "max"), max, parse_money);
        if let (Got::Is(lo), Got::Is(hi)) = (&lo, &hi)
            && lo.minor() > hi.minor()
        {
            self.problem(
                join(at, "min"),
                format!("{lo} is above max {hi}; min must not exceed max"),
            );
            return None;
        }
        let given = min.is_some() || max.is_some();
        let (min, max) = (lo.optional()?, hi.optional()?);
        Some(if given {
            AmountLimits { min, max }
        } else {
            default
        })
    }

    pub(super) fn lenders(&mut self, at: &str, s: &RawLenders) -> Option<LenderSettings> {
        self.section::<RawLenders>(at);
        let p = |key: &str| join(at, key);
        let got = self.list(&p("order"), s.order.as_ref());
        let order = self.need(
            &p("order"),
            got,
            "the lenders in the order they are asked, like [\"carecredit\", \"sunbit\"]",
        );
        let on_partial = self
            .parse(&p("on_partial"), s.on_partial.as_ref(), |t| match t {
                "stop_for_staff" => Ok(PartialApprovalRule::StopForStaff),
                "continue_for_full_coverage" => Ok(PartialApprovalRule::ContinueForFullCoverage),
                _ => Err(format!(
                    "{}: expected \"stop_for_staff\" or \"continue_for_full_coverage\"",
                    quoted(t)
                )),
            })
            .or(PartialApprovalRule::StopForStaff);
        let fallback = self
            .flag(&p("in_house_fallback"), s.in_house_fallback.as_ref())
            .or(true);
        let carecredit = match &s.carecredit {
            None => Some(None),
            Some(t) => self.carecredit(&p("carecredit"), t).map(Some),
        };
        let sunbit = match &s.sunbit {
            None => Some(None),
            Some(t) => self.sunbit(&p("sunbit"), t).map(Some),
        };
        let mut link_only = Some(Vec::new());
        for lender in financing_core::link_only::KnownLinkLender::ALL {
            let raw = match lender {
                financing_core::link_only::KnownLinkLender::Cherry => &s.cherry,
                financing_core::link_only::KnownLinkLender::Alphaeon => &s.alphaeon,
                financing_core::link_only::KnownLinkLender::LendingClub => &s.lendingclub,
            };
            if let Some(t) = raw {
                let got = self.link_lender(&p(lender.id()), lender, t);
                link_only = link_only.zip(got).map(|(mut v, g)| {
                    v.push(g);
                    v
                });
            }
        }
        let plugins = self.plugins.clone();
        let configured = |name: &str| match name {
            "carecredit" => s.carecredit.is_some(),
            "sunbit" => s.sunbit.is_some(),
            "cherry" => s.cherry.is_some(),
            "alphaeon" => s.alphaeon.is_some(),
            "lendingclub" => s.lendingclub.is_some(),
            // A plug-in the embedding program provides (`app::Extras::lenders`).
            other => plugins.iter().any(|p| p == other),
        };
        let mut ids = Vec::new();
        let mut ok = true;
        let mut seen = HashSet::new();
        for (path, name) in order.iter().flatten() {
            let normal = name.to_ascii_lowercase();
            if matches!(normal.as_str(), "inhouse" | "in_house" | "in-house") {
                self.problem(
                    path,
                    format!(
                        "{}: the in-house plan is not a lender; remove it from the order and set in_house_fallback = true",
                        quoted(name)
                    ),
                );
                ok = false;
            } else if !configured(&normal) {
                let known = if KNOWN_LENDERS.contains(&normal.as_str()) {
                    String::new()
                } else {
                    format!(
                        " (lenders this version supports: {})",
                        KNOWN_LENDERS.join(", ")
                    )
                };
                self.problem(
                    path,
                    format!(
                        "unknown lender {}: configure [practices.lenders.{normal}] or remove it from the order{known}",
                        quoted(name)
                    ),
                );
                ok = false;
            } else if !seen.insert(normal.clone()) {
                self.problem(path, format!("{} appears twice in the order", quoted(name)));
                ok = false;
            } else {
                ids.push(LenderId::new(normal));
            }
        }
        if !ok {
            return None;
        }
        order?;
        Some(LenderSettings {
            order: ids,
            on_partial: on_partial?,
            in_house_fallback: fallback?,
            carecredit: carecredit?,
            sunbit: sunbit?,
            link_only: link_only?,
        })
    }

    /// A link-only lender's section: the practice's own link is required; the rest defaults
    /// (financing_core::link_only).
    fn link_lender(
        &mut self,
        at: &str,
        lender: financing_core::link_only::KnownLinkLender,
        s: &RawLinkLender,
    ) -> Option<LinkLenderSettings> {
        self.section::<RawLinkLender>(at);
        let p = |key: &str| join(at, key);
        let link = self.required(
            &p("application_link"),
            s.application_link.as_ref(),
            "the practice's own application link from the lender's portal (https)",
            |t| parse_url(t, false),
        );
        let name = self
            .parse(&p("display_name"), s.display_name.as_ref(), |t| {
                if t.is_empty() {
                    Err("empty; expected the name patients know the lender by".to_owned())
                } else {
                    Ok(t.to_owned())
                }
            })
            .or(lender.default_display_name().to_owned());
        let wait = self
            .parse(
                &p("decide_within"),
                s.decide_within.as_ref(),
                positive_duration,
            )
            .or(lender.default_decide_within());
        let mut disclosure = chairside_http::notices::lender_disclosure(lender.id());
        for (lang, text) in [
            (financing_core::Language::En, &s.disclosure_en),
            (financing_core::Language::Es, &s.disclosure_es),
        ] {
            if let Some(t) = text.as_ref().map(|t| t.trim()).filter(|t| !t.is_empty()) {
                disclosure.insert(lang, t.to_owned());
            }
        }
        let limits = self.limits(at, s.min.as_ref(), s.max.as_ref(), AmountLimits::NONE);
        Some(LinkLenderSettings {
            lender,
            display_name: name?,
            application_link: link?,
            decide_within: wait?,
            disclosure,
            limits: limits?,
        })
    }

    fn carecredit(&mut self, at: &str, s: &RawCareCredit) -> Option<CareCreditSettings> {
        self.section::<RawCareCredit>(at);
        let p = |key: &str| join(at, key);
        let base = self.required(
            &p("base_url"),
            s.base_url.as_ref(),
            "the CareCredit partner API address",
            |t| parse_url(t, false),
        );
        let token = self
            .parse(&p("token_url"), s.token_url.as_ref(), |t| {
                parse_url(t, false)
            })
            .optional();
        let client_id = self.text(
            &p("client_id"),
            s.client_id.as_ref(),
            "the OAuth2 client id",
        );
        let secret = self.required_secret(
            at,
            &Secret::new(
                "client_secret",
                &s.client_secret,
                &s.client_secret_env,
                &s.client_secret_file,
            ),
        );
        let partner = self.text(
            &p("partner_code"),
            s.partner_code.as_ref(),
            "the technology partner code",
        );
        let merchant = self.required(
            &p("merchant_number"),
            s.merchant_number.as_ref(),
            "the location's 16-digit merchant number",
            |t| {
                carecredit_client::MerchantNumber::new(t).map_err(|_| {
                    "expected exactly 16 digits (the location's CareCredit merchant number)"
                        .to_owned()
                })
            },
        );
        let limits = self.limits(
            at,
            s.min.as_ref(),
            s.max.as_ref(),
            carecredit_client::DEFAULT_LIMITS,
        );
        Some(CareCreditSettings {
            base_url: base?,
            token_url: token?,
            client_id: client_id?,
            client_secret: secret?,
            partner_code: partner?,
            merchant_number: merchant?,
            limits: limits?,
        })
    }

    fn sunbit(&mut self, at: &str, s: &RawSunbit) -> Option<SunbitSettings> {
        self.section::<RawSunbit>(at);
        let base = self.required(
            &join(at, "base_url"),
            s.base_url.as_ref(),
            "the Sunbit API address",
            |t| parse_url(t, false),
        );
        let key = self.required_secret(at, &Secret::new("key", &s.key, &s.key_env, &s.key_file));
        let secret = self.required_secret(
            at,
            &Secret::new("secret", &s.secret, &s.secret_env, &s.secret_file),
        );
        let location = self.text(
            &join(at, "location"),
            s.location.as_ref(),
            "the practice's Sunbit location id",
        );
        let hook = self
            .secret(
                at,
                &Secret::new(
                    "webhook_secret",
                    &s.webhook_secret,
                    &s.webhook_secret_env,
                    &s.webhook_secret_file,
                ),
            )
            .optional();
        let limits = self.limits(
            at,
            s.min.as_ref(),
            s.max.as_ref(),
            sunbit_client::DEFAULT_LIMITS,
        );
        Some(SunbitSettings {
            base_url: base?,
            key: key?,
            secret: secret?,
            location: location?,
            webhook_secret: hook?,
            limits: limits?,
        })
    }
}

/// A NexHealth provider id (`GET /providers`): the digits of a positive whole number.
fn parse_provider_id(t: &str) -> Result<String, String> {
    if !t.is_empty()
        && t.len() <= 18
        && t.bytes().all(|b| b.is_ascii_digit())
        && !t.trim_start_matches('0').is_empty()
    {
        Ok(t.to_owned())
    } else {
        Err(format!(
            "{}: expected the NexHealth provider id new patients are created under (a positive \
             whole number, from NexHealth's GET /providers)",
            quoted(t)
        ))
    }
}
