//! What operators wire into monitoring, through a real `tandem run` process:
//! Prometheus metrics after a pass, readiness.

use std::time::{Duration, Instant};

use crate::cli::{stderr, tandem};
use crate::support::{World, contact, free_address, member, stop_with_sigterm};

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// `tandem run --yes` on this config, killed when dropped.
fn run(config: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["run", "--yes", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Ada, the same in both systems.
async fn ada() -> World {
    World::new(
        vec![contact("ada@example.com", &[("firstname", "Ada")])],
        vec![member("ada@example.com", &[("FNAME", "Ada")])],
    )
    .await
}

#[tokio::test]
async fn metrics_after_a_pass_count_reads_writes_links_and_requests() {
    let mut world = World::new(
        vec![
            contact("ada@example.com", &[("firstname", "Ada")]),
            contact("grace@example.com", &[("firstname", "Grace")]),
        ],
        vec![member("ada@example.com", &[("FNAME", "Ada")])],
    )
    .await;
    let listen = free_address();
    let config = world.config_listening_at(listen, 3600);
    let _child = run(&config);
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let started = Instant::now();
    let pair = ("pair", "hubspot-mailchimp");
    let text = loop {
        if let Ok(response) = http.get(format!("{base}/metrics")).send().await {
            let text = response.text().await.unwrap();
            if sample(&text, "tandem_passes_total", &[pair]).is_some_and(|n| n >= 1.0) {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no pass within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(value("tandem_links", &[pair]), 2.0);
    assert_eq!(value("tandem_open_conflicts", &[pair]), 0.0);
    assert_eq!(value("tandem_outbox_depth", &[pair]), 0.0);
    assert_eq!(value("tandem_dead_letters", &[pair]), 0.0);
    assert_eq!(
        value(
            "tandem_writes_total",
            &[pair, ("connector", "mailchimp"), ("outcome", "created")]
        ),
        1.0,
        "Grace was created in Mailchimp"
    );
    assert_eq!(
        value(
            "tandem_records_read_total",
            &[pair, ("connector", "hubspot")]
        ),
        2.0
    );
    assert!(value("tandem_api_requests_total", &[("connector", "hubspot")]) >= 1.0);
    assert_eq!(
        value("tandem_api_throttled_total", &[("connector", "mailchimp")]),
        0.0
    );
    assert!(value("tandem_poll_lag_seconds", &[pair, ("connector", "hubspot")]) >= 0.0);
    for connector in ["hubspot", "mailchimp"] {
        assert_eq!(
            value("tandem_circuit_state", &[("connector", connector)]),
            0.0,
            "{connector}'s circuit is closed"
        );
        assert_eq!(
            value("tandem_circuit_opened", &[("connector", connector)]),
            0.0
        );
    }
    assert!(
        text.contains("# TYPE tandem_pass_seconds histogram"),
        "{text}"
    );
    assert!(value("tandem_pass_seconds_count", &[pair]) >= 1.0);
    assert!(text.contains("# HELP tandem_writes_total Writes to a system by outcome"));

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn a_change_a_webhook_brought_is_timed_until_its_write() {
    let mut world = ada().await;
    let listen = free_address();
    let (config, _senders) = world.config_with_webhooks_at(listen, 3600);
    let _child = run(&config);
    let http = reqwest::Client::new();
    let metrics = || async {
        match http.get(format!("http://{listen}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    let pair = ("pair", "hubspot-mailchimp");
    let started = Instant::now();
    while !sample(&metrics().await, "tandem_passes_total", &[pair]).is_some_and(|n| n >= 1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no pass within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let timed = |text: &str| {
        sample(
            text,
            "tandem_webhook_to_write_seconds_count",
            &[pair, ("connector", "mailchimp")],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(timed(&metrics().await), 0.0, "nothing was announced yet");

    // Polling waits an hour: only the webhook brings this edit.
    world.later();
    world
        .hubspot
        .edit("ada@example.com", &[("firstname", "Augusta")]);
    let text = loop {
        let text = metrics().await;
        if timed(&text) >= 1.0 {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no timed write within 30 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        world.mailchimp_value("ada@example.com", "FNAME").as_deref(),
        Some("Augusta")
    );
    let sum = sample(
        &text,
        "tandem_webhook_to_write_seconds_sum",
        &[pair, ("connector", "mailchimp")],
    )
    .unwrap();
    assert!(sum > 0.0 && sum < 30.0, "{sum}");
    assert!(
        text.contains("# TYPE tandem_webhook_to_write_seconds histogram"),
        "{text}"
    );
}

#[tokio::test]
async fn sigterm_stops_a_running_engine_cleanly() {
    let mut world = ada().await;
    let listen = free_address();
    let config = world.config_listening_at(listen, 3600);
    let mut child = run(&config);
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !matches!(http.get(format!("http://{listen}/readyz")).send().await, Ok(r) if r.status() == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = stop_with_sigterm(&mut child).await;
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop, not death by the signal"
    );
}

#[tokio::test]
async fn readyz_is_503_while_the_state_store_does_not_answer() {
    let mut world = ada().await;
    let listen = free_address();
    world.config_listening_at(listen, 3600);
    let engine = std::sync::Arc::new(world.engine().await);
    let intake = tandem::http::Intake::new(&world.config, engine.clone()).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    tokio::spawn(intake.serve(listener, shutdown.clone()));
    // A probe that hangs fails the test rather than holding it up.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready = || async {
        http.get(format!("http://{listen}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(ready().await, 200);

    // Something holds the store (a stuck disk, a long lock): the probe says so in time.
    let (held, release) = std::sync::mpsc::channel::<()>();
    let store = engine.store().clone();
    let holder = tokio::spawn(async move {
        store
            .call(move |_| {
                release.recv().ok();
                Ok(())
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(ready().await, 503);
    assert!(started.elapsed() < Duration::from_secs(10));
    let healthy = http
        .get(format!("http://{listen}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200, "the process itself is up");

    held.send(()).unwrap();
    holder.await.unwrap().unwrap();
    assert_eq!(ready().await, 200);
    shutdown.cancel();
}

#[tokio::test]
async fn status_fails_once_a_connector_has_not_been_polled_for_three_intervals() {
    let world = ada().await;
    let config = world.dir.path().join("tandem.toml");
    let config = config.to_str().unwrap();
    let now = tandem_core::clock::now_millis();
    let status = || async { tandem(&["status", "--json", "--config", config], &[]).await };

    // A pass at `at`, by an engine that stops after it.
    let settings = &world.config;
    let pass_at = |at: i64| async move {
        let clock = tandem::engine::Clock::manual(at);
        let engine = tandem::engine::Engine::start(settings, clock)
            .await
            .unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        engine.pass(&shutdown).await.unwrap();
    };

    // The last pass ran an hour ago; polls are due every second.
    pass_at(now - 3_600_000).await;
    let stale = status().await;
    assert_eq!(stale.status.code(), Some(1), "{}", stderr(&stale));
    let text = String::from_utf8_lossy(&stale.stdout);
    assert!(
        text.contains("hubspot last polled") && text.contains("mailchimp last polled"),
        "{text}"
    );

    // Four minutes ago is within the five-minute floor.
    pass_at(now - 240_000).await;
    let fresh = status().await;
    assert_eq!(
        fresh.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fresh.stdout)
    );
}
