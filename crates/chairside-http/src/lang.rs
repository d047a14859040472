//! Which language a page without a patient record behind it opens in (the public intake page):
//! the visitor's explicit choice (`?lang=es`, the page's English/Español switch), else the
//! browser's `Accept-Language`, else the practice's default.

use axum::http::{HeaderMap, header};
use financing_core::Language;

/// The languages Chairside's pages are written in.
const SUPPORTED: [Language; 2] = [Language::En, Language::Es];

/// `en` or `es` (any case, surrounding blanks ignored); anything else is no choice.
pub(crate) fn parse_tag(tag: &str) -> Option<Language> {
    let tag = tag.trim();
    SUPPORTED
        .into_iter()
        .find(|l| l.tag().eq_ignore_ascii_case(tag))
}

/// The supported language the browser prefers, from an `Accept-Language` value: ranges are
/// taken by their q-value, highest first (equal q-values in the order given), a range matches
/// on its primary subtag (`es-MX` and `es-419` are Spanish), and `q=0` (or a q-value that does
/// not read) means "not this one". `*` and languages we do not write say nothing. `None` when
/// nothing matches.
pub(crate) fn from_accept_language(value: &str) -> Option<Language> {
    accept_language::parse_with_quality(value)
        .into_iter()
        .filter(|(_, q)| *q > 0.0 && *q <= 1.0)
        .find_map(|(range, _)| {
            let primary = range.split(['-', '_']).next().unwrap_or_default();
            parse_tag(primary)
        })
}

/// The language a page opens in: the `?lang=` choice, else the browser's preference, else
/// `default`.
pub(crate) fn choose(query: Option<&str>, headers: &HeaderMap, default: Language) -> Language {
    query
        .and_then(parse_tag)
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(from_accept_language)
        })
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browsers_preference_is_read_by_q_value_and_primary_subtag() {
        let cases = [
            ("es-MX,es;q=0.9,en;q=0.8", Some(Language::Es)),
            ("en-US,en;q=0.9,es;q=0.8", Some(Language::En)),
            // Order does not matter, the q-value does.
            ("en;q=0.3, es-419;q=0.7", Some(Language::Es)),
            // q=0 refuses a language outright.
            ("es;q=0, en;q=0.1", Some(Language::En)),
            ("es;q=0", None),
            // Languages we do not write are skipped, not taken for English.
            ("fr-FR, de;q=0.9, es;q=0.5", Some(Language::Es)),
            ("pt-BR, fr", None),
            ("*", None),
            // Equal q-values: the first listed.
            ("es, en", Some(Language::Es)),
            ("en, es", Some(Language::En)),
            // Garbage says nothing rather than failing.
            ("", None),
            (";;;,,,q=", None),
            ("es;q=banana, en;q=0.2", Some(Language::En)),
            ("es;q=7", None),
            ("ES-us", Some(Language::Es)),
        ];
        for (header, expected) in cases {
            assert_eq!(from_accept_language(header), expected, "{header:?}");
        }
    }

    #[test]
    fn an_explicit_choice_wins_over_the_browser_which_wins_over_the_default() {
        let mut spanish_browser = HeaderMap::new();
        spanish_browser.insert(header::ACCEPT_LANGUAGE, "es-US,es;q=0.9".parse().unwrap());
        let none = HeaderMap::new();

        assert_eq!(
            choose(Some("en"), &spanish_browser, Language::En),
            Language::En
        );
        assert_eq!(choose(None, &spanish_browser, Language::En), Language::Es);
        assert_eq!(
            choose(Some("klingon"), &spanish_browser, Language::En),
            Language::Es,
            "an unknown choice is no choice"
        );
        assert_eq!(choose(None, &none, Language::Es), Language::Es);
        assert_eq!(choose(Some("ES"), &none, Language::En), Language::Es);
    }
}
