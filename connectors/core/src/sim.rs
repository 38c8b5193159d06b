//! What the vendor simulators share: delivering webhooks to a URL the way a
//! vendor does (batched, signed, retried), with faults a test can ask for
//! (dropped, duplicated, delayed and reordered deliveries), and the faults of
//! the API itself ([`ApiFaults`]: throttling storms, server errors, answers
//! slower than a client waits, cut connections and unreadable bodies).

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

/// Faults of a simulated API, changeable while it runs. Each share is the
/// chance (0 to 1) that one request meets that fault; a request meets at most one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ApiFaults {
    /// Share answered with the vendor's throttling answer (429) before anything
    /// is done. A storm is 1.0 for a while.
    pub throttle: f64,
    /// The wait that answer asks for (`Retry-After`).
    pub retry_after: Duration,
    /// Share answered 500, 502 or 503 before anything is done.
    pub server_error: f64,
    /// Share carried out, then answered only after `slow_by` (set it beyond the
    /// client's timeout to lose the answer of a request that took effect).
    pub slow: f64,
    /// How late a slow answer comes.
    pub slow_by: Duration,
    /// Share carried out, then cut off: the status line goes out, the
    /// connection drops in the body.
    pub reset: f64,
    /// Share carried out, then answered with the first half of the body only
    /// (JSON that does not parse).
    pub malformed: f64,
}

/// How many requests met each fault, for tests and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Throttled by the fault (not by the simulator's own budgets).
    pub throttled: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// Answered late.
    pub slowed: u64,
    /// Cut off.
    pub resets: u64,
    /// Answered with half a body.
    pub malformed: u64,
}

impl FaultCounts {
    /// Every fault met.
    pub fn total(&self) -> u64 {
        self.throttled + self.server_errors + self.slowed + self.resets + self.malformed
    }
}

/// The fault switch of one simulated API: tests set [`ApiFaults`] on it, the
/// simulator's router runs every request through [`ApiFaultSwitch::serve`].
#[derive(Clone, Default)]
pub struct ApiFaultSwitch {
    state: Arc<Mutex<(ApiFaults, FaultCounts)>>,
}

/// Which fault one request meets.
enum Fault {
    Throttle,
    ServerError(u16),
    Slow(Duration),
    Reset,
    Malformed,
}

impl ApiFaultSwitch {
    /// Change the faults.
    pub fn set(&self, faults: ApiFaults) {
        self.lock().0 = faults;
    }

    /// The faults now in force.
    pub fn faults(&self) -> ApiFaults {
        self.lock().0
    }

    /// How many requests met each fault so far.
    pub fn counts(&self) -> FaultCounts {
        self.lock().1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (ApiFaults, FaultCounts)> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Draw the fault of one request, counting it.
    fn draw(&self) -> Option<Fault> {
        let mut state = self.lock();
        let (faults, counts) = &mut *state;
        let mut roll = fastrand::f64();
        let mut hit = |share: f64| {
            let share = share.clamp(0.0, 1.0);
            if roll < share {
                true
            } else {
                roll -= share;
                false
            }
        };
        let fault = if hit(faults.throttle) {
            counts.throttled += 1;
            Fault::Throttle
        } else if hit(faults.server_error) {
            counts.server_errors += 1;
            Fault::ServerError([500, 502, 503][fastrand::usize(..3)])
        } else if hit(faults.slow) {
            counts.slowed += 1;
            Fault::Slow(faults.slow_by)
        } else if hit(faults.reset) {
            counts.resets += 1;
            Fault::Reset
        } else if hit(faults.malformed) {
            counts.malformed += 1;
            Fault::Malformed
        } else {
            return None;
        };
        Some(fault)
    }

    /// Run one request through the faults. `throttled` builds the vendor's
    /// throttling answer for a wait; `server_error` its answer for a 5xx status.
    pub async fn serve(
        &self,
        request: axum::extract::Request,
        next: axum::middleware::Next,
        throttled: impl FnOnce(Duration) -> axum::response::Response,
        server_error: impl FnOnce(u16) -> axum::response::Response,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;

        let Some(fault) = self.draw() else {
            return next.run(request).await;
        };
        let retry_after = self.faults().retry_after;
        match fault {
            Fault::Throttle => throttled(retry_after),
            Fault::ServerError(status) => server_error(status),
            Fault::Slow(by) => {
                let response = next.run(request).await;
                tokio::time::sleep(by).await;
                response
            }
            Fault::Reset => {
                let (parts, _) = next.run(request).await.into_parts();
                let cut = futures_util::stream::once(async {
                    Err::<axum::body::Bytes, _>(std::io::Error::from(
                        std::io::ErrorKind::ConnectionReset,
                    ))
                });
                let mut parts = parts;
                parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                axum::response::Response::from_parts(parts, axum::body::Body::from_stream(cut))
            }
            Fault::Malformed => {
                let (mut parts, body) = next.run(request).await.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                // Half of "{}" is still "{": never a body that parses.
                let half = bytes.slice(..bytes.len().div_ceil(2).max(1).min(bytes.len()));
                parts.headers.remove(axum::http::header::CONTENT_LENGTH);
                (parts, half).into_response()
            }
        }
    }
}
