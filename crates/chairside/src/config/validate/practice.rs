//! `[[practices]]`: each practice, its payments, mail server, reminders and policy.

use super::*;

impl Validator<'_> {
    pub(super) fn practices(
        &mut self,
        raw: Option<&[RawPractice]>,
        has_twilio: bool,
    ) -> Option<Vec<PracticeSettings>> {
        let Some(list) = raw else {
            self.problem(
                "practices",
                "missing; expected at least one [[practices]] section",
            );
            return None;
        };
        if list.is_empty() {
            self.problem(
                "practices",
                "no practices configured; add a [[practices]] section",
            );
            return None;
        }
        let mut seen_ids: HashMap<String, String> = HashMap::new();
        let mut seen_numbers: HashMap<String, String> = HashMap::new();
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let at = format!("practices[{i}]");
            let practice = self.practice(&at, p, has_twilio);
            if let Some(pr) = &practice {
                if let Some(first) = seen_ids.get(pr.id.as_str()) {
                    let message = format!("{}: already used by {first}", quoted(pr.id.as_str()));
                    self.problem(join(&at, "id"), message);
                } else {
                    seen_ids.insert(pr.id.as_str().to_owned(), at.clone());
                }
                if let Some(n) = &pr.sms_from {
                    if let Some(first) = seen_numbers.get(n.as_e164()) {
                        let message = format!(
                            "already used by {first}; each practice texts from its own number"
                        );
                        self.problem(join(&at, "sms_from"), message);
                    } else {
                        seen_numbers.insert(n.as_e164().to_owned(), at.clone());
                    }
                }
            }
            out.push(practice);
        }
        out.into_iter().collect()
    }

    fn practice(
        &mut self,
        at: &str,
        s: &RawPractice,
        has_twilio: bool,
    ) -> Option<PracticeSettings> {
        self.section::<RawPractice>(at);
        let p = |key: &str| join(at, key);
        let id = self.required(
            &p("id"),
            s.id.as_ref(),
            "a short id like lone-star-dental",
            parse_id,
        );
        let name = self.text(
            &p("name"),
            s.name.as_ref(),
            "the practice's name as patients know it",
        );
        let state = self.required(
            &p("state"),
            s.state.as_ref(),
            "a two-letter US state code like TX",
            |t| {
                t.parse::<UsState>().map_err(|_| {
                    format!("{}: expected a two-letter US state code like TX", quoted(t))
                })
            },
        );
        let tz = self.required(
            &p("time_zone"),
            s.time_zone.as_ref(),
            "an IANA zone like America/Chicago",
            |t| {
                t.parse::<Tz>().map_err(|_| {
                    format!("{}: expected an IANA zone like America/Chicago", quoted(t))
                })
            },
        );
        let location = self.text(
            &p("location_id"),
            s.location_id.as_ref(),
            "the location id lenders know this office by",
        );
        let phone = self.required(
            &p("phone"),
            s.phone.as_ref(),
            "the phone number patients call",
            |t| {
                if t.chars().filter(char::is_ascii_digit).count() >= 7 {
                    Ok(t.to_owned())
                } else {
                    Err(format!(
                        "{}: expected a phone number patients can call, like +1 512 555 0100",
                        quoted(t)
                    ))
                }
            },
        );
        let email = self.required(
            &p("email"),
            s.email.as_ref(),
            "the address patients may write to",
            |t| {
                messaging::EmailAddress::parse(t)
                    .map(|_| t.to_owned())
                    .map_err(|_| {
                        format!(
                            "{}: expected an email address like frontdesk@example.com",
                            quoted(t)
                        )
                    })
            },
        );
        let sms_from = self
            .parse(&p("sms_from"), s.sms_from.as_ref(), parse_phone)
            .optional();
        let lab_email = self
            .parse(&p("lab_email"), s.lab_email.as_ref(), |t| {
                messaging::EmailAddress::parse(t).map_err(|_| {
                    format!(
                        "{}: expected the lab's email address, like cases@lab.example",
                        quoted(t)
                    )
                })
            })
            .optional();
        if s.lab_email.is_some() && s.smtp.is_none() {
            self.problem(
                p("lab_email"),
                "the lab is emailed through the practice's SMTP server: configure [practices.smtp]",
            );
        }
        let pms = match &s.pms {
            None => {
                self.problem(
                    p("pms"),
                    "missing; expected a [practices.pms] section with kind = \"dentrix\", \"opendental\" or \"nexhealth\"",
                );
                None
            }
            Some(t) => self.pms(&p("pms"), t),
        };
        let lenders = match &s.lenders {
            None => {
                self.problem(
                    p("lenders"),
                    "missing; expected a [practices.lenders] section with order = [\"carecredit\", \"sunbit\"] (or [] for none)",
                );
                None
            }
            Some(l) => self.lenders(&p("lenders"), l),
        };
        let payments = match &s.payments {
            None => Some(PaymentSettings {
                deposit: DepositRule::None,
                installments: 6,
                interval: InstallmentInterval::MONTHLY,
                preference: chairside_workflow::PaymentPreference::PayLink,
            }),
            Some(t) => self.payments(&p("payments"), t),
        };
        let smtp = match &s.smtp {
            None => Some(None),
            Some(t) => self.smtp(&p("smtp"), t).map(Some),
        };
        let reminders = match &s.reminders {
            None => Some(default_reminders()),
            Some(t) => self.reminders(&p("reminders"), t),
        };
        let policy = match &s.policy {
            None => Some(PolicySettings::default()),
            Some(t) => self.policy(&p("policy"), t),
        };
        let mut lender_notice = std::collections::HashMap::new();
        if let Some(n) = &s.notice {
            let at = p("notice");
            self.section::<RawNotice>(&at);
            for (lang, key, text) in [
                (financing_core::Language::En, "en", &n.en),
                (financing_core::Language::Es, "es", &n.es),
            ] {
                match text {
                    Some(t) if t.trim().is_empty() => self.problem(
                        join(&at, key),
                        "empty; remove the key to show the shipped notice of the practice's state",
                    ),
                    Some(t) => {
                        lender_notice.insert(lang, t.clone());
                    }
                    None => {}
                }
            }
        }
        let default_language = self
            .parse(&p("default_language"), s.default_language.as_ref(), |t| {
                language(t, "a language Chairside's patient pages are written in")
            })
            .or(financing_core::Language::En);
        let staff_alerts = match &s.staff_alerts {
            None => Some(None),
            Some(a) => self.staff_alerts(&p("staff_alerts"), a, s.smtp.is_some()),
        };
        if !has_twilio && s.smtp.is_none() {
            self.problem(
                at,
                "no way to reach patients: configure [practices.smtp] (email) or [twilio] (texts)",
            );
            return None;
        }
        Some(PracticeSettings {
            id: PracticeId::new(id?),
            name: name?,
            state: state?,
            time_zone: tz?,
            location_id: LocationId::new(location?),
            phone: phone?,
            email: email?,
            sms_from: sms_from?,
            lab_email: lab_email?,
            pms: pms?,
            lenders: lenders?,
            payments: payments?,
            smtp: smtp?,
            reminders: reminders?,
            policy: policy?,
            lender_notice,
            default_language: default_language?,
            staff_alerts: staff_alerts?,
        })
    }

    fn staff_alerts(
        &mut self,
        at: &str,
        s: &RawStaffAlerts,
        has_smtp: bool,
    ) -> Option<Option<StaffAlertSettings>> {
        self.section::<RawStaffAlerts>(at);
        let to = self.required(
            &join(at, "to"),
            s.to.as_ref(),
            "the practice's staff mailbox",
            |t| {
                messaging::EmailAddress::parse(t).map_err(|_| {
                    format!(
                        "{}: expected an email address like frontdesk@example.com",
                        quoted(t)
                    )
                })
            },
        );
        // Every kind a task can have, workflow tasks and detection tasks (plans that could not be
        // started): the alert filter may name any of them.
        let known: Vec<&str> = TaskKind::ALL
            .iter()
            .map(|k| k.label())
            .chain(
                chairside_engine::store::detection::DetectionKind::ALL
                    .iter()
                    .map(|k| k.label()),
            )
            .collect();
        if let Some(tasks) = &s.tasks {
            for t in tasks {
                if !known.contains(&t.as_str()) {
                    self.problem(
                        join(at, "tasks"),
                        format!(
                            "{}: not a task kind; expected one of {}",
                            quoted(t),
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        let digest_window = self
            .parse(
                &join(at, "digest_window"),
                s.digest_window.as_ref(),
                parse_duration,
            )
            .or(chairside_engine::outbound::staff_alert::DEFAULT_DIGEST_WINDOW);
        let language = self
            .parse(&join(at, "language"), s.language.as_ref(), |t| {
                language(t, "a language alerts are written in")
            })
            .or(financing_core::Language::En);
        if !has_smtp {
            self.problem(
                at.to_owned(),
                "staff alerts are emails: configure [practices.smtp] too",
            );
            return None;
        }
        Some(Some(StaffAlertSettings {
            to: to?,
            tasks: s.tasks.clone(),
            digest_window: digest_window?,
            language: language?,
        }))
    }

    fn payments(&mut self, at: &str, s: &RawPayments) -> Option<PaymentSettings> {
        self.section::<RawPayments>(at);
        let p = |key: &str| join(at, key);
        let deposit = self
            .parse(&p("deposit"), s.deposit.as_ref(), parse_deposit)
            .or(DepositRule::None);
        let installments = self
            .int(&p("installments"), s.installments.as_ref(), 1, 3_650)
            .or(6);
        let unit = self
            .parse(&p("interval"), s.interval.as_ref(), |t| match t {
                "month" => Ok(IntervalUnit::Month),
                "week" => Ok(IntervalUnit::Week),
                "day" => Ok(IntervalUnit::Day),
                _ => Err(format!(
                    "{}: expected \"month\", \"week\" or \"day\"",
                    quoted(t)
                )),
            })
            .or(IntervalUnit::Month);
        let count = self
            .int(&p("interval_count"), s.interval_count.as_ref(), 1, 365)
            .or(1);
        let preference = self
            .parse(&p("preference"), s.preference.as_ref(), |t| match t {
                "pay_link" => Ok(chairside_workflow::PaymentPreference::PayLink),
                "card_on_file" => Ok(chairside_workflow::PaymentPreference::CardOnFile),
                _ => Err(format!(
                    "{}: expected \"pay_link\" or \"card_on_file\"",
                    quoted(t)
                )),
            })
            .or(chairside_workflow::PaymentPreference::PayLink);
        let interval = InstallmentInterval {
            unit: unit?,
            count: u32::try_from(count?).unwrap_or(1),
        };
        let installments = u32::try_from(installments?).unwrap_or(1);
        // The in-house plan refuses more than ten years of installments; say so now, not at the
        // first patient.
        let terms = InHouseTerms {
            deposit: DepositRule::None,
            installments,
            interval,
        };
        if let Err(financing_core::InHouseError::InstallmentCount { max, .. }) =
            InHouseOffer::compute(Money::usd(100_000_000), &terms)
        {
            self.problem(
                p("installments"),
                format!("{installments}: at most {max} installments at this interval (ten years)"),
            );
            return None;
        }
        Some(PaymentSettings {
            deposit: deposit?,
            installments,
            interval,
            preference: preference?,
        })
    }

    fn smtp(&mut self, at: &str, s: &RawSmtp) -> Option<SmtpSettings> {
        self.section::<RawSmtp>(at);
        let p = |key: &str| join(at, key);
        let host = self.text(&p("host"), s.host.as_ref(), "the mail server's host name");
        let security = self
            .parse(&p("security"), s.security.as_ref(), |t| match t {
                "starttls" => Ok(messaging::SmtpSecurity::StartTls),
                "tls" => Ok(messaging::SmtpSecurity::Tls),
                "none" => Ok(messaging::SmtpSecurity::None),
                _ => Err(format!(
                    "{}: expected \"starttls\", \"tls\" or \"none\"",
                    quoted(t)
                )),
            })
            .or(messaging::SmtpSecurity::StartTls);
        let port = self.int(&p("port"), s.port.as_ref(), 1, 65_535);
        let username = self
            .parse(&p("username"), s.username.as_ref(), |t| {
                Ok::<_, String>(t.to_owned())
            })
            .optional();
        let password = self
            .secret(
                at,
                &Secret::new("password", &s.password, &s.password_env, &s.password_file),
            )
            .optional();
        let from = self.required(
            &p("from"),
            s.from.as_ref(),
            "the address messages come from, like frontdesk@example-dental.com",
            |t| {
                messaging::EmailAddress::parse(t)
                    .map_err(|_| format!("{}: expected an email address", quoted(t)))
            },
        );
        let security = security?;
        if let (Some(h), messaging::SmtpSecurity::None) = (&host, security) {
            let loopback = h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                self.problem(
                    p("security"),
                    "\"none\" is allowed only for a mail server on 127.0.0.1 or localhost \
                     (patient email must be encrypted in transit); use \"starttls\" or \"tls\"",
                );
                return None;
            }
        }
        let (username, password) = (username?, password?);
        match (&username, &password) {
            (Some(_), None) => {
                self.problem(
                    p("password_env"),
                    "missing; a username needs password_env (or password_file)",
                );
                return None;
            }
            (None, Some(_)) => {
                self.problem(p("username"), "missing; a password needs a username");
                return None;
            }
            _ => {}
        }
        let default_port: u16 = match security {
            messaging::SmtpSecurity::Tls => 465,
            messaging::SmtpSecurity::None => 25,
            _ => 587,
        };
        Some(SmtpSettings {
            host: host?,
            port: u16::try_from(port.or(i64::from(default_port))?).unwrap_or(default_port),
            security,
            username,
            password,
            from: from?,
        })
    }

    fn reminders(&mut self, at: &str, s: &RawReminders) -> Option<ReminderSettings> {
        self.section::<RawReminders>(at);
        let defaults = default_reminders();
        let delays = match self.list(&join(at, "delays"), s.delays.as_ref()) {
            Got::Absent => Some(defaults.delays),
            Got::Bad => None,
            Got::Is(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (path, text) in items {
                    match positive_duration(&text) {
                        Ok(d) => out.push(d),
                        Err(m) => {
                            self.problem(path, m);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
        };
        let give_up = self
            .parse(
                &join(at, "give_up_after"),
                s.give_up_after.as_ref(),
                parse_duration,
            )
            .or(defaults.give_up_after);
        let poll = self
            .parse(
                &join(at, "poll_interval"),
                s.poll_interval.as_ref(),
                positive_duration,
            )
            .or(defaults.poll_interval);
        Some(ReminderSettings {
            delays: delays?,
            give_up_after: give_up?,
            poll_interval: poll?,
        })
    }

    fn policy(&mut self, at: &str, s: &RawPolicy) -> Option<PolicySettings> {
        self.section::<RawPolicy>(at);
        let path = join(at, "prefill_approved_by_counsel");
        let prefill = self
            .flag(&path, s.prefill_approved_by_counsel.as_ref())
            .or(false)?;
        Some(PolicySettings {
            prefill_approved_by_counsel: prefill,
        })
    }
}

fn default_reminders() -> ReminderSettings {
    ReminderSettings {
        delays: vec![Duration::from_secs(86_400), Duration::from_secs(3 * 86_400)],
        give_up_after: Duration::from_secs(2 * 86_400),
        poll_interval: Duration::from_secs(15 * 60),
    }
}

/// `en` or `es`; anything else is named as not `what`.
fn language(t: &str, what: &str) -> Result<financing_core::Language, String> {
    match t {
        "en" => Ok(financing_core::Language::En),
        "es" => Ok(financing_core::Language::Es),
        other => Err(format!(
            "{}: not {what}; expected \"en\" or \"es\"",
            quoted(other)
        )),
    }
}
