//! Crash safety: the `tandem` process is killed again and again in the middle
//! of syncing, at its named crash points (`TANDEM_CRASH_AT`, an abort) and at
//! random instants (SIGKILL), while people keep editing and creating records
//! on both simulators, changing emails in Mailchimp and archiving records on
//! either side, before and during each run (people are linked by a clean
//! first pass; records are created during the run). After the last kill, a few
//! clean passes must bring both systems to agree, with:
//!
//! - every edit made on one side only present on both (none lost),
//! - every field both sides edited equal on both, holding a value someone wrote,
//! - no record twice on either side (no duplicate create after a crash),
//! - a changed email on both sides, the old one on neither,
//! - an archived record not back on its side, its counterpart kept,
//! - no open conflict, queued write or dead letter left,
//! - SQLite's integrity check passing, and one more pass writing nothing.
//!
//! `TANDEM_CRASH_KILLS` sets the number of kills (200 by default; the soak in
//! the README runs 1,000), `TANDEM_CRASH_SEED` replays a run's edits (its
//! kills land at other instants). Each run's log is kept, and a failing test
//! leaves everything it knows in `tandem-crash-<seed>` under the temporary
//! directory: the state file, the logs, both systems' records and the model.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::support::{World, contact, member};

/// What people did, to check the end state against.
#[derive(Debug, Default)]
struct Model {
    /// Seeded people, in both systems from the start.
    people: Vec<String>,
    /// The last phone number set in HubSpot (the only side that edits phones).
    phone: BTreeMap<String, String>,
    /// The last company set in Mailchimp (the only side that edits companies).
    company: BTreeMap<String, String>,
    /// Every first name anyone set, by person; both sides edit first names.
    first_names: BTreeMap<String, BTreeSet<String>>,
    /// People created in one system during the run, with their first name.
    created: BTreeMap<String, String>,
    /// People who change their email in Mailchimp once, never edited otherwise:
    /// (first email, the new one once changed).
    movers: Vec<(String, Option<String>)>,
    /// People archived once, in HubSpot (`Some(true)`) or Mailchimp (`Some(false)`).
    leavers: Vec<(String, Option<bool>)>,
    /// Edits and creates made.
    edits: usize,
}

impl Model {
    /// A few random edits or creates, each with a value never used before.
    async fn edit(&mut self, world: &World, rng: &mut fastrand::Rng, round: usize, count: usize) {
        for i in 0..count {
            self.edits += 1;
            let tag = format!("{round}x{i}n{}", self.edits);
            let email = self.people[rng.usize(..self.people.len())].clone();
            match rng.u8(..12) {
                0..=2 => {
                    let phone = format!("+1555{:07}", self.edits);
                    world.hubspot.edit(&email, &[("phone", &phone)]);
                    self.phone.insert(email, phone);
                }
                3..=5 => {
                    let company = format!("Company {tag}");
                    world.mailchimp.edit(&email, &[("COMPANY", &company)]);
                    self.company.insert(email, company);
                }
                6 | 7 => {
                    let name = format!("Name {tag}");
                    if rng.bool() {
                        world.hubspot.edit(&email, &[("firstname", &name)]);
                    } else {
                        world.mailchimp.edit(&email, &[("FNAME", &name)]);
                    }
                    self.first_names.entry(email).or_default().insert(name);
                }
                10 => {
                    let waiting: Vec<usize> = (0..self.movers.len())
                        .filter(|&m| self.movers[m].1.is_none())
                        .collect();
                    if let Some(&m) = waiting.get(rng.usize(..waiting.len().max(1))) {
                        let new = format!("moved-{tag}@example.com");
                        world.rename_in_mailchimp(&self.movers[m].0, &new).await;
                        self.movers[m].1 = Some(new);
                    }
                }
                11 => {
                    let staying: Vec<usize> = (0..self.leavers.len())
                        .filter(|&l| self.leavers[l].1.is_none())
                        .collect();
                    if let Some(&l) = staying.get(rng.usize(..staying.len().max(1))) {
                        let email = self.leavers[l].0.clone();
                        let in_hubspot = rng.bool();
                        if in_hubspot {
                            let id = world.hubspot.contact_by_email(&email).unwrap().id;
                            assert!(world.hubspot.archive(&id));
                        } else {
                            world.mailchimp.set_status(&email, "archived").unwrap();
                        }
                        self.leavers[l].1 = Some(in_hubspot);
                    }
                }
                8 => {
                    let (email, name) = (format!("new-{tag}@example.com"), format!("New {tag}"));
                    world
                        .create_in_hubspot(json!({ "email": email, "firstname": name }))
                        .await;
                    self.created.insert(email, name);
                }
                _ => {
                    let (email, name) =
                        (format!("signup-{tag}@example.com"), format!("Signup {tag}"));
                    world
                        .create_in_mailchimp(&email, json!({ "FNAME": name }))
                        .await;
                    self.created.insert(email, name);
                }
            }
        }
        world.later();
    }
}

/// How a run of the engine ended.
#[derive(Debug, PartialEq)]
enum End {
    /// It finished its pass.
    Done(Value),
    /// Killed: by an armed crash point (SIGABRT) or by us (SIGKILL).
    Killed(i32),
}

/// Run `tandem sync --once --json` against the world, armed at `crash_at` or
/// killed after `kill_after`; its log is kept in `runs/` as `<number>.log`.
async fn run(
    world: &World,
    number: usize,
    crash_at: Option<String>,
    kill_after: Option<Duration>,
) -> End {
    let config = world.dir.path().join("tandem.toml");
    let armed = format!("crash point {crash_at:?}, kill after {kill_after:?}: ");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
    command
        .args(["sync", "--once", "--yes", "--json", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(point) = crash_at {
        command.env(tandem::crash::VARIABLE, point);
    }
    let mut child = command.spawn().unwrap();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let output = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        (out, err)
    });
    if let Some(after) = kill_after
        && tokio::time::timeout(after, child.wait()).await.is_err()
    {
        child.start_kill().unwrap();
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("a pass ends within a minute")
        .unwrap();
    let (out, err) = output.await.unwrap();
    let logs = world.dir.path().join("runs");
    std::fs::create_dir_all(&logs).unwrap();
    let head = format!("{armed}{status}\n");
    std::fs::write(logs.join(format!("{number:05}.log")), head + &err + &out).unwrap();
    if let Some(signal) = status.signal() {
        return End::Killed(signal);
    }
    assert_eq!(status.code(), Some(0), "the engine failed:\n{err}");
    End::Done(serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
}

fn writes(report: &Value) -> u64 {
    let pair = &report["pairs"][0];
    ["created", "updated", "removed"]
        .iter()
        .flat_map(|k| pair[k].as_array().unwrap())
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_point_the_engine_loses_no_edit_and_duplicates_nothing() {
    let kills_wanted: usize = std::env::var("TANDEM_CRASH_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("TANDEM_CRASH_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("TANDEM_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let people: Vec<String> = (0..16).map(|i| format!("person{i}@example.com")).collect();
    let mut contacts = Vec::new();
    let mut members = Vec::new();
    for (i, email) in people.iter().enumerate() {
        let (first, phone, company) = (
            format!("First{i}"),
            format!("+1444{i:07}"),
            format!("Seed {i}"),
        );
        let fields = [
            ("firstname", first.as_str()),
            ("phone", phone.as_str()),
            ("company", company.as_str()),
        ];
        // A quarter only in HubSpot, a quarter only in Mailchimp: the first passes create them.
        if i % 4 != 3 {
            contacts.push(contact(email, &fields));
        }
        if i % 4 != 2 {
            members.push(member(
                email,
                &[("FNAME", &first), ("PHONE", &phone), ("COMPANY", &company)],
            ));
        }
    }
    // Movers and leavers, in both systems from the start.
    let movers: Vec<String> = (0..4).map(|i| format!("mover{i}@example.com")).collect();
    let leavers: Vec<String> = (0..4).map(|i| format!("leaver{i}@example.com")).collect();
    for (i, email) in movers.iter().chain(&leavers).enumerate() {
        let first = format!("Still{i}");
        contacts.push(contact(email, &[("firstname", &first)]));
        members.push(member(email, &[("FNAME", &first)]));
    }
    let world = World::new(contacts, members).await;
    let _keep = Keep {
        world: &world,
        seed,
    };
    let mut model = Model {
        people: people.clone(),
        movers: movers.iter().map(|m| (m.clone(), None)).collect(),
        leavers: leavers.iter().map(|l| (l.clone(), None)).collect(),
        ..Model::default()
    };

    // Link everyone first: values that differ at a first link are a person's
    // to decide (company is `manual`), which is the policy, not a crash.
    assert!(matches!(run(&world, 0, None, None).await, End::Done(_)));

    let started = Instant::now();
    let (mut kills, mut aborts, mut runs, mut finished) = (0, 0, 0, 0);
    let mut by_point: BTreeMap<&str, usize> = BTreeMap::new();
    // How long a whole pass takes here: random kills land within it.
    let mut pass_ms = 300u64;
    let mut round = 0;
    while kills < kills_wanted {
        round += 1;
        let count = rng.usize(0..4);
        model.edit(&world, &mut rng, round, count).await;
        let point = tandem::crash::POINTS[rng.usize(..tandem::crash::POINTS.len())];
        let (crash_at, kill_after) = if rng.bool() {
            (Some(format!("{point}@{}", rng.u32(1..=2))), None)
        } else {
            (None, Some(Duration::from_millis(rng.u64(0..=pass_ms))))
        };
        let armed = crash_at.is_some();
        // People keep working while the engine runs.
        let during = rng.usize(0..3);
        let begun = Instant::now();
        let (end, ()) = tokio::join!(run(&world, runs + 1, crash_at, kill_after), async {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..=pass_ms / 2))).await;
            model.edit(&world, &mut rng, round, during).await;
        });
        runs += 1;
        match end {
            End::Killed(signal) => {
                kills += 1;
                if armed {
                    assert_eq!(signal, 6, "an armed crash point aborts");
                    aborts += 1;
                    *by_point.entry(point).or_default() += 1;
                } else {
                    assert_eq!(signal, 9);
                }
            }
            End::Done(_) => {
                finished += 1;
                let took = begun.elapsed().as_millis() as u64;
                pass_ms = (pass_ms * 3 + took) / 4;
            }
        }
    }
    println!(
        "{runs} runs: {kills} killed ({aborts} at crash points {by_point:?}, {} by SIGKILL), \
         {finished} finished; {} edits and creates; {:.1} s",
        kills - aborts,
        model.edits,
        started.elapsed().as_secs_f64()
    );

    // Quiet: clean passes until one writes nothing.
    std::fs::write(world.dir.path().join("model.txt"), format!("{model:#?}")).unwrap();
    let mut quiet = None;
    for clean in 1..=8 {
        let End::Done(report) = run(&world, runs + clean, None, None).await else {
            panic!("a clean run is not killed");
        };
        if writes(&report) == 0 && report["pairs"][0]["pending"] == 0 {
            quiet = Some(report);
            break;
        }
    }
    quiet.expect("the engine goes quiet within eight passes");
    let db = rusqlite::Connection::open(world.dir.path().join("tandem.sqlite")).unwrap();
    let conflicts: Vec<String> = db
        .prepare("SELECT field || ': ' || reason || ' left=' || left_value || ' right=' || right_value || ' base=' || coalesce(base_left, '-') FROM conflicts WHERE status = 'open'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let history: Vec<String> = db
        .prepare("SELECT a.id || ' ' || a.action || ' ' || coalesce(a.side, '') || ' ' || a.detail FROM audit a JOIN conflicts c ON c.link_id = a.link_id WHERE c.status = 'open' ORDER BY a.id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        conflicts.is_empty(),
        "open conflicts: {conflicts:#?}\n{history:#?}"
    );
    let End::Done(again) = run(&world, runs + 9, None, None).await else {
        unreachable!()
    };
    assert_eq!(writes(&again), 0, "one more pass writes nothing: {again}");

    // No record twice on either side, and everyone on both.
    let hubspot: Vec<String> = world
        .hubspot
        .contacts()
        .iter()
        .filter_map(|c| c.properties.get("email").cloned().flatten())
        .map(|e| e.to_lowercase())
        .collect();
    let mailchimp: Vec<String> = world
        .mailchimp
        .members()
        .iter()
        .map(|m| m.email_address.to_lowercase())
        .collect();
    for (system, emails) in [("HubSpot", &hubspot), ("Mailchimp", &mailchimp)] {
        let unique: BTreeSet<&String> = emails.iter().collect();
        assert_eq!(
            unique.len(),
            emails.len(),
            "a duplicate in {system}: {emails:?}"
        );
    }
    // Movers under their new email on both sides, leavers gone only where archived.
    let moved = model
        .movers
        .iter()
        .map(|(old, new)| new.as_ref().unwrap_or(old));
    let everyone: BTreeSet<String> = people
        .iter()
        .chain(model.created.keys())
        .chain(moved)
        .cloned()
        .collect();
    let staying = |in_hubspot: bool| -> BTreeSet<String> {
        let stays = model
            .leavers
            .iter()
            .filter(|(_, archived)| *archived != Some(in_hubspot));
        everyone
            .iter()
            .cloned()
            .chain(stays.map(|(email, _)| email.clone()))
            .collect()
    };
    for (system, emails, everyone) in [
        ("HubSpot", &hubspot, staying(true)),
        ("Mailchimp", &mailchimp, staying(false)),
    ] {
        let held: BTreeSet<String> = emails.iter().cloned().collect();
        let missing: Vec<&String> = everyone.difference(&held).collect();
        let story: Vec<String> = missing.iter().map(|email| history_of(&db, email)).collect();
        assert!(
            missing.is_empty(),
            "missing in {system}: {missing:?}\n{}",
            story.join("\n")
        );
        assert_eq!(
            held.len(),
            everyone.len(),
            "{system} holds records nobody made"
        );
    }

    // No edit lost: one-sided edits reached the other side; two-sided ones agree.
    for (email, phone) in &model.phone {
        assert_eq!(
            world.hubspot_value(email, "phone").as_ref(),
            Some(phone),
            "{email}"
        );
        assert_eq!(
            world.mailchimp_value(email, "PHONE").as_ref(),
            Some(phone),
            "{email}"
        );
    }
    for (email, company) in &model.company {
        assert_eq!(
            world.mailchimp_value(email, "COMPANY").as_ref(),
            Some(company),
            "{email}"
        );
        assert_eq!(
            world.hubspot_value(email, "company").as_ref(),
            Some(company),
            "{email}"
        );
    }
    for (i, email) in people.iter().enumerate() {
        let (left, right) = (
            world.hubspot_value(email, "firstname"),
            world.mailchimp_value(email, "FNAME"),
        );
        assert_eq!(left, right, "{email}");
        let seeded = format!("First{i}");
        let written = model.first_names.get(email);
        let name = left.unwrap();
        assert!(
            name == seeded || written.is_some_and(|w| w.contains(&name)),
            "{email}: {name} was never written"
        );
    }
    for (email, name) in &model.created {
        assert_eq!(
            world.hubspot_value(email, "firstname").as_ref(),
            Some(name),
            "{email}"
        );
        assert_eq!(
            world.mailchimp_value(email, "FNAME").as_ref(),
            Some(name),
            "{email}"
        );
    }

    // The state file is sound and holds nothing undone.
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let left: i64 = db
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "writes queued or dead");
    let links: i64 = db
        .query_row("SELECT count(*) FROM links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        links as usize,
        everyone.len() + model.leavers.len(),
        "one link per person"
    );
    let (renamed, archived) = (
        model.movers.iter().filter(|m| m.1.is_some()).count(),
        model.leavers.iter().filter(|l| l.1.is_some()).count(),
    );
    println!("{renamed} email changes and {archived} archives among them");
}

/// On a failure, copies what the test knows to where it outlives the test.
struct Keep<'a> {
    world: &'a World,
    seed: u64,
}

impl Drop for Keep<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let kept = std::env::temp_dir().join(format!("tandem-crash-{}", self.seed));
        let copy = |from: &std::path::Path, to: &std::path::Path| {
            std::fs::create_dir_all(to)?;
            for entry in std::fs::read_dir(from)? {
                let path = entry?.path();
                if path.is_file() {
                    std::fs::copy(&path, to.join(path.file_name().unwrap()))?;
                }
            }
            std::io::Result::Ok(())
        };
        let dir = self.world.dir.path();
        let kept_all = copy(dir, &kept)
            .and_then(|()| copy(&dir.join("runs"), &kept.join("runs")))
            .and_then(|()| {
                let hubspot = format!("{:#?}", self.world.hubspot.contacts());
                std::fs::write(kept.join("hubspot.txt"), hubspot)?;
                let mailchimp = format!("{:#?}", self.world.mailchimp.members());
                std::fs::write(kept.join("mailchimp.txt"), mailchimp)
            });
        match kept_all {
            Ok(()) => eprintln!("what the test knew is kept in {}", kept.display()),
            Err(e) => eprintln!(
                "keeping what the test knew in {} failed: {e}",
                kept.display()
            ),
        }
    }
}

/// What the state file knows of one email: its link, audit rows and queued writes.
fn history_of(db: &rusqlite::Connection, email: &str) -> String {
    let rows = |sql: &str| -> Vec<String> {
        db.prepare(sql)
            .unwrap()
            .query_map([email], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let links = rows(
        "SELECT id || ' ' || coalesce(left_id, '-') || ' ' || coalesce(right_id, '-') FROM links WHERE match_key = ?1",
    );
    let audit = rows(
        "SELECT a.id || ' ' || a.action || ' ' || coalesce(a.side, '') || ' ' || a.detail FROM audit a
         JOIN links l ON l.id = a.link_id WHERE l.match_key = ?1 ORDER BY a.id",
    );
    let outbox = rows(
        "SELECT op || ' ' || side || ' ' || status || ' ' || coalesce(last_error, '') FROM outbox WHERE match_key = ?1",
    );
    format!("{email}: links {links:?}\n  audit {audit:#?}\n  outbox {outbox:?}")
}
