//! What the vendor simulators share: delivering webhooks to a URL the way a
//! vendor does (batched, signed, retried), with faults a test can ask for:
//! dropped, duplicated, delayed and reordered deliveries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

/// Faults of webhook delivery, changeable while the simulator runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Share of events never delivered (0 to 1).
    pub drop: f64,
    /// Share of deliveries sent twice.
    pub duplicate: f64,
    /// Wait before each delivery.
    pub delay: Duration,
    /// Whether deliveries that are ready together go out in random order.
    pub reorder: bool,
}

/// How one vendor packs events into a request.
pub trait Envelope: Send + Sync + 'static {
    /// Most events in one request.
    fn batch_size(&self) -> usize;
    /// The request body, its content type, and the headers that sign it.
    fn seal(&self, events: &[Value]) -> (Vec<u8>, &'static str, Vec<(&'static str, String)>);
}

/// Counters of deliveries, for tests.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Requests answered 2xx.
    pub delivered: AtomicU64,
    /// Events dropped by the fault.
    pub dropped: AtomicU64,
    /// Requests that failed after every retry.
    pub failed: AtomicU64,
}

/// A running webhook sender. Events given to it go out in the background.
#[derive(Clone)]
pub struct Webhooks {
    sender: mpsc::UnboundedSender<Value>,
    faults: Arc<Mutex<Faults>>,
    stats: Arc<DeliveryStats>,
}

impl Webhooks {
    /// Start sending to `url`; must be called inside a Tokio runtime.
    pub fn start(url: String, envelope: impl Envelope) -> Webhooks {
        let (sender, receiver) = mpsc::unbounded_channel();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let stats = Arc::new(DeliveryStats::default());
        tokio::spawn(deliver(
            url,
            Arc::new(envelope),
            receiver,
            faults.clone(),
            stats.clone(),
        ));
        Webhooks {
            sender,
            faults,
            stats,
        }
    }

    /// Queue an event.
    pub fn send(&self, event: Value) {
        let _ = self.sender.send(event);
    }

    /// Change the delivery faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().expect("not poisoned") = faults;
    }

    /// Delivery counters.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }
}

async fn deliver(
    url: String,
    envelope: Arc<dyn Envelope>,
    mut receiver: mpsc::UnboundedReceiver<Value>,
    faults: Arc<Mutex<Faults>>,
    stats: Arc<DeliveryStats>,
) {
    let client = reqwest::Client::new();
    let mut rng = fastrand::Rng::new();
    while let Some(first) = receiver.recv().await {
        let mut events = vec![first];
        while let Ok(more) = receiver.try_recv() {
            events.push(more);
        }
        let faults = *faults.lock().expect("not poisoned");
        events.retain(|_| {
            let keep = rng.f64() >= faults.drop;
            if !keep {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
        let mut batches: Vec<Vec<Value>> = events
            .chunks(envelope.batch_size().max(1))
            .map(<[Value]>::to_vec)
            .collect();
        if faults.reorder {
            rng.shuffle(&mut batches);
        }
        for batch in batches {
            let copies = if rng.f64() < faults.duplicate { 2 } else { 1 };
            for _ in 0..copies {
                let (client, url, envelope, stats, batch) = (
                    client.clone(),
                    url.clone(),
                    envelope.clone(),
                    stats.clone(),
                    batch.clone(),
                );
                // Reordered deliveries also race each other; in order, they go one after another.
                let delivery = async move {
                    tokio::time::sleep(faults.delay).await;
                    post(&client, &url, envelope.as_ref(), &batch, &stats).await;
                };
                if faults.reorder {
                    tokio::spawn(delivery);
                } else {
                    delivery.await;
                }
            }
        }
    }
}

/// Post one delivery, retrying a few times as vendors do when the receiver fails.
async fn post(
    client: &reqwest::Client,
    url: &str,
    envelope: &dyn Envelope,
    events: &[Value],
    stats: &DeliveryStats,
) {
    for attempt in 0..4u32 {
        // Each attempt is signed anew, with a fresh timestamp.
        let (body, content_type, headers) = envelope.seal(events);
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Ok(response) = request.send().await
            && response.status().is_success()
        {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50 * 2u64.pow(attempt))).await;
    }
    stats.failed.fetch_add(1, Ordering::Relaxed);
}
