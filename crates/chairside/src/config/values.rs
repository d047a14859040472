//! The parsers of single values: URLs, amounts, deposits, ids, phone numbers, Twilio SIDs. Each
//! returns a message fit for a problem report, which quotes the value only when it cannot be a
//! secret.

use financing_core::{Currency, DepositRule, Money};
use url::Url;

/// A value quoted for a message: short, and never a URL's credentials.
pub(super) fn quoted(v: &str) -> String {
    let v = v.trim();
    if v.chars().count() > 60 {
        let cut: String = v.chars().take(57).collect();
        format!("'{cut}...'")
    } else {
        format!("'{v}'")
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An http(s) URL without credentials; plain http only for loopback unless `allow_http`.
pub(super) fn parse_url(text: &str, allow_http: bool) -> Result<Url, String> {
    // A URL with credentials is not echoed: the part before '@' may be a password.
    let shown = if text.contains('@') {
        "the URL".to_owned()
    } else {
        quoted(text)
    };
    let url = Url::parse(text)
        .map_err(|_| format!("{shown}: expected a URL like https://api.example.com/"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown}: must not contain a user name or password; use the _env keys"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{shown}: expected https (plain http is allowed only for 127.0.0.1 or localhost)"
        )),
        _ => Err(format!("{shown}: expected an https URL")),
    }
}

pub(super) fn parse_money(text: &str) -> Result<Money, String> {
    Money::parse(text, Currency::Usd).map_err(|_| {
        format!(
            "{}: expected an amount in dollars like \"200.00\"",
            quoted(text)
        )
    })
}

/// `"20%"`, `"12.5%"`, `"150.00"` or `"none"`.
pub(super) fn parse_deposit(text: &str) -> Result<DepositRule, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{}: expected a percentage like \"20%\", an amount like \"150.00\", or \"none\"",
            quoted(text)
        )
    };
    if t.eq_ignore_ascii_case("none") {
        return Ok(DepositRule::None);
    }
    if let Some(pct) = t.strip_suffix('%') {
        // A percentage with up to two decimals is a whole number of basis points, which is
        // exactly how Money counts cents.
        let bps = Money::parse(pct.trim(), Currency::Usd)
            .map_err(|_| bad())?
            .minor();
        return match bps {
            0 => Ok(DepositRule::None),
            1..=10_000 => Ok(DepositRule::BasisPoints(
                u32::try_from(bps).map_err(|_| bad())?,
            )),
            _ => Err(format!(
                "{}: a percentage deposit must be between 0% and 100%",
                quoted(text)
            )),
        };
    }
    let amount = Money::parse(t, Currency::Usd).map_err(|_| bad())?;
    Ok(if amount.is_zero() {
        DepositRule::None
    } else {
        DepositRule::Fixed(amount)
    })
}

pub(super) fn parse_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{}: expected letters, digits, '-' and '_' only, like lone-star-dental",
            quoted(text)
        ))
    }
}

pub(super) fn parse_phone(text: &str) -> Result<messaging::PhoneNumber, String> {
    messaging::PhoneNumber::parse(text).map_err(|_| {
        format!(
            "{}: expected an E.164 number like +15125550100",
            quoted(text)
        )
    })
}

pub(super) fn hex_sid(text: &str, prefix: &str) -> Result<String, String> {
    let ok = text.len() == 34
        && text.starts_with(prefix)
        && text[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{}: expected {prefix} followed by 32 hex characters",
            quoted(text)
        ))
    }
}
