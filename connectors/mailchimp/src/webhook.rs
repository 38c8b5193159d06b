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

    const BODY: &str =
        "type=profile&fired_at=2024-05-02+08%3A30%3A00&data%5Bemail%5D=ada%40example.com";

    fn signed(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-mailchimp-signature", value.parse().unwrap());
        headers
    }

    #[test]
    fn the_signature_matches_the_documented_vector() {
        assert_eq!(
            sign("whsec_test", 1_718_000_000, BODY.as_bytes()),
            "t=1718000000,v1=9a34e1e653cb75ea72345ca3caa28a1ecbae3550975451a67ad7f9f75734735f"
        );
    }

    #[test]
    fn the_url_secret_is_required() {
        let verifier = Verifier::new(SecretString::from("s3cret"), None);
        let none = HeaderMap::new();
        assert_eq!(
            verifier.verify(Some("s3cret"), &none, BODY.as_bytes(), 0),
            Ok(())
        );
        assert_eq!(
            verifier.verify(Some("s3cre"), &none, BODY.as_bytes(), 0),
            Err(WebhookError::Forged)
        );
        assert_eq!(
            verifier.verify(None, &none, BODY.as_bytes(), 0),
            Err(WebhookError::Forged)
        );
    }

    #[test]
    fn a_configured_signing_secret_requires_a_recent_signature() {
        let verifier = Verifier::new(
            SecretString::from("s3cret"),
            Some(SecretString::from("whsec_test")),
        );
        let good = signed(
            "t=1718000000,v1=9a34e1e653cb75ea72345ca3caa28a1ecbae3550975451a67ad7f9f75734735f",
        );
        let now = 1_718_000_100_000;
        assert_eq!(
            verifier.verify(Some("s3cret"), &good, BODY.as_bytes(), now),
            Ok(())
        );
        assert_eq!(
            verifier.verify(Some("s3cret"), &HeaderMap::new(), BODY.as_bytes(), now),
            Err(WebhookError::Forged)
        );
        assert_eq!(
            verifier.verify(
                Some("s3cret"),
                &good,
                b"type=profile&data%5Bemail%5D=eve%40example.com",
                now
            ),
            Err(WebhookError::Forged)
        );
        assert_eq!(
            verifier.verify(Some("s3cret"), &good, BODY.as_bytes(), now + 301_000),
            Err(WebhookError::Stale)
        );
    }

    #[test]
    fn events_become_hints() {
        let hint = |body: &str| decode(body.as_bytes()).unwrap();
        let profile = hint(BODY);
        assert_eq!(profile.len(), 1);
        assert_eq!(profile[0].record, RecordRef::Key("ada@example.com".into()));
        assert_eq!(profile[0].kind, HintKind::Changed);
        assert_eq!(profile[0].occurred_at, 1_714_638_600_000);

        let subscribe = "type=subscribe&fired_at=2009-03-26+21:35:57&data[id]=8a25ff1d98&data[list_id]=a6b5da1054&data[email]=api@mailchimp.com&data[email_type]=html&data[merges][EMAIL]=api@mailchimp.com&data[merges][FNAME]=Mailchimp&data[merges][LNAME]=API&data[merges][INTERESTS]=Group1,Group2&data[ip_opt]=10.20.10.30&data[ip_signup]=10.20.10.30";
        assert_eq!(
            hint(subscribe)[0].record,
            RecordRef::Key("api@mailchimp.com".into())
        );

        let unsubscribe = "type=unsubscribe&fired_at=2009-03-26+21:40:57&data[action]=unsub&data[reason]=manual&data[id]=8a25ff1d98&data[list_id]=a6b5da1054&data[email]=api+unsub@mailchimp.com";
        assert_eq!(hint(unsubscribe)[0].kind, HintKind::Changed);
        let deleted = unsubscribe.replace("action]=unsub", "action]=delete");
        assert_eq!(hint(&deleted)[0].kind, HintKind::Deleted);

        let upemail = "type=upemail&fired_at=2009-03-26+22:15:09&data[list_id]=a6b5da1054&data[new_id]=51da8c3259&data[new_email]=api+new@mailchimp.com&data[old_email]=api+old@mailchimp.com";
        let rekeyed = hint(upemail);
        assert_eq!(
            rekeyed[0].record,
            RecordRef::Key("api new@mailchimp.com".into()),
            "a bare + in a form body is a space"
        );
        assert_eq!(
            rekeyed[0].kind,
            HintKind::Rekeyed {
                from: "api old@mailchimp.com".into()
            }
        );

        let cleaned = "type=cleaned&fired_at=2009-03-26+22:01:00&data[list_id]=a6b5da1054&data[campaign_id]=4fjk2ma9xd&data[reason]=hard&data[email]=api+cleaned@mailchimp.com";
        assert_eq!(hint(cleaned)[0].kind, HintKind::Changed);

        let campaign = "type=campaign&fired_at=2009-03-26+21:31:21&data[id]=5aa2102003&data[subject]=Test&data[status]=sent&data[reason]=&data[list_id]=a6b5da1054";
        assert!(hint(campaign).is_empty());

        // Retries of one delivery share an event id; another event does not.
        assert_eq!(hint(BODY)[0].event_id, hint(BODY)[0].event_id);
        assert_ne!(hint(BODY)[0].event_id, hint(subscribe)[0].event_id);
        assert!(matches!(
            decode(b"fired_at=2024-05-02+08%3A30%3A00"),
            Err(WebhookError::Malformed(_))
        ));
    }
}
