//! GSM-7 / UCS-2 segment counting and composition that never cuts the link.

use messaging::{ComposeError, SmsEncoding, compose_sms, segment_info};

fn count(text: &str) -> (SmsEncoding, usize, u32) {
    let i = segment_info(text);
    (i.encoding, i.units, i.segments)
}

#[test]
fn gsm7_fits_160_in_one_segment_then_153_per_segment() {
    let a = |n: usize| "a".repeat(n);
    assert_eq!(count(""), (SmsEncoding::Gsm7, 0, 0));
    assert_eq!(count(&a(1)), (SmsEncoding::Gsm7, 1, 1));
    assert_eq!(count(&a(160)), (SmsEncoding::Gsm7, 160, 1));
    assert_eq!(count(&a(161)), (SmsEncoding::Gsm7, 161, 2));
    assert_eq!(count(&a(306)), (SmsEncoding::Gsm7, 306, 2));
    assert_eq!(count(&a(307)), (SmsEncoding::Gsm7, 307, 3));
}

#[test]
fn ucs2_fits_70_in_one_segment_then_67_per_segment() {
    let a = |n: usize| format!("á{}", "a".repeat(n - 1));
    assert_eq!(count(&a(70)), (SmsEncoding::Ucs2, 70, 1));
    assert_eq!(count(&a(71)), (SmsEncoding::Ucs2, 71, 2));
    assert_eq!(count(&a(134)), (SmsEncoding::Ucs2, 134, 2));
    assert_eq!(count(&a(135)), (SmsEncoding::Ucs2, 135, 3));
}

#[test]
fn extension_characters_cost_two_septets_and_are_never_split() {
    // 80 euro signs are 160 septets: one segment.
    assert_eq!(count(&"€".repeat(80)), (SmsEncoding::Gsm7, 160, 1));
    assert_eq!(count(&"€".repeat(81)), (SmsEncoding::Gsm7, 162, 2));
    for c in ['^', '{', '}', '\\', '[', '~', ']', '|', '€'] {
        assert_eq!(segment_info(&c.to_string()).units, 2, "{c}");
    }
    // 152 + 2 + 152 = 306 septets, but the escape pair cannot straddle the first boundary.
    let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
    assert_eq!(count(&text), (SmsEncoding::Gsm7, 306, 3));
}

#[test]
fn emoji_are_two_utf16_units_and_surrogate_pairs_are_never_split() {
    assert_eq!(count(&"😀".repeat(35)), (SmsEncoding::Ucs2, 70, 1));
    assert_eq!(count(&"😀".repeat(36)), (SmsEncoding::Ucs2, 72, 2));
    let text = format!("{}😀{}", "a".repeat(66), "a".repeat(66));
    assert_eq!(count(&text), (SmsEncoding::Ucs2, 134, 3));
}

#[test]
fn spanish_accents_decide_the_encoding() {
    // é, ñ, ü are in GSM-7; á, í, ó, ú are not.
    assert_eq!(
        segment_info("Señor Muñoz, café, pingüino").encoding,
        SmsEncoding::Gsm7
    );
    for word in ["aquí", "más", "aprobó", "últimos"] {
        assert_eq!(segment_info(word).encoding, SmsEncoding::Ucs2, "{word}");
    }
    // Curly quotes from a word processor switch to UCS-2 too.
    assert_eq!(segment_info("it’s").encoding, SmsEncoding::Ucs2);
}

const LINK: &str = "https://pay.example.test/p/Zm9vYmFyYmF6cXV4cXV1eHF1dXg";
const TAIL: &str = " Reply STOP to opt out.";

#[test]
fn a_text_that_fits_is_left_alone() {
    // Act
    let sms = compose_sms("Bright Smiles Dental: details ", LINK, TAIL, 1).expect("fits");

    // Assert
    assert_eq!(
        sms.text,
        format!("Bright Smiles Dental: details {LINK}{TAIL}")
    );
    assert!(!sms.shortened);
    assert_eq!(sms.segments.segments, 1);
}

#[test]
fn a_long_free_text_is_cut_at_a_word_and_the_link_and_tail_survive() {
    // Arrange
    let free = format!(
        "Bright Smiles Dental: {} here: ",
        "lorem ipsum dolor ".repeat(20)
    );

    // Act
    let sms = compose_sms(&free, LINK, TAIL, 1).expect("fits after shortening");

    // Assert
    assert!(sms.shortened);
    assert_eq!(sms.segments.segments, 1);
    assert!(
        sms.text.ends_with(&format!("... {LINK}{TAIL}")),
        "{}",
        sms.text
    );
    assert!(sms.text.starts_with("Bright Smiles Dental: lorem"));
    assert!(sms.text.chars().count() <= 160);
}

#[test]
fn the_link_is_never_cut_for_any_free_text_length() {
    for words in 0..120 {
        // Arrange
        let free = format!("Practice: {}see ", "word ".repeat(words));

        // Act
        let sms = compose_sms(&free, LINK, TAIL, 2).expect("link and tail fit in 2");

        // Assert
        assert_eq!(sms.text.matches(LINK).count(), 1, "{words} words");
        assert!(
            sms.text.ends_with(&format!("{LINK}{TAIL}")),
            "{words} words"
        );
        assert!(sms.segments.segments <= 2);
        assert_eq!(sms.segments, segment_info(&sms.text));
    }
}

#[test]
fn a_link_that_alone_exceeds_the_budget_is_an_error_not_a_cut() {
    // Arrange
    let long_link = format!("https://pay.example.test/{}", "x".repeat(200));

    // Act
    let err = compose_sms("Hi ", &long_link, TAIL, 1).unwrap_err();

    // Assert
    assert_eq!(
        err,
        ComposeError {
            max_segments: 1,
            needed: 2
        }
    );
}

#[test]
fn a_text_without_a_link_is_never_shortened() {
    // Arrange: a HELP reply must arrive whole.
    let text = "x ".repeat(100);

    // Act
    let err = compose_sms(&text, "", "", 1).unwrap_err();

    // Assert
    assert_eq!(err.needed, 2);
}
