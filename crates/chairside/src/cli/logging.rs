//! The log writer: every formatted log line passes through [`redact_card_numbers`] on its way to
//! standard error, so a card number that reached a log by accident is never written (PCI DSS
//! requirement 3; COMPLIANCE.md §7). Nothing in Chairside logs card data on purpose; this is the
//! net under that promise.

use std::borrow::Cow;
use std::io::{self, Write};

/// What a redacted card number is replaced with.
pub const REDACTED_CARD: &str = "[redacted card number]";

/// Digits and their byte ranges: `1234 5678-9012` is three groups.
fn groups(bytes: &[u8], from: usize) -> (Vec<(usize, usize)>, usize) {
    let mut out = Vec::new();
    let mut i = from;
    loop {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        out.push((start, i));
        // One space or dash followed by a digit continues the number.
        let continues =
            i + 1 < bytes.len() && matches!(bytes[i], b' ' | b'-') && bytes[i + 1].is_ascii_digit();
        if !continues {
            return (out, i);
        }
        i += 1;
    }
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Replaces every sequence of 13 to 19 digits that passes the Luhn check (a possible card
/// number), written together or grouped by single spaces or dashes, with [`REDACTED_CARD`].
pub fn redact_card_numbers(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit());
        if !starts_number {
            i += 1;
            continue;
        }
        let (run, end) = groups(bytes, i);
        let mut g = 0;
        while g < run.len() {
            let mut digits = Vec::new();
            let mut found = None;
            for (h, &(s, e)) in run.iter().enumerate().skip(g) {
                digits.extend(bytes[s..e].iter().copied());
                if digits.len() > 19 {
                    break;
                }
                if digits.len() >= 13 && luhn_valid(&digits) {
                    found = Some(h);
                }
            }
            match found {
                Some(h) => {
                    cuts.push((run[g].0, run[h].1));
                    g = h + 1;
                }
                None => g += 1,
            }
        }
        i = end.max(i + 1);
    }
    if cuts.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (s, e) in cuts {
        out.push_str(&text[copied..s]);
        out.push_str(REDACTED_CARD);
        copied = e;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// A writer that redacts possible card numbers from what passes through it. The log formatter
/// hands it one whole line per write, so a number is never split between two writes.
#[derive(Debug)]
pub(crate) struct RedactingWriter<W>(pub(crate) W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact_card_numbers(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
