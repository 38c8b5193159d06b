//! `tandem bench --decisions`: field decisions per second of the reconcile core
//! on one core, over a policy that uses every rule and transform, with a mix of
//! untouched fields, one-sided edits and edits on both sides.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use tandem_core::FieldMap;

use crate::policy::{self, Policy, Schemas, Values};
use crate::reconcile::{Base, FieldBase, SideView, decide_field, reconcile};
use crate::side::Side;

/// Rounds timed; the median is reported.
const ROUNDS: usize = 5;

/// The benchmark's policy: every rule, most transforms.
const POLICY: &str = r#"
left = "crm"
right = "email"

[match]
field = "email"

[fields.email]
left = "p.email"
right = "email_address"

[fields.first_name]
left = "p.firstname"
right = "m.FNAME"
rule = "newest"
tie = "crm"
skew_secs = 5
normalize = ["trim", "collapse_spaces"]

[fields.phone]
left = "p.phone"
right = "m.PHONE"
rule = "source_of_truth"
source = "crm"
normalize = ["phone"]

[fields.tags]
left = "p.interests"
right = "tags"
type = "list"
rule = "union"
left_split = ";"

[fields.notes]
left = "p.notes"
right = "m.NOTES"
rule = "text-merge"

[fields.score]
left = "p.score"
right = "m.SCORE"
type = "number"
rule = "max"

[fields.since]
left = "p.since"
right = "m.SINCE"
type = "date"
rule = "min"
left_format = "epoch_ms"

[fields.city]
left = "p.city"
right = "m.CITY"
rule = "prefer-non-empty"
tie = "crm"

[fields.company]
left = "p.company"
right = "m.COMPANY"
rule = "manual"

[fields.opted_out]
left = "p.optout"
right = "status"
type = "bool"
rule = "source_of_truth"
source = "email"
right_map = { subscribed = false, unsubscribed = true, cleaned = true }
right_map_write = { false = "subscribed", true = "unsubscribed" }
"#;

/// Any path on two connectors named `crm` and `email`.
struct Open;

impl Schemas for Open {
    fn connectors(&self) -> Vec<String> {
        vec!["crm".into(), "email".into()]
    }
    fn check_path(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn events(&self, _: &str) -> &'static [&'static str] {
        &["archived"]
    }
    fn deletes_permanently(&self, _: &str) -> bool {
        false
    }
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct DecisionsResult {
    /// Records reconciled per round.
    pub records: usize,
    /// Fields per record.
    pub fields: usize,
    /// Field decisions per second, values already canonical (median of the rounds).
    pub decisions_per_sec: f64,
    /// Field decisions per second, reading both records through the transforms too.
    pub decisions_per_sec_with_transforms: f64,
    /// Decisions per second of each rule on edits made on both sides (the costly case).
    pub both_sides_per_sec: Vec<(String, f64)>,
}

/// One linked pair's inputs.
struct Case {
    raw: [FieldMap; 2],
    values: [Values; 2],
    base: Base,
    times: [i64; 2],
}

/// A person's raw fields on each side, then edits: most fields untouched, some
/// edited on one side, a few on both.
fn case(policy: &Policy, index: usize, rng: &mut fastrand::Rng) -> Case {
    let text = |words: &[&str]| words.join(" ");
    let notes = text(&[
        "Met", "at", "the", "spring", "fair;", "asked", "about", "pricing", "and", "the", "API.",
    ]);
    let agreed = json!({
        "email": format!("person{index}@example.com"),
        "first_name": format!("Name{}", index % 97),
        "phone": format!("+1 555 {:03} {:04}", index % 1000, index % 10_000),
        "tags": ["events", "newsletter"],
        "notes": notes,
        "score": (index % 100) as i64,
        "since": "2024-03-01",
        "city": if index.is_multiple_of(3) { Value::Null } else { json!("Lyon") },
        "company": "Contoso",
        "opted_out": false,
    });
    let mut sides = [agreed.clone(), agreed.clone()];
    for field in &policy.fields {
        if field.key {
            continue;
        }
        let roll = rng.u32(0..100);
        let edited = |side: usize| -> Value {
            match field.name.as_str() {
                "first_name" => json!(format!("Name{}-{side}", rng_word(index, side))),
                "phone" => json!(format!("+1 555 {:03} 99{side}{side}", index % 1000)),
                "tags" => json!(["events", format!("t{side}")]),
                "notes" if side == 0 => json!(notes.replace("Met", "Saw")),
                "notes" => json!(notes.replace("pricing", "discounts")),
                "score" => json!((index % 100) as i64 + 1 + side as i64),
                "since" => json!(format!("2023-0{}-15", side + 1)),
                "city" => json!(if side == 0 { "Paris" } else { "Nantes" }),
                "company" => json!(format!("Company {side}")),
                "opted_out" => json!(true),
                _ => Value::Null,
            }
        };
        let edit = match roll {
            0..70 => [false, false],
            70..80 => [true, false],
            80..90 => [false, true],
            _ => [true, true],
        };
        for side in 0..2 {
            if edit[side] {
                sides[side][&field.name] = edited(side);
            }
        }
    }
    let base_values: Values = agreed
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut base = Base::new();
    for field in &policy.fields {
        let value = field.canonical(&base_values[&field.name]);
        base.insert(
            field.name.clone(),
            FieldBase {
                left: value.clone(),
                right: value,
            },
        );
    }
    let raw = [Side::Left, Side::Right].map(|side| {
        let canonical: Values = sides[side as usize]
            .as_object()
            .expect("an object")
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    policy
                        .fields
                        .iter()
                        .find(|f| &f.name == k)
                        .map_or(Value::Null, |f| f.canonical(v)),
                )
            })
            .collect();
        policy.to_side(side, &canonical)
    });
    let values = [
        policy.canonical(Side::Left, &raw[0]),
        policy.canonical(Side::Right, &raw[1]),
    ];
    Case {
        raw,
        values,
        base,
        times: [
            1_000_000 + rng.i64(0..20_000),
            1_000_000 + rng.i64(0..20_000),
        ],
    }
}

fn rng_word(index: usize, side: usize) -> usize {
    (index * 31 + side * 7) % 1000
}

fn median(mut figures: Vec<f64>) -> f64 {
    figures.sort_by(f64::total_cmp);
    figures[figures.len() / 2]
}

/// Run the benchmark and print its figures.
pub fn run(records: usize, json_out: bool) -> anyhow::Result<()> {
    let policy = policy::compile(Path::new("bench.toml"), POLICY, &Open)
        .map_err(|problems| anyhow::anyhow!("{problems}"))?;
    let mut rng = fastrand::Rng::with_seed(20_261_122);
    let cases: Vec<Case> = (0..records).map(|i| case(&policy, i, &mut rng)).collect();
    let fields = policy.fields.len();
    let decisions = (records * fields) as f64;

    let mut core = Vec::new();
    let mut full = Vec::new();
    let mut sink = 0usize;
    let none = std::collections::BTreeMap::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for case in &cases {
            let plan = reconcile(
                &policy,
                &case.base,
                SideView {
                    values: &case.values[0],
                    changed_at: case.times[0],
                    fields_changed_at: &none,
                },
                SideView {
                    values: &case.values[1],
                    changed_at: case.times[1],
                    fields_changed_at: &none,
                },
            );
            sink += plan.settled.len();
        }
        core.push(decisions / started.elapsed().as_secs_f64());

        let started = Instant::now();
        for case in &cases {
            let left = policy.canonical(Side::Left, &case.raw[0]);
            let right = policy.canonical(Side::Right, &case.raw[1]);
            let plan = reconcile(
                &policy,
                &case.base,
                SideView {
                    values: &left,
                    changed_at: case.times[0],
                    fields_changed_at: &none,
                },
                SideView {
                    values: &right,
                    changed_at: case.times[1],
                    fields_changed_at: &none,
                },
            );
            sink += plan.conflicts.len();
        }
        full.push(decisions / started.elapsed().as_secs_f64());
    }

    // Each rule alone, on the cases where both sides moved.
    let mut per_rule = Vec::new();
    for field in policy.fields.iter().filter(|f| !f.key) {
        let both: Vec<&Case> = cases
            .iter()
            .filter(|c| {
                let base = &c.base[&field.name];
                c.values[0].get(&field.name) != Some(&base.left)
                    && c.values[1].get(&field.name) != Some(&base.right)
            })
            .collect();
        if both.is_empty() {
            continue;
        }
        let mut rates = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for case in &both {
                let value =
                    |side: usize| case.values[side].get(&field.name).unwrap_or(&Value::Null);
                let decision = decide_field(
                    field,
                    case.base.get(&field.name),
                    value(0),
                    value(1),
                    case.times[0],
                    case.times[1],
                );
                sink += matches!(decision, crate::reconcile::Decision::Conflict { .. }) as usize;
            }
            rates.push(both.len() as f64 / started.elapsed().as_secs_f64());
        }
        per_rule.push((
            format!("{} ({})", field.rule.name(), field.name),
            median(rates),
        ));
    }
    std::hint::black_box(sink);

    let result = DecisionsResult {
        records,
        fields,
        decisions_per_sec: median(core),
        decisions_per_sec_with_transforms: median(full),
        both_sides_per_sec: per_rule,
    };
    if json_out {
        println!("{}", serde_json::to_string(&result)?);
        return Ok(());
    }
    println!(
        "Reconcile core, one core: {} records × {} fields, 30% of fields edited (10% on both sides); median of {ROUNDS} rounds",
        result.records, result.fields
    );
    println!(
        "  field decisions per second             {:>12.0}  (target 200,000)",
        result.decisions_per_sec
    );
    println!(
        "  ... reading both records through transforms {:>7.0}",
        result.decisions_per_sec_with_transforms
    );
    println!("  edits on both sides, per rule (decisions per second):");
    for (rule, rate) in &result.both_sides_per_sec {
        println!("    {rule:<30} {rate:>12.0}");
    }
    Ok(())
}
