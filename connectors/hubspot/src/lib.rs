//! The HubSpot CRM v3 connector: a client for contacts ([`client`]), the API's
//! JSON shapes ([`model`]) and, with the `sim` feature, an in-memory simulator
//! of the same API ([`sim`]).
//!
//! Records use the paths `properties.<name>`; the match key is the `email` property.
//! Reads by id or email can date chosen properties from their history
//! (`Record::changed_at`, see [`HubSpotConfig::history_properties`]).

pub mod client;
pub mod model;
#[cfg(feature = "sim")]
pub mod sim;
pub mod webhook;

pub use client::{HubSpotClient, HubSpotConfig};

/// The vendor's name in errors, logs and configuration.
pub const VENDOR: &str = "hubspot";
/// The property that holds the match key.
pub const KEY_PROPERTY: &str = "email";
/// The property contacts are searched and sorted by for changes.
pub const MODIFIED_PROPERTY: &str = "lastmodifieddate";

const PATH_PREFIX: &str = "properties.";

/// The record path of a property: `firstname` is `properties.firstname`.
pub fn path_of(property: &str) -> String {
    format!("{PATH_PREFIX}{property}")
}

/// The property a record path names, if it names one.
pub fn property_of(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX)
        .filter(|name| !name.is_empty() && !name.contains('.'))
}

/// Check a record path a policy uses: it must name one property (`properties.<name>`),
/// in HubSpot's internal-name form (lowercase letters, digits, `_`).
pub fn check_path(path: &str) -> Result<(), String> {
    let Some(name) = property_of(path) else {
        return Err(format!(
            "HubSpot paths name a contact property, like `properties.firstname`; got `{path}`"
        ));
    };
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a HubSpot internal property name (lowercase letters, digits and `_`)"
        ))
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

    use crate::sim::{HubSpotSim, Seed, SeedContact, SimConfig};
    use crate::webhook::{Request, Verifier, decode, sign_v3};
    use crate::{HubSpotClient, HubSpotConfig};

    struct Kit;

    struct Control(HubSpotSim);

    impl SimControl for Control {
        fn count(&self) -> usize {
            self.0.contacts().len()
        }
        fn edit(&self, key: &str) {
            self.0.edit(key, &[("firstname", "Edited")]);
        }
        fn later(&self) {
            self.0.advance_clock(Duration::from_secs(2));
        }
        fn lose_answers(&self, n: u32) {
            self.0.lose_answers(n);
        }
        fn refuse(&self, key: &str) {
            self.0.blocklist(key);
        }
        fn text_path(&self) -> &'static str {
            "properties.firstname"
        }
    }

    fn client(url: &str, token: &str) -> HubSpotClient {
        let mut config = HubSpotConfig::new(url, SecretString::from(token.to_string()));
        config.http.rate = None;
        config.http.max_retries = 1;
        config.http.backoff = Duration::from_millis(10);
        config.search_rate = None;
        config.properties = vec!["firstname".into()];
        HubSpotClient::new(config).unwrap()
    }

    impl Subject for Kit {
        type Client = HubSpotClient;

        async fn start(&self, count: usize) -> Fixture<HubSpotClient> {
            let sim = HubSpotSim::new(SimConfig::default());
            let contacts = (0..count)
                .map(|i| SeedContact {
                    properties: [
                        ("email".to_string(), key(i)),
                        ("firstname".to_string(), "Kit".to_string()),
                    ]
                    .into(),
                    updated_at: Some(tandem_core::clock::format_millis_z(
                        1_767_225_600_000 + i as Millis * 1000,
                    )),
                    created_at: None,
                })
                .collect();
            sim.seed(Seed {
                properties: vec![],
                contacts,
            })
            .unwrap();
            let url = sim.clone().spawn().await.unwrap();
            let dead = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            Fixture {
                client: client(&url, &SimConfig::default().token),
                wrong_credentials: client(&url, "not-the-token"),
                unreachable: client(&format!("http://{dead}"), "x"),
                sim: Box::new(Control(sim)),
            }
        }
    }

    #[tokio::test]
    async fn the_client_passes_the_connector_kit_against_the_simulator() {
        run(&Kit).await;
    }

    struct Signing;

    const URL: &str = "https://sync.example.com/webhooks/hubspot";

    fn delivery(secret: &str, body: &[u8], at: Millis) -> Delivery {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-hubspot-signature-v3",
            sign_v3(secret, "POST", URL, body, &at.to_string())
                .parse()
                .unwrap(),
        );
        headers.insert(
            "x-hubspot-request-timestamp",
            at.to_string().parse().unwrap(),
        );
        Delivery {
            headers,
            url: URL.into(),
            body: body.to_vec(),
        }
    }

    impl Signer for Signing {
        fn body(&self) -> Vec<u8> {
            std::fs::read(format!(
                "{}/../../fixtures/hubspot/webhook-creation.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        }
        fn signed(&self, body: &[u8], at: Millis) -> Delivery {
            delivery("client-secret", body, at)
        }
        fn forged(&self, body: &[u8], at: Millis) -> Delivery {
            delivery("another-secret", body, at)
        }
        fn verify(&self, delivery: &Delivery, now: Millis) -> Result<(), WebhookError> {
            let verifier = Verifier::new(SecretString::from("client-secret"), false);
            verifier.verify(&Request {
                method: "POST",
                uri: &delivery.url,
                headers: &delivery.headers,
                body: &delivery.body,
                now,
            })
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
