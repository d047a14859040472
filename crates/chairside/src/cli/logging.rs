//! The log writers: every formatted log line, on every output (standard error, standard output, a
//! file; human or JSON format), passes through [`redact_card_numbers`] on its way out, so a card
//! number that reached a log by accident is never written (PCI DSS requirement 3; COMPLIANCE.md
//! §7). Nothing in Chairside logs card data on purpose; this is the net under that promise.
//! Wrap any writer with [`redacting`] before handing it to the log formatter.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

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

/// Replaces possible card numbers with [`REDACTED_CARD`]:
///
/// - 13 to 19 digits that pass the Luhn check, written together or grouped by single spaces or
///   dashes (`4242 4242 4242 4242`);
/// - any Luhn-valid window of 13 to 19 digits inside a longer run of digits, and digits glued to
///   letters or other text (`x4242424242424242y`, `ref=004242424242424242`,
///   `94242424242424242`). Letters and punctuation end a run; a run is never trusted as a
///   whole just because it is longer than a card number. Windows inside a run start with a
///   non-zero digit, as every card number does.
///
/// The price is false positives: about one random 13-digit window in ten passes the Luhn check,
/// so a bare run of 13 or more digits (a long numeric vendor id, a Unix time in milliseconds) is
/// often redacted, wholly when its windows overlap. Chairside's own ids are prefixed hex and its
/// log timestamps are RFC 3339, so what is lost is a vendor's long numeric id in a log line; a
/// card number written to a log is worse.
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
        // Grouped numbers: whole groups, as a card is printed.
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
        // Inside each unbroken run of digits: every Luhn-valid window of 13 to 19 digits.
        for &(s, e) in &run {
            if e - s < 13 {
                continue;
            }
            // A card number never starts with 0; skipping those windows keeps runs of zeros.
            for a in (s..e).filter(|&a| bytes[a] != b'0') {
                for b in (a + 13)..=(a + 19).min(e) {
                    if luhn_valid(&bytes[a..b]) {
                        cuts.push((a, b));
                    }
                }
            }
        }
        i = end.max(i + 1);
    }
    if cuts.is_empty() {
        return Cow::Borrowed(text);
    }
    // Overlapping and touching windows become one redaction.
    cuts.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(cuts.len());
    for (s, e) in cuts {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (s, e) in merged {
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
pub struct RedactingWriter<W>(pub W);

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

/// Makes [`RedactingWriter`]s around the writers another `MakeWriter` makes: wrap every log
/// output with it (standard error, standard output, a file, a non-blocking writer).
#[derive(Debug, Clone)]
pub struct Redacting<M>(M);

/// Wraps `make_writer` (`std::io::stderr`, `std::io::stdout`, a `Mutex<File>`, ...) so every line
/// it receives is redacted first.
pub fn redacting<M>(make_writer: M) -> Redacting<M>
where
    M: for<'a> MakeWriter<'a>,
{
    Redacting(make_writer)
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter(self.0.make_writer_for(meta))
    }
}
