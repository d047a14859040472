//! The SMTP sink: a small SMTP server on loopback that keeps every message it receives.
//!
//! Speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP and QUIT (no TLS, no AUTH). Messages are
//! decoded enough to read them (headers, `multipart/*`, quoted-printable and base64 parts) so tests
//! and the patient simulation can see the text and links.
//!
//! Indeterminate sends ([`SmtpFault`], configured in [`SandboxConfig::smtp_faults`](crate::SandboxConfig::smtp_faults)
//! or through [`SmtpHandle::set_faults`]): after DATA the message is accepted (kept and delivered
//! to the patient) and then the connection drops, or the sink stays silent until the client
//! times out. The client cannot tell whether the message went: SMTP has no lookup.

use std::fmt;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::hub::Hub;

/// A message the sink received.
#[derive(Clone, Serialize)]
pub struct EmailRecord {
    /// Sequence number, from 1.
    pub id: u64,
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`).
    pub rcpt_to: Vec<String>,
    /// The decoded `Subject`.
    pub subject: Option<String>,
    /// The `Message-ID`.
    pub message_id: Option<String>,
    /// The decoded `text/plain` parts, joined.
    pub text: String,
    /// The decoded `text/html` parts, joined.
    pub html: Option<String>,
    /// The message as received (after dot-unstuffing).
    pub raw: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

impl fmt::Debug for EmailRecord {
    // Addresses and bodies are PHI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailRecord")
            .field("id", &self.id)
            .field("recipients", &self.rcpt_to.len())
            .finish_non_exhaustive()
    }
}

/// What the sink does with a message after DATA instead of answering `250`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SmtpFault {
    /// The message is accepted (kept and delivered), then the connection drops before the reply.
    AcceptedThenDropped,
    /// The message is accepted, then the sink says nothing for this long (past the client's
    /// timeout, for a timeout after DATA) and drops the connection.
    AcceptedThenSilent(Duration),
}

/// One SMTP fault rule: which fault, how often (drawn from the sandbox's seeded generator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmtpFaultRule {
    /// The fault.
    pub fault: SmtpFault,
    /// Chance that a message gets it, from 0.0 to 1.0.
    pub probability: f64,
    /// Apply to at most this many messages; unlimited when `None`.
    pub times: Option<u32>,
}

impl SmtpFaultRule {
    /// `fault` on every message.
    pub fn new(fault: SmtpFault) -> Self {
        Self {
            fault,
            probability: 1.0,
            times: None,
        }
    }

    /// Fires with this probability (clamped to 0.0..=1.0).
    #[must_use]
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    /// Fires at most `n` times.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Debug)]
struct SmtpData {
    messages: Vec<EmailRecord>,
    /// Refuse the next N `RCPT TO` with this reply code (451: try later; 550: refused).
    reject: Option<(u32, u16)>,
    /// Fault rules and how often each fired.
    faults: Vec<(SmtpFaultRule, u32)>,
    rng: StdRng,
}

/// The sink's state.
#[derive(Debug)]
pub(crate) struct SmtpState {
    data: Mutex<SmtpData>,
}

impl SmtpState {
    pub(crate) fn new(faults: &[SmtpFaultRule], seed: u64) -> Self {
        Self {
            data: Mutex::new(SmtpData {
                messages: Vec::new(),
                reject: None,
                faults: faults.iter().map(|r| (r.clone(), 0)).collect(),
                // Its own stream, so SMTP draws never shift another system's.
                rng: StdRng::seed_from_u64(seed ^ 0x534d_5450),
            }),
        }
    }

    /// The fault for the next message, if a rule fires (every rule draws, in order).
    fn draw(&self) -> Option<SmtpFault> {
        let mut d = lock(&self.data);
        let SmtpData { faults, rng, .. } = &mut *d;
        let mut chosen = None;
        for (rule, fired) in faults.iter_mut() {
            let draw: f64 = rng.r#gen();
            if chosen.is_some() || rule.times.is_some_and(|n| *fired >= n) {
                continue;
            }
            if draw < rule.probability {
                *fired += 1;
                chosen = Some(rule.fault);
            }
        }
        chosen
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accepts connections until shutdown.
pub(crate) async fn serve(listener: TcpListener, hub: Arc<Hub>) {
    loop {
        let accepted = tokio::select! {
            () = hub.shutdown.wait() => return,
            a = listener.accept() => a,
        };
        if let Ok((stream, _)) = accepted {
            let hub = hub.clone();
            tokio::spawn(async move {
                let stop = hub.shutdown.clone();
                tokio::select! {
                    () = stop.wait() => {}
                    _ = session(stream, &hub) => {}
                }
            });
        }
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if b > a => &arg[a + 1..b],
        _ => arg.split_whitespace().next().unwrap_or(""),
    };
    inner.to_owned()
}

async fn session(stream: TcpStream, hub: &Arc<Hub>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write
        .write_all(b"220 sandbox ESMTP Chairside sink\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']);
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let reply: String = match verb {
            "EHLO" => {
                "250-sandbox greets you\r\n250-8BITMIME\r\n250-SIZE 26214400\r\n250 SMTPUTF8\r\n"
                    .into()
            }
            "HELO" => "250 sandbox\r\n".into(),
            "MAIL" if upper.starts_with("MAIL FROM:") => {
                from = Some(address(&cmd[10..]));
                rcpts.clear();
                "250 OK\r\n".into()
            }
            "RCPT" if upper.starts_with("RCPT TO:") => {
                if from.is_none() {
                    "503 need MAIL first\r\n".into()
                } else {
                    let rejected = {
                        let mut d = lock(&hub.smtp.data);
                        match d.reject {
                            Some((n, code)) if n > 0 => {
                                d.reject = (n > 1).then_some((n - 1, code));
                                Some(code)
                            }
                            _ => None,
                        }
                    };
                    match rejected {
                        Some(code) => format!("{code} recipient refused by the sandbox\r\n"),
                        None => {
                            rcpts.push(address(&cmd[8..]));
                            "250 OK\r\n".into()
                        }
                    }
                }
            }
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    "503 need MAIL and RCPT first\r\n".into()
                } else {
                    write
                        .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut raw = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        if line == ".\r\n" || line == ".\n" {
                            break;
                        }
                        let l = line.strip_prefix('.').unwrap_or(&line);
                        raw.push_str(l);
                    }
                    let id = store(
                        hub,
                        from.take().unwrap_or_default(),
                        std::mem::take(&mut rcpts),
                        raw,
                    );
                    match hub.smtp.draw() {
                        None => format!("250 OK queued as {id}\r\n"),
                        Some(SmtpFault::AcceptedThenDropped) => return Ok(()),
                        Some(SmtpFault::AcceptedThenSilent(silent)) => {
                            tokio::time::sleep(silent).await;
                            return Ok(());
                        }
                    }
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                "250 OK\r\n".into()
            }
            "NOOP" => "250 OK\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "STARTTLS" => "454 TLS not available\r\n".into(),
            "VRFY" => "252 cannot verify\r\n".into(),
            _ => "502 command not implemented\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

fn store(hub: &Arc<Hub>, mail_from: String, rcpt_to: Vec<String>, raw: String) -> u64 {
    let parsed = parse(&raw);
    let record = {
        let mut d = lock(&hub.smtp.data);
        let id = d.messages.len() as u64 + 1;
        let record = EmailRecord {
            id,
            mail_from,
            rcpt_to,
            subject: parsed.subject,
            message_id: parsed.message_id,
            text: parsed.text,
            html: parsed.html,
            raw,
            received_at: Utc::now(),
        };
        d.messages.push(record.clone());
        record
    };
    // The patients read their mail after the sink has answered.
    for rcpt in &record.rcpt_to {
        if let Some(p) = hub.world.patient_by_email(rcpt) {
            let body = format!("{}\n{}", record.text, record.html.as_deref().unwrap_or(""));
            let hub = hub.clone();
            tokio::spawn(async move {
                crate::sim::on_message(hub, p.key, body).await;
            });
        }
    }
    record.id
}

// --------------------------------------------------------------------------------------- MIME

#[derive(Debug, Default)]
struct Parsed {
    subject: Option<String>,
    message_id: Option<String>,
    text: String,
    html: Option<String>,
}

/// Splits a message (or part) into unfolded headers and the body.
fn split(raw: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match raw.find("\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match raw.find("\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, ""),
        },
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in head.lines() {
        if l.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(l.trim());
            }
        } else if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn decode_qp(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') => i += 3,
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < bytes.len() => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn decode_body(body: &str, encoding: Option<&str>) -> String {
    match encoding.map(str::to_ascii_lowercase).as_deref() {
        Some("quoted-printable") => String::from_utf8_lossy(&decode_qp(body)).into_owned(),
        Some("base64") => {
            let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
        _ => body.to_owned(),
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`).
fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut prev_encoded = false;
    while let Some(start) = rest.find("=?") {
        let Some(end_rel) = rest[start + 2..].find("?=") else {
            break;
        };
        let word = &rest[start + 2..start + 2 + end_rel];
        let mut parts = word.splitn(3, '?');
        let (_charset, enc, text) = (parts.next(), parts.next(), parts.next());
        let decoded = match (enc.map(str::to_ascii_lowercase).as_deref(), text) {
            (Some("b"), Some(t)) => base64::engine::general_purpose::STANDARD
                .decode(t)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            (Some("q"), Some(t)) => {
                Some(String::from_utf8_lossy(&decode_qp(&t.replace('_', " "))).into_owned())
            }
            _ => None,
        };
        let before = &rest[..start];
        // Whitespace between two encoded words is not part of the text.
        if !(prev_encoded && before.trim().is_empty()) {
            out.push_str(before);
        }
        prev_encoded = decoded.is_some();
        match decoded {
            Some(d) => out.push_str(&d),
            None => out.push_str(&rest[start..start + 4 + end_rel]),
        }
        rest = &rest[start + 4 + end_rel..];
    }
    out.push_str(rest);
    out
}

fn walk(raw: &str, out: &mut Parsed) {
    let (headers, body) = split(raw);
    let ctype = header(&headers, "content-type").unwrap_or("text/plain");
    let lower = ctype.to_ascii_lowercase();
    if lower.starts_with("multipart/") {
        let Some(boundary) = param(ctype, "boundary") else {
            return;
        };
        let delim = format!("--{boundary}");
        for part in body.split(&delim).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let part = part
                .strip_prefix("\r\n")
                .or_else(|| part.strip_prefix('\n'))
                .unwrap_or(part);
            walk(part, out);
        }
        return;
    }
    let text = decode_body(body, header(&headers, "content-transfer-encoding"));
    if lower.starts_with("text/html") {
        out.html.get_or_insert_with(String::new).push_str(&text);
    } else if lower.starts_with("text/") {
        out.text.push_str(&text);
    }
}

fn parse(raw: &str) -> Parsed {
    let (headers, _) = split(raw);
    let mut out = Parsed {
        subject: header(&headers, "subject").map(decode_words),
        message_id: header(&headers, "message-id").map(str::to_owned),
        ..Parsed::default()
    };
    walk(raw, &mut out);
    out
}

/// Inspection and control of the SMTP sink. Cheap to clone.
#[derive(Clone)]
pub struct SmtpHandle {
    hub: Arc<Hub>,
}

impl fmt::Debug for SmtpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpHandle").finish_non_exhaustive()
    }
}

impl SmtpHandle {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Every message received, oldest first.
    pub fn messages(&self) -> Vec<EmailRecord> {
        lock(&self.hub.smtp.data).messages.clone()
    }

    /// Messages with `address` among their recipients (case-insensitive).
    pub fn messages_to(&self, address: &str) -> Vec<EmailRecord> {
        self.messages()
            .into_iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(address)))
            .collect()
    }

    /// Refuses the next `count` recipients with reply `code` (451: a transient failure; 550: a
    /// permanent one).
    pub fn reject_next(&self, count: u32, code: u16) {
        lock(&self.hub.smtp.data).reject = (count > 0).then_some((count, code));
    }

    /// Replaces the fault rules applied after DATA.
    pub fn set_faults(&self, rules: Vec<SmtpFaultRule>) {
        lock(&self.hub.smtp.data).faults = rules.into_iter().map(|r| (r, 0)).collect();
    }

    /// How many times each fault rule fired, in rule order.
    pub fn faults_fired(&self) -> Vec<u32> {
        lock(&self.hub.smtp.data)
            .faults
            .iter()
            .map(|(_, n)| *n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_quoted_printable_and_base64_parts_decode() {
        let raw = "Subject: =?utf-8?b?WW91ciBwbGFu?=\r\nContent-Type: multipart/alternative; boundary=\"XYZ\"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nPay at http://127.0.0.1:9/checkout/cs_test_a=\r\nbc?x=3D1\r\n--XYZ\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGEgaHJlZj0iaHR0cDovL3gveSI+eDwvYT4=\r\n--XYZ--\r\n";
        let p = parse(raw);
        assert_eq!(p.subject.as_deref(), Some("Your plan"));
        assert!(
            p.text
                .contains("http://127.0.0.1:9/checkout/cs_test_abc?x=1")
        );
        assert_eq!(p.html.as_deref(), Some("<a href=\"http://x/y\">x</a>"));
    }
}
