//! The conformance kit: what every connector must do, checked against its
//! simulator through real HTTP. A vendor crate describes its simulator with a
//! [`Subject`] and its webhook signing with a [`Signer`], then runs [`run`] and
//! [`run_webhooks`] from a test. The checks are the engine's assumptions: full
//! listings page through everything, incremental polls see changes, retried
//! writes make no duplicates, errors have the kind the engine acts on, and
//! webhooks are refused when forged, tampered with or stale.

use std::collections::HashSet;
use std::future::Future;

use http::HeaderMap;
use serde_json::Value;

use crate::{Connector, ErrorKind, FieldMap, Hint, Millis, WebhookError, Write, WriteOp};

/// A connector with a fresh simulator behind it.
pub struct Fixture<C> {
    /// A client with good credentials.
    pub client: C,
    /// A client whose credentials the simulator refuses.
    pub wrong_credentials: C,
    /// A client pointed at a port where nothing listens.
    pub unreachable: C,
    /// The simulator, to act on it as its people would.
    pub sim: Box<dyn SimControl>,
}

/// What the kit asks of a simulator.
pub trait SimControl: Send + Sync {
    /// Live records.
    fn count(&self) -> usize;
    /// Change a value of the record with this key, as a person would.
    fn edit(&self, key: &str);
    /// Move the simulator's clock on, so that later changes look later.
    fn later(&self);
    /// Apply the next `n` writes but lose their answers (the caller sees a 500).
    fn lose_answers(&self, n: u32);
    /// Make the system refuse writes of the record with this key.
    fn refuse(&self, key: &str);
    /// A writable text path of records.
    fn text_path(&self) -> &'static str;
}

/// How a vendor crate starts its simulator for the kit.
pub trait Subject {
    /// The connector.
    type Client: Connector + Clone + Send + Sync + 'static;
    /// A simulator holding `count` records keyed `kit{i}@example.com`, and clients for it.
    fn start(&self, count: usize) -> impl Future<Output = Fixture<Self::Client>>;
}

/// The key of the `i`th seeded record.
pub fn key(i: usize) -> String {
    format!("kit{i}@example.com")
}

async fn poll_all<C: Connector>(
    client: &C,
    cursor: Option<String>,
) -> (Vec<String>, String, usize) {
    let mut cursor = cursor;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.poll(cursor.as_deref()).await.expect("polls succeed");
        pages += 1;
        ids.extend(page.records.into_iter().map(|r| r.id));
        cursor = Some(page.cursor);
        if !page.more {
            return (ids, cursor.expect("set"), pages);
        }
    }
}

/// Run every check of the kit; panics with what failed.
pub async fn run<S: Subject>(subject: &S) {
    listing_pages_through_every_record(subject).await;
    incremental_polls_see_changes(subject).await;
    retried_writes_make_no_duplicates(subject).await;
    errors_have_the_kind_the_engine_acts_on(subject).await;
    lookups_and_fetches_leave_out_what_does_not_exist(subject).await;
}

async fn listing_pages_through_every_record<S: Subject>(subject: &S) {
    let fixture = subject.start(250).await;
    let (ids, _, pages) = poll_all(&fixture.client, None).await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        250,
        "a full listing returns every record once at least"
    );
    assert!(pages >= 2, "250 records take more than one page ({pages})");
}

async fn incremental_polls_see_changes<S: Subject>(subject: &S) {
    let fixture = subject.start(120).await;
    let (_, cursor, _) = poll_all(&fixture.client, None).await;
    fixture.sim.later();
    for i in [3, 40, 99] {
        fixture.sim.edit(&key(i));
    }
    let found = fixture
        .client
        .lookup(&[key(3), key(40), key(99)])
        .await
        .expect("lookups succeed");
    let edited: HashSet<String> = found.into_iter().map(|r| r.id).collect();
    let (ids, _, _) = poll_all(&fixture.client, Some(cursor)).await;
    let seen: HashSet<String> = ids.iter().cloned().collect();
    assert!(
        edited.is_subset(&seen),
        "an incremental poll sees every change since the last"
    );
    assert!(
        ids.len() < 120,
        "an incremental poll does not list everything again ({})",
        ids.len()
    );
}

fn create(fixture_path: &'static str, key: &str, value: &str) -> Write {
    Write {
        op: WriteOp::Create,
        key: key.to_string(),
        fields: FieldMap::from([(fixture_path.to_string(), Value::String(value.into()))]),
    }
}

async fn retried_writes_make_no_duplicates<S: Subject>(subject: &S) {
    let fixture = subject.start(3).await;
    let path = fixture.sim.text_path();
    let write = create(path, "new@example.com", "first");
    let first = fixture
        .client
        .apply(std::slice::from_ref(&write))
        .await
        .expect("the call succeeds");
    let id = first[0]
        .as_ref()
        .expect("the create is accepted")
        .id
        .clone();
    let again = fixture
        .client
        .apply(std::slice::from_ref(&write))
        .await
        .expect("the call succeeds");
    assert_eq!(
        again[0].as_ref().expect("a retried create is accepted").id,
        id,
        "a retried create finds the same record"
    );
    assert_eq!(
        fixture.sim.count(),
        4,
        "a retried create makes no duplicate"
    );

    // The vendor wrote but the answer was lost: retrying later changes nothing more.
    fixture.sim.lose_answers(100);
    let lost = create(path, "lost@example.com", "once");
    let outcome = fixture.client.apply(std::slice::from_ref(&lost)).await;
    let failed = match &outcome {
        Err(error) => error.kind(),
        Ok(outcomes) => outcomes[0]
            .as_ref()
            .err()
            .map_or(ErrorKind::BadRecord, |e| e.kind()),
    };
    assert_eq!(
        failed,
        ErrorKind::Retry,
        "a lost answer is a passing failure: {outcome:?}"
    );
    fixture.sim.lose_answers(0);
    let retried = fixture
        .client
        .apply(std::slice::from_ref(&lost))
        .await
        .expect("the call succeeds");
    assert!(retried[0].is_ok(), "the retry succeeds: {retried:?}");
    assert_eq!(
        fixture.sim.count(),
        5,
        "the lost write and its retry make one record"
    );

    let update = Write {
        op: WriteOp::Update { id: id.clone() },
        key: "new@example.com".into(),
        fields: FieldMap::from([(path.to_string(), Value::String("second".into()))]),
    };
    for _ in 0..2 {
        let outcome = fixture
            .client
            .apply(std::slice::from_ref(&update))
            .await
            .expect("the call succeeds");
        let record = outcome[0].as_ref().expect("the update is accepted");
        assert_eq!(
            (record.id.as_str(), record.fields.get(path)),
            (id.as_str(), Some(&Value::String("second".into())))
        );
    }
}

async fn errors_have_the_kind_the_engine_acts_on<S: Subject>(subject: &S) {
    let fixture = subject.start(3).await;
    let refused = fixture
        .wrong_credentials
        .check()
        .await
        .expect_err("wrong credentials are refused");
    assert_eq!(refused.kind(), ErrorKind::Fatal, "{refused}");
    let unreachable = fixture
        .unreachable
        .check()
        .await
        .expect_err("nothing listens");
    assert_eq!(unreachable.kind(), ErrorKind::Retry, "{unreachable}");
    fixture.sim.refuse("refused@example.com");
    let writes = [
        create(fixture.sim.text_path(), "refused@example.com", "x"),
        create(fixture.sim.text_path(), "fine@example.com", "y"),
    ];
    let outcomes = fixture
        .client
        .apply(&writes)
        .await
        .expect("one bad record does not fail the call");
    assert_eq!(
        outcomes[0].as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::BadRecord),
        "{:?}",
        outcomes[0]
    );
    assert!(
        outcomes[1].is_ok(),
        "the other record is written: {:?}",
        outcomes[1]
    );
    fixture
        .client
        .check()
        .await
        .expect("good credentials pass the check");
}

async fn lookups_and_fetches_leave_out_what_does_not_exist<S: Subject>(subject: &S) {
    let fixture = subject.start(5).await;
    let found = fixture
        .client
        .lookup(&[key(1), key(4), "nobody@example.com".into()])
        .await
        .expect("lookups succeed");
    assert_eq!(found.len(), 2);
    let ids: Vec<String> = found
        .iter()
        .map(|r| r.id.clone())
        .chain(["unknown-id".to_string()])
        .collect();
    let fetched = fixture.client.fetch(&ids).await.expect("fetches succeed");
    assert_eq!(fetched.len(), 2, "an unknown id is left out, not an error");
}

/// A webhook request, as sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its headers.
    pub headers: HeaderMap,
    /// The URL called (with any secret in its query).
    pub url: String,
    /// The raw body.
    pub body: Vec<u8>,
}

/// How a vendor signs and verifies webhooks, for the kit.
pub trait Signer {
    /// A body the vendor sends.
    fn body(&self) -> Vec<u8>;
    /// The body signed at `at` as the vendor signs it.
    fn signed(&self, body: &[u8], at: Millis) -> Delivery;
    /// The body signed at `at` with a secret that is not ours.
    fn forged(&self, body: &[u8], at: Millis) -> Delivery;
    /// Verify a delivery at `now`.
    fn verify(&self, delivery: &Delivery, now: Millis) -> Result<(), WebhookError>;
    /// Decode a verified body.
    fn decode(&self, body: &[u8]) -> Result<Vec<Hint>, WebhookError>;
}

/// Check webhook verification: forged, tampered, stale and replayed requests.
pub fn run_webhooks(signer: &impl Signer) {
    let now: Millis = 1_750_000_000_000;
    let body = signer.body();
    let good = signer.signed(&body, now - 1_000);
    assert_eq!(
        signer.verify(&good, now),
        Ok(()),
        "a fresh, properly signed delivery is accepted"
    );
    assert_eq!(
        signer.verify(&signer.forged(&body, now), now),
        Err(WebhookError::Forged),
        "another secret's signature is refused"
    );
    let mut tampered = good.clone();
    tampered.body.extend_from_slice(b" ");
    assert_eq!(
        signer.verify(&tampered, now),
        Err(WebhookError::Forged),
        "a changed body is refused"
    );
    let stale = signer.signed(&body, now - 600_000);
    assert_eq!(
        signer.verify(&stale, now),
        Err(WebhookError::Stale),
        "a delivery signed ten minutes ago is refused"
    );
    // A replay within the window passes the signature; it is the same event, which the engine records once.
    assert_eq!(signer.verify(&good, now + 1_000), Ok(()));
    let first = signer.decode(&good.body).expect("the body decodes");
    let replay = signer.decode(&good.body).expect("the body decodes");
    assert!(!first.is_empty(), "the body names a record");
    let ids = |hints: &[Hint]| hints.iter().map(|h| h.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&first),
        ids(&replay),
        "a replay carries the same event ids"
    );
}
