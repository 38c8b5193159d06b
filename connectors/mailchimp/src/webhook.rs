//! Mailchimp webhooks: checking that a request comes from Mailchimp, and
//! reading its form-encoded body as a hint.
//!
//! Mailchimp's classic webhooks carry no signature: the callback URL holds an
//! unguessable secret (`?secret=...`), compared here in constant time. Webhooks
//! created with signing also carry `X-Mailchimp-Signature: t=<unix seconds>,
//! v1=<hex>`, an HMAC-SHA256 of `"{t}.{raw body}"` with the signing secret, at
//! most five minutes old; when a signing secret is configured it is required.
//! Mailchimp checks a new webhook URL with a GET, which needs no secret.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tandem_core::{Hint, HintKind, Millis, RecordRef, WebhookError};
use time::PrimitiveDateTime;
use time::macros::format_description;

/// How old a signed request may be.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// Checks that a request comes from Mailchimp.
pub struct Verifier {
    url_secret: SecretString,
    signing_secret: Option<SecretString>,
}

impl Verifier {
    /// The URL secret is required; the signing secret is for webhooks created with signing.
    pub fn new(url_secret: SecretString, signing_secret: Option<SecretString>) -> Self {
        Self {
            url_secret,
            signing_secret,
        }
    }

    /// Accept the request only if it carries the URL secret and, when one is
    /// configured, a recent signature made with the signing secret.
    pub fn verify(
        &self,
        secret: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        now: Millis,
    ) -> Result<(), WebhookError> {
        let expected = self.url_secret.expose_secret().as_bytes();
        let given = secret.unwrap_or_default().as_bytes();
        if !bool::from(expected.ct_eq(given)) {
            return Err(WebhookError::Forged);
        }
        let Some(signing) = &self.signing_secret else {
            return Ok(());
        };
        let header = headers
            .get("x-mailchimp-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::Forged)?;
        let part = |name: &str| {
            header.split(',').find_map(|p| {
                p.trim()
                    .strip_prefix(name)
                    .and_then(|v| v.strip_prefix('='))
            })
        };
        let timestamp = part("t").ok_or(WebhookError::Forged)?;
        let signature = part("v1")
            .and_then(|v| hex::decode(v).ok())
            .ok_or(WebhookError::Forged)?;
        let at: i64 = timestamp.parse().map_err(|_| WebhookError::Forged)?;
        if (now / 1000 - at).unsigned_abs() > MAX_AGE.as_secs() {
            return Err(WebhookError::Stale);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(signing.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&signature)
            .map_err(|_| WebhookError::Forged)
    }
}

/// The `X-Mailchimp-Signature` value for a body signed at `at` (unix seconds).
pub fn sign(signing_secret: &str, at: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(at.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={at},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Read a delivery (`type=...&fired_at=...&data[...]=...`) as a hint about a member.
/// Campaign events, and others that name no member, give none.
pub fn decode(body: &[u8]) -> Result<Vec<Hint>, WebhookError> {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let kind = get("type").ok_or_else(|| WebhookError::Malformed("no type".into()))?;
    let occurred_at = get("fired_at")
        .map(parse_fired_at)
        .transpose()?
        .unwrap_or_default();
    // Mailchimp gives no event id; identical deliveries (retries) share this digest.
    let event_id = hex::encode(&Sha256::digest(body)[..16]);
    let member = |email: Option<&str>| email.map(|e| RecordRef::Key(e.to_lowercase()));
    let (record, kind) = match kind {
        "subscribe" | "profile" | "cleaned" => (member(get("data[email]")), HintKind::Changed),
        // `action=delete` means the member was deleted or archived, `unsub` an unsubscribe.
        "unsubscribe" if get("data[action]") == Some("delete") => {
            (member(get("data[email]")), HintKind::Deleted)
        }
        "unsubscribe" => (member(get("data[email]")), HintKind::Changed),
        "upemail" => {
            let from = get("data[old_email]").unwrap_or_default().to_lowercase();
            (member(get("data[new_email]")), HintKind::Rekeyed { from })
        }
        _ => (None, HintKind::Changed),
    };
    Ok(record
        .into_iter()
        .map(|record| Hint {
            event_id: event_id.clone(),
            record,
            kind: kind.clone(),
            occurred_at,
        })
        .collect())
}

/// `fired_at` is `YYYY-MM-DD HH:MM:SS`, UTC.
fn parse_fired_at(text: &str) -> Result<Millis, WebhookError> {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let at = PrimitiveDateTime::parse(text, format)
        .map_err(|e| WebhookError::Malformed(format!("fired_at {text:?}: {e}")))?;
    Ok(at.assume_utc().unix_timestamp() * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of the vendor's documented payloads.
    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../fixtures/mailchimp/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn signed(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-mailchimp-signature", value.parse().unwrap());
        headers
    }

    /// The published signing test vector: (secret, timestamp, body, signature).
    fn vector() -> (String, i64, String, String) {
        let file: serde_json::Value =
            serde_json::from_str(&fixture("signature-vector.json")).unwrap();
        (
            file["signing_secret"].as_str().unwrap().to_string(),
            file["timestamp"].as_i64().unwrap(),
            fixture(file["body_file"].as_str().unwrap()),
            file["v1"].as_str().unwrap().to_string(),
        )
    }

    #[test]
    fn the_signature_matches_the_documented_vector() {
        let (secret, at, body, v1) = vector();
        assert_eq!(
            sign(&secret, at, body.as_bytes()),
            format!("t={at},v1={v1}")
        );
    }

    #[test]
    fn the_url_secret_is_required() {
        let verifier = Verifier::new(SecretString::from("s3cret"), None);
        let none = HeaderMap::new();
        let body = fixture("webhook-profile.txt");
        assert_eq!(
            verifier.verify(Some("s3cret"), &none, body.as_bytes(), 0),
            Ok(())
        );
        assert_eq!(
            verifier.verify(Some("s3cre"), &none, body.as_bytes(), 0),
            Err(WebhookError::Forged)
        );
        assert_eq!(
            verifier.verify(None, &none, body.as_bytes(), 0),
            Err(WebhookError::Forged)
        );
    }

    #[test]
    fn a_configured_signing_secret_requires_a_recent_signature() {
        let (secret, at, body, v1) = vector();
        let verifier = Verifier::new(
            SecretString::from("s3cret"),
            Some(SecretString::from(secret)),
        );
        let good = signed(&format!("t={at},v1={v1}"));
        let now = at * 1000 + 100_000;
        assert_eq!(
            verifier.verify(Some("s3cret"), &good, body.as_bytes(), now),
            Ok(())
        );
        assert_eq!(
            verifier.verify(Some("s3cret"), &HeaderMap::new(), body.as_bytes(), now),
            Err(WebhookError::Forged)
        );
        let forged = body.replace("ada", "eve");
        assert_eq!(
            verifier.verify(Some("s3cret"), &good, forged.as_bytes(), now),
            Err(WebhookError::Forged)
        );
        assert_eq!(
            verifier.verify(Some("s3cret"), &good, body.as_bytes(), now + 301_000),
            Err(WebhookError::Stale)
        );
    }

    #[test]
    fn the_documented_deliveries_become_hints() {
        let hint = |name: &str| {
            let hints = decode(fixture(name).as_bytes()).unwrap();
            assert_eq!(hints.len(), 1, "{name}");
            (hints[0].record.clone(), hints[0].kind.clone())
        };
        let key = |k: &str| RecordRef::Key(k.into());
        assert_eq!(
            hint("webhook-subscribe.txt"),
            (key("api@mailchimp.com"), HintKind::Changed)
        );
        assert_eq!(
            hint("webhook-profile.txt"),
            (key("api@mailchimp.com"), HintKind::Changed)
        );
        // A bare `+` in a form body is a space; the documented examples show it unencoded.
        assert_eq!(
            hint("webhook-unsubscribe.txt"),
            (key("api unsub@mailchimp.com"), HintKind::Changed)
        );
        assert_eq!(
            hint("webhook-cleaned.txt"),
            (key("api cleaned@mailchimp.com"), HintKind::Changed)
        );
        assert_eq!(
            hint("webhook-upemail.txt"),
            (
                key("api new@mailchimp.com"),
                HintKind::Rekeyed {
                    from: "api old@mailchimp.com".into()
                }
            )
        );
        let signed = decode(fixture("webhook-signed.txt").as_bytes()).unwrap();
        assert_eq!(signed[0].occurred_at, 1_714_638_600_000, "fired_at is UTC");
    }

    #[test]
    fn archives_campaigns_retries_and_garbage() {
        let deleted = fixture("webhook-unsubscribe.txt").replace("action]=unsub", "action]=delete");
        assert_eq!(
            decode(deleted.as_bytes()).unwrap()[0].kind,
            HintKind::Deleted
        );
        let campaign = "type=campaign&fired_at=2009-03-26+21:31:21&data[id]=5aa2102003&data[subject]=Test&data[status]=sent&data[reason]=&data[list_id]=a6b5da1054";
        assert!(decode(campaign.as_bytes()).unwrap().is_empty());
        // Retries of one delivery share an event id; another event does not.
        let profile = fixture("webhook-profile.txt");
        assert_eq!(
            decode(profile.as_bytes()).unwrap()[0].event_id,
            decode(profile.as_bytes()).unwrap()[0].event_id
        );
        assert_ne!(
            decode(profile.as_bytes()).unwrap()[0].event_id,
            decode(fixture("webhook-subscribe.txt").as_bytes()).unwrap()[0].event_id
        );
        assert!(matches!(
            decode(b"fired_at=2024-05-02+08%3A30%3A00"),
            Err(WebhookError::Malformed(_))
        ));
    }
}
