//! The Mailchimp Marketing v3 connector for audience members: a client
//! ([`client`]), the API's JSON shapes ([`model`]) and, with the `sim` feature,
//! an in-memory simulator of the same API ([`sim`]).
//!
//! Records use the member's own field names as paths (`email_address`,
//! `status`, `language`, `vip`), `merge_fields.<TAG>` for merge fields, and
//! `tags` for the member's tags: a sorted array of tag names, written through
//! Mailchimp's member tags endpoint. The record id is the member's
//! `contact_id`, which survives a change of email address (the subscriber
//! hash does not); the match key is `email_address`. Interests, notes,
//! marketing permissions and events are not supported.

pub mod client;
pub mod model;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

use md5::{Digest, Md5};

pub use client::{MailchimpClient, MailchimpConfig};

/// The vendor's name in errors, logs and configuration.
pub const VENDOR: &str = "mailchimp";
/// The member field that holds the match key.
pub const KEY_FIELD: &str = "email_address";
/// The record path of a member's tags: an array of tag names.
pub const TAGS_FIELD: &str = "tags";
/// Member fields a policy may map besides merge fields.
pub const MEMBER_FIELDS: [&str; 6] = [
    "email_address",
    "status",
    "email_type",
    "language",
    "vip",
    TAGS_FIELD,
];

const MERGE_PREFIX: &str = "merge_fields.";

/// The subscriber hash: lowercase hex MD5 of the lowercased email address.
pub fn subscriber_hash(email: &str) -> String {
    hex::encode(Md5::digest(email.trim().to_lowercase().as_bytes()))
}

/// The merge tag a record path names, if it names one.
pub fn merge_tag_of(path: &str) -> Option<&str> {
    path.strip_prefix(MERGE_PREFIX)
        .filter(|tag| !tag.is_empty() && !tag.contains('.'))
}

/// Check a record path a policy uses: a member field or `merge_fields.<TAG>`.
pub fn check_path(path: &str) -> Result<(), String> {
    if MEMBER_FIELDS.contains(&path) {
        return Ok(());
    }
    match merge_tag_of(path) {
        Some(tag)
            if tag.len() <= 10
                && tag
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
        {
            Ok(())
        }
        Some(tag) => Err(format!(
            "`{tag}` is not a Mailchimp merge tag (up to 10 uppercase letters, digits and `_`)"
        )),
        None => Err(format!(
            "Mailchimp paths are one of {} or `merge_fields.<TAG>`; got `{path}`",
            MEMBER_FIELDS.map(|f| format!("`{f}`")).join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_hash_is_md5_of_the_lowercased_email() {
        assert_eq!(
            subscriber_hash("Test@Example.com"),
            "55502f40dc8b7c769880b10874abc9d0"
        );
    }

    #[test]
    fn paths_are_member_fields_or_merge_tags() {
        assert!(check_path("merge_fields.FNAME").is_ok());
        assert!(check_path("status").is_ok());
        assert!(check_path("tags").is_ok());
        assert!(check_path("tags.vip").is_err());
        assert!(check_path("merge_fields.fname").is_err());
        assert!(check_path("properties.firstname").is_err());
    }
}

#[cfg(all(test, feature = "sim"))]
mod conformance {
    //! The connector kit's checks, against this crate's simulator.

    use std::time::Duration;

    use secrecy::SecretString;
    use tandem_core::testkit::{
        Delivery, Fixture, Signer, SimControl, Subject, key, run, run_webhooks,
    };
    use tandem_core::{Hint, Millis, WebhookError};

    use crate::sim::{MailchimpSim, Seed, SeedMember, SimConfig};
    use crate::webhook::{Verifier, decode, sign};
    use crate::{MailchimpClient, MailchimpConfig};

    struct Kit;

    struct Control(MailchimpSim);

    impl SimControl for Control {
        fn count(&self) -> usize {
            self.0.members().len()
        }
        fn edit(&self, key: &str) {
            self.0.edit(key, &[("FNAME", "Edited")]);
        }
        fn later(&self) {
            self.0.advance_clock(Duration::from_secs(2));
        }
        fn lose_answers(&self, n: u32) {
            self.0.lose_answers(n);
        }
        fn refuse(&self, key: &str) {
            self.0.reject_emails(&[key]);
        }
        fn text_path(&self) -> &'static str {
            "merge_fields.FNAME"
        }
    }

    fn client(url: &str, key: &str) -> MailchimpClient {
        let mut config = MailchimpConfig::new(
            url,
            SecretString::from(key.to_string()),
            SimConfig::default().list_id,
        );
        config.http.max_retries = 1;
        config.http.backoff = Duration::from_millis(10);
        config.page_size = 100;
        MailchimpClient::new(config).unwrap()
    }

    impl Subject for Kit {
        type Client = MailchimpClient;

        async fn start(&self, count: usize) -> Fixture<MailchimpClient> {
            let sim = MailchimpSim::new(SimConfig::default());
            let members = (0..count)
                .map(|i| SeedMember {
                    email_address: key(i),
                    status: None,
                    merge_fields: [("FNAME".to_string(), serde_json::json!("Kit"))].into(),
                    last_changed: Some(tandem_core::clock::format_seconds_offset(
                        1_767_225_600_000 + i as Millis * 1000,
                    )),
                })
                .collect();
            sim.seed(Seed {
                merge_fields: vec![],
                members,
            })
            .unwrap();
            let url = sim.clone().spawn().await.unwrap();
            let dead = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            Fixture {
                client: client(&url, &SimConfig::default().api_key),
                wrong_credentials: client(&url, "00000000000000000000000000000000-us6"),
                unreachable: client(&format!("http://{dead}/3.0"), "x-us6"),
                sim: Box::new(Control(sim)),
            }
        }
    }

    #[tokio::test]
    async fn the_client_passes_the_connector_kit_against_the_simulator() {
        run(&Kit).await;
    }

    struct Signing;

    fn delivery(signing_secret: &str, body: &[u8], at: Millis) -> Delivery {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-mailchimp-signature",
            sign(signing_secret, at / 1000, body).parse().unwrap(),
        );
        Delivery {
            headers,
            url: "https://sync.example.com/webhooks/mailchimp?secret=url-secret".into(),
            body: body.to_vec(),
        }
    }

    impl Signer for Signing {
        fn body(&self) -> Vec<u8> {
            std::fs::read(format!(
                "{}/../../fixtures/mailchimp/webhook-profile.txt",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        }
        fn signed(&self, body: &[u8], at: Millis) -> Delivery {
            delivery("signing-secret", body, at)
        }
        fn forged(&self, body: &[u8], at: Millis) -> Delivery {
            delivery("another-secret", body, at)
        }
        fn verify(&self, delivery: &Delivery, now: Millis) -> Result<(), WebhookError> {
            let secret = delivery.url.split_once("secret=").map(|(_, s)| s);
            let verifier = Verifier::new(
                SecretString::from("url-secret"),
                Some(SecretString::from("signing-secret")),
            );
            verifier.verify(secret, &delivery.headers, &delivery.body, now)
        }
        fn decode(&self, body: &[u8]) -> Result<Vec<Hint>, WebhookError> {
            decode(body)
        }
    }

    #[test]
    fn webhooks_pass_the_connector_kit() {
        run_webhooks(&Signing);
    }
}
