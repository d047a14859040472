//! Seeded patients acting on the links they receive (see the crate docs): lender pages by
//! persona, Stripe checkout pages with their card, and loopback pages followed one level deep.

use std::sync::Arc;

use serde::Serialize;
use url::Url;

use crate::hub::Hub;
use crate::persona::{Lender, LenderDecision, PatientKey, Persona};
use crate::stripe::CheckoutResult;

/// What a patient did with one link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkAction {
    /// Acted on a lender application: the decision taken, or `None` when the application had
    /// already been acted on (or the patient left it).
    Lender {
        /// Which lender.
        lender: Lender,
        /// CareCredit's session id, or Sunbit's referral.
        application: String,
        /// What the patient's persona decided.
        decision: Option<LenderDecision>,
    },
    /// Paid (or tried to pay) a Stripe checkout session.
    Checkout {
        /// `cs_…`.
        session: String,
        /// What happened; `None` when the patient chose not to pay.
        result: Option<CheckoutResultKind>,
    },
    /// Opened a loopback page and acted on the sandbox links in it.
    Followed {
        /// The page.
        url: String,
        /// Sandbox links found in it.
        found: usize,
    },
    /// Accepted an offer on a loopback page (the in-house plan's accept form), unless the
    /// persona never completes anything.
    AcceptedOffer {
        /// The form's action.
        url: String,
    },
    /// Not a link the patient acts on.
    Ignored {
        /// The link.
        url: String,
    },
}

/// A serialisable summary of a [`CheckoutResult`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckoutResultKind {
    /// Paid.
    Paid,
    /// Declined.
    Declined,
    /// The session was not open.
    NotOpen,
}

/// The actions of the accept forms in an HTML page (`action="…/accept"`), entities undone.
pub(crate) fn accept_forms(html: &str) -> Vec<String> {
    html.split("action=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|a| a.replace("&#x2f;", "/").replace("&amp;", "&"))
        .filter(|a| a.ends_with("/accept"))
        .collect()
}

/// The actions of the card-saving forms in an HTML page (`action="…/card"`), entities undone.
pub(crate) fn card_forms(html: &str) -> Vec<String> {
    html.split("action=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|a| a.replace("&#x2f;", "/").replace("&amp;", "&"))
        .filter(|a| a.ends_with("/card"))
        .collect()
}

/// The page's relative links to pay the deposit (`href="…/pay"`), entities undone.
pub(crate) fn pay_links(html: &str) -> Vec<String> {
    relative_links(html, "/pay")
}

/// Posts a card-saving form (`post`) or follows a pay link, then its redirects (the page waits
/// while the link is made, a few seconds at most) to Stripe's hosted page; returns that page's
/// URL.
async fn follow_to_checkout(target: Url, post: bool) -> Option<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .ok()?;
    let request = if post {
        client
            .post(target.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("")
    } else {
        client.get(target.clone())
    };
    let resp = request.send().await.ok()?;
    let mut next = resp
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?
        .to_owned();
    for _ in 0..50 {
        let url = target.join(&next).ok()?;
        if !is_loopback(&url) || url.path().starts_with("/checkout/") {
            return Some(url.to_string());
        }
        let resp = client.get(url.clone()).send().await.ok()?;
        match resp.headers().get(reqwest::header::LOCATION) {
            Some(l) => next = l.to_str().ok()?.to_owned(),
            // The "preparing" page: the runner is making the link.
            None => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    None
}

/// The page's relative links to a lender application (`href="…/apply"`), entities undone.
pub(crate) fn apply_links(html: &str) -> Vec<String> {
    relative_links(html, "/apply")
}

/// The page's relative links (`href="/…{suffix}"`), entities undone.
fn relative_links(html: &str, suffix: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|a| a.replace("&#x2f;", "/").replace("&amp;", "&"))
        .filter(|a| a.starts_with('/') && a.ends_with(suffix))
        .collect()
}

/// Every `http(s)://` link in `text`, with HTML entities for `&` undone and trailing punctuation
/// dropped.
pub fn extract_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = ["http://", "https://"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']'))
            .unwrap_or(tail.len());
        let link = tail[..end]
            .trim_end_matches(['.', ',', ';', ':', '!', '?'])
            .replace("&amp;", "&");
        if !out.contains(&link) {
            out.push(link);
        }
        rest = &tail[end..];
    }
    out
}

fn is_loopback(url: &Url) -> bool {
    matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    )
}

fn same_server(a: &Url, b: &Url) -> bool {
    is_loopback(a) && is_loopback(b) && a.port_or_known_default() == b.port_or_known_default()
}

/// A patient read a message: after their think time, they act on its links.
pub(crate) async fn on_message(hub: Arc<Hub>, patient: PatientKey, body: String) {
    let sim = hub.config.patients;
    if !sim.enabled {
        return;
    }
    if !sim.think_time.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(sim.think_time) => {}
            () = hub.shutdown.wait() => return,
        }
    }
    for link in extract_links(&body) {
        act_on_link(&hub, Some(patient), &link, 0).await;
    }
}

/// Acts on one link as `patient` would (or as the patient the application belongs to).
pub(crate) async fn act_on_link(
    hub: &Arc<Hub>,
    patient: Option<PatientKey>,
    link: &str,
    depth: u8,
) -> Vec<LinkAction> {
    let ignored = || {
        vec![LinkAction::Ignored {
            url: link.to_owned(),
        }]
    };
    let Ok(url) = Url::parse(link) else {
        return ignored();
    };
    let segs: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let urls = &hub.urls;
    if same_server(&url, &urls.carecredit)
        && let ["apply", session] = segs.as_slice()
    {
        let decision = hub.carecredit.patient_acts(hub, session, patient);
        return vec![LinkAction::Lender {
            lender: Lender::CareCredit,
            application: (*session).to_owned(),
            decision,
        }];
    }
    if same_server(&url, &urls.sunbit)
        && let ["prequal", token] = segs.as_slice()
    {
        let (referral, decision) = hub.sunbit.patient_acts(hub, token, patient);
        return vec![LinkAction::Lender {
            lender: Lender::Sunbit,
            application: referral.unwrap_or_else(|| (*token).to_owned()),
            decision,
        }];
    }
    if same_server(&url, &urls.stripe)
        && let ["checkout", session] = segs.as_slice()
    {
        let p = patient.and_then(|k| hub.world.patient(k));
        let pays = hub.config.patients.pay_checkout_links
            && p.as_ref()
                .is_none_or(|p| p.seed.persona != Persona::NeverCompletes);
        if !pays {
            return vec![LinkAction::Checkout {
                session: (*session).to_owned(),
                result: None,
            }];
        }
        let card = p.map(|p| p.seed.card).unwrap_or_default();
        let result = crate::stripe::StripeHandle::new(hub.clone())
            .pay_checkout(session, card)
            .await
            .ok()
            .map(|r| match r {
                CheckoutResult::Paid { .. } => CheckoutResultKind::Paid,
                CheckoutResult::Declined => CheckoutResultKind::Declined,
                CheckoutResult::NotOpen { .. } => CheckoutResultKind::NotOpen,
            });
        return vec![LinkAction::Checkout {
            session: (*session).to_owned(),
            result,
        }];
    }
    let ours = [
        &urls.stripe,
        &urls.twilio,
        &urls.dentrix,
        &urls.nexhealth,
        &urls.opendental,
        &urls.carecredit,
        &urls.sunbit,
    ]
    .into_iter()
    .any(|u| same_server(&url, u));
    if ours || !is_loopback(&url) || depth > 0 || !hub.config.patients.follow_loopback_pages {
        return ignored();
    }
    // Another loopback page (the orchestrator's patient page): open it, act on what it links to.
    let Ok(resp) = hub.http.get(url.clone()).send().await else {
        return ignored();
    };
    let Ok(page) = resp.text().await else {
        return ignored();
    };
    let links = extract_links(&page);
    let mut actions = Vec::new();
    let mut found = 0;
    let completes = patient
        .and_then(|k| hub.world.patient(k))
        .is_none_or(|p| p.seed.persona != Persona::NeverCompletes);
    // The page's own link to the lender (`/p/{token}/apply`, relative): followed to where it
    // redirects, and that lender link acted on, as a patient's browser would.
    for href in apply_links(&page) {
        let Ok(target) = url.join(&href) else {
            continue;
        };
        let Ok(client) = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()
        else {
            continue;
        };
        let Ok(resp) = client.get(target).send().await else {
            continue;
        };

        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(location) = location {
            let acted = Box::pin(act_on_link(hub, patient, &location, depth + 1)).await;
            if !acted
                .iter()
                .all(|a| matches!(a, LinkAction::Ignored { .. }))
            {
                found += 1;
                actions.extend(acted);
            }
        }
    }
    if completes {
        // Card on file: agree, save the card on Stripe's page (the persona's card).
        for action in card_forms(&page) {
            let Ok(target) = url.join(&action) else {
                continue;
            };
            if let Some(checkout) = follow_to_checkout(target, true).await {
                let acted = Box::pin(act_on_link(hub, patient, &checkout, depth + 1)).await;
                found += 1;
                actions.extend(acted);
            }
        }
        // A pay link practice: pay the deposit on Stripe's page, as the patient's browser would
        // (a patient who was offered to save a card did that instead).
        if card_forms(&page).is_empty() {
            for href in pay_links(&page) {
                let Ok(target) = url.join(&href) else {
                    continue;
                };
                if let Some(checkout) = follow_to_checkout(target, false).await {
                    let acted = Box::pin(act_on_link(hub, patient, &checkout, depth + 1)).await;
                    found += 1;
                    actions.extend(acted);
                }
            }
        }
        for action in accept_forms(&page) {
            let Ok(target) = url.join(&action) else {
                continue;
            };
            if hub
                .http
                .post(target.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .body("")
                .send()
                .await
                .is_ok()
            {
                found += 1;
                actions.push(LinkAction::AcceptedOffer {
                    url: target.to_string(),
                });
            }
        }
    }
    for inner in links {
        let acted = Box::pin(act_on_link(hub, patient, &inner, depth + 1)).await;
        if !acted
            .iter()
            .all(|a| matches!(a, LinkAction::Ignored { .. }))
        {
            found += 1;
            actions.extend(acted);
        }
    }
    actions.insert(
        0,
        LinkAction::Followed {
            url: link.to_owned(),
            found,
        },
    );
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_forms_are_found_with_their_entities_undone() {
        let page = r#"<form method="post" action="&#x2f;p&#x2f;T&#x2f;accept"></form>
            <form method="post" action="/p/T/decline"></form>"#;
        assert_eq!(accept_forms(page), vec!["/p/T/accept".to_owned()]);
    }

    #[test]
    fn pay_links_are_the_pages_relative_deposit_links_only() {
        let page = r#"<a class="button" href="&#x2f;p&#x2f;T&#x2f;pay">Pay</a>
            <a href="/p/T/apply">Apply</a> <a href="https://x.test/pay">elsewhere</a>"#;
        assert_eq!(pay_links(page), vec!["/p/T/pay".to_owned()]);
    }

    #[test]
    fn links_are_found_in_text_and_html() {
        let text = "Pay here: http://127.0.0.1:5/checkout/cs_1. Or <a href=\"https://x.test/p?a=1&amp;b=2\">x</a>";
        assert_eq!(
            extract_links(text),
            vec![
                "http://127.0.0.1:5/checkout/cs_1".to_owned(),
                "https://x.test/p?a=1&b=2".to_owned()
            ]
        );
    }
}
