//! HubSpot webhooks: checking the signature HubSpot puts on each request, and
//! reading its JSON array of events as hints.
//!
//! Version 3 is `base64(HMAC-SHA256(client secret, method + URI + body +
//! timestamp))`, with the timestamp in `X-HubSpot-Request-Timestamp` and at most
//! five minutes old. Versions 1 and 2 (unkeyed SHA-256 over the secret and the
//! request) are accepted only when configured, for apps that still send them.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tandem_core::{Hint, HintKind, Millis, RecordRef, WebhookError};

/// How old a signed request may be.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A webhook request as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The full URI HubSpot called: `https://host/path?query`.
    pub uri: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    /// Now, by our clock, in milliseconds.
    pub now: Millis,
}

/// Checks HubSpot's signatures with the app's client secret.
pub struct Verifier {
    client_secret: SecretString,
    legacy: bool,
}

impl Verifier {
    /// A verifier for v3 signatures; `legacy` also accepts v1 and v2.
    pub fn new(client_secret: SecretString, legacy: bool) -> Self {
        Self {
            client_secret,
            legacy,
        }
    }

    /// Accept the request only if HubSpot signed it, recently.
    pub fn verify(&self, request: &Request<'_>) -> Result<(), WebhookError> {
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        let secret = self.client_secret.expose_secret();
        if let Some(signature) = header("x-hubspot-signature-v3") {
            let timestamp = header("x-hubspot-request-timestamp").ok_or(WebhookError::Forged)?;
            let at: Millis = timestamp.trim().parse().map_err(|_| WebhookError::Forged)?;
            if (request.now - at).unsigned_abs() > MAX_AGE.as_millis() as u64 {
                return Err(WebhookError::Stale);
            }
            let given = base64::engine::general_purpose::STANDARD
                .decode(signature.trim())
                .map_err(|_| WebhookError::Forged)?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes any key length");
            mac.update(
                v3_message(request.method, request.uri, request.body, timestamp.trim()).as_slice(),
            );
            return mac.verify_slice(&given).map_err(|_| WebhookError::Forged);
        }
        if !self.legacy {
            return Err(WebhookError::Forged);
        }
        let signature = header("x-hubspot-signature").ok_or(WebhookError::Forged)?;
        let expected = match header("x-hubspot-signature-version").unwrap_or("v1") {
            "v1" => sign_v1(secret, request.body),
            "v2" => sign_v2(secret, request.method, request.uri, request.body),
            _ => return Err(WebhookError::Forged),
        };
        if bool::from(
            expected
                .as_bytes()
                .ct_eq(signature.trim().to_ascii_lowercase().as_bytes()),
        ) {
            Ok(())
        } else {
            Err(WebhookError::Forged)
        }
    }
}

/// The v3 signature of a request, as HubSpot computes it.
pub fn sign_v3(
    client_secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(&v3_message(method, uri, body, timestamp));
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The v1 signature: `hex(SHA-256(client secret + body))`.
pub fn sign_v1(client_secret: &str, body: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(client_secret.as_bytes());
    digest.update(body);
    hex::encode(digest.finalize())
}

/// The v2 signature: `hex(SHA-256(client secret + method + URI + body))`.
pub fn sign_v2(client_secret: &str, method: &str, uri: &str, body: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(client_secret.as_bytes());
    digest.update(method.as_bytes());
    digest.update(uri.as_bytes());
    digest.update(body);
    hex::encode(digest.finalize())
}

fn v3_message(method: &str, uri: &str, body: &[u8], timestamp: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(method.len() + uri.len() + body.len() + timestamp.len());
    message.extend_from_slice(method.as_bytes());
    message.extend_from_slice(decode_uri(uri).as_bytes());
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp.as_bytes());
    message
}

/// HubSpot signs the URI with these escapes decoded and every other one kept.
fn decode_uri(uri: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("%3A", ':'),
        ("%2F", '/'),
        ("%3F", '?'),
        ("%40", '@'),
        ("%21", '!'),
        ("%24", '$'),
        ("%27", '\''),
        ("%28", '('),
        ("%29", ')'),
        ("%2A", '*'),
        ("%2C", ','),
        ("%3B", ';'),
    ];
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        match DECODED
            .iter()
            .find(|(code, _)| code.eq_ignore_ascii_case(escape))
        {
            Some((_, c)) => out.push(*c),
            None => out.push_str(escape),
        }
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

/// One event of a delivery, with the fields tandem reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    event_id: u64,
    subscription_type: String,
    #[serde(default)]
    object_id: Option<u64>,
    #[serde(default)]
    occurred_at: Millis,
    #[serde(default)]
    primary_object_id: Option<u64>,
    #[serde(default)]
    new_object_id: Option<u64>,
    #[serde(default)]
    merged_object_ids: Vec<u64>,
}

/// Read a delivery (a JSON array of events) as hints about contacts. Events
/// about other objects are left out.
pub fn decode(body: &[u8]) -> Result<Vec<Hint>, WebhookError> {
    let events: Vec<Event> =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let mut hints = Vec::new();
    for event in events {
        let Some(kind) = event.subscription_type.strip_prefix("contact.") else {
            continue;
        };
        let id = |n: u64| RecordRef::Id(n.to_string());
        let hint = |suffix: &str, record, kind| Hint {
            event_id: format!("{}{suffix}", event.event_id),
            record,
            kind,
            occurred_at: event.occurred_at,
        };
        match kind {
            "merge" => {
                // The merged records are gone into the survivor, which changed.
                let Some(into) = event
                    .new_object_id
                    .or(event.primary_object_id)
                    .or(event.object_id)
                else {
                    continue;
                };
                for merged in event.merged_object_ids.iter().filter(|m| **m != into) {
                    hints.push(hint(
                        &format!(":{merged}"),
                        id(*merged),
                        HintKind::Merged {
                            into: into.to_string(),
                        },
                    ));
                }
                hints.push(hint("", id(into), HintKind::Changed));
            }
            other => {
                let Some(object) = event.object_id else {
                    continue;
                };
                let kind = match other {
                    "deletion" | "privacyDeletion" => HintKind::Deleted,
                    "restore" => HintKind::Restored,
                    _ => HintKind::Changed,
                };
                hints.push(hint("", id(object), kind));
            }
        }
    }
    Ok(hints)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of the vendor's documented payloads.
    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../fixtures/hubspot/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// HubSpot's published signature test vectors.
    struct Vectors {
        secret: String,
        body: String,
        uri: String,
        timestamp: String,
        v1: String,
        v2: String,
        v3: String,
    }

    fn vectors() -> Vectors {
        let file: serde_json::Value =
            serde_json::from_str(&fixture("signature-vectors.json")).unwrap();
        let text = |k: &str| file[k].as_str().unwrap().to_string();
        Vectors {
            secret: text("client_secret"),
            body: fixture(file["body_file"].as_str().unwrap()),
            uri: text("uri"),
            timestamp: text("timestamp"),
            v1: text("v1"),
            v2: text("v2"),
            v3: text("v3"),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn signatures_match_the_documented_vectors() {
        let v = vectors();
        assert_eq!(sign_v1(&v.secret, v.body.as_bytes()), v.v1);
        assert_eq!(sign_v2(&v.secret, "POST", &v.uri, v.body.as_bytes()), v.v2);
        assert_eq!(
            sign_v3(&v.secret, "POST", &v.uri, v.body.as_bytes(), &v.timestamp),
            v.v3
        );
    }

    #[test]
    fn v3_is_accepted_when_signed_and_recent_and_refused_otherwise() {
        let v = vectors();
        let verifier = Verifier::new(SecretString::from(v.secret.clone()), false);
        let signed = headers(&[
            ("x-hubspot-signature-v3", &v.v3),
            ("x-hubspot-request-timestamp", &v.timestamp),
        ]);
        let at: Millis = v.timestamp.parse().unwrap();
        let check = |verifier: &Verifier, headers: &HeaderMap, body: &str, now: Millis| {
            verifier.verify(&Request {
                method: "POST",
                uri: &v.uri,
                headers,
                body: body.as_bytes(),
                now,
            })
        };
        assert_eq!(check(&verifier, &signed, &v.body, at + 60_000), Ok(()));
        // Replayed six minutes later.
        assert_eq!(
            check(&verifier, &signed, &v.body, at + 360_001),
            Err(WebhookError::Stale)
        );
        // A changed body.
        assert_eq!(
            check(
                &verifier,
                &signed,
                &v.body.replace("123", "124"),
                at + 60_000
            ),
            Err(WebhookError::Forged)
        );
        // Another secret.
        let other = Verifier::new(SecretString::from("someone-else"), false);
        assert_eq!(
            check(&other, &signed, &v.body, at + 60_000),
            Err(WebhookError::Forged)
        );
        // No signature at all.
        assert_eq!(
            check(&verifier, &HeaderMap::new(), &v.body, at + 60_000),
            Err(WebhookError::Forged)
        );
    }

    #[test]
    fn v1_and_v2_are_accepted_only_where_configured() {
        let v = vectors();
        let v1 = headers(&[
            ("x-hubspot-signature", &v.v1),
            ("x-hubspot-signature-version", "v1"),
        ]);
        let v2 = headers(&[
            ("x-hubspot-signature", &v.v2),
            ("x-hubspot-signature-version", "v2"),
        ]);
        let strict = Verifier::new(SecretString::from(v.secret.clone()), false);
        let legacy = Verifier::new(SecretString::from(v.secret.clone()), true);
        for signed in [&v1, &v2] {
            let request = Request {
                method: "POST",
                uri: &v.uri,
                headers: signed,
                body: v.body.as_bytes(),
                now: 0,
            };
            assert_eq!(strict.verify(&request), Err(WebhookError::Forged));
            assert_eq!(legacy.verify(&request), Ok(()));
        }
    }

    #[test]
    fn the_documented_delivery_decodes() {
        let hints = decode(fixture("webhook-creation.json").as_bytes()).unwrap();
        assert_eq!(hints.len(), 1);
        assert_eq!(
            (hints[0].record.clone(), hints[0].kind.clone()),
            (RecordRef::Id("123".into()), HintKind::Changed)
        );
        assert_eq!(
            (hints[0].event_id.as_str(), hints[0].occurred_at),
            ("1", 1_564_113_600_000)
        );
    }

    #[test]
    fn the_uri_is_signed_with_some_escapes_decoded() {
        assert_eq!(
            decode_uri("https://x.io/hook%3Fa%3Db%2Cc%20d%2f"),
            "https://x.io/hook?a%3Db,c%20d/"
        );
    }

    #[test]
    fn events_become_hints() {
        let body = r#"[
            {"eventId":1,"subscriptionType":"contact.propertyChange","objectId":51,"occurredAt":10,"propertyName":"firstname","propertyValue":"Ada"},
            {"eventId":2,"subscriptionType":"contact.deletion","objectId":52,"occurredAt":11},
            {"eventId":3,"subscriptionType":"contact.restore","objectId":52,"occurredAt":12},
            {"eventId":4,"subscriptionType":"contact.merge","objectId":53,"occurredAt":13,"primaryObjectId":53,"mergedObjectIds":[53,54],"newObjectId":53},
            {"eventId":5,"subscriptionType":"company.creation","objectId":9,"occurredAt":14}
        ]"#;
        let hints = decode(body.as_bytes()).unwrap();
        let summary: Vec<(String, RecordRef, HintKind)> = hints
            .into_iter()
            .map(|h| (h.event_id, h.record, h.kind))
            .collect();
        let id = |n: &str| RecordRef::Id(n.into());
        assert_eq!(
            summary,
            vec![
                ("1".into(), id("51"), HintKind::Changed),
                ("2".into(), id("52"), HintKind::Deleted),
                ("3".into(), id("52"), HintKind::Restored),
                (
                    "4:54".into(),
                    id("54"),
                    HintKind::Merged { into: "53".into() }
                ),
                ("4".into(), id("53"), HintKind::Changed),
            ]
        );
        assert!(matches!(
            decode(b"{\"not\":\"an array\"}"),
            Err(WebhookError::Malformed(_))
        ));
    }
}
