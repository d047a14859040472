//! `X-Twilio-Signature` verification with Twilio's documented example values, then parsing of
//! status callbacks and inbound texts.
//!
//! The example (URL `https://mycompany.com/myapp.php?foo=1&bar=2`, auth token `12345`, the
//! `CallSid`/`Caller`/`Digits`/`From`/`To` parameters and the signature
//! `RSOYDt4T1cUTdK1PDd93/VVr8B8=`) is the one in Twilio's security guide
//! (https://www.twilio.com/docs/usage/security#validating-requests) and in the official helper
//! library's tests (twilio/twilio-python `tests/unit/test_request_validator.py`), which also
//! supply the repeated-parameter and port-variant values below. Each was re-computed
//! independently with Python's `hmac` + `hashlib.sha1` before being written here.

use chrono::{TimeZone, Utc};
use messaging::{
    Error, InboundIntent, MessageSid, MessageStatus, OptOutType, TwilioErrorCode, WebhookVerifier,
    compute_signature,
};
use secrecy::SecretString;

const DOC_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const DOC_TOKEN: &str = "12345";
const DOC_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

fn doc_params() -> Vec<(String, String)> {
    [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
        .into_bytes()
}

fn verifier(token: &str) -> WebhookVerifier {
    WebhookVerifier::new(SecretString::from(token.to_owned()))
}

#[test]
fn compute_signature_reproduces_twilios_documented_example() {
    // Arrange
    let token = SecretString::from(DOC_TOKEN);

    // Act
    let signature = compute_signature(&token, DOC_URL, &doc_params());

    // Assert
    assert_eq!(signature, DOC_SIGNATURE);
}

#[test]
fn compute_signature_sorts_parameters_whatever_order_they_arrive_in() {
    // Arrange
    let mut shuffled = doc_params();
    shuffled.reverse();

    // Act
    let signature = compute_signature(&SecretString::from(DOC_TOKEN), DOC_URL, &shuffled);

    // Assert
    assert_eq!(signature, DOC_SIGNATURE);
}

#[test]
fn repeated_parameters_are_sorted_by_value_as_twilios_library_does() {
    // Arrange: Digits appears twice, out of order.
    let params: Vec<(String, String)> = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();

    // Act
    let signature = compute_signature(&SecretString::from(DOC_TOKEN), DOC_URL, &params);

    // Assert
    assert_eq!(signature, "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
}

#[test]
fn verify_accepts_the_documented_request_and_exposes_its_fields() {
    // Arrange
    let body = form_body(&doc_params());

    // Act
    let form = verifier(DOC_TOKEN)
        .verify(DOC_URL, &body, Some(DOC_SIGNATURE))
        .expect("valid");

    // Assert
    assert_eq!(form.get("Digits"), Some("1234"));
    assert_eq!(form.get("Caller"), Some("+14158675309"));
}

#[test]
fn verify_rejects_a_tampered_body_a_wrong_token_another_url_and_a_missing_header() {
    // Arrange
    let body = form_body(&doc_params());
    let mut tampered_params = doc_params();
    tampered_params[2].1 = "9999".into();
    let tampered = form_body(&tampered_params);

    // Act
    let cases = [
        verifier(DOC_TOKEN).verify(DOC_URL, &tampered, Some(DOC_SIGNATURE)),
        verifier("54321").verify(DOC_URL, &body, Some(DOC_SIGNATURE)),
        verifier(DOC_TOKEN).verify(
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &body,
            Some(DOC_SIGNATURE),
        ),
        verifier(DOC_TOKEN).verify(DOC_URL, &body, None),
        verifier(DOC_TOKEN).verify(DOC_URL, &body, Some("")),
        verifier(DOC_TOKEN).verify(DOC_URL, &body, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8")),
    ];

    // Assert
    for (i, result) in cases.into_iter().enumerate() {
        let err = result.expect_err("must be rejected");
        assert!(matches!(err, Error::BadSignature), "case {i}: {err:?}");
        assert_eq!(err.kind(), financing_core::ErrorKind::Permanent);
    }
}

#[test]
fn verify_tolerates_the_port_spellings_twilios_libraries_tolerate() {
    // Arrange: signatures from twilio-python's tests, for the URL with :443 and with :80
    // added, and the documented signature for the URL without a port.
    let body = form_body(&doc_params());
    let with_port_1234 = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    let http_url = "http://mycompany.com/myapp.php?foo=1&bar=2";

    // Act
    let port_removed = verifier(DOC_TOKEN).verify(with_port_1234, &body, Some(DOC_SIGNATURE));
    let https_443_added =
        verifier(DOC_TOKEN).verify(DOC_URL, &body, Some("kvajT1Ptam85bY51eRf/AJRuM3w="));
    let http_80_added =
        verifier(DOC_TOKEN).verify(http_url, &body, Some("0ZXoZLH/DfblKGATFgpif+LLRf4="));

    // Assert
    assert!(port_removed.is_ok());
    assert!(https_443_added.is_ok());
    assert!(http_80_added.is_ok());
}

const CALLBACK_URL: &str = "https://chairside.example.test/webhooks/twilio/status?practice=p1";
const TOKEN: &str = "test-auth-token";

fn signed(params: &[(&str, &str)]) -> (Vec<u8>, String) {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let sig = compute_signature(&SecretString::from(TOKEN), CALLBACK_URL, &owned);
    (form_body(&owned), sig)
}

#[test]
fn a_status_callback_decodes_sid_status_and_error_code() {
    // Arrange
    let (body, sig) = signed(&[
        ("AccountSid", "AC00000000000000000000000000000001"),
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("MessageStatus", "undelivered"),
        ("SmsStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("To", "+15555550123"),
    ]);

    // Act
    let cb = verifier(TOKEN)
        .verify(CALLBACK_URL, &body, Some(&sig))
        .expect("valid")
        .status_callback()
        .expect("callback");

    // Assert
    assert_eq!(
        cb.message_sid,
        MessageSid::new("SM00000000000000000000000000000001")
    );
    assert_eq!(cb.status, MessageStatus::Undelivered);
    assert!(cb.status.is_failure() && cb.status.is_final());
    assert_eq!(cb.error_code, Some(TwilioErrorCode(30003)));
}

#[test]
fn an_unknown_status_decodes_as_unknown_and_a_missing_sid_is_an_error() {
    // Arrange
    let (body, sig) = signed(&[
        ("MessageSid", "SM00000000000000000000000000000002"),
        ("MessageStatus", "teleported"),
    ]);
    let (no_sid, no_sid_sig) = signed(&[("MessageStatus", "delivered")]);

    // Act
    let cb = verifier(TOKEN)
        .verify(CALLBACK_URL, &body, Some(&sig))
        .expect("valid")
        .status_callback()
        .expect("callback");
    let err = verifier(TOKEN)
        .verify(CALLBACK_URL, &no_sid, Some(&no_sid_sig))
        .expect("valid")
        .status_callback()
        .unwrap_err();

    // Assert
    assert_eq!(cb.status, MessageStatus::Unknown("teleported".into()));
    assert!(!cb.status.is_final());
    assert_eq!(cb.error_code, None);
    assert!(matches!(err, Error::Webhook { .. }), "{err:?}");
}

#[test]
fn every_documented_status_round_trips() {
    for name in [
        "queued",
        "sending",
        "sent",
        "failed",
        "delivered",
        "undelivered",
        "receiving",
        "received",
        "accepted",
        "scheduled",
        "read",
        "partially_delivered",
        "canceled",
    ] {
        let status = MessageStatus::parse(name);
        assert!(!matches!(status, MessageStatus::Unknown(_)), "{name}");
        assert_eq!(status.as_str(), name);
    }
}

#[test]
fn an_inbound_text_decodes_and_twilios_opt_out_type_wins_over_the_body() {
    // Arrange: a body our classifier would call Other, flagged STOP by Advanced Opt-Out.
    let (body, sig) = signed(&[
        ("MessageSid", "SM00000000000000000000000000000003"),
        ("From", "+15555550123"),
        ("To", "+15555550100"),
        ("Body", "arret"),
        ("OptOutType", "STOP"),
    ]);
    let received = Utc.with_ymd_and_hms(2026, 3, 5, 15, 0, 0).unwrap();

    // Act
    let msg = verifier(TOKEN)
        .verify(CALLBACK_URL, &body, Some(&sig))
        .expect("valid")
        .inbound_message(received)
        .expect("inbound");

    // Assert
    assert_eq!(msg.from.as_e164(), "+15555550123");
    assert_eq!(msg.to.as_e164(), "+15555550100");
    assert_eq!(msg.body, "arret");
    assert_eq!(msg.opt_out_type, Some(OptOutType::Stop));
    assert_eq!(msg.intent(), InboundIntent::OptOut);
    assert_eq!(msg.received_at, received);
}

#[test]
fn a_body_with_spaces_and_plus_signs_verifies_after_form_decoding() {
    // Arrange: '+' in a form body is a space; %2B is a plus.
    let (body, sig) = signed(&[
        ("MessageSid", "SM00000000000000000000000000000004"),
        ("From", "+15555550123"),
        ("To", "+15555550100"),
        ("Body", "Stop texting me + thanks"),
    ]);
    assert!(String::from_utf8_lossy(&body).contains("Stop+texting"));

    // Act
    let msg = verifier(TOKEN)
        .verify(CALLBACK_URL, &body, Some(&sig))
        .expect("valid")
        .inbound_message(Utc::now())
        .expect("inbound");

    // Assert
    assert_eq!(msg.body, "Stop texting me + thanks");
    assert_eq!(msg.intent(), InboundIntent::Refusal);
}

#[test]
fn debug_output_of_webhook_data_hides_the_body_and_the_numbers() {
    // Arrange
    let (body, sig) = signed(&[
        ("MessageSid", "SM00000000000000000000000000000005"),
        ("From", "+15555550123"),
        ("To", "+15555550100"),
        ("Body", "My secret sample reply"),
    ]);
    let form = verifier(TOKEN)
        .verify(CALLBACK_URL, &body, Some(&sig))
        .expect("valid");
    let msg = form.inbound_message(Utc::now()).expect("inbound");

    // Act
    let shown = format!("{form:?} {msg:?} {:?}", verifier(TOKEN));

    // Assert
    for leak in ["secret sample", "5555550123", "5555550100", TOKEN] {
        assert!(!shown.contains(leak), "{leak} leaked into {shown}");
    }
    assert!(shown.contains("SM00000000000000000000000000000005"));
}
