//! The registry of connectors: the one place that lists the vendors tandem
//! speaks to, builds their clients from configuration, and dispatches calls.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_core::{Connector, ConnectorError, HttpSettings, Page, Record, Write, WriteOutcome};
use tandem_hubspot::{HubSpotClient, HubSpotConfig};
use tandem_mailchimp::{MailchimpClient, MailchimpConfig};

use crate::config::{Config, ConnectorSettings};
use crate::location::Located;
use crate::policy::{Policy, Schemas};
use crate::side::Side;

/// What the pairs read from one connector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Every path a pair reads.
    pub paths: Vec<String>,
    /// Paths whose own change time a pair weighs (fields of `newest`), read with
    /// their history where the API keeps one.
    pub history: Vec<String>,
}

impl Reads {
    /// What `policies` read from each connector.
    pub fn of<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> BTreeMap<String, Reads> {
        let mut reads: BTreeMap<String, Reads> = BTreeMap::new();
        for policy in policies {
            for side in Side::BOTH {
                let entry = reads.entry(policy.connector(side).to_string()).or_default();
                for path in policy.paths(side) {
                    if !entry.paths.contains(&path) {
                        entry.paths.push(path);
                    }
                }
                for path in policy.history_paths(side) {
                    if !entry.history.contains(&path) {
                        entry.history.push(path);
                    }
                }
            }
        }
        reads
    }
}

/// A configured connector of any vendor.
pub enum AnyConnector {
    /// HubSpot CRM contacts.
    HubSpot(HubSpotClient),
    /// Mailchimp audience members.
    Mailchimp(MailchimpClient),
}

impl AnyConnector {
    /// Build a client that reads what `reads` says. Reads the credential; makes no request.
    pub fn build(
        name: &str,
        settings: &ConnectorSettings,
        reads: &Reads,
    ) -> Result<AnyConnector, Located> {
        let common = settings.common();
        let secret = common.credential.read()?;
        let http = |vendor: &'static str, defaults: HttpSettings| {
            let mut http = HttpSettings { vendor, ..defaults };
            if let Some(rate) = common.rate_limit {
                http.rate = rate;
            }
            if let Some(timeout) = common.timeout {
                http.timeout = timeout;
            }
            if let Some(retries) = common.max_retries {
                http.max_retries = retries;
            }
            if let Some(percent) = common.breaker_failure_percent {
                http.breaker.failure_ratio = f64::from(percent) / 100.0;
            }
            if let Some(cooldown) = common.breaker_cooldown {
                http.breaker.cooldown = cooldown;
                http.breaker.max_cooldown = http.breaker.max_cooldown.max(cooldown);
            }
            http
        };
        let invalid = |e: ConnectorError| Located {
            message: format!("connectors.{name}: {e}"),
            ..common.base_url_at.clone()
        };
        match settings {
            ConnectorSettings::HubSpot {
                search_rate_limit, ..
            } => {
                let base = common
                    .base_url
                    .clone()
                    .unwrap_or_else(|| "https://api.hubapi.com".into());
                let mut config = HubSpotConfig::new(base, secret);
                config.http = http(tandem_hubspot::VENDOR, config.http);
                if let Some(rate) = search_rate_limit {
                    config.search_rate = *rate;
                }
                if let Some(overlap) = common.overlap {
                    config.search_overlap = overlap;
                }
                config.properties = properties(&reads.paths);
                config.history_properties = properties(&reads.history);
                HubSpotClient::new(config)
                    .map(AnyConnector::HubSpot)
                    .map_err(invalid)
            }
            ConnectorSettings::Mailchimp {
                list_id,
                status_if_new,
                max_connections,
                ..
            } => {
                use secrecy::ExposeSecret;
                let base = match &common.base_url {
                    Some(base) => base.clone(),
                    None => MailchimpConfig::base_url_for_key(secret.expose_secret()).ok_or_else(|| Located {
                        message: format!(
                            "{}: the API key does not end in a datacenter (like `-us6`); set connectors.{name}.base_url",
                            common.credential.setting
                        ),
                        ..common.credential.at.clone()
                    })?,
                };
                let mut config = MailchimpConfig::new(base, secret, list_id.clone());
                config.http = http(tandem_mailchimp::VENDOR, config.http);
                if let Some(connections) = max_connections {
                    config.http.max_concurrency = Some((*connections).clamp(1, 10));
                }
                if let Some(overlap) = common.overlap {
                    config.overlap = overlap;
                }
                config.status_if_new = status_if_new.clone();
                MailchimpClient::new(config)
                    .map(AnyConnector::Mailchimp)
                    .map_err(invalid)
            }
        }
    }

    /// Whether reads by id can date each field by when its value was set.
    pub fn keeps_history(&self) -> bool {
        match self {
            AnyConnector::HubSpot(client) => client.reads_history(),
            AnyConnector::Mailchimp(_) => false,
        }
    }

    /// Read what `reads` says from now on (a reloaded policy may sync new fields,
    /// or weigh others by their own change time). Mailchimp always returns whole
    /// members and keeps no field history, so only HubSpot needs telling.
    pub fn read(&self, reads: &Reads) {
        if let AnyConnector::HubSpot(client) = self {
            client.read_properties(properties(&reads.paths));
            client.read_history(properties(&reads.history));
        }
    }

    /// Build every connector of a config that the pairs read from.
    pub fn build_all(
        config: &Config,
        reads: &BTreeMap<String, Reads>,
    ) -> Result<BTreeMap<String, AnyConnector>, Located> {
        let mut built = BTreeMap::new();
        for (name, settings) in &config.connectors {
            if let Some(reads) = reads.get(name) {
                built.insert(name.clone(), AnyConnector::build(name, settings, reads)?);
            }
        }
        Ok(built)
    }

    /// See [`Connector::check`].
    pub async fn check(&self) -> Result<(), ConnectorError> {
        match self {
            AnyConnector::HubSpot(c) => c.check().await,
            AnyConnector::Mailchimp(c) => c.check().await,
        }
    }

    /// See [`Connector::poll`].
    pub async fn poll(&self, cursor: Option<&str>) -> Result<Page, ConnectorError> {
        match self {
            AnyConnector::HubSpot(c) => c.poll(cursor).await,
            AnyConnector::Mailchimp(c) => c.poll(cursor).await,
        }
    }

    /// See [`Connector::lookup`].
    pub async fn lookup(&self, keys: &[String]) -> Result<Vec<Record>, ConnectorError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            AnyConnector::HubSpot(c) => c.lookup(keys).await,
            AnyConnector::Mailchimp(c) => c.lookup(keys).await,
        }
    }

    /// See [`Connector::fetch`].
    pub async fn fetch(&self, ids: &[String]) -> Result<Vec<Record>, ConnectorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            AnyConnector::HubSpot(c) => c.fetch(ids).await,
            AnyConnector::Mailchimp(c) => c.fetch(ids).await,
        }
    }

    /// See [`Connector::apply`].
    pub async fn apply(&self, writes: &[Write]) -> Result<Vec<WriteOutcome>, ConnectorError> {
        match self {
            AnyConnector::HubSpot(c) => c.apply(writes).await,
            AnyConnector::Mailchimp(c) => c.apply(writes).await,
        }
    }

    /// Requests sent and throttling answers received so far.
    pub fn traffic(&self) -> tandem_core::TrafficStats {
        match self {
            AnyConnector::HubSpot(c) => c.traffic(),
            AnyConnector::Mailchimp(c) => c.traffic(),
        }
    }

    /// Where the connector's circuit breaker stands.
    pub fn breaker(&self) -> tandem_core::breaker::BreakerView {
        match self {
            AnyConnector::HubSpot(c) => c.breaker(),
            AnyConnector::Mailchimp(c) => c.breaker(),
        }
    }

    /// Most writes worth handing to [`AnyConnector::apply`] at once.
    pub fn write_batch(&self) -> usize {
        match self {
            AnyConnector::HubSpot(_) => tandem_hubspot::client::BATCH_LIMIT * 5,
            AnyConnector::Mailchimp(_) => tandem_mailchimp::client::BATCH_LIMIT,
        }
    }
}

/// HubSpot property names of `properties.<name>` paths.
fn properties(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| tandem_hubspot::property_of(p))
        .map(String::from)
        .collect()
}

/// The configured connectors, as the policy compiler sees them.
pub struct ConfigSchemas<'a>(pub &'a Config);

impl Schemas for ConfigSchemas<'_> {
    fn connectors(&self) -> Vec<String> {
        self.0.connectors.keys().cloned().collect()
    }

    fn events(&self, connector: &str) -> &'static [&'static str] {
        match self.0.connectors.get(connector) {
            Some(ConnectorSettings::HubSpot { .. }) => &["archived"],
            Some(ConnectorSettings::Mailchimp { .. }) => &["archived", "unsubscribed", "cleaned"],
            None => &[],
        }
    }

    fn deletes_permanently(&self, connector: &str) -> bool {
        // Mailchimp's delete-permanent erases a member; HubSpot's GDPR delete also
        // blocklists the address, which tandem never does.
        matches!(
            self.0.connectors.get(connector),
            Some(ConnectorSettings::Mailchimp { .. })
        )
    }

    fn check_path(&self, connector: &str, path: &str) -> Result<(), String> {
        match self.0.connectors.get(connector) {
            Some(ConnectorSettings::HubSpot { .. }) => tandem_hubspot::check_path(path),
            Some(ConnectorSettings::Mailchimp { .. }) => tandem_mailchimp::check_path(path),
            None => Err(format!("connector `{connector}` is not configured")),
        }
    }
}

/// How long to wait before retrying after a failure of a whole call.
pub fn transient_delay(error: &ConnectorError, fallback: Duration) -> Duration {
    match error {
        ConnectorError::RateLimited {
            retry_after: Some(wait),
            ..
        } => *wait,
        ConnectorError::Paused { retry_in, .. } => *retry_in,
        _ => fallback,
    }
}
