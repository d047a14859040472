//! SMS segment counting (GSM-7 or UCS-2) and composition that never cuts a link.
//!
//! A single SMS carries 160 GSM-7 characters or 70 UCS-2 code units. A longer text is sent as
//! concatenated segments of 153 or 67, because each segment spends room on the concatenation
//! header. One character outside GSM-7 (an emoji, `á`, `í`, `ó`, `ú`, curly quotes) switches the
//! whole message to UCS-2, which is why Spanish texts are often billed as several segments.

use std::fmt;

/// The basic GSM 03.38 character set (one septet each). ESC (0x1B) is not a user character.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table: each costs two septets (ESC + the character).
const GSM7_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// Septets in a single-segment GSM-7 message.
pub const GSM7_SINGLE: usize = 160;
/// Septets per segment of a concatenated GSM-7 message.
pub const GSM7_MULTI: usize = 153;
/// UTF-16 code units in a single-segment UCS-2 message.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 code units per segment of a concatenated UCS-2 message.
pub const UCS2_MULTI: usize = 67;

/// The encoding a text will be sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmsEncoding {
    /// Every character is in the GSM 03.38 alphabet (basic or extension table).
    Gsm7,
    /// At least one character is outside GSM-7: the whole message goes as UCS-2 (UTF-16).
    Ucs2,
}

impl fmt::Display for SmsEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        })
    }
}

/// How a text will be split into SMS segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentInfo {
    /// The encoding.
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) in the whole text.
    pub units: usize,
    /// Segments the carrier bills; 0 for an empty text.
    pub segments: u32,
}

fn gsm7_cost(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Counts the segments `text` needs.
///
/// Concatenated segments are filled greedily and never split an escape pair (GSM-7) or a
/// surrogate pair (UCS-2), as handsets and carriers do, so the count can be one higher than
/// `units / 153` suggests.
pub fn segment_info(text: &str) -> SegmentInfo {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_cost).collect();
    let (encoding, costs, single, multi) = match gsm {
        Some(costs) => (SmsEncoding::Gsm7, costs, GSM7_SINGLE, GSM7_MULTI),
        None => (
            SmsEncoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            UCS2_SINGLE,
            UCS2_MULTI,
        ),
    };
    let units: usize = costs.iter().sum();
    let segments = if units == 0 {
        0
    } else if units <= single {
        1
    } else {
        let (mut segments, mut used) = (1_u32, 0_usize);
        for cost in costs {
            if used + cost > multi {
                segments += 1;
                used = 0;
            }
            used += cost;
        }
        segments
    };
    SegmentInfo {
        encoding,
        units,
        segments,
    }
}

/// A text ready to send, with its segment count.
#[derive(Clone, PartialEq, Eq)]
pub struct ComposedSms {
    /// The text. PHI: never log it.
    pub text: String,
    /// How it will be split.
    pub segments: SegmentInfo,
    /// True when the free text was shortened to fit.
    pub shortened: bool,
}

impl fmt::Debug for ComposedSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComposedSms")
            .field("segments", &self.segments)
            .field("shortened", &self.shortened)
            .finish_non_exhaustive()
    }
}

/// Why a text could not be composed within its segment budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "SMS does not fit in {max_segments} segments even with the free text removed \
     ({needed} needed)"
)]
pub struct ComposeError {
    /// The budget.
    pub max_segments: u32,
    /// Segments the parts that may not be shortened need on their own.
    pub needed: u32,
}

const ELLIPSIS: &str = "...";

/// Composes `free_text + link + tail` within `max_segments`.
///
/// The link and the tail (which carries the opt-out instruction) are never altered. When the
/// whole does not fit, the free text is cut at a word boundary and ends in `...` (three GSM-7
/// dots: a `…` would switch the message to UCS-2). Whitespace that separated the free text from
/// the link is kept. With an empty `link`, nothing is shortened: such texts (HELP replies) carry
/// contact details that must arrive whole.
///
/// # Errors
/// [`ComposeError`] when the link and tail alone exceed the budget, or when a text without a
/// link does not fit.
pub fn compose_sms(
    free_text: &str,
    link: &str,
    tail: &str,
    max_segments: u32,
) -> Result<ComposedSms, ComposeError> {
    let whole = format!("{free_text}{link}{tail}");
    let info = segment_info(&whole);
    if info.segments <= max_segments {
        return Ok(ComposedSms {
            text: whole,
            segments: info,
            shortened: false,
        });
    }
    if link.is_empty() {
        return Err(ComposeError {
            max_segments,
            needed: info.segments,
        });
    }
    let head = free_text.trim_end();
    let separator = &free_text[head.len()..];
    // Word boundaries, longest candidate first.
    let mut cuts: Vec<usize> = head
        .char_indices()
        .filter(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
        .collect();
    cuts.reverse();
    for cut in cuts {
        let kept = head[..cut].trim_end_matches(|c: char| c.is_whitespace() || ",;:-".contains(c));
        if kept.is_empty() {
            continue;
        }
        let text = format!("{kept}{ELLIPSIS}{separator}{link}{tail}");
        let info = segment_info(&text);
        if info.segments <= max_segments {
            return Ok(ComposedSms {
                text,
                segments: info,
                shortened: true,
            });
        }
    }
    let text = format!("{link}{tail}");
    let info = segment_info(&text);
    if info.segments <= max_segments {
        Ok(ComposedSms {
            text,
            segments: info,
            shortened: true,
        })
    } else {
        Err(ComposeError {
            max_segments,
            needed: info.segments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_table_has_127_user_characters() {
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
    }
}
